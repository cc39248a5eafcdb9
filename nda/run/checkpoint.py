"""Checkpoints as tensors (safetensors) plus JSON: atomic, verified, and never unpickled.

Why not ``accelerator.save_state``: its custom objects go through pickle (``torch.load(weights_only=False)``),
so a crafted checkpoint folder runs code on ``--resume``, and it saves custom objects from rank 0 only.
Here a checkpoint is exactly three files::

    step_00001000/state.safetensors   every tensor (model and optimizer states, EMA, queues, ...)
    step_00001000/state.json          the nested structure, non-tensor values, the step and loop extras
    step_00001000/nda_manifest.json   size and SHA-256 of the two (catches truncation and bit rot)

written into a temporary folder and renamed into place, so a checkpoint is either complete or absent.
Loading reads JSON and safetensors only; any other file in the folder is refused.

What goes in is a nested mapping of ``state_dict()`` outputs (models, optimizers, a ``GradScaler``, an EMA):
tensors, numbers, strings, booleans, ``None``, lists, tuples and dicts with ``str``/``int`` keys.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nda.files import atomic_path, sha256_file

__all__ = ["CheckpointError", "Checkpointer", "pack_state", "unpack_state", "write_state", "read_state",
           "MANIFEST", "STATE_TENSORS", "STATE_JSON"]

MANIFEST = "nda_manifest.json"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
FORMAT = "nda-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupted, of a foreign format, or could not be written."""


