"""Memory and speed of the data path as the dataset grows: memory-mapped caches vs. today's in-RAM path.

What is measured (each configuration in a fresh subprocess, so peaks do not leak between rows):

- images, the GAN/MoCo data path: ``idx = batch_indices(step, N, B, seed)`` then the batch gather, for
  synthetic 3x32x32 uint8 sets of growing size. Paths: ``today`` (the whole set as one RAM tensor,
  ``images[idx]``, as the jobs gathered before), ``ram take`` (``ImageData.take`` on an in-RAM set,
  ``index_select``), and the memory-mapped set with each reader, ``mmap`` and ``pread``.
  The large sets are written straight in the decoded cache format (``build_image_cache``; encoding
  2M PNGs would take an hour and measure PNG, not the data path) and removed after. RAM paths run only
  up to ``--ram-max-gb`` of pixels (the point of the memory-mapped path is the sizes where they cannot).
  ``cold`` rows drop the file from the page cache first (``posix_fadvise(DONTNEED)``): disk-bound reads.
- images, streaming decode: a generated folder of PNGs and a ``.tar`` of it, decoded cold through
  ``load_images`` (chunked, bounded memory), then reopened warm; plus the content-hash cost (cold: every
  file read; warm: stat only, from the digest memo).
- text, the sentence path: ``batch_indices`` + fetching ``B`` sentences, for synthetic corpora; ``today``
  reads the file into a Python list as ``tasks/sentence.py`` did; ``corpus (RAM)`` / ``corpus (pread)`` is
  ``load_sentences`` with the file's bytes in RAM / read per sentence (index build timed separately, cold).
- the per-epoch permutation: ``torch.randperm(N)`` and a ``batch_indices`` call that starts an epoch.

Memory: ``peak RSS`` is the process's high-water mark (``VmHWM``) and includes file pages
mapped by ``mmap``; ``peak anon`` is the largest sampled ``RssAnon`` (memory the process owns: it cannot
be reclaimed by dropping page cache). Targets: peak memory flat (largest / smallest <= 1.5x) along the
memory-mapped path; batches/s within 1.5x of the in-RAM path where both run.

    nice python benchmarks/data_scale.py --out benchmarks/results/data_scale.json          # full (~10 min)
    python benchmarks/data_scale.py --quick --out benchmarks/results/data_scale_quick.json # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGE_SHAPE = (3, 32, 32)


# ------------------------------------------------------------------------------------------- children
def _status() -> dict[str, int]:
    """RSS fields of /proc/self/status in MiB (empty where there is no /proc)."""
    out = {}
    try:
        for line in open("/proc/self/status"):
            key = line.split(":")[0]
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1]) // 1024
    except OSError:
        pass
    return out


def _peak_mib() -> float:
    """This process's RSS high-water mark. ``VmHWM`` belongs to the address space, which ``exec`` replaces;
    ``ru_maxrss`` would not do: Linux carries the parent's high-water mark at ``fork`` into it."""
    hwm = _status().get("VmHWM")
    if hwm is not None:
        return float(hwm)
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class _AnonPeak:
    def __init__(self) -> None:
        self.peak = _status().get("RssAnon", 0)

    def sample(self) -> None:
        self.peak = max(self.peak, _status().get("RssAnon", 0))


