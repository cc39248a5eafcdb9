"""Final models saved with their constructor arguments, so evaluation rebuilds them from the folder alone.

Why: rebuilding a model from a checkpoint used to depend on the training job's flag defaults, the order of
``accelerator.prepare`` and pickled custom objects. A saved model here is::

    <folder>/model.safetensors   the state dict
    <folder>/model.json          {"factory": "nda.models.gan.ResNetGenerator", "kwargs": {...}, "meta": {...}}

and :func:`load_model` imports the factory -- only an ``nn.Module`` class of the ``nda`` package, so a JSON
file cannot make it call anything else -- builds it with the kwargs and loads the weights. Nothing is unpickled.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["save_model", "load_model", "read_model_info"]

WEIGHTS = "model.safetensors"
INFO = "model.json"


def _factory_name(factory: Any) -> str:
    if isinstance(factory, str):
        return factory
    return f"{factory.__module__}.{factory.__qualname__}"


def save_model(folder: str | os.PathLike, model: nn.Module, factory: Any, kwargs: Mapping[str, Any],
               meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and ``factory(**kwargs)`` (the call that rebuilds it) into ``folder``.

    ``factory`` is an ``nn.Module`` class of the ``nda`` package (or its dotted name); ``kwargs`` must be
    JSON values. ``meta`` is free JSON (data it was trained on, step, ...).
    """
    from safetensors.torch import save_file

    name = _factory_name(factory)
    if not name.startswith("nda."):
        raise ValueError(f"factory must be a class or function of the nda package, got {name!r}")
    try:
        info = json.dumps({"factory": name, "kwargs": dict(kwargs), "meta": dict(meta or {})}, indent=2)
    except TypeError as err:
        raise TypeError(f"save_model: kwargs and meta must be JSON values ({err})") from err
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    tmp = out / f".{WEIGHTS}.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, out / WEIGHTS)
    (out / INFO).write_text(info)
    return out


def read_model_info(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / INFO
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a saved nda model (no {INFO}); save one with nda.run.save_model")
    return json.loads(path.read_text())


def load_model(folder: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild and load a model written by :func:`save_model` (eval mode, on ``device``)."""
    from safetensors.torch import load_file

    info = read_model_info(folder)
    name = str(info.get("factory", ""))
    module_name, _, attr = name.rpartition(".")
    if not name.startswith("nda.") or not module_name:
        raise ValueError(f"{folder}/{INFO}: factory {name!r} is not part of the nda package; refusing to call it")
    factory = getattr(importlib.import_module(module_name), attr, None)
    if not (isinstance(factory, type) and issubclass(factory, nn.Module)):
        raise ValueError(f"{folder}/{INFO}: {name!r} is not a torch.nn.Module class of nda; refusing to call it")
    model = factory(**info.get("kwargs", {}))
    model.load_state_dict(load_file(str(Path(folder) / WEIGHTS)))
    return model.to(device).eval()
