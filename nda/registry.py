"""Name -> negative-generator registry, and ``build`` which turns config/CLI specs into generators.

Built-ins are registered lazily by import path so ``nda.available()`` and ``nda.build("jigsaw")`` never
import the text stack (nltk, transformers) for a vision job, or the other way round.

Spec forms accepted by :func:`build`:

- a registry name with optional arguments: ``"jigsaw"``, ``"jigsaw:grid=3"``, ``"cutout:min_size=8,max_size=12"``;
- random choice per sample: ``"jigsaw|stitch"``, with weights ``"jigsaw@0.7|stitch@0.3"``;
- composition (applied left to right, binds tighter than ``|``): ``"cutout>rotate"``; a label-flipping double
  flip, antonym then negation (its results are ``paraphrase`` positives, see :class:`~nda.compose.Compose`):
  ``"counterfactual:negation=False>counterfactual:antonyms=False"``;
- a dict: ``{"name": "stitch", ...kwargs}``, ``{"choice": [specs], "weights": [...], "per": "sample"|"batch"}``,
  ``{"compose": [specs]}`` (what ``neg.config()`` returns, so configs round-trip);
- a list of specs (random choice), or of ``(spec, weight)`` pairs;
- an existing generator (returned as is); ``None``/``"none"`` -> ``None`` (no NDA).
"""

from __future__ import annotations

import ast
import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["register", "available", "build", "get", "parse_spec"]

# Built-in negatives: one line each, resolved on first use.
_BUILTINS: dict[str, str] = {
    # vision
    "jigsaw": "nda.vision.jigsaw:Jigsaw",
    "stitch": "nda.vision.stitch:Stitch",
    "mixup": "nda.vision.mixup:MixUp",
    "cutout": "nda.vision.cutout:Cutout",
    "cutmix": "nda.vision.cutmix:CutMix",
    "rotate": "nda.vision.rotate:Rotate",
    "shift": "nda.vision.shift:Shift",
    # text
    "token_shuffle": "nda.text.shuffle:TokenShuffle",
    "span_stitch": "nda.text.stitch:SpanStitch",
    "counterfactual": "nda.text.counterfactual:Counterfactual",
}
_REGISTRY: dict[str, str | Callable[..., Any]] = dict(_BUILTINS)


def register(name: str, target: Callable[..., Any] | None = None):
    """Register a negative-generator class (or factory) under ``name``; usable as a decorator.

    >>> @register("my_negative")
    ... class MyNegative: ...
    """
    if not isinstance(name, str) or not name or any(ch in name for ch in ":|>@,= "):
        raise ValueError(f"name must be a non-empty string without ':|>@,= ' or spaces, got {name!r}")

    def _add(obj: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(obj):
            raise TypeError(f"register({name!r}) needs a class or callable, got {type(obj).__name__}")
        _REGISTRY[name] = obj
        return obj

    return _add(target) if target is not None else _add


def available(modality: str | None = None) -> list[str]:
    """Sorted names of the registered negatives, optionally only those of one modality (``"image"``/``"text"``)."""
    names = sorted(_REGISTRY)
    if modality is None:
        return names
    if modality not in ("image", "text"):
        raise ValueError(f"modality must be 'image', 'text' or None, got {modality!r}")
    return [n for n in names if getattr(get(n), "modality", None) == modality]


def get(name: str) -> Callable[..., Any]:
    """The class/factory registered under ``name`` (imported on first use)."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown negative {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None
    if isinstance(target, str):
        module_name, attr = target.split(":")
        target = getattr(importlib.import_module(module_name), attr)
        _REGISTRY[name] = target
    return target


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low == "none":
            return None
        return text


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"jigsaw:grid=3,p=0.5"`` -> ``("jigsaw", {"grid": 3, "p": 0.5})``. Tuple/list values use parentheses or
    brackets: ``"rotate:angles=(90,180)"``."""
    name, _, arg_text = spec.strip().partition(":")
    kwargs: dict[str, Any] = {}
    depth, start, parts = 0, 0, []
    for i, ch in enumerate(arg_text):  # split on commas outside brackets
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(arg_text[start:i])
            start = i + 1
    parts.append(arg_text[start:])
    for part in parts:
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"bad argument {part!r} in spec {spec!r}: expected key=value")
        if key in kwargs:
            raise ValueError(f"argument {key!r} given twice in spec {spec!r}; give each argument once")
        kwargs[key] = _parse_value(value.strip())
        _check_finite(kwargs[key], key, spec)
    return name.strip(), kwargs


