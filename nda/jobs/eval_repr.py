"""Evaluate a frozen image encoder: weighted kNN and linear-probe top-1 on a data source's test split.

``python tasks/eval_repr.py --encoder runs/moco [--data ...]`` accepts

- a MoCo run folder (``runs/moco``), its ``final/`` folder, or one of its checkpoints
  (``runs/moco/checkpoints/step_00001000``): the query backbone is evaluated (pooled features, no head).
  Read as safetensors + JSON only (``nda.run.load_model``: the constructor arguments are saved beside the
  weights); folders written before ``nda.run`` (``final/moco.json``) are still accepted;
- a weights file (``.safetensors``, ``.pt``, ``.pth``) holding the state dict of a torchvision ResNet
  (``--arch resnet18 [--cifar-stem true]``) or of a MoCo model;
- ``random:<arch>`` (``random:resnet18``, ``random:tiny``): a randomly initialised backbone (``--cifar-stem``),
  the floor a learnt representation must beat;
- ``torchvision:<name>`` (e.g. ``torchvision:resnet50``; ``--weights DEFAULT`` downloads pretrained
  weights when online, the default is random init: a useful floor) or ``timm:<name>`` when timm is installed.

Features: the encoder's output (pooled; a classifier head is removed), standardised for the probe.
Writes ``results.json`` into ``--out-dir`` (when given) and prints a markdown table.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from nda.data.images import load_images
from nda.files import atomic_write_json
from nda.metrics.representation import extract_features, knn_accuracy, linear_probe
from nda.models.moco import MoCo, build_backbone
from nda.run import cli, load_model, parse_config
from nda.run.artifacts import read_model_info
from nda.run.checkpoint import STATE_JSON, read_state


@dataclass
class EvalReprConfig:
    """kNN + linear probe of a frozen image encoder on a data source's train/test splits."""

    encoder: str = field(default="", metadata={"help": "MoCo run/final/checkpoint folder, a weights file, random:<arch>, torchvision:<name> or timm:<name>"})
    arch: str | None = field(default=None, metadata={"help": "backbone of a plain weights file (e.g. resnet18)"})
    cifar_stem: bool = field(default=True, metadata={"help": "CIFAR stem for --arch (weights files)"})
    weights: str | None = field(default=None, metadata={"help": "torchvision weights name for torchvision:<name> (needs internet)"})
    data: str = field(default="digits", metadata={"help": "'digits', an image folder, a .tar.gz of one, or hf:<name>"})
    image_size: int | None = field(default=None, metadata={"help": "resize images to this side"})
    channels: int | None = field(default=None, metadata={"help": "1 or 3 (default: the encoder's input channels)"})
    train_limit: int | None = field(default=None, metadata={"help": "fixed random subset of the train split"})
    test_limit: int | None = field(default=None, metadata={"help": "fixed random subset of the test split"})
    cache_dir: str | None = field(default=None, metadata={"help": "decoded-array cache"})
    batch_size: int = field(default=512, metadata={"help": "feature-extraction batch"})
    knn_k: int = field(default=200, metadata={"help": "kNN neighbours"})
    knn_temperature: float = field(default=0.1, metadata={"help": "kNN vote temperature"})
    probe_epochs: int = field(default=200, metadata={"help": "L-BFGS iterations (or epochs with --probe-batch-size)"})
    probe_batch_size: int | None = field(default=None, metadata={"help": "mini-batch probe (default: full-batch L-BFGS)"})
    device: str | None = field(default=None, metadata={"help": "cpu / cuda (default: cuda when available)"})
    mixed_precision: str = field(default="no", metadata={"help": "no | bf16 | fp16 for feature extraction"})
    seed: int = field(default=0, metadata={"help": "probe seed"})
    out_dir: str | None = field(default=None, metadata={"help": "write results.json here"})


def _strip_head(net: nn.Module) -> nn.Module:
    for attr in ("fc", "classifier", "head"):
        if isinstance(getattr(net, attr, None), nn.Module):
            setattr(net, attr, nn.Identity())
            break
    return net


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def _moco_args_from_config(config_file: Path, state: dict[str, torch.Tensor]) -> dict:
    """MoCo constructor arguments from a run's ``config.json`` (input channels read off the first conv)."""
    cfg = json.loads(config_file.read_text())
    args = {k: cfg[k] for k in ("arch", "cifar_stem", "dim", "hidden_dim", "queue_size", "momentum", "bn", "bn_splits")}
    first = next(v for k, v in state.items() if k.startswith("query_encoder.0.") and v.ndim == 4)
    return {**args, "in_channels": int(first.shape[1])}


