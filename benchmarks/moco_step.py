"""Training-step time of MoCo-v2 with NDA negatives (K = 1, 4) over plain MoCo-v2, measured in one run.

The step timed is the job's own code (``nda.models.moco_step``: :func:`moco_step` + :func:`enqueue_keys`, what
``tasks/moco.py`` runs): two positive views, K jigsaw negatives per anchor, the query forward/backward, ONE
key-encoder forward over the ``B * (1 + K)`` key images, the loss against ``[positive | K NDA | queue]``, the
SGD update, the momentum update and the enqueue. Configurations are interleaved round by round (so a machine slowing down affects all alike), and
the median per configuration is reported, with its ratio to K = 0. Target: <= 1.25x for K = 1.

    python benchmarks/moco_step.py                                  # CPU, ResNet-18 (CIFAR stem), B = 32
    python benchmarks/moco_step.py --device cuda --batch-size 256 --mixed-precision bf16
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

import nda
from nda.models.moco import MoCo
from nda.models.moco_step import enqueue_keys, moco_step
from nda.objectives.contrastive import ContrastiveNegativeLoss
from nda.reporting import save_report
from nda.vision.augment import MoCoV2Augment

ROOT = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--queue-size", type=int, default=4096)
    p.add_argument("--ks", default="0,1,4", help="NDA negatives per anchor to compare (0 = plain MoCo)")
    p.add_argument("--nda", default="jigsaw:grid=2")
    p.add_argument("--steps", type=int, default=6, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/moco_step_<device type>.json)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ks = [int(k) for k in args.ks.split(",")]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.mixed_precision)
    channels_last = device.type == "cuda"

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    torch.manual_seed(0)
    images = torch.randint(0, 256, (args.batch_size, 3, args.image_size, args.image_size), dtype=torch.uint8,
                           device=device)
    augment = MoCoV2Augment(args.image_size)
    criterion = ContrastiveNegativeLoss(temperature=0.2)
    negative = nda.build(args.nda)
    setups = {}
    for k in ks:
        torch.manual_seed(0)
        model = MoCo(args.arch, cifar_stem=args.image_size <= 64, queue_size=args.queue_size).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=0.06, momentum=0.9,
                              weight_decay=5e-4)
        setups[k] = (model, opt)

    def step(k: int, i: int) -> None:
        model, opt = setups[k]
        gens = [torch.Generator(device=device).manual_seed(1000 * i + s) for s in range(3)]
        model.momentum_update()

        def query(v: torch.Tensor) -> torch.Tensor:  # as accelerate does: autocast around the model forward only
            with autocast():
                return model(v)

        out = moco_step(query, model, criterion, augment, negative if k else None, images, k,
                        channels_last=channels_last, autocast=autocast, augment_generator=gens[0],
                        nda_generator=gens[1], shuffle_generator=gens[2])
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        enqueue_keys(model, out)

    times: dict[int, list[float]] = {k: [] for k in ks}
    for i in range(args.warmup + args.steps):  # rounds: every configuration once per round
        for k in ks:
            _sync(device)
            t0 = time.perf_counter()
            step(k, i)
            _sync(device)
            if i >= args.warmup:
                times[k].append(time.perf_counter() - t0)

    base = statistics.median(times[ks[0]])
    rows = [{"nda_k": k, "key_images_per_step": args.batch_size * (1 + k),
             "median_ms": 1000 * statistics.median(times[k]), "min_ms": 1000 * min(times[k]),
             "ratio_vs_k0": statistics.median(times[k]) / base} for k in ks]
    meta = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
            else platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "arch": args.arch,
            "batch_size": args.batch_size, "image_size": args.image_size, "queue_size": args.queue_size,
            "nda": args.nda, "mixed_precision": args.mixed_precision, "steps": args.steps, "warmup": args.warmup,
            "torch": torch.__version__, "target": "ratio <= 1.25 for K = 1"}
    lines = [f"MoCo-v2 training step, {args.arch}, batch {args.batch_size}, {args.image_size}px, {device} "
             f"({meta['device_name']}, {meta['threads']} threads), {args.mixed_precision}, NDA {args.nda}", "",
             "| NDA K | key images / step | median ms / step | min ms | ratio vs K=0 |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['nda_k']} | {r['key_images_per_step']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | "
                     f"{r['ratio_vs_k0']:.3f} |")
    result = {"meta": meta, "rows": rows}
    save_report(args.out or ROOT / "benchmarks" / "results" / f"moco_step_{device.type}.json", result, "\n".join(lines))
    return result


if __name__ == "__main__":
    main()