def _drop_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _windows(start: int, steps: int, parts: int = 5) -> list[tuple[int, int]]:
    """``steps`` consecutive steps from ``start`` cut into ``parts`` timing windows (the median window rate
    is reported: other jobs share this machine's cores, and one slow window should not decide a row)."""
    edges = [start + round(steps * k / parts) for k in range(parts + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def child_images(spec: dict) -> dict:
    import numpy as np
    import torch

    from nda.data.images import open_image_cache
    from nda.run import batch_indices

    torch.set_num_threads(1)
    base = Path(spec["base"])
    images_file = base.with_name(base.name + ".images.npy")
    if spec.get("cold"):
        _drop_page_cache(images_file)
    baseline = _peak_mib()
    anon = _AnonPeak()
    t0 = time.perf_counter()
    mode = spec["mode"]
    if mode == "today":
        images = torch.from_numpy(np.load(images_file))  # the whole set in RAM, as the jobs held it
        n = images.shape[0]
        gather = lambda idx: images[idx]  # noqa: E731
    else:
        data = open_image_cache(base, in_memory=(mode == "ram take"), reader=None if mode == "ram take" else mode)
        n = len(data)
        gather = data.take
    setup = time.perf_counter() - t0
    anon.sample()
    b, seed = spec["batch_size"], 0
    for step in range(spec["warmup"]):
        gather(batch_indices(step, n, b, seed))
    steps = spec["batches"]
    rates = []
    for start, stop in _windows(spec["warmup"], steps):
        t0 = time.perf_counter()
        for step in range(start, stop):
            x = gather(batch_indices(step, n, b, seed))
        rates.append((stop - start) / (time.perf_counter() - t0))
        anon.sample()
    assert x.shape == (b, *IMAGE_SHAPE) and x.dtype == torch.uint8
    status = _status()
    rate = statistics.median(rates)
    return {"setup_s": setup, "batches_per_s": rate, "images_per_s": rate * b, "window_rates": rates,
            "peak_rss_mib": _peak_mib(), "baseline_rss_mib": baseline, "peak_anon_mib": anon.peak,
            "end_rss_file_mib": status.get("RssFile"), "end_rss_anon_mib": status.get("RssAnon")}


def child_decode(spec: dict) -> dict:
    import logging

    import torch

    from nda.data.images import load_images

    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    baseline = _peak_mib()
    t0 = time.perf_counter()
    data = load_images(spec["source"], "train", cache_dir=spec["cache"])
    cold = time.perf_counter() - t0
    peak = _peak_mib()
    t0 = time.perf_counter()
    again = load_images(spec["source"], "train", cache_dir=spec["cache"], in_memory=False)
    warm = time.perf_counter() - t0
    assert len(again) == len(data)
    return {"n": len(data), "cold_s": cold, "images_per_s": len(data) / cold, "warm_open_s": warm,
            "peak_rss_mib": peak, "baseline_rss_mib": baseline, "in_memory": data.in_memory}


def child_hash(spec: dict) -> dict:
    from nda.data.cache import DigestMemo

    root = Path(spec["root"])
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    memo = DigestMemo(spec["cache"], root, "bench")
    t0 = time.perf_counter()
    memo.digests(files)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    memo.digests(files)
    warm = time.perf_counter() - t0
    size = sum((root / f).stat().st_size for f in files)
    return {"files": len(files), "mib": size / 2**20, "cold_s": cold, "warm_s": warm}


def child_text(spec: dict) -> dict:
    import torch

    from nda.run import batch_indices

    torch.set_num_threads(1)
    baseline = _peak_mib()
    anon = _AnonPeak()
    t0 = time.perf_counter()
    if spec["mode"] == "today":  # tasks/sentence.py before: the whole file as a list of rows
        lines = [ln.rstrip("\n") for ln in Path(spec["path"]).read_text(encoding="utf-8").splitlines()]
        rows = [(ln.strip(),) for ln in lines if ln.strip()]
        n = len(rows)
        fetch = lambda idx: [rows[i][0] for i in idx.tolist()]  # noqa: E731
    else:
        from nda.data.text import load_sentences

        corpus = load_sentences(spec["path"], cache_dir=spec["cache"], in_memory=spec["mode"] == "corpus (RAM)")
        n = len(corpus)
        fetch = corpus.__getitem__
    setup = time.perf_counter() - t0
    anon.sample()
    b = spec["batch_size"]
    for step in range(spec["warmup"]):
        fetch(batch_indices(step, n, b, 0))
    rates = []
    for start, stop in _windows(spec["warmup"], spec["batches"]):
        t0 = time.perf_counter()
        for step in range(start, stop):
            texts = fetch(batch_indices(step, n, b, 0))
        rates.append((stop - start) / (time.perf_counter() - t0))
        anon.sample()
    assert len(texts) == b and isinstance(texts[0], str)
    return {"n": n, "setup_s": setup, "batches_per_s": statistics.median(rates), "window_rates": rates,
            "peak_rss_mib": _peak_mib(),
            "baseline_rss_mib": baseline, "peak_anon_mib": anon.peak}


def child_randperm(spec: dict) -> dict:
    import torch

    from nda.run import batch_indices

    torch.set_num_threads(1)
    n, b = spec["n"], spec["batch_size"]
    g = torch.Generator()
    times = []
    for epoch in range(5):
        g.manual_seed(epoch)
        t0 = time.perf_counter()
        torch.randperm(n, generator=g)
        times.append(time.perf_counter() - t0)
    per_epoch = n // b
    t0 = time.perf_counter()
    batch_indices(0, n, b, 1)  # starts epoch 0: builds its permutation
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for step in range(1, 201):
        batch_indices(step, n, b, 1)
    cached = (time.perf_counter() - t0) / 200
    return {"n": n, "randperm_ms": 1e3 * statistics.median(times), "epoch_start_ms": 1e3 * first,
            "cached_step_us": 1e6 * cached, "steps_per_epoch": per_epoch,
            "amortised_us_per_step": 1e6 * (first + cached * (per_epoch - 1)) / per_epoch}


CHILDREN = {"images": child_images, "decode": child_decode, "hash": child_hash, "text": child_text,
            "randperm": child_randperm}


def run_child(spec: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ generators
def make_image_cache(base: Path, n: int) -> None:
    import numpy as np

    from nda.data.images import build_image_cache

    row = int(np.prod(IMAGE_SHAPE))
    per_chunk = (64 << 20) // row

    def chunks(start: int):
        for a in range(start, n, per_chunk):
            k = min(per_chunk, n - a)
            rng = np.random.default_rng(a)
            yield np.frombuffer(rng.bytes(k * row), np.uint8).reshape(k, *IMAGE_SHAPE)

    build_image_cache(base, chunks, n, IMAGE_SHAPE, labels=np.arange(n) % 10, classes=[str(i) for i in range(10)],
                      name=f"synthetic-{n}", key=f"data_scale-v1-{n}-{IMAGE_SHAPE}")


def make_png_folder(root: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in range(10):
        (root / "train" / f"c{cls}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        # smooth-ish content so PNG sizes are realistic, not incompressible noise
        base = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        img = np.kron(base, np.ones((8, 8, 1), np.uint8))
        Image.fromarray(img).save(root / "train" / f"c{i % 10}" / f"{i:07d}.png")


def make_corpus(path: Path, n: int) -> None:
    import numpy as np

    rng = np.random.default_rng(n)
    vocab = np.array([f"w{i}" for i in range(20_000)])
    with open(path, "w", encoding="utf-8") as fh:
        for a in range(0, n, 100_000):
            k = min(100_000, n - a)
            lengths = rng.integers(5, 25, k)
            words = vocab[rng.zipf(1.3, lengths.sum()) % len(vocab)]
            cuts = np.cumsum(lengths)[:-1]
            fh.write("\n".join(" ".join(s) for s in np.split(words, cuts)) + "\n")


# ---------------------------------------------------------------------------------------------- report
def fmt(x: float | None, digits: int = 0) -> str:
    return "" if x is None else f"{x:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small sizes, few batches (a smoke run)")
    parser.add_argument("--image-sizes", type=int, nargs="*", help="default 50k 500k 2M (quick: 2k 20k)")
    parser.add_argument("--text-sizes", type=int, nargs="*", help="default 10k 1M (quick: 10k 50k)")
    parser.add_argument("--decode-sizes", type=int, nargs="*", help="PNGs decoded cold (default 4k 20k; quick 500)")
    parser.add_argument("--batches", type=int, help="timed batches per configuration (default 2000; quick 200)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch (the GAN/MoCo batch)")
    parser.add_argument("--text-batch-size", type=int, default=64, help="sentences per batch (SimCSE's)")
    parser.add_argument("--ram-max-gb", type=float, default=2.0, help="run the RAM paths up to this many GB")
    parser.add_argument("--work-dir", help="where generated data goes (default: a temp dir, removed after)")
    parser.add_argument("--out", default="benchmarks/results/data_scale.json")
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(CHILDREN[spec["kind"]](spec)))
        return

    q = args.quick
    image_sizes = args.image_sizes or ([2_000, 20_000] if q else [50_000, 500_000, 2_000_000])
    text_sizes = args.text_sizes or ([10_000, 50_000] if q else [10_000, 1_000_000])
    decode_sizes = args.decode_sizes or ([500] if q else [4_000, 20_000])
    batches = args.batches or (200 if q else 2000)
    warmup = 20
    row_bytes = 3 * 32 * 32
    t_start = time.perf_counter()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="nda-data-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"config": {**vars(args), "image_sizes": image_sizes, "text_sizes": text_sizes,
                                "decode_sizes": decode_sizes, "batches": batches, "warmup": warmup},
                     "machine": {"python": platform.python_version(), "platform": platform.platform(),
                                 "cpus": os.cpu_count()},
                     "images": [], "decode": [], "hash": [], "text": [], "randperm": []}
    try:
        # ---------------------------------------------------------------------------- image data path
        for n in image_sizes:
            need = n * row_bytes
            free = shutil.disk_usage(work).free
            if free < need * 1.2 + (1 << 30):
                print(f"skipping {n:,} images: {free / 2**30:.1f} GiB free, need {need / 2**30:.1f} GiB")
                continue
            base = work / f"synthetic-{n}"
            t0 = time.perf_counter()
            make_image_cache(base, n)
            gen_s = time.perf_counter() - t0
            print(f"generated {n:,} images ({need / 2**30:.2f} GiB) in {gen_s:.1f}s")
            modes = (["today", "ram take"] if need <= args.ram_max_gb * 1e9 else []) + ["mmap", "pread"]
            for mode in modes:
                spec = {"kind": "images", "base": str(base), "mode": mode, "batch_size": args.batch_size,
                        "batches": batches, "warmup": warmup}
                r = run_child(spec)
                results["images"].append({"n": n, "gib": need / 2**30, "path": mode, **r})
                print(f"  {mode:>9}: {r['batches_per_s']:8.0f} batches/s, peak RSS {r['peak_rss_mib']:7.0f} MiB, "
                      f"peak anon {r['peak_anon_mib']:6.0f} MiB, setup {r['setup_s']:.2f}s")
            if n == image_sizes[-1]:
                for mode in ("mmap", "pread"):  # the disk-bound case: the file is not in the page cache
                    spec = {"kind": "images", "base": str(base), "mode": mode, "batch_size": args.batch_size,
                            "batches": max(100, batches // 4), "warmup": 0, "cold": True}
                    r = run_child(spec)
                    results["images"].append({"n": n, "gib": need / 2**30, "path": f"{mode} (cold)", **r})
                    print(f"  {mode + ' cold':>9}: {r['batches_per_s']:8.0f} batches/s, peak RSS "
                          f"{r['peak_rss_mib']:7.0f} MiB")
            for f in work.glob(f"synthetic-{n}*"):
                f.unlink()

        for n in sorted({image_sizes[-1], 2_000_000}):
            r = run_child({"kind": "randperm", "n": n, "batch_size": args.batch_size})
            results["randperm"].append(r)
            print(f"randperm({n:,}): {r['randperm_ms']:.1f} ms; epoch start {r['epoch_start_ms']:.1f} ms, "
                  f"cached step {r['cached_step_us']:.1f} us, amortised {r['amortised_us_per_step']:.1f} us/step")

        # ------------------------------------------------------------------------------ streaming decode
        for n in decode_sizes:
            folder = work / f"png-{n}"
            t0 = time.perf_counter()
            make_png_folder(folder, n)
            tar = work / f"png-{n}.tar"
            subprocess.run(["tar", "-cf", str(tar), "-C", str(work), folder.name], check=True)
            print(f"wrote {n:,} PNGs and a tar in {time.perf_counter() - t0:.1f}s")
            for kind, source in (("folder", folder), ("tar", tar)):
                r = run_child({"kind": "decode", "source": str(source), "cache": str(work / f"cache-{kind}-{n}")})
                results["decode"].append({"source": kind, **r})
                print(f"  decode {kind}: {r['n']:,} in {r['cold_s']:.1f}s ({r['images_per_s']:.0f} img/s), warm open "
                      f"{r['warm_open_s']:.2f}s, peak RSS {r['peak_rss_mib']:.0f} MiB")
            r = run_child({"kind": "hash", "root": str(folder), "cache": str(work / f"cache-hash-{n}")})
            results["hash"].append(r)
            print(f"  content hash: {r['files']:,} files ({r['mib']:.1f} MiB) cold {r['cold_s']:.2f}s, "
                  f"warm (memo) {r['warm_s']:.2f}s")
            shutil.rmtree(folder)
            tar.unlink()
            for c in work.glob(f"cache-*-{n}"):
                shutil.rmtree(c)

        # ------------------------------------------------------------------------------------------- text
        for n in text_sizes:
            path = work / f"corpus-{n}.txt"
            make_corpus(path, n)
            cache = work / f"text-cache-{n}"
            build = run_child({"kind": "text", "mode": "corpus (pread)", "path": str(path), "cache": str(cache),
                               "batch_size": args.text_batch_size, "batches": 1, "warmup": 0})
            results["text"].append({"lines": n, "mib": path.stat().st_size / 2**20, "path": "corpus: index build",
                                    **build})
            print(f"text {n:,}: index build {build['setup_s']:.1f}s, peak RSS {build['peak_rss_mib']:.0f} MiB")
            for mode in ("today", "corpus (RAM)", "corpus (pread)"):
                r = run_child({"kind": "text", "mode": mode, "path": str(path), "cache": str(cache),
                               "batch_size": args.text_batch_size, "batches": batches, "warmup": warmup})
                results["text"].append({"lines": n, "mib": path.stat().st_size / 2**20, "path": mode, **r})
                print(f"  {mode:>14}: {r['batches_per_s']:8.0f} batches/s, peak RSS {r['peak_rss_mib']:.0f} MiB, "
                      f"setup {r['setup_s']:.2f}s")
            path.unlink()
            shutil.rmtree(cache)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)

    results["wall_s"] = time.perf_counter() - t_start
    report(results, Path(args.out))


def _ratio_rows(rows: list[dict], key: str) -> dict[str, float]:
    """largest / smallest ``key`` per path (the flatness of memory as N grows)."""
    out = {}
    for path in sorted({r["path"] for r in rows}):
        sel = sorted((r for r in rows if r["path"] == path), key=lambda r: r.get("n", r.get("lines", 0)))
        if len(sel) > 1 and sel[0][key]:
            out[path] = sel[-1][key] / sel[0][key]
    return out


def report(results: dict, out: Path) -> None:
    from nda.reporting import save_report

    imgs = results["images"]
    ram_speed = {r["n"]: r["batches_per_s"] for r in imgs if r["path"] == "ram take"}
    for r in imgs:
        r["speed_vs_ram_take"] = r["batches_per_s"] / ram_speed[r["n"]] if r["n"] in ram_speed else None
    lines = [
        f"Data path scaling ({'quick' if results['config']['quick'] else 'full'} run), "
        f"{results['machine']['cpus']} CPUs shared, torch threads=1, batch {results['config']['batch_size']} images "
        f"(3x32x32 uint8) / {results['config']['text_batch_size']} sentences, {results['config']['batches']} timed "
        "batches after 20 warm-up ones (median rate of 5 windows); each row a fresh process. "
        "peak RSS = VmHWM (includes mapped page-cache "
        "pages); 'of which before data' = VmHWM after importing torch/numpy/nda, before any data is touched; "
        "peak anon = largest sampled RssAnon (memory the process owns).",
        "",
        "### Images: batch_indices + gather",
        "",
        "| images | GiB | path | batches/s | vs ram take | peak RSS MiB | of which before data | peak anon MiB | setup s |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in imgs:
        lines.append(f"| {r['n']:,} | {r['gib']:.2f} | {r['path']} | {fmt(r['batches_per_s'])} | "
                     f"{fmt(r['speed_vs_ram_take'], 2) + 'x' if r['speed_vs_ram_take'] else ''} | "
                     f"{fmt(r['peak_rss_mib'])} | {fmt(r['baseline_rss_mib'])} | {fmt(r['peak_anon_mib'])} | "
                     f"{r['setup_s']:.2f} |")
    warm = [r for r in imgs if "cold" not in r["path"]]
    flat_rss, flat_anon = _ratio_rows(warm, "peak_rss_mib"), _ratio_rows(warm, "peak_anon_mib")
    results["flatness"] = {"peak_rss": flat_rss, "peak_anon": flat_anon}
    lines += ["", "Peak memory, largest / smallest set (target <= 1.5x on the memory-mapped path):", "",
              "| path | peak RSS ratio | peak anon ratio |", "|---|---:|---:|"]
    for path in flat_rss:
        lines.append(f"| {path} | {flat_rss[path]:.2f}x | {flat_anon.get(path, float('nan')):.2f}x |")
    if results["randperm"]:
        lines += ["", "### Per-epoch permutation", "",
                  "| N | randperm ms | epoch-start batch_indices ms | cached step us | amortised us/step |",
                  "|---:|---:|---:|---:|---:|"]
        for r in results["randperm"]:
            lines.append(f"| {r['n']:,} | {r['randperm_ms']:.1f} | {r['epoch_start_ms']:.1f} | "
                         f"{r['cached_step_us']:.1f} | {r['amortised_us_per_step']:.1f} |")
    if results["decode"]:
        lines += ["", "### Streaming decode of generated 32x32 PNGs (cold, into the memory-mapped cache)", "",
                  "| source | images | cold s | images/s | warm reopen s | peak RSS MiB |", "|---|---:|---:|---:|---:|---:|"]
        for r in results["decode"]:
            lines.append(f"| {r['source']} | {r['n']:,} | {r['cold_s']:.1f} | {fmt(r['images_per_s'])} | "
                         f"{r['warm_open_s']:.2f} | {fmt(r['peak_rss_mib'])} |")
        lines += ["", "| content hash | files | MiB | cold s (read all) | warm s (stat + memo) |",
                  "|---|---:|---:|---:|---:|"]
        for r in results["hash"]:
            lines.append(f"| folder | {r['files']:,} | {r['mib']:.1f} | {r['cold_s']:.2f} | {r['warm_s']:.2f} |")
    if results["text"]:
        lines += ["", "### Sentences: batch_indices + fetch", "",
                  "| sentences | MiB | path | batches/s | vs today | peak RSS MiB | of which before data | peak anon MiB "
                  "| setup s |",
                  "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
        today = {r["lines"]: r["batches_per_s"] for r in results["text"] if r["path"] == "today"}
        for r in results["text"]:
            timed = "build" not in r["path"]
            vs = f"{r['batches_per_s'] / today[r['lines']]:.2f}x" if timed and r["lines"] in today else ""
            lines.append(f"| {r['lines']:,} | {r['mib']:.1f} | {r['path']} | "
                         f"{fmt(r['batches_per_s']) if timed else ''} | {vs} | {fmt(r['peak_rss_mib'])} | "
                         f"{fmt(r['baseline_rss_mib'])} | {fmt(r['peak_anon_mib'])} | {r['setup_s']:.2f} |")
        text_flat = _ratio_rows([r for r in results["text"] if "build" not in r["path"]], "peak_rss_mib")
        results["flatness"]["text_peak_rss"] = text_flat
        lines += ["", "Text peak RSS, largest / smallest corpus: " +
                  ", ".join(f"{k} {v:.2f}x" for k, v in text_flat.items())]
    save_report(out, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