_NON_FINITE_WORDS = {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity", "nan", "+nan", "-nan"}


def _check_finite(value: Any, key: str, where: Any) -> None:
    """No negative takes an infinite or NaN number: say so here, naming the argument, instead of letting it fail
    late or silently (``"cutout:max_size=inf"``, ``{"name": "mixup", "alpha": float("inf")}``)."""
    bad = (isinstance(value, float) and not math.isfinite(value)) or (
        isinstance(value, str) and value.strip().lower() in _NON_FINITE_WORDS
    )
    if bad:
        raise ValueError(f"argument {key}={value!r} in {where!r} must be a finite number")
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_finite(item, key, where)


def _build_one(name: str, kwargs: Mapping[str, Any]) -> Any:
    for key, value in kwargs.items():
        _check_finite(value, key, name)
    cls = get(name)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for negative {name!r}: {err}") from err


def build(spec: Any, *, modality: str | None = None, argument: str = "spec", **overrides: Any) -> Any:
    """Turn a spec (see module docstring) into a negative generator; ``None``/``"none"`` gives ``None``.

    ``overrides`` are keyword arguments passed to every leaf generator that accepts them (e.g. a tokenizer
    for token-level text negatives). ``modality="image"`` (or ``"text"``) also checks that every member of a
    composite is of that modality -- what a training job needs before it loads any data -- and every error
    names ``argument`` (e.g. ``"--nda"``).

    >>> build("jigsaw|token_shuffle", modality="image", argument="--nda")
    Traceback (most recent call last):
    ...
    ValueError: --nda 'jigsaw|token_shuffle' contains the text negative 'token_shuffle'; image negatives are needed here (cutmix, cutout, jigsaw, mixup, rotate, shift, stitch)
    """
    if modality is None:
        return _build(spec, **overrides)
    from nda.compose import leaves

    try:
        built = _build(spec, **overrides)
    except (ValueError, TypeError, ImportError) as err:
        raise ValueError(f"{argument} {spec!r} is not a valid negative spec: {err} ({modality} negatives: "
                         f"{', '.join(available(modality))}, or none)") from err
    for part in leaves(built) if built is not None else ():
        if getattr(part, "modality", modality) != modality:
            raise ValueError(f"{argument} {spec!r} contains the {part.modality} negative {getattr(part, 'name', part)!r}; "
                             f"{modality} negatives are needed here ({', '.join(available(modality))})")
    return built


def _build(spec: Any, **overrides: Any) -> Any:
    from nda.compose import Compose, RandomChoice

    if spec is None:
        return None
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise ValueError("spec must not be empty; use 'none' for no negatives")
        if text.lower() == "none":
            return None
        if "|" in text:
            items, weights = [], []
            for part in text.split("|"):
                sub, at, weight = part.rpartition("@") if "@" in part else (part, "", "")
                items.append(build(sub, **overrides))
                weights.append(_parse_weight(weight, part) if at else 1.0)
            return RandomChoice(items, weights=weights)
        if ">" in text:
            return Compose([build(part, **overrides) for part in text.split(">")])
        name, kwargs = parse_spec(text)
        return _build_one(name, {**_accepted(name, overrides), **kwargs})
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if "choice" in spec:
            _check_keys(spec, {"choice", "weights", "per"})
            return RandomChoice(
                [build(s, **overrides) for s in spec["choice"]], weights=spec.get("weights"), per=spec.get("per", "sample")
            )
        if "compose" in spec:
            _check_keys(spec, {"compose"})
            return Compose([build(s, **overrides) for s in spec["compose"]])
        if "name" not in spec:
            raise ValueError(f"a dict spec needs a 'name' (or 'choice'/'compose') key, got keys {sorted(spec)}")
        name = spec.pop("name")
        return _build_one(name, {**_accepted(name, overrides), **spec})
    if isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)):
        if not spec:
            raise ValueError("a list spec must name at least one negative")
        items, weights = [], []
        for entry in spec:
            if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], (int, float)):
                items.append(build(entry[0], **overrides))
                weights.append(float(entry[1]))
            else:
                items.append(build(entry, **overrides))
                weights.append(1.0)
        return items[0] if len(items) == 1 else RandomChoice(items, weights=weights)
    if callable(spec):
        return spec
    raise TypeError(f"spec must be a string, dict, list, callable or None, got {type(spec).__name__}")


def _check_keys(spec: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(spec) - allowed)
    if extra:
        raise ValueError(f"unknown key(s) {extra} in spec {dict(spec)!r}; allowed: {sorted(allowed)}")


def _parse_weight(text: str, part: str) -> float:
    """The ``0.7`` of ``"jigsaw@0.7"``, or an error that names the spec part (not Python's float() message)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"bad weight {text!r} in spec part {part!r}: expected name@number, e.g. 'jigsaw@0.7'") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"bad weight {text!r} in spec part {part!r}: weights must be finite numbers >= 0")
    return value


def _accepted(name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``overrides`` that the constructor of ``name`` accepts."""
    if not overrides:
        return {}
    import inspect

    params = inspect.signature(get(name)).parameters
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(overrides)
    return {k: v for k, v in overrides.items() if k in params}
