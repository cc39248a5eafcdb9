"""Build the figures of docs/results.md from the committed results in benchmarks/results/ (no training).

Why a script: the figures must show exactly the committed numbers, and must be rebuilt the same way when a
result file changes. Each figure reads one JSON file (the run's own output) and nothing else:

- ``few_label_curve.png``: ``classify_sst2_curve.json`` -- probe accuracy vs labelled training size, no
  augmentation vs automatic counterfactuals, mean +- sd over seeds, one panel per eval set;
- ``sentence_tradeoff.png``: ``evidence_sentence_objectives_cpu.json`` -- STS average (x) against negation
  AUROC and word-order AUROC (y), one marker per objective config (mean +- sd over seeds), the untrained
  floor marked;
- ``gan_samples_cifar10_h100.png``: the seed-0 sample grids ``docs/evidence_gan/{none,jigsaw,stitch}_s0.png``
  side by side, titled with that run's FID from ``evidence_gan_h100.json``.

Run: ``python scripts/make_figures.py`` (needs matplotlib: ``pip install 'nda[plots]'``); ``--out`` moves the
output folder. Each PNG is palette-quantised (noisy sample grids compress badly otherwise) to stay small.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GAN_GRIDS = ROOT / "docs" / "evidence_gan"
EVAL_TITLES = {"sst2_dev": "SST-2 dev", "sst2_test": "SST-2 test",
               "cad_orig_dev": "CAD dev (original reviews)", "cad_new_dev": "CAD dev (human counterfactuals)"}
AUGMENT_STYLE = {"none": ("no augmentation", "tab:gray", "o"),
                 "counterfactual": ("+ automatic counterfactuals", "tab:blue", "s")}
SENTENCE_STYLE = {"none": "tab:gray", "shuffle": "tab:orange", "cf": "tab:blue"}
SENTENCE_MARKER = {"col1": "o", "colw": "^", "margin": "s"}


def _load(name: str) -> Any:
    path = RESULTS / name
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        sys.exit(f"make_figures: {path} is missing (the committed result this figure is drawn from)")


def _save(fig, path: Path, colours: int = 256) -> Path:
    """Save ``fig`` as a palette PNG (``colours`` colours, optimised): a quarter of the RGBA size, same look."""
    from PIL import Image

    from nda.files import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").quantize(colours)
    out = io.BytesIO()
    image.save(out, format="png", optimize=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, out.getvalue())
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({len(out.getvalue()) // 1024} KB)")
    return path


# ------------------------------------------------------------------------------------------ (a) few labels
def few_label_curve(plt, out: Path) -> list[str]:
    """Probe accuracy vs training size, none vs counterfactual; returns the source rows as text."""
    data = _load("classify_sst2_curve.json")
    evals = list(data["eval"])
    rows = data["summary"]
    fig, axes = plt.subplots(1, len(evals), figsize=(4.2 * len(evals), 3.8), sharex=True)
    lines = []
    for ax, name in zip(axes, evals):
        for augment, (label, colour, marker) in AUGMENT_STYLE.items():
            picked = sorted((r for r in rows if r["augment"] == augment), key=lambda r: int(r["train_size"]))
            sizes = [int(r["train_size"]) for r in picked]
            mean = [r[f"acc_{name}"] for r in picked]
            sd = [r[f"sd_{name}"] for r in picked]
            ax.errorbar(sizes, mean, yerr=sd, label=label, color=colour, marker=marker, capsize=3, markersize=5)
            lines += [f"{name} {augment} n={s}: {m:.2f} +- {d:.2f} ({r['seeds']} seeds, {r['n_added']} added)"
                      for s, m, d, r in zip(sizes, mean, sd, picked)]
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("labelled SST-2 training sentences")
        ax.set_title(EVAL_TITLES.get(name, name), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend(fontsize=8, loc="lower right")
    seeds = rows[0]["seeds"]
    fig.suptitle(f"Few-label sentiment probe (frozen encoder + logistic regression), mean ± sd over {seeds} seeds",
                 fontsize=11)
    fig.tight_layout()
    _save(fig, out / "few_label_curve.png")
    plt.close(fig)
    return lines


# ---------------------------------------------------------------------------------- (b) sentence trade-off
def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def sentence_tradeoff(plt, out: Path) -> list[str]:
    """STS avg vs negation / word-order AUROC per objective config, the untrained floor marked."""
    data = _load("evidence_sentence_objectives_cpu.json")
    floor = data["floor"]
    floor_xy = {"negation AUROC": floor["CANNOT"]["auroc"], "word-order AUROC": floor["PAWS"]["auroc"]}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    lines = [(f"floor (untrained): STS avg {floor['STS avg']:.2f}, negation AUROC {floor_xy['negation AUROC']:.2f}, "
              f"word-order AUROC {floor_xy['word-order AUROC']:.2f}")]
    stats = {}
    for config, entry in data["configs"].items():
        per_seed = entry["per_seed"]
        stats[config] = {k: _mean_sd(per_seed[k]) for k in ("STS avg", "negation AUROC", "word-order AUROC")}
        s = stats[config]
        lines.append(f"{config} ({entry['flags']}, {len(entry['seeds'])} seeds): STS avg {s['STS avg'][0]:.2f} +- "
                     f"{s['STS avg'][1]:.2f}, negation AUROC {s['negation AUROC'][0]:.2f} +- {s['negation AUROC'][1]:.2f}, "
                     f"word-order AUROC {s['word-order AUROC'][0]:.2f} +- {s['word-order AUROC'][1]:.2f}")
    for ax, metric in zip(axes, ("negation AUROC", "word-order AUROC")):
        for config, s in stats.items():
            family, _, variant = config.partition("_")
            (x, dx), (y, dy) = s["STS avg"], s[metric]
            ax.errorbar(x, y, xerr=dx, yerr=dy, color=SENTENCE_STYLE.get(family, "k"),
                        marker=SENTENCE_MARKER.get(variant, "D"), markersize=7, capsize=3, label=config)
            ax.annotate(config, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        ax.scatter([floor["STS avg"]], [floor_xy[metric]], marker="*", s=180, color="k", zorder=5,
                   label="floor (untrained)")
        ax.axhline(floor_xy[metric], color="k", lw=0.8, ls=":")
        ax.axvline(floor["STS avg"], color="k", lw=0.8, ls=":")
        ax.set_xlabel("STS average (Spearman x100; higher is better)")
        ax.set_ylabel(f"{metric} (x100; higher is better)")
        ax.set_title(metric.replace("AUROC", "sensitivity") + " vs STS", fontsize=10)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle("Soft-negative objectives for unsupervised SimCSE (all-MiniLM-L6-v2, 100 steps, CPU): "
                 "mean ± sd over seeds", fontsize=10)
    fig.tight_layout()
    _save(fig, out / "sentence_tradeoff.png")
    plt.close(fig)
    return lines


# ------------------------------------------------------------------------------------------ (c) GAN grids
def gan_samples(plt, out: Path) -> list[str]:
    """The seed-0 EMA sample grids of the CIFAR-10 H100 runs, titled with their FID."""
    import matplotlib.image as mpimg

    runs = {run["run"]: run for entry in _load("evidence_gan_h100.json") for run in entry["runs"]}
    names = ("none", "jigsaw", "stitch")
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 3.6))
    lines = []
    for ax, nda in zip(axes, names):
        path = GAN_GRIDS / f"{nda}_s0.png"
        if not path.is_file():
            sys.exit(f"make_figures: {path} is missing (a committed sample grid)")
        run = runs[f"{nda}_s0"]
        ax.imshow(mpimg.imread(path), interpolation="nearest")
        ax.set_title(f"{'no NDA' if nda == 'none' else nda + ' NDA'} (seed 0)\nclassifier FID {run['fid']:.2f}, "
                     f"KID x1e3 {1e3 * run['kid']:.1f}", fontsize=9)
        ax.axis("off")
        lines.append(f"{nda}_s0: FID {run['fid']:.2f}, KID x1e3 {1e3 * run['kid']:.2f}, {run['steps']} G steps")
    steps = runs["none_s0"]["steps"]
    fig.suptitle(f"CIFAR-10 SNGAN, EMA generator after {steps} steps (H100); FID/KID with the project's classifier",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    _save(fig, out / "gan_samples_cifar10_h100.png", colours=128)  # noisy grids: 256 colours is ~175 KB
    plt.close(fig)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures", help="output folder")
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("make_figures: matplotlib is not installed (pip install 'nda[plots]')")
    for title, build in (("few_label_curve", few_label_curve), ("sentence_tradeoff", sentence_tradeoff),
                         ("gan_samples_cifar10_h100", gan_samples)):
        lines = build(plt, args.out)
        print(f"  {title} source rows:\n" + "\n".join(f"    {line}" for line in lines))


if __name__ == "__main__":
    main()