# ------------------------------------------------------------------------------------ (un)packing
def pack_state(obj: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state into a JSON-able skeleton and a flat ``{key: tensor}`` for safetensors.

    Tensors become ``{"__tensor__": key}``; tuples ``{"__tuple__": [...]}``; dicts with non-string keys
    (optimizer states are keyed by parameter index) ``{"__items__": [[key, value], ...]}``. Tensors that
    share storage are copied so safetensors can write them; non-finite floats are kept (``Infinity``).
    """
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            key = path or "tensor"
            if key in tensors:  # {"a.b": x, "a": {"b": y}} would silently keep one of them
                raise TypeError(f"checkpoint state: two tensors map to the key {key!r}; rename one of them")
            t = value.detach()
            storage = t.untyped_storage()
            ident = (t.device.type, storage.data_ptr())
            whole = t.is_contiguous() and t.storage_offset() == 0 and storage.nbytes() == t.numel() * t.element_size()
            t = t.to("cpu")
            if ident in seen or not whole:  # a view or a shared storage: safetensors wants owners
                t = t.contiguous().clone()
            seen.add(ident)
            tensors[key] = t
            return {"__tensor__": key}
        if isinstance(value, Mapping):
            if all(isinstance(k, str) for k in value) and not any(k.startswith("__") for k in value):
                return {k: walk(v, f"{path}.{k}" if path else k) for k, v in value.items()}
            items = []
            for k, v in value.items():
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise TypeError(f"checkpoint state {path or '<root>'}: keys must be str or int, got {k!r}")
                items.append([k, walk(v, f"{path}.{k}" if path else str(k))])
            return {"__items__": items}
        if isinstance(value, tuple):
            return {"__tuple__": [walk(v, f"{path}.{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(value)]
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"__float__": repr(value)}
        raise TypeError(
            f"checkpoint state {path or '<root>'}: {type(value).__name__} is not a tensor, number, string, list or "
            "dict; checkpoints hold no pickled objects -- convert it in the object's state_dict()"
        )

    return walk(obj, ""), tensors


def unpack_state(skeleton: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of :func:`pack_state`."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {"__tensor__"}:
            key = skeleton["__tensor__"]
            if key not in tensors:
                raise CheckpointError(f"checkpoint refers to tensor {key!r}, which {STATE_TENSORS} does not hold")
            return tensors[key]
        if set(skeleton) == {"__tuple__"}:
            return tuple(unpack_state(v, tensors) for v in skeleton["__tuple__"])
        if set(skeleton) == {"__items__"}:
            return {k: unpack_state(v, tensors) for k, v in skeleton["__items__"]}
        if set(skeleton) == {"__float__"}:
            return float(skeleton["__float__"])
        return {k: unpack_state(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unpack_state(v, tensors) for v in skeleton]
    return skeleton


def write_state(folder: str | os.PathLike, state: Mapping[str, Any], *, step: int) -> None:
    """Write ``state`` as safetensors + JSON + manifest into ``folder`` (which must exist)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    skeleton, tensors = pack_state(dict(state))
    save_file(tensors, str(folder / STATE_TENSORS))
    (folder / STATE_JSON).write_text(json.dumps({"format": FORMAT, "step": int(step), "state": skeleton}))
    files = {name: {"bytes": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
             for name in (STATE_TENSORS, STATE_JSON)}
    (folder / MANIFEST).write_text(json.dumps({"format": FORMAT, "step": int(step), "files": files}, indent=1))


def read_state(folder: str | os.PathLike) -> tuple[int, dict[str, Any]]:
    """Verify and read a checkpoint folder: ``(step, state)`` with tensors on the CPU. Nothing is unpickled."""
    from safetensors.torch import load_file

    folder = Path(folder)
    step = verify(folder)
    try:
        tensors = load_file(str(folder / STATE_TENSORS), device="cpu")
        meta = json.loads((folder / STATE_JSON).read_text())
        return step, unpack_state(meta["state"], tensors)
    except CheckpointError:
        raise
    except Exception as err:  # a manifest-consistent but malformed file: say which checkpoint
        raise CheckpointError(f"checkpoint {folder} is unreadable: {err}") from err


def _step_of(folder: Path) -> int:
    tail = folder.name.split("_", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def verify(path: str | os.PathLike) -> int:
    """Check a checkpoint folder against its manifest; return its step or raise :class:`CheckpointError`."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {folder} does not exist or is not a folder")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"checkpoint {folder} has no {MANIFEST}: it was not completely written")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        step = int(manifest["step"])
        fmt = manifest.get("format")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint {folder}: unreadable manifest ({err})") from err
    if fmt != FORMAT or set(files) != {STATE_TENSORS, STATE_JSON}:
        raise CheckpointError(
            f"checkpoint {folder} is not an {FORMAT} checkpoint (format {fmt!r}, files {sorted(files)}); nda "
            "checkpoints hold state.safetensors + state.json only and are never unpickled"
        )
    extra = sorted(p.name for p in folder.iterdir() if p.name not in (MANIFEST, STATE_TENSORS, STATE_JSON))
    if extra:
        raise CheckpointError(f"checkpoint {folder} holds unexpected files {extra}: refusing to load it "
                              "(an nda checkpoint is state.safetensors + state.json + manifest)")
    for name, info in files.items():
        file = folder / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {folder}: file {name} is missing")
        if file.stat().st_size != info["bytes"] or sha256_file(file) != info["sha256"]:
            raise CheckpointError(f"checkpoint {folder}: file {name} is truncated or corrupted (size/hash mismatch)")
    return step


# ------------------------------------------------------------------------------------- checkpointer
class Checkpointer:
    """Numbered checkpoints of one run: ``<run_dir>/checkpoints/step_00001000/``; keeps the ``keep`` newest.

    ``save`` is called on every process: the main process writes, the others wait; a failure (disk full)
    is raised on every process, and the previous checkpoint stays intact. Assumes the run folder is on a
    file system that every process sees (as multi-node training usually has).
    """

    def __init__(self, run_dir: str | os.PathLike, keep: int = 2, accelerator: Any = None) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an int >= 1, got {keep!r}")
        self.root = Path(run_dir) / "checkpoints"
        self.keep = keep
        self.accelerator = accelerator

    def path_for(self, step: int) -> Path:
        return self.root / f"step_{step:08d}"

    def completed(self) -> list[Path]:
        """Checkpoint folders with a manifest, oldest first (by step)."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.glob("step_*") if (p / MANIFEST).is_file()]
        return sorted(found, key=_step_of)

    def latest(self) -> Path | None:
        done = self.completed()
        return done[-1] if done else None

    def drop_after(self, step: int) -> list[Path]:
        """Delete checkpoints newer than ``step`` (main process): after resuming from ``step`` they belong to an
        abandoned continuation, and a later bare ``--resume`` must not jump onto it."""
        dropped = [p for p in self.completed() if _step_of(p) > step]
        for p in dropped:
            shutil.rmtree(p, ignore_errors=True)
        return dropped

    def save(self, step: int, state: Mapping[str, Any]) -> Path:
        acc = self.accelerator
        final = self.path_for(step)
        error = ""
        if acc is None or acc.is_main_process:
            error = self._write(step, state, final)
        if acc is not None and acc.num_processes > 1:
            failed = acc.reduce(torch.tensor([float(bool(error))], device=acc.device), "sum").item() > 0
            if failed and not error:
                error = "the main process failed to write it (see its error)"
        if error:
            previous = self.latest()
            raise CheckpointError(f"could not write checkpoint {final}: {error}. "
                                  + (f"The previous checkpoint {previous} is intact." if previous else
                                     "No earlier checkpoint exists."))
        return final

    def _write(self, step: int, state: Mapping[str, Any], final: Path) -> str:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with atomic_path(final) as tmp:  # synced, renamed into place; removed on an error
                tmp.mkdir()
                write_state(tmp, state, step=step)
        except Exception as err:  # OSError, safetensors' SafetensorError, a TypeError from pack_state, ...
            text = str(err)
            if getattr(err, "errno", None) == errno.ENOSPC or "os error 28" in text or "No space left" in text:
                return f"the disk is full ({text})"
            return f"{type(err).__name__}: {text}"
        for old in self.completed()[: -self.keep]:
            if old != final:  # never the checkpoint just written
                shutil.rmtree(old, ignore_errors=True)
        return ""

    def load(self, which: str | os.PathLike = "latest") -> tuple[Path, int, dict[str, Any]]:
        """``(folder, step, state)`` of ``which`` ('latest' or a folder); a corrupt latest checkpoint names the
        complete older ones that ``--resume <path>`` can use."""
        if str(which) in ("latest", ""):
            folder = self.latest()
            if folder is None:
                raise CheckpointError(f"--resume: no complete checkpoint under {self.root}")
        else:
            folder = Path(which)
            if folder.resolve().parent != self.root.resolve():
                raise CheckpointError(f"--resume {folder}: not a checkpoint of this run (expected a folder in "
                                      f"{self.root}); continuing another run's weights would mix two runs")
        try:
            step, state = read_state(folder)
        except CheckpointError as err:
            others = []
            for p in reversed(self.completed()):
                if p.resolve() == folder.resolve():
                    continue
                try:
                    verify(p)
                    others.append(str(p))
                except CheckpointError:
                    pass
            hint = (f" Complete older checkpoints: {', '.join(others)} -- resume from one with --resume <path>."
                    if others else "")
            raise CheckpointError(f"{err}.{hint}") from err
        return folder, step, state
