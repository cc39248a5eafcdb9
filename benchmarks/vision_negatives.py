"""Throughput of the batched image negatives, as ratios measured side by side in one run.

For every transform and batch shape it times, on the same tensor:

- ``clone``: ``x.clone()``, the memory-copy floor (a negative must at least write a new batch);
- ``nda``: the batched negative from ``nda.build`` (one parameter draw per sample, one batched apply);
- ``loop``: the BASELINE, a per-sample Python loop written the way research code (including the NDA paper's
  official code) does it: split / shuffle / ``torch.cat`` per image, per-image numpy masks, per-image
  ``torch.roll``/``torch.rot90``, Python ``random`` for the parameters.

- ``ops``: ATen operators dispatched per call, counted with a ``TorchDispatchMode`` (device independent): all
  of them, and the ``kernels`` among them (not views, not bare allocations) counted with the batch on the
  ``meta`` device and no generator, i.e. what a CUDA batch with a CUDA generator dispatches: a proxy for the
  kernel launches that dominate small batches on a GPU (issue 12: 9-73x a ``clone`` on an H100 at
  256x3x32x32). ``host`` counts the non-view ops that stay on CPU tensors in that setting (no launch, but
  host time on the GPU's critical path).

Targets: ``nda`` within 5x of ``clone`` for every transform; >= 20x faster than the loop for jigsaw and
cutout on CPU. Ratios, not absolute times, are the result (the machine may be shared; ``--timer cpu
--threads 1`` measures this process's CPU time, which is far less disturbed by other jobs than wall time).
What limits the loop ratio on CPU: the loop costs ~25 us per 32 px image in Python/dispatch overhead, and at
224 px both versions are bound by memory traffic (the loop copies each image ~3 times, the batched version
once), so about 2-3x is the ceiling there; on CUDA the loop pays ~10 kernel launches per image instead.

    python benchmarks/vision_negatives.py --device cpu --repeats 15
    python benchmarks/vision_negatives.py --timer cpu --threads 1 --out benchmarks/results/vision_negatives_cpu_cputime.json
    python benchmarks/vision_negatives.py --ops-only       # operator counts only (seconds, no timing)

Before/after comparisons (e.g. of a change to nda/vision): run the same command with ``PYTHONPATH`` pointing at
a snapshot of the old package (``git archive <rev> nda | tar -x -C /tmp/before``) and without, alternating a
few times on a shared machine, then merge the runs (median per row of each side):

    python benchmarks/vision_negatives.py --compare BEFORE.json [...] --against AFTER.json [...] --out OUT.json
    python benchmarks/vision_negatives.py --device cuda --out benchmarks/results/vision_negatives_cuda.json
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import nda
from nda.reporting import save_report

SHAPES = [(256, 3, 32, 32), (64, 3, 224, 224)]
CLONE_TARGET = 5.0  # nda time / clone time must be <= this
LOOP_TARGET = {"jigsaw": 20.0, "cutout": 20.0}  # loop time / nda time must be >= this (CPU)


# --------------------------------------------------------------------------------------------------
# BASELINE: per-sample Python loops in the style of the official NDA code / common research code.
# --------------------------------------------------------------------------------------------------
def _other(i: int, n: int) -> int:
    j = random.randrange(n - 1)
    return j + (j >= i)


def loop_jigsaw(x: torch.Tensor, k: int = 2) -> torch.Tensor:
    out = []
    for img in x:
        _, h, w = img.shape
        ph, pw = h // k, w // k
        patches = [img[:, i * ph : (i + 1) * ph, j * pw : (j + 1) * pw] for i in range(k) for j in range(k)]
        order = list(range(k * k))
        while order == sorted(order):
            random.shuffle(order)
        rows = [torch.cat([patches[order[r * k + c]] for c in range(k)], dim=2) for r in range(k)]
        out.append(torch.cat(rows, dim=1))
    return torch.stack(out)


def loop_stitch(x: torch.Tensor) -> torch.Tensor:
    n, _, h, w = x.shape
    out = []
    for i in range(n):
        j = _other(i, n)
        if random.random() < 0.5:
            out.append(torch.cat([x[i][:, :, : w // 2], x[j][:, :, w // 2 :]], dim=2))
        else:
            out.append(torch.cat([x[i][:, : h // 2], x[j][:, h // 2 :]], dim=1))
    return torch.stack(out)


def loop_mixup(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    out = []
    for i in range(n):
        lam = float(np.random.beta(25, 25))
        out.append(lam * x[i] + (1 - lam) * x[_other(i, n)])
    return torch.stack(out)


def loop_cutout(x: torch.Tensor) -> torch.Tensor:
    _, _, h, w = x.shape
    lo, hi = round(10 * min(h, w) / 32), round(20 * min(h, w) / 32)
    out = []
    for img in x:
        s = random.randint(lo, hi)
        y0, x0 = random.randint(0, h - s), random.randint(0, w - s)
        mask = np.ones((h, w), np.float32)
        mask[y0 : y0 + s, x0 : x0 + s] = 0.0
        mask = torch.from_numpy(mask).to(img.device)
        mean = img[:, y0 : y0 + s, x0 : x0 + s].mean(dim=(1, 2), keepdim=True)
        out.append(img * mask + mean * (1 - mask))
    return torch.stack(out)


def loop_cutmix(x: torch.Tensor) -> torch.Tensor:
    n, _, h, w = x.shape
    out = []
    for i in range(n):
        lam = np.random.beta(1.0, 1.0)
        r = np.sqrt(1.0 - lam)
        ch, cw = max(1, int(h * r)), max(1, int(w * r))
        cy, cx = np.random.randint(h), np.random.randint(w)
        y1, y2 = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch - ch // 2, 0, h)
        x1, x2 = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw - cw // 2, 0, w)
        img = x[i].clone()
        img[:, y1:y2, x1:x2] = x[_other(i, n)][:, y1:y2, x1:x2]
        out.append(img)
    return torch.stack(out)


def loop_rotate(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.rot90(img, random.randint(1, 3), dims=(1, 2)) for img in x])


def loop_rotate60(x: torch.Tensor) -> torch.Tensor:
    from torchvision.transforms.functional import InterpolationMode, rotate

    return torch.stack([rotate(img, random.choice((60.0, -60.0)), InterpolationMode.BILINEAR) for img in x])


def loop_shift(x: torch.Tensor) -> torch.Tensor:
    _, _, h, _ = x.shape
    lo, hi = round(10 * h / 32), round(25 * h / 32)
    out = []
    for img in x:
        s = random.randint(lo, hi) * random.choice((-1, 1))
        out.append(torch.roll(img, shifts=s, dims=random.choice((1, 2))))
    return torch.stack(out)


TRANSFORMS: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = {
    "jigsaw": ("jigsaw", loop_jigsaw),
    "stitch": ("stitch", loop_stitch),
    "mixup": ("mixup", loop_mixup),
    "cutout": ("cutout", loop_cutout),
    "cutmix": ("cutmix", loop_cutmix),
    "rotate": ("rotate", loop_rotate),
    "rotate60": ("rotate:angles=(60,-60)", loop_rotate60),
    "shift": ("shift", loop_shift),
}


# --------------------------------------------------------------------------------------------------
# Operator counting: a device-independent proxy for kernel launches.
# --------------------------------------------------------------------------------------------------
_NO_KERNEL = {  # dispatched, but only allocate or re-describe memory: no kernel launch
    torch.ops.aten.empty.memory_format, torch.ops.aten.empty_strided.default, torch.ops.aten.empty_like.default,
    torch.ops.aten.new_empty.default, torch.ops.aten.new_empty_strided.default, torch.ops.aten._unsafe_view.default,
    torch.ops.aten.lift_fresh.default,
}


class OpCounter(TorchDispatchMode):
    """Counts the ATen operators dispatched while active: ``total``; ``kernels``: those that are neither views
    nor bare allocations and touch a tensor on ``device`` (their names in ``names``); ``host``: the remaining
    non-view ops on CPU tensors when ``device`` is not the CPU (small parameter math done on the host);
    ``copies``: copies to another device. ``tests/vision/test_vision_launches.py`` keeps budgets on these counts."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.total = self.kernels = self.host = self.copies = 0
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.total += 1
        if func is torch.ops.aten._to_copy.default and kwargs.get("device") is not None:
            self.copies += 1
        if func.is_view or func in _NO_KERNEL:
            return out
        tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
        if any(t.device.type == self.device.type for t in tensors) or not tensors:
            self.kernels += 1
            self.names.append(str(func.overloadpacket.__name__))
        else:
            self.host += 1
        return out