def _moco_from_folder(folder: Path) -> MoCo | None:
    """A MoCo model from a run folder, its ``final/`` folder or one of its checkpoints; ``None`` if not MoCo.

    Read as safetensors + JSON only (nothing is unpickled): ``final/`` through :func:`nda.run.load_model`
    (constructor arguments beside the weights); a checkpoint's ``state.safetensors`` with the arguments of the
    run's ``final/`` or ``config.json``; the older ``final/moco.json`` layout is still accepted.
    """
    for saved in (folder, folder / "final"):
        if (saved / "model.json").is_file():
            model = load_model(saved)
            if not isinstance(model, MoCo):
                raise ValueError(f"{saved} holds a {type(model).__name__}, not a MoCo model")
            return model
    run_dir = folder.parent.parent  # <run>/checkpoints/step_N
    if (folder / STATE_JSON).is_file():
        _, state = read_state(folder)
        weights = state.get("model")
        if not isinstance(weights, dict):
            raise ValueError(f"checkpoint {folder} holds no 'model' state (holds {sorted(state)})")
        if (run_dir / "final" / "model.json").is_file():
            args = read_model_info(run_dir / "final")["kwargs"]
        elif (run_dir / "config.json").is_file():
            args = _moco_args_from_config(run_dir / "config.json", weights)
        else:
            raise ValueError(f"checkpoint {folder}: no {run_dir}/final/model.json or config.json to rebuild MoCo from")
        model = MoCo(**args)
        model.load_state_dict(weights)
        return model
    # the layout written before nda.run: final/{model.safetensors, moco.json}, or a checkpoint + config.json
    args_file = next((c for c in (folder / "moco.json", folder / "final" / "moco.json", run_dir / "final" / "moco.json")
                      if c.is_file()), None)
    config_file = next((c for c in (folder / "config.json", run_dir / "config.json") if c.is_file()), None)
    weights_file = next((w for w in (folder / "model.safetensors", folder / "final" / "model.safetensors")
                         if w.is_file()), None)
    if weights_file is None or (args_file is None and config_file is None):
        return None
    state = _read_weights(weights_file)
    if args_file is not None:
        args = {k: v for k, v in json.loads(args_file.read_text()).items() if k != "image_size"}
        if args.get("in_channels") is None:  # infer from the first conv of the query backbone
            args["in_channels"] = int(next(v for k, v in state.items()
                                           if k.startswith("query_encoder.0.") and v.ndim == 4).shape[1])
    else:
        args = _moco_args_from_config(config_file, state)
    model = MoCo(**args)
    model.load_state_dict(state)
    return model


def load_encoder(spec: str, arch: str | None = None, cifar_stem: bool = True, weights: str | None = None,
                 in_channels: int = 3) -> tuple[nn.Module, str]:
    """``(encoder, description)`` for any of the forms listed in the module docstring."""
    if not spec:
        raise ValueError("--encoder is required (a MoCo run folder, a weights file, torchvision:<name> or timm:<name>)")
    if spec.startswith("random:"):
        name = spec.split(":", 1)[1]
        torch.manual_seed(0)
        net, _ = build_backbone(name, cifar_stem, in_channels)
        return net, f"random-init {name} (cifar_stem={cifar_stem}, seed 0)"
    if spec.startswith("torchvision:"):
        import torchvision

        name = spec.split(":", 1)[1]
        net = torchvision.models.get_model(name, weights=weights)
        return _strip_head(net), f"torchvision {name} (weights={weights})"
    if spec.startswith("timm:"):
        try:
            import timm
        except ImportError as err:
            raise ImportError("timm:<name> encoders need the 'timm' package") from err
        name = spec.split(":", 1)[1]
        return timm.create_model(name, pretrained=weights is not None, num_classes=0), f"timm {name}"
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"--encoder {spec!r} does not exist (nor is it torchvision:<name> / timm:<name>)")
    if not path.is_dir() and arch is None:
        raise ValueError(f"--arch is needed to build the network for the weights file {path}")
    try:
        if path.is_dir():
            model = _moco_from_folder(path)
        else:
            return _from_weights_file(path, arch, cifar_stem, in_channels)
    except Exception as err:  # noqa: BLE001 - a broken model.json or weights file raises anything: one line naming it
        what = "folder" if path.is_dir() else "weights file"
        raise ValueError(f"--encoder {path}: cannot load this {what} ({_one_line(err)})") from err
    if model is None:
        raise ValueError(f"{path} is not a MoCo run, final/ or checkpoint folder (no final/model.json, "
                         "checkpoint state.json, or model.safetensors + moco.json/config.json)")
    return model.backbone, f"MoCo query backbone ({model.arch}) from {path}"


