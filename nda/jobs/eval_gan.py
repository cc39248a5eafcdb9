"""Evaluate a GAN: FID/KID of its EMA generator (or of a folder of images), and its discriminator as an
anomaly detector.

    python tasks/eval_gan.py --checkpoint runs/sngan_jigsaw            # the run's final models (models/)
    python tasks/eval_gan.py --checkpoint runs/x/checkpoints/step_00005000 --num-samples 10000 \
        --reference /path/to/cifar10-jpg.tar.gz --reference-split test --extractor inception --anomaly true
    python tasks/eval_gan.py --images my_samples/ --reference /path/to/cifar10-jpg.tar.gz

Models are rebuilt from their saved constructor arguments (``nda.run.load_model``: JSON + safetensors); a
checkpoint folder's weights are read with ``nda.run.checkpoint.read_state`` (verified, never unpickled).
FID/KID: generated samples (quantised to uint8, as saved images are) against the reference split, whose
statistics are computed once per (images, split, extractor, N) and cached (``nda.metrics.reference``), in the
feature space of the chosen extractor (named in every output; ``auto`` prefers the standard FID Inception).
Anomaly detection: the score is ``-D(x)``; AUROC of the reference split (in) against each OOD set: the same
images with a CIFAR-10-C-style corruption (Gaussian noise, blur, contrast, JPEG; severity 3 by default) and the
scikit-learn digits upscaled to the image size (another domain). Writes ``eval_results.json``, prints a table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from nda.data.images import load_images
from nda.files import atomic_write_json
from nda.metrics.extractors import EXTRACTOR_NAMES, get_extractor
from nda.metrics.gan_eval import discriminator_anomaly, fid_kid
from nda.metrics.reference import reference_stats
from nda.models.gan_train import image_sampler
from nda.run import CheckpointError, cli, load_model, parse_config
from nda.run.checkpoint import MANIFEST, read_state
from nda.run.config import check_choice, check_positive


@dataclass
class EvalConfig:
    """Evaluate a GAN run (or an image folder): FID/KID and discriminator anomaly AUROC."""

    checkpoint: str | None = field(default=None, metadata={
        "help": "a GAN run folder (its final models) or one of its checkpoint folders"})
    images: str | None = field(default=None, metadata={"help": "or: a folder of generated images"})
    reference: str | None = field(default=None, metadata={"help": "real data source (default: the run's --data)"})
    reference_split: str = field(default="test", metadata={"help": "split of the reference (the held-out one)"})
    extractor: str = field(default="auto", metadata={"help": "auto (Inception if installed) | inception | cifar10-classifier"})
    num_samples: int = 10000
    batch_size: int = 500
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    anomaly: bool = field(default=False, metadata={"help": "discriminator AUROC per OOD set (needs --checkpoint)"})
    severity: int = 3
    anomaly_limit: int = field(default=10000, metadata={"help": "in-distribution images used for AUROC"})
    seed: int = 0
    device: str | None = None
    cache_dir: str | None = field(default=None, metadata={"help": "decoded images and cached reference statistics"})
    out: str | None = field(default=None, metadata={"help": "results JSON (default: <run>/eval_results.json)"})
    progress: bool = field(default=True, metadata={
        "help": "progress bars over feature extraction (when stderr is a terminal)"})


def validate(cfg: EvalConfig) -> EvalConfig:
    """Every flag checked before any model or data is loaded."""
    if (cfg.checkpoint is None) == (cfg.images is None):
        raise ValueError("pass exactly one of --checkpoint (a GAN run or checkpoint folder) or --images (a folder)")
    if cfg.images is not None and (cfg.reference is None or cfg.anomaly):
        raise ValueError("--images needs --reference (the real data source) and cannot take --anomaly (no discriminator)")
    if cfg.num_samples < 2:
        raise ValueError(f"--num-samples must be >= 2 (FID needs a covariance), got {cfg.num_samples}")
    check_choice(cfg, "extractor", EXTRACTOR_NAMES)
    check_choice(cfg, "severity", (1, 2, 3, 4, 5))
    check_positive(cfg, "batch_size", "kid_subsets", "kid_subset_size", "anomaly_limit")
    return cfg


class LoadedRun(NamedTuple):
    config: dict
    generator: torch.nn.Module  # the EMA generator (what is evaluated)
    discriminator: torch.nn.Module
    source: Path  # the models/ folder or the checkpoint folder the weights came from
    run_dir: Path


def load_run(path: str | Path, device: torch.device | str = "cpu") -> LoadedRun:
    """The EMA generator and discriminator of a run folder (its final ``models/``) or of one of its checkpoint
    folders (architecture from ``models/``, weights from the checkpoint). Nothing is unpickled."""
    path = Path(path)
    if (path / MANIFEST).is_file() or (path / "state.json").is_file():
        run_dir, ckpt = path.parents[1], path
    elif (path / "config.json").is_file():
        run_dir, ckpt = path, None
    else:
        raise FileNotFoundError(f"--checkpoint {path}: neither a GAN run folder nor a checkpoint folder of one")
    models = run_dir / "models"
    if not (models / "generator_ema" / "model.json").is_file():
        raise CheckpointError(f"{run_dir} holds no saved models ({models}/generator_ema): the run never ended a "
                              f"session; finish it with tasks/gan.py --out-dir {run_dir} --resume")
    try:
        G, D = load_model(models / "generator_ema", device), load_model(models / "discriminator", device)
    except Exception as err:  # a truncated or foreign weights file
        raise CheckpointError(f"could not load the models in {models}: {err}") from err
    if ckpt is not None:
        _, state = read_state(ckpt)  # verified against its manifest; tensors + JSON only
        G.load_state_dict(state["ema"]["model"])
        D.load_state_dict(state["D"])
    return LoadedRun(json.loads((run_dir / "config.json").read_text()), G, D, ckpt or models, run_dir)


def main(argv: list[str] | None = None) -> dict:
    cfg = validate(parse_config(EvalConfig, argv))
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    results: dict = {}
    if cfg.checkpoint is not None:
        run = load_run(cfg.checkpoint, device)
        G, D = run.generator, run.discriminator
        # default reference: the held-out set the run itself evaluated on (its --eval-data, else its --data)
        ref_source = cfg.reference or run.config.get("eval_data") or run.config["data"]
        size, channels = G.image_size, G.channels
        out = Path(cfg.out) if cfg.out else run.run_dir / "eval_results.json"
        results["checkpoint"] = str(run.source)
    else:
        fake = load_images(cfg.images, "all", cache_dir=cfg.cache_dir)
        ref_source, size, channels = cfg.reference, fake.image_size, fake.channels
        out = Path(cfg.out) if cfg.out else Path(cfg.images) / "eval_results.json"
        results["images"] = f"{cfg.images} ({len(fake)} images)"
    ref = load_images(ref_source, cfg.reference_split, image_size=size, channels=channels, cache_dir=cfg.cache_dir)
    extractor = get_extractor(cfg.extractor, device=device, cache_dir=cfg.cache_dir)
    bar = None if cfg.progress else False  # None: a bar when stderr is a terminal (main process only)
    stats = reference_stats(extractor, ref.images, split=cfg.reference_split, dataset=ref.name,
                            cache_dir=cfg.cache_dir, batch_size=cfg.batch_size, device=device, progress=bar)
    print(f"extractor: {extractor.name}; reference: {ref.name} ({len(ref)} images, "
          f"statistics {'computed' if stats.computed else 'from cache'}: {stats.path})")
    kid = dict(batch_size=cfg.batch_size, kid_subsets=cfg.kid_subsets, kid_subset_size=cfg.kid_subset_size,
               reference_name=ref.name, progress=bar)
    if cfg.checkpoint is not None:
        sampler = image_sampler(G, torch.Generator(device=device).manual_seed(cfg.seed), device)
        results.update(fid_kid(extractor, sampler, stats, cfg.num_samples, device, generator_name="EMA generator", **kid))
        if cfg.anomaly:
            results["anomaly"] = discriminator_anomaly(D, ref.images[: cfg.anomaly_limit], ref.name, device, cfg.severity,
                                                       size, cfg.seed, include_digits=not str(ref_source).startswith("digits"))
    else:
        results.update(fid_kid(extractor, fake.images, stats, min(cfg.num_samples, len(fake)), device,
                               generator_name=cfg.images, **kid))

    f, k = results["fid"], results["kid"]
    print("| metric | value | extractor | samples | reference |\n|---|---|---|---|---|")
    print(f"| FID | {f['value']:.3f} | {f['extractor']} | {f['n_generated']} | {f['reference']} |")
    print(f"| KID | {k['value']:.5f} ± {k['std']:.5f} | {k['extractor']} | {k['n_generated']} | {k['reference']} |")
    if "auroc" in results.get("anomaly", {}):
        print(f"\nDiscriminator as anomaly detector (score {results['anomaly']['score']}; in: {results['anomaly']['in']})")
        print("| OOD set | AUROC |\n|---|---|")
        for name, value in results["anomaly"]["auroc"].items():
            print(f"| {name} | {value:.4f} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, results, indent=2)
    print(f"wrote {out}")
    return results


def run(prog: str = "nda-eval-gan") -> None:
    """The command line: ``nda-eval-gan``, ``python -m nda.jobs.eval_gan``, ``python tasks/eval_gan.py``."""
    cli(main, prog)


if __name__ == "__main__":
    run()