def count_ops(negative: Callable, shape: tuple[int, ...], device: torch.device) -> dict:
    """Operators per call of ``negative`` on a ``shape`` batch: ``aten_ops`` with the batch and a generator on
    ``device`` (what the timed calls run); ``kernels``/``host`` with the batch on ``meta`` (or on ``device`` when
    it is a GPU) and no generator (the global RNG of that device, as a CUDA generator would draw)."""
    x = torch.rand(*shape, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    negative(x, generator=g)  # warm per-device caches (tables built once)
    with OpCounter(device) as counter:
        negative(x, generator=g)
    proxy_device = device if device.type == "cuda" else torch.device("meta")
    xm = torch.empty(*shape, device=proxy_device)
    negative(xm)
    with OpCounter(proxy_device) as proxy:
        negative(xm)
    return {"aten_ops": counter.total, "kernels": proxy.kernels, "host_ops": proxy.host, "kernel_names": proxy.names}


# --------------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(
    fn: Callable[[], object], device: torch.device, repeats: int, clock: Callable[[], float] = time.perf_counter,
    min_block_s: float = 0.02,
) -> float:
    """Median ms per call over ``repeats`` blocks; each block runs enough calls to last >= ``min_block_s``."""
    for _ in range(3):  # warm-up (allocator, lazy init, kernels)
        fn()
    _sync(device)
    start = clock()
    fn()
    _sync(device)
    once = max(clock() - start, 1e-6)
    number = max(1, int(min_block_s / once))
    blocks = []
    for _ in range(repeats):
        start = clock()
        for _ in range(number):
            fn()
        _sync(device)
        blocks.append((clock() - start) / number)
    return statistics.median(blocks) * 1e3