def _one_line(err: BaseException, limit: int = 400) -> str:
    """``Type: message`` on one line (a ``load_state_dict`` error spans many), cut at ``limit`` characters."""
    text = f"{type(err).__name__}: {' '.join(str(err).split())}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _from_weights_file(path: Path, arch: str, cifar_stem: bool, in_channels: int) -> tuple[nn.Module, str]:
    """A torchvision-style backbone of ``arch`` loaded from a state-dict file (a MoCo one: its query backbone)."""
    state = _read_weights(path)
    if any(k.startswith("query_encoder.0.") for k in state):  # a MoCo state dict: keep the query backbone
        state = {k[len("query_encoder.0."):]: v for k, v in state.items() if k.startswith("query_encoder.0.")}
    first = next((v for k, v in state.items() if v.ndim == 4), None)
    net, _ = build_backbone(arch, cifar_stem, int(first.shape[1]) if first is not None else in_channels)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"weights {path} do not fit {arch} (cifar_stem={cifar_stem}): missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return net, f"{arch} from {path}"


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(EvalReprConfig, argv)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    encoder, description = load_encoder(cfg.encoder, cfg.arch, cfg.cifar_stem, cfg.weights, cfg.channels or 3)
    encoder = encoder.to(device).eval()
    first_conv = next((m for m in encoder.modules() if isinstance(m, nn.Conv2d)), None)
    channels = cfg.channels or (first_conv.in_channels if first_conv is not None else None)
    train = load_images(cfg.data, "train", cfg.image_size, channels, cfg.train_limit, cfg.cache_dir)
    test = load_images(cfg.data, "test", cfg.image_size, channels, cfg.test_limit, cfg.cache_dir)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.mixed_precision)
    t0 = time.time()
    f_train = extract_features(encoder, train.images, cfg.batch_size, device, autocast_dtype=dtype)
    f_test = extract_features(encoder, test.images, cfg.batch_size, device, autocast_dtype=dtype)
    knn = knn_accuracy(f_train, train.labels, f_test, test.labels, k=cfg.knn_k, temperature=cfg.knn_temperature)
    probe = linear_probe(f_train, train.labels, f_test, test.labels, epochs=cfg.probe_epochs,
                         batch_size=cfg.probe_batch_size, seed=cfg.seed)
    results = {
        "task": "eval_repr", "encoder": description, "feature_dim": int(f_train.shape[1]),
        "train_set": train.name, "eval_set": test.name, "knn_top1": knn, "linear_probe_top1": probe,
        "knn": {"k": cfg.knn_k, "temperature": cfg.knn_temperature},
        "linear_probe": {"epochs": cfg.probe_epochs, "batch_size": cfg.probe_batch_size, "features": "standardised"},
        "seconds": round(time.time() - t0, 1), "config": asdict(cfg),
    }
    print(f"| encoder | train | test | kNN top-1 | linear-probe top-1 |\n|---|---|---|---|---|\n"
          f"| {description} | {train.name} | {test.name} | {100 * knn:.2f} | {100 * probe:.2f} |")
    if cfg.out_dir:
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "results.json", results, indent=2)
    return results


def run(prog: str = "nda-eval-repr") -> None:
    """The command line: ``nda-eval-repr``, ``python -m nda.jobs.eval_repr``, ``python tasks/eval_repr.py``."""
    cli(main, prog)


if __name__ == "__main__":
    run()
