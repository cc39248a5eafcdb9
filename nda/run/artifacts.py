"""Final models saved with their constructor arguments, so evaluation rebuilds them from the folder alone.

Why: rebuilding a model from a checkpoint used to depend on the training job's flag defaults, the order of
``accelerator.prepare`` and pickled custom objects. A saved model here is::

    <folder>/model.safetensors   the state dict
    <folder>/model.json          {"factory": "nda.models.gan.ResNetGenerator", "kwargs": {...}, "meta": {...}}
    <folder>/config.json         the kwargs again, for ``ResNetGenerator.from_pretrained(folder)`` / ``push_to_hub``
    <folder>/README.md           a model card (huggingface_hub's ``PyTorchModelHubMixin``)

The factory is a *key* of the model allow-list (:mod:`nda.models.registry`: ``nn.Module`` classes
decorated with ``@register_model``), looked up, never imported by the name in the file; nothing is
unpickled. ``model.json`` is written last and atomically: a folder whose save failed (a full disk) has
none, so it is refused instead of loading half-written weights. Every problem with a folder is one
:class:`ModelFolderError` that names it.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nda.files import atomic_path, atomic_write_text
from nda.models.registry import model_class, model_key

__all__ = ["ModelFolderError", "save_model", "load_model", "read_model_info"]

WEIGHTS = "model.safetensors"
INFO = "model.json"
HUB_CONFIG = "config.json"
CARD = "README.md"


class ModelFolderError(ValueError):
    """A saved model folder is missing, unreadable, names a model outside the allow-list, does not fit its
    model, or could not be written. The message starts with the folder."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def save_model(folder: str | os.PathLike, model: nn.Module, factory: Any, kwargs: Mapping[str, Any],
               meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and ``factory(**kwargs)`` (the call that rebuilds it) into ``folder``.

    ``factory`` is a registered model class (:func:`nda.models.registry.register_model`) or its key;
    ``kwargs`` must be JSON values that its constructor accepts. ``meta`` is free JSON (data it was trained
    on, step, ...), also shown in the model card. A failed write (full disk) raises :class:`ModelFolderError`
    and leaves no ``model.json``, so the folder is not mistaken for a saved model.
    """
    from safetensors.torch import load_file, save_file

    try:
        key = model_key(factory)
    except KeyError as err:
        raise ValueError(f"save_model: factory {factory!r} is not a model class of the nda package registered with "
                         f"@register_model ({err.args[0]})") from None
    cls = model_class(key)
    if not isinstance(model, cls):
        raise TypeError(f"save_model: model is a {type(model).__name__}, but factory is {key}")
    try:
        info = json.dumps({"factory": key, "kwargs": dict(kwargs), "meta": dict(meta or {})}, indent=2)
        config = json.dumps(dict(kwargs), indent=2, sort_keys=True)
    except TypeError as err:
        raise TypeError(f"save_model: kwargs and meta must be JSON values ({err})") from err
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as err:
        raise TypeError(f"save_model: kwargs do not fit {key} ({err})") from err
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in (INFO, HUB_CONFIG):  # until the new model.json lands, the folder is not a saved model
            (out / name).unlink(missing_ok=True)
        state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
        with atomic_path(out / WEIGHTS) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
            if not _same_tensors(load_file(str(tmp)), state):
                raise OSError(f"{WEIGHTS} did not read back as written")
        card = _model_card(model, kwargs, meta)
        if card is not None:
            atomic_write_text(out / CARD, card)
        atomic_write_text(out / HUB_CONFIG, config)
        atomic_write_text(out / INFO, info)
    except Exception as err:  # SafetensorError, OSError (ENOSPC), ...: no half-written folder passes as a model
        raise ModelFolderError(f"{out}: could not save the model ({_first_line(err)})") from err
    return out


def _model_card(model: nn.Module, kwargs: Mapping[str, Any], meta: Mapping[str, Any] | None) -> str | None:
    """The Hub model card (``README.md``) of a registered model; ``None`` without jinja2, which renders it."""
    try:
        return str(model.generate_model_card(meta=dict(meta or {}), arguments=dict(kwargs)))
    except ImportError:
        return None


def _same_tensors(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    """Bitwise equality of two state dicts (NaN-safe: compares bytes)."""
    if a.keys() != b.keys():
        return False
    return all(x.dtype == y.dtype and x.shape == y.shape
               and torch.equal(x.reshape(-1).view(torch.uint8), y.reshape(-1).view(torch.uint8))
               for x, y in ((a[k], b[k]) for k in a))


def read_model_info(folder: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``model.json`` of ``folder``: a dict with a string ``factory`` and dict ``kwargs``."""
    path = Path(folder) / INFO
    if not path.is_file():
        raise ModelFolderError(f"{folder}: no {INFO} (not a saved nda model; save one with nda.run.save_model)")
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{folder}: {INFO} is not readable JSON ({_first_line(err)})") from err
    if not isinstance(info, dict) or not isinstance(info.get("factory"), str) \
            or not isinstance(info.setdefault("kwargs", {}), dict):
        raise ModelFolderError(f"{folder}: {INFO} has the wrong structure (expected an object with a string "
                               "'factory' and an object 'kwargs')")
    return info


def load_model(folder: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild and load a model written by :func:`save_model` (eval mode, on ``device``).

    Only a registered model class is built (the factory in ``model.json`` is looked up in the allow-list,
    nothing is imported by that name); any problem is a :class:`ModelFolderError` naming ``folder``.
    """
    from safetensors.torch import load_file

    info = read_model_info(folder)
    name = info["factory"]
    try:
        cls = model_class(name)
    except KeyError as err:
        raise ModelFolderError(f"{folder}: unknown model factory {name!r} in {INFO} (refusing: not a torch.nn.Module "
                               f"class of the nda package registered with @register_model; {err.args[0]})") from None
    try:
        model = cls(**info["kwargs"])
    except (TypeError, ValueError) as err:
        raise ModelFolderError(f"{folder}: {cls.__name__} refused the kwargs in {INFO} ({_first_line(err)})") from err
    weights = Path(folder) / WEIGHTS
    if not weights.is_file():
        raise ModelFolderError(f"{folder}: no {WEIGHTS} beside {INFO}")
    try:
        state = load_file(str(weights))
    except Exception as err:  # SafetensorError (truncated, not safetensors), OSError
        raise ModelFolderError(f"{folder}: {WEIGHTS} is unreadable or truncated ({_first_line(err)})") from err
    try:
        model.load_state_dict(state)
    except RuntimeError as err:  # missing / unexpected keys, wrong shapes
        detail = " ".join(str(err).split())[:300]
        raise ModelFolderError(f"{folder}: {WEIGHTS} does not fit {cls.__name__}(**kwargs) ({detail})") from err
    return model.to(device).eval()