def run(
    device: torch.device, repeats: int, names: list[str], shapes: list[tuple[int, ...]], clock: Callable[[], float],
    ops_only: bool = False,
) -> list[dict]:
    rows = []
    for shape in shapes:
        x = torch.rand(*shape, device=device)
        clone_ms = None if ops_only else time_ms(lambda: x.clone(), device, repeats, clock)
        for name in names:
            spec, loop = TRANSFORMS[name]
            negative = nda.build(spec)
            ops = count_ops(negative, shape, device)
            row = {"transform": name, "spec": spec, "shape": list(shape), **ops}
            if ops_only:
                rows.append(row)
                print(f"  {name:9s} {tuple(shape)}: {ops['aten_ops']:3d} ATen ops, {ops['kernels']:3d} kernels, "
                      f"{ops['host_ops']:3d} host ops", flush=True)
                continue
            g = torch.Generator(device=device).manual_seed(0)
            ours_ms = time_ms(lambda: negative(x, generator=g), device, repeats, clock)
            loop_ms = time_ms(lambda: loop(x), device, max(3, repeats // 3), clock)
            vs_clone, vs_loop = ours_ms / clone_ms, loop_ms / ours_ms
            met = vs_clone <= CLONE_TARGET
            if name in LOOP_TARGET and device.type == "cpu":
                met = met and vs_loop >= LOOP_TARGET[name]
            row.update({
                "ms_per_batch": ours_ms, "images_per_s": shape[0] / ours_ms * 1e3, "clone_ms": clone_ms,
                "loop_ms": loop_ms, "x_vs_clone": vs_clone, "x_vs_loop": vs_loop, "target_met": met,
            })
            rows.append(row)
            print(f"  {name:9s} {tuple(shape)}: {ours_ms:8.3f} ms  ({vs_clone:.2f}x clone, {vs_loop:.1f}x faster than loop; "
                  f"{ops['aten_ops']} ATen ops, {ops['kernels']} kernels)", flush=True)
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    ops_note = (
        "ATen ops = operators dispatched per call (batch and generator on the device); kernels = the non-view, "
        "non-allocation ops among them with the batch on `meta` and no generator (a device-independent proxy for "
        "CUDA kernel launches); host = ops left on CPU tensors in that setting."
    )
    if meta.get("ops_only"):
        lines = [
            f"Operators per call of the image negatives (nda from `{meta['nda']}`; torch {meta['torch']}). {ops_note}",
            "",
            "| transform | shape | ATen ops/call | kernels/call | host ops/call |",
            "|---|---|---:|---:|---:|",
        ]
        for r in rows:
            shape = "x".join(map(str, r["shape"]))
            lines.append(f"| {r['transform']} | {shape} | {r['aten_ops']} | {r['kernels']} | {r['host_ops']} |")
        return "\n".join(lines) + "\n"
    lines = [
        f"Image negatives on {meta['device']} ({meta['cpu']}; torch {meta['torch']}, {meta['threads']} threads, "
        f"load average before the run {meta['loadavg']}; {meta['timer']} clock). x vs clone = nda time / `x.clone()` time (target "
        f"<= {CLONE_TARGET:g}); x vs loop = per-sample loop time / nda time (target >= 20 for jigsaw and cutout on CPU). "
        f"{ops_note} nda from `{meta['nda']}`, {meta['repeats']} timed blocks per median.",
        "",
        "| transform | shape | ms/batch | images/s | x vs clone | x vs loop | ATen ops/call | kernels/call | target met? |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        lines.append(
            f"| {r['transform']} | {shape} | {r['ms_per_batch']:.3f} | {r['images_per_s']:,.0f} | "
            f"{r['x_vs_clone']:.2f} | {r['x_vs_loop']:.1f} | {r['aten_ops']} | {r['kernels']} | "
            f"{'yes' if r['target_met'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def compare(before: list[str], after: list[str]) -> tuple[list[dict], str]:
    """Side-by-side rows of two groups of result files: per (transform, shape), the median over each group's
    runs of ms/batch and of the ratio to ``clone`` (measured in the same run), and the operator counts."""
    import json

    def load(paths: list[str]) -> tuple[dict, list[dict]]:
        runs = [json.loads(open(p).read()) for p in paths]
        rows: dict[tuple, list[dict]] = {}
        for run_ in runs:
            for r in run_["rows"]:
                rows.setdefault((r["transform"], tuple(r["shape"])), []).append(r)
        return runs[0]["meta"], rows

    meta_b, rows_b = load(before)
    meta_a, rows_a = load(after)
    out = []
    for key in rows_b:
        if key not in rows_a:
            continue
        med = {
            side: {f: statistics.median(r[f] for r in rows[key]) for f in ("ms_per_batch", "x_vs_clone", "clone_ms")}
            for side, rows in (("before", rows_b), ("after", rows_a))
        }
        out.append({
            "transform": key[0], "shape": list(key[1]), "before": med["before"], "after": med["after"],
            "speedup": med["before"]["ms_per_batch"] / med["after"]["ms_per_batch"],
            "ops_before": rows_b[key][0].get("aten_ops"), "ops_after": rows_a[key][0].get("aten_ops"),
            "kernels_before": rows_b[key][0].get("kernels"), "kernels_after": rows_a[key][0].get("kernels"),
        })
    lines = [
        f"Before ({len(before)} runs, nda from `{meta_b.get('nda')}`) vs after ({len(after)} runs, nda from "
        f"`{meta_a.get('nda')}`) on {meta_a['device']} ({meta_a['cpu']}; torch {meta_a['torch']}, {meta_a['threads']} "
        f"threads, {meta_a['timer']} clock, {meta_a['repeats']} timed blocks per median). Per row: the median over "
        "the runs of each side; the runs alternated before/after. x clone = time / `x.clone()` time of the same run; "
        "kernels = non-view ops per call with the batch on `meta` (proxy for CUDA launches).",
        "",
        "| transform | shape | ms before | ms after | speed-up | x clone before | x clone after | ATen ops before "
        "| ATen ops after | kernels before | kernels after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out:
        shape = "x".join(map(str, r["shape"]))
        lines.append(
            f"| {r['transform']} | {shape} | {r['before']['ms_per_batch']:.3f} | {r['after']['ms_per_batch']:.3f} | "
            f"{r['speedup']:.2f} | {r['before']['x_vs_clone']:.2f} | {r['after']['x_vs_clone']:.2f} | "
            f"{r['ops_before']} | {r['ops_after']} | {r['kernels_before']} | {r['kernels_after']} |"
        )
    return out, "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=15, help="timed blocks per measurement (median reported)")
    parser.add_argument("--transforms", nargs="+", default=list(TRANSFORMS), choices=list(TRANSFORMS))
    parser.add_argument("--small", action="store_true", help="only the (256, 3, 32, 32) shape (quick check)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--timer", default="wall", choices=["wall", "cpu"],
        help="wall: time.perf_counter (throughput); cpu: time.process_time, the CPU time of this process, robust "
        "on a machine shared with other jobs (use with --threads 1; CPU only)",
    )
    parser.add_argument("--ops-only", action="store_true", help="only count operators per call (no timing)")
    parser.add_argument("--compare", nargs="+", default=None, metavar="JSON",
                        help="merge result files: these are 'before' (see --against); no measurement")
    parser.add_argument("--against", nargs="+", default=None, metavar="JSON", help="the 'after' files for --compare")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/vision_negatives_<device>.json)")
    args = parser.parse_args(argv)
    if args.compare or args.against:
        if not (args.compare and args.against):
            parser.error("--compare BEFORE.json ... needs --against AFTER.json ...")
        if not args.out:
            parser.error("--compare needs --out (where to save the side-by-side table)")
        rows, md = compare(args.compare, args.against)
        save_report(args.out, {"before": args.compare, "after": args.against, "rows": rows}, md)
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    meta = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "loadavg": " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a",
        "repeats": args.repeats,
        "nda": os.path.dirname(nda.__file__),
        "ops_only": args.ops_only,
    }
    if args.timer == "cpu" and device.type == "cuda":
        parser.error("--timer cpu measures host CPU time; use --timer wall with --device cuda")
    clock = time.process_time if args.timer == "cpu" else time.perf_counter
    meta["timer"] = args.timer
    rows = run(device, args.repeats, args.transforms, SHAPES[:1] if args.small else SHAPES, clock, args.ops_only)
    print()
    default_out = f"benchmarks/results/vision_negatives_{'ops' if args.ops_only else args.device}.json"
    save_report(args.out or default_out, {"meta": meta, "rows": rows}, markdown(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
