"""Discriminator-step time with NDA (separate batch, and same-compute ``mix``) and with ``--augment`` (the
DiffAugment-style positive control) over the plain step, in one run.

    python benchmarks/gan_step.py                       # CPU, small SNGAN and DCGAN
    python benchmarks/gan_step.py --device cuda --arch sngan --batch-size 64 --out benchmarks/results/gan_step_cuda.json

A "D step" is exactly what ``tasks/gan.py`` runs per discriminator update -- the same function,
:func:`nda.models.gan_train.discriminator_step` -- plus what the job does around it: fresh per-phase generators
(``nda.run.step_generator``, as ``run.generator``), the noise draw, ``zero_grad`` and the Adam step. The variants
are timed round-robin (A, B, C, A, B, C, ...) so machine load drifts hit them alike; medians are reported.
Targets (from the issues): ``mix`` <= 1.05x, ``separate`` <= 1.6x of the plain step.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import nda
from nda.models.gan import build_gan
from nda.models.gan_train import discriminator_step, sample_noise
from nda.objectives import DiscriminatorNegativeLoss
from nda.reporting import save_report
from nda.run import step_generator

SIZES = {"sngan": dict(z_dim=128, g_ch=128, d_ch=128), "dcgan": dict(z_dim=64, g_ch=32, d_ch=32)}
VARIANTS = ("plain", "separate", "mix", "augment")


def make_step(variant: str, G, D, opt, negative, x_u8: torch.Tensor, z_dim: int, device: torch.device):
    """One D update of ``variant``: ``plain`` (no NDA), ``separate`` / ``mix`` (NDA), ``augment`` (the transform
    as a positive augmentation of real and fake, no NDA)."""
    criterion = (DiscriminatorNegativeLoss(mode=variant) if variant in ("separate", "mix")
                 else DiscriminatorNegativeLoss.plain())
    uses_nda, uses_aug = variant in ("separate", "mix"), variant == "augment"

    def step(i: int) -> None:
        z, _ = sample_noise(x_u8.shape[0], z_dim, 0, step_generator(0, i, 0, "noise", device), device)
        opt.zero_grad(set_to_none=True)
        discriminator_step(G, D, criterion, x_u8, z=z, negative=negative if uses_nda else None,
                           nda_generator=step_generator(0, i, 0, "nda", device) if uses_nda else None,
                           augment=negative if uses_aug else None,
                           augment_generator=step_generator(0, i, 0, "augment", device) if uses_aug else None)
        opt.step()

    return step


def bench(arch: str, nda_spec: str, batch: int, image_size: int, channels: int, device: torch.device,
          repeats: int, warmup: int, variants: tuple[str, ...]) -> dict:
    torch.manual_seed(0)
    G, D = build_gan(arch, image_size=image_size, channels=channels, **SIZES[arch])
    G, D = G.to(device), D.to(device)
    opt = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.0, 0.9))
    negative = nda.build(nda_spec)
    x_u8 = torch.randint(0, 256, (batch, channels, image_size, image_size), dtype=torch.uint8, device=device)
    steps = {v: make_step(v, G, D, opt, negative, x_u8, SIZES[arch]["z_dim"], device) for v in variants}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {v: [] for v in steps}
    for i in range(warmup + repeats):
        for v, fn in steps.items():
            sync()
            t = time.perf_counter()
            fn(i)
            sync()
            if i >= warmup:
                times[v].append(time.perf_counter() - t)
    med = {v: statistics.median(ts) for v, ts in times.items()}
    row = {"arch": arch, "nda": nda_spec, "batch": batch, "image_size": image_size, "device": str(device),
           "repeats": repeats}
    for v in variants:
        row[f"{v}_ms"] = med[v] * 1e3
        if v != "plain" and "plain" in med:
            row[f"{v}_ratio"] = med[v] / med["plain"]
    return row


TARGETS = {"separate": "<= 1.6x", "mix": "<= 1.05x", "augment": "no target"}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", default="sngan,dcgan", help="comma-separated: sngan,dcgan")
    p.add_argument("--nda", default="jigsaw", help="the NDA spec (also the --augment transform)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=0, help="timed rounds (0: 15 on CPU, 100 on CUDA)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON path (a .md is written beside it)")
    args = p.parse_args(argv)
    variants = tuple(v for v in args.variants.split(",") if v)
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or "plain" not in variants:
        raise ValueError(f"--variants must include plain and come from {VARIANTS}, got {args.variants!r}")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    repeats = args.repeats or (100 if device.type == "cuda" else 15)
    rows = [bench(arch, args.nda, args.batch_size, args.image_size, 3, device, repeats, args.warmup, variants)
            for arch in args.arch.split(",")]
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    others = [v for v in variants if v != "plain"]
    lines = [f"D-step time (nda.models.gan_train.discriminator_step), NDA/augment `{args.nda}`, batch "
             f"{args.batch_size}, {args.image_size}px, {name} (median of {repeats} round-robin rounds)", "",
             "| arch | " + " | ".join(f"{v} (ms)" for v in variants) + " | "
             + " | ".join(f"{v} / plain" for v in others) + " |",
             "|---|" + "---|" * (len(variants) + len(others))]
    for r in rows:
        lines.append(f"| {r['arch']} | " + " | ".join(f"{r[f'{v}_ms']:.2f}" for v in variants) + " | "
                     + " | ".join(f"{r[f'{v}_ratio']:.3f}x ({TARGETS[v]})" for v in others) + " |")
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"gan_step_{device.type}.json"
    save_report(out, {"device": name, "rows": rows}, "\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
