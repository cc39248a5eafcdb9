"""Job configs as dataclasses, the CLI built from them, and validators that name the offending flag.

Why dataclasses and not argparse by hand: the same object is the CLI, the saved ``config.json`` and what a
resumed run is compared against, so the three can never disagree.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

__all__ = ["RunConfig", "parse_config", "flag", "check_positive", "check_non_negative", "check_choice",
           "check_finite", "flags_named"]

C = TypeVar("C")


def flag(name: str) -> str:
    """``out_dir`` -> ``--out-dir``: how a field is spelled on the command line (and in error messages)."""
    return "--" + name.replace("_", "-")


@dataclass
class RunConfig:
    """The fields every training job shares; a job's config subclasses this and adds its own.

    ``resume_may_change`` names the fields that may differ between a run and its ``--resume`` (how long it
    runs, how often it logs): any other difference is refused, so a continued run is the run it claims to be.
    A job extends the set with its own evaluation-only fields.
    """

    out_dir: str = field(default="runs/run", metadata={"help": "the run folder (one run per folder)"})
    resume: str | None = field(default=None, metadata={
        "help": "continue the run in --out-dir: 'latest' (or bare --resume) or a checkpoint folder", "bare": "latest"})
    overwrite: bool = field(default=False, metadata={"help": "delete what --out-dir holds and start a new run there"})
    steps: int = field(default=1000, metadata={"help": "optimizer steps"})
    seed: int = field(default=0, metadata={"help": "seed of init, data order and every random draw"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    log_every: int = field(default=10, metadata={"help": "log (all-reduced) scalars every N steps"})
    checkpoint_every: int = field(default=0, metadata={"help": "checkpoint every N steps (0: only at the end)"})
    keep_checkpoints: int = field(default=2, metadata={"help": "complete checkpoints kept (oldest deleted)"})
    max_minutes: float | None = field(default=None, metadata={
        "help": "stop after this wall time, checkpoint, and report (agreed by all processes at log steps)"})
    mixed_precision: str | None = field(default=None, metadata={
        "help": "no | fp16 | bf16 (default: the accelerate config / launch flag)"})
    cpu: bool = field(default=False, metadata={
        "help": "force CPU (with `accelerate launch --multi_gpu`: CPU processes over gloo)"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads per process (0: leave as is)"})
    progress: bool = field(default=True, metadata={"help": "progress bar (main process)"})
    report_to: str = field(default="none", metadata={
        "help": "accelerate trackers for the logged scalars besides metrics.csv: none | all | a comma list "
                "(tensorboard, wandb, mlflow, comet_ml, aim, clearml, dvclive, swanlab, trackio)"})

    resume_may_change: ClassVar[frozenset[str]] = frozenset({
        "out_dir", "resume", "overwrite", "steps", "log_every", "checkpoint_every", "keep_checkpoints",
        "max_minutes", "threads", "progress", "report_to",
    })

    def check_run_fields(self) -> None:
        """Validate the shared fields (a job's own ``validate`` calls this first)."""
        check_positive(self, "steps", "grad_accum", "log_every", "keep_checkpoints")
        check_non_negative(self, "checkpoint_every", "threads")
        if self.max_minutes is not None:
            check_finite(self, "max_minutes")
            if self.max_minutes <= 0:
                raise ValueError(f"--max-minutes must be > 0, got {self.max_minutes}")
        check_choice(self, "mixed_precision", (None, "no", "fp16", "bf16"))
        if self.resume is not None and self.overwrite:
            raise ValueError("--resume continues the run in --out-dir and --overwrite deletes it: give one of them")
        if not str(self.out_dir).strip():
            raise ValueError("--out-dir must be a folder path, got an empty string")
        from nda.run.tracking import tracker_names

        tracker_names(self.report_to)  # an unknown or not installed tracker fails here, before anything is built


# ----------------------------------------------------------------------------------------- validators
@contextlib.contextmanager
def flags_named(**flags: str) -> Iterator[None]:
    """The errors of objects built inside, re-raised under the flag the user typed: an object's message starts
    with its parameter's name (``mode must be ...``), which becomes the flag (``--nda-mode must be ...``).

    Why: a job's ``validate`` builds its objects instead of restating their rules, and the user still reads the
    flag they typed.

    >>> with flags_named(mode="--nda-mode"):
    ...     raise ValueError("mode must be 'separate' or 'mix', got 'both'")
    Traceback (most recent call last):
    ValueError: --nda-mode must be 'separate' or 'mix', got 'both'
    """
    try:
        yield
    except (ValueError, TypeError) as err:
        text = str(err)
        for param, name in flags.items():
            if text.startswith(param + " "):
                raise ValueError(name + text[len(param):]) from None
        raise ValueError(f"{' / '.join(flags.values())}: {text}") from None


def _values(cfg: Any, names: Iterable[str]) -> Iterable[tuple[str, Any]]:
    for name in names:
        yield name, getattr(cfg, name)


def check_positive(cfg: Any, *names: str) -> None:
    """Each named field is an int >= 1."""
    for name, value in _values(cfg, names):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{flag(name)} must be an int >= 1, got {value!r}")


def check_non_negative(cfg: Any, *names: str) -> None:
    """Each named field is a finite number >= 0 (for counters: 0 means off)."""
    for name, value in _values(cfg, names):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{flag(name)} must be a finite number >= 0, got {value!r}")


def check_finite(cfg: Any, *names: str) -> None:
    """Each named field is a finite number (no NaN / inf slipping into a loss or a schedule)."""
    for name, value in _values(cfg, names):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{flag(name)} must be a finite number, got {value!r}")


def check_choice(cfg: Any, name: str, choices: Sequence[Any]) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        shown = ", ".join("none" if c is None else str(c) for c in choices)
        raise ValueError(f"{flag(name)} must be one of {shown}, got {value!r}")


# ---------------------------------------------------------------------------------------------- CLI
def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


def _field_parser(tp: Any):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        inner = _field_parser(non_none[0]) if len(non_none) == 1 else str

        def parse_optional(text: str):
            return None if text.lower() in ("none", "null", "") else inner(text)

        return parse_optional
    if tp is bool:
        return _parse_bool
    if tp is float:
        return _parse_float
    if origin in (list, tuple, Sequence):
        inner = _field_parser(args[0]) if args else str
        return lambda text: [inner(part) for part in text.split(",") if part != ""]
    if tp in (int, str):
        return tp
    return str


def _expected(tp: Any) -> str:
    """How a field's type reads in an error message."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) if a is not type(None) else "null" for a in args)
    if origin in (list, tuple, Sequence):
        return f"a list of {_expected(args[0]) if args else 'strings'} (or a comma-separated string)"
    names = {bool: "a boolean (true/false)", int: "an int", float: "a finite number", str: "a string"}
    return names.get(tp, "a string")


def _from_json(tp: Any, value: Any) -> Any:
    """A ``--config`` JSON value -> the field's type, exactly as strict as its CLI flag: a string goes through the
    flag's own parser (``"false"`` -> False, ``"0.5"`` -> 0.5, ``"inf"`` refused); a JSON value must already have
    the type (an int for an int field: 1.5 and true are refused; a finite number for a float field)."""
    if isinstance(value, str):
        return _field_parser(tp)(value)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _from_json(non_none[0] if len(non_none) == 1 else str, value)
    if origin in (list, tuple, Sequence):
        if not isinstance(value, list):
            raise ValueError("not a list")
        return [_from_json(args[0] if args else str, v) for v in value]
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ValueError(f"got {type(value).__name__}")


def _config_values(cls: type, hints: dict[str, Any], path: str) -> dict[str, Any]:
    """The field values of a ``--config`` file, each parsed and type-checked like its flag."""
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--config {path}: not a readable JSON file ({err})") from err
    if not isinstance(loaded, dict):
        raise ValueError(f"--config {path}: expected a JSON object of field values")
    loaded = {k: v for k, v in loaded.items() if k not in INVOCATION_FIELDS}  # older config.json files
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(loaded) - known)
    if unknown:
        raise ValueError(f"--config {path}: unknown fields {unknown}")
    values = {}
    for key, value in loaded.items():
        try:
            values[key] = _from_json(hints[key], value)
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            raise ValueError(f"--config {path}: {key!r} ({flag(key)}) must be {_expected(hints[key])}, "
                             f"got {json.dumps(value)}") from None
    return values


def parse_config(cls: type[C], argv: Sequence[str] | None = None, description: str | None = None) -> C:
    """Build ``cls`` (a dataclass) from the command line: one ``--field-name`` flag per field.

    ``--config run.json`` loads a saved config first (e.g. a previous run's ``config.json``); flags given on
    the command line override it. Its values are parsed and checked like the flags (``{"seed": 1.5}`` and
    ``{"conditional": "maybe"}`` are one-line errors naming the key; ``"false"`` is False, as on the
    CLI). Field docs come from ``field(metadata={"help": ...})``; a field with
    ``metadata={"bare": value}`` may be given without a value (``--resume`` alone means ``--resume latest``).
    Floats must be finite (``--lr inf`` is an error at parse time).

    >>> @dataclass
    ... class Demo(RunConfig):
    ...     lr: float = 0.1
    >>> parse_config(Demo, ["--lr", "0.5", "--resume"]).resume
    'latest'
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"cls must be a dataclass type, got {cls!r}")
    hints = typing.get_type_hints(cls)
    parser = argparse.ArgumentParser(description=description or (cls.__doc__ or "").strip().split("\n")[0])
    parser.add_argument("--config", type=str, default=None, help="JSON file with field values (CLI flags override)")
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        bare = {"nargs": "?", "const": f.metadata["bare"]} if "bare" in f.metadata else (
            {"nargs": "?", "const": True} if hints[f.name] is bool else {})  # `--overwrite` = `--overwrite true`
        parser.add_argument(
            flag(f.name),
            dest=f.name,
            type=_field_parser(hints[f.name]),
            default=argparse.SUPPRESS,
            help=f"{f.metadata.get('help', '')} (default: {default!r})",
            **bare,
        )
    ns = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    config_path = ns.pop("config")
    if config_path:
        values.update(_config_values(cls, hints, config_path))
    values.update(ns)
    return cls(**values)


def config_dict(cfg: Any) -> dict[str, Any]:
    """The config as JSON-ready values."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


# how this invocation treated the folder, not what the run is: never saved, never reloaded by --config
INVOCATION_FIELDS = ("resume", "overwrite")


def saved_config(cfg: Any) -> dict[str, Any]:
    """What ``config.json`` holds: the config without :data:`INVOCATION_FIELDS` (reloading a run's config with
    ``--config`` must not delete or continue a run by itself)."""
    return {k: v for k, v in config_dict(cfg).items() if k not in INVOCATION_FIELDS}
