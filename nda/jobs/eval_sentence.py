"""Evaluate sentence encoders on one suite: 7 STS tasks, two negation probes, word order, counterfactual robustness.

    python tasks/eval_sentence.py                                    # all-MiniLM-L6-v2 (the floor)
    python tasks/eval_sentence.py --models runs/simcse_none,runs/simcse_margin --floor   # + their base model
    python tasks/eval_sentence.py --models sentence-transformers/all-mpnet-base-v2 --tasks STS-B,CANNOT
    python tasks/eval_sentence.py --split dev --models runs/simcse_none,runs/simcse_margin   # choose a recipe

One row per model, columns (x100, higher = better; definitions in ``nda.metrics.sentence_eval``):
STS12-16 (SimCSE's "all" setting), STS-B test, SICK-R test, their average; negation AUROC (CANNOT
SemAntoNeg) and SICK TEST entailment-vs-contradiction AUROC (SICK-EC); word-order AUROC (PAWS-Wiki dev); CAD
IMDb probe accuracy on the original and the counterfactual dev reviews; a second table gives the mean cosine
of each arm of the AUROC tasks. Writes ``<out>.json`` and ``<out>.md`` and prints the tables. A model whose
embeddings hold NaN/inf (a broken weight) is an error naming it and the task, never a score.

``--split dev`` (default ``test``) is for choosing between recipes without fitting them to a test number:
the suite becomes STS-B-dev (STS Benchmark dev split; ``--stsb`` defaults to ``sts-dev.csv``, a folder is read
for its dev file, ``sts-test.csv`` is refused), SICK-R-trial and SICK-EC-trial (SICK-R / SICK-EC on
``SemEval_set == TRIAL``) and ``dev avg`` (mean of the two Spearman columns; the AUROC kept apart). ``--tasks``
takes the names of the chosen split only.

``--models``: comma-separated specs -- sentence-transformers folders or hub names, ``default``
(all-MiniLM-L6-v2), ``tiny-random``, ``tasks/sentence.py`` run folders or their checkpoint folders.
``--floor`` (bare) adds the untouched model the runs started from (all-MiniLM-L6-v2 when none is a run);
``--floor <spec>`` adds that one. Each dataset path is a flag; ``none`` or a missing file skips that task
with a line saying so. Each unique sentence is encoded once per model (longest first, with a progress bar)
and cached under ``--cache-dir`` per (model identity, text set), so re-running is cheap.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from nda.metrics.sentence_eval import DEFAULT_PATHS, DEV_DEFAULT_PATHS, SPLIT_TASKS, TASKS, split_holding, stsb_file_error
from nda.run import cli, parse_config
from nda.run.config import check_choice, check_positive


@dataclass
class EvalSentenceConfig:
    """Evaluate sentence encoders: STS12-16, STS-B, SICK-R, negation (CANNOT, SICK-EC), word order (PAWS), CAD probe.
    ``--split dev``: STS-B dev and SICK TRIAL only, to choose a recipe."""

    models: list[str] = field(default_factory=lambda: ["default"], metadata={"help": "comma-separated model specs (see the module doc)"})
    floor: str = field(default="", metadata={"help": "add the untouched base model's row: bare/'auto' = the runs' base model, or a spec", "bare": "auto"})
    out: str = field(default="runs/eval_sentence/results", metadata={"help": "writes <out>.json and <out>.md"})
    split: str = field(default="test", metadata={
        "help": "test (the numbers to report) | dev (STS-B dev, SICK TRIAL: the numbers to choose a recipe on)"})
    tasks: list[str] = field(default_factory=lambda: ["all"], metadata={
        "help": f"'all' (every task of --split) or a comma-separated subset: --split test of {','.join(TASKS)}; "
                f"--split dev of {','.join(SPLIT_TASKS['dev'])}"})
    sts: str = field(default=DEFAULT_PATHS["sts"], metadata={"help": "folder holding STS12-en-test ... STS16-en-test (SentEval layout)"})
    stsb: str = field(default="auto", metadata={
        "help": f"STS-B file of --split or the folder holding it; auto = {DEFAULT_PATHS['stsb']} (test), "
                f"{DEV_DEFAULT_PATHS['stsb']} (dev)"})
    sick: str = field(default=DEFAULT_PATHS["sick"], metadata={
        "help": "SICK.txt (SICK-R = relatedness, SICK-EC = entailment vs contradiction, of SemEval_set TEST; "
                "TRIAL with --split dev)"})
    cannot: str = field(default=DEFAULT_PATHS["cannot"], metadata={"help": "CANNOT sem_anto_neg.tsv (premise, hypothesis, label)"})
    paws: str = field(default=DEFAULT_PATHS["paws"], metadata={"help": "PAWS-Wiki dev.tsv (id, sentence1, sentence2, label)"})
    cad: str = field(default=DEFAULT_PATHS["cad"], metadata={"help": "CAD folder (sentiment/orig/{train,dev}.tsv, sentiment/new/dev.tsv)"})
    backend: str = field(default="auto", metadata={"help": "auto | st (SentenceTransformer) | nda (SentenceEncoder)"})
    pooling: str = field(default="auto", metadata={"help": "auto (the model's own) | cls | mean (implies --backend nda)"})
    max_length: int | None = field(default=None, metadata={
        "help": "max tokens per text for every model (default: the first row's own, the floor's with --floor)"})
    batch_size: int = field(default=64, metadata={"help": "encoding batch size"})
    device: str = field(default="auto", metadata={"help": "cpu | cuda | auto"})
    cache_dir: str = field(default="~/.cache/nda/sentence_eval", metadata={"help": "embedding cache ('none': off)"})
    probe_c: float | None = field(default=None, metadata={"help": "fixed C of the CAD probe (default: 5-fold CV on train)"})
    progress: bool = field(default=True, metadata={"help": "progress bars"})


def resolve_split(cfg: EvalSentenceConfig) -> EvalSentenceConfig:
    """``--tasks all`` and ``--stsb auto`` -> the split's task list and STS-B file, so the saved config says
    what ran (a test run's config reads as before: every test task, sts-test.csv)."""
    check_choice(cfg, "split", tuple(SPLIT_TASKS))
    defaults = DEV_DEFAULT_PATHS if cfg.split == "dev" else DEFAULT_PATHS
    tasks = list(SPLIT_TASKS[cfg.split]) if cfg.tasks == ["all"] else cfg.tasks
    return dataclasses.replace(cfg, tasks=tasks, stsb=defaults["stsb"] if cfg.stsb == "auto" else cfg.stsb)


def check_config(cfg: EvalSentenceConfig) -> None:
    """Fail on a bad flag before loading anything (``cfg`` as :func:`resolve_split` returns it)."""
    from nda.metrics.sentence_encoders import BACKENDS

    if not cfg.models:
        raise ValueError("--models must name at least one model")
    names = SPLIT_TASKS[cfg.split]
    unknown = [t for t in cfg.tasks if t not in names]
    if unknown or not cfg.tasks:
        other = split_holding(unknown)
        hint = f" ({','.join(unknown)}: --split {other} tasks)" if other else ""
        raise ValueError(f"--tasks must be a non-empty subset of {','.join(names)} under --split {cfg.split}, "
                         f"got {cfg.tasks}{hint}")
    stsb_task = "STS-B-dev" if cfg.split == "dev" else "STS-B"
    wrong = stsb_file_error(stsb_task, cfg.stsb) if stsb_task in cfg.tasks else None
    if wrong:
        raise ValueError(f"--stsb: {wrong}")
    check_choice(cfg, "backend", BACKENDS)
    check_choice(cfg, "pooling", ("auto", "cls", "mean"))
    check_positive(cfg, "batch_size")
    if cfg.probe_c is not None and not cfg.probe_c > 0:
        raise ValueError(f"--probe-c must be > 0, got {cfg.probe_c}")


def model_list(cfg: EvalSentenceConfig) -> list[tuple[str, str]]:
    """``(label, spec)`` per row: the floor first (when asked for), then ``--models`` in order, no duplicates."""
    from nda.metrics.sentence_encoders import run_base_model

    floors: list[str] = []
    if cfg.floor in ("auto", "true"):
        floors = list(dict.fromkeys(b for b in (run_base_model(m) for m in cfg.models) if b)) or ["default"]
    elif cfg.floor not in ("", "none", "false"):
        floors = [cfg.floor]
    def label(spec: str) -> str:
        return "all-MiniLM-L6-v2 (default)" if spec == "default" else spec

    rows = [(f"floor: {label(f)}", f) for f in floors if f not in cfg.models]
    return rows + [(label(m), m) for m in cfg.models]


def main(argv: list[str] | None = None) -> dict:
    cfg = resolve_split(parse_config(EvalSentenceConfig, argv))
    check_config(cfg)

    from nda.metrics.sentence_encoders import load_sentence_model, resolve_device
    from nda.metrics.sentence_eval import EmbeddingCache, embed_suite, load_suite, results_markdown, score_suite
    from nda.reporting import save_report

    t_start = time.perf_counter()
    paths = {key: getattr(cfg, key) for key in DEFAULT_PATHS}
    suite = load_suite(paths, cfg.tasks, cfg.split)
    for name, reason in suite.skipped.items():
        print(f"{name}: {reason}")
    if not suite.tasks:
        raise FileNotFoundError("every dataset was skipped (see the lines above): nothing to evaluate")
    texts = suite.texts()
    print(f"{len(suite.tasks)} tasks, {len(texts)} unique texts")
    cache = None if cfg.cache_dir.lower() in ("", "none") else EmbeddingCache(Path(cfg.cache_dir).expanduser())
    device = resolve_device(cfg.device)
    probe_kwargs = {"C": cfg.probe_c}

    rows = []
    max_length = cfg.max_length
    for label, spec in model_list(cfg):
        t0 = time.perf_counter()
        model = load_sentence_model(spec, backend=cfg.backend, pooling=None if cfg.pooling == "auto" else cfg.pooling,
                                    max_length=max_length, device=device)
        if max_length is None:  # every row at the first row's (the floor's) length: a trained model saved with
            max_length = model.max_length  # its training length must not be compared at another truncation
            print(f"--max-length not given: every model encodes at most {max_length} tokens (the first row's)")
        load_s = time.perf_counter() - t0
        print(f"{label}: {model.description}")
        emb = embed_suite(suite, model.encode, model.identity, cache, batch_size=cfg.batch_size, progress=cfg.progress,
                          model=label)
        metrics, score_s = score_suite(suite, emb, probe_kwargs, model=label)
        timing = {"load_s": load_s, "embeddings_from_cache": emb.cached,
                  "tasks": {n: {"new_texts": emb.new_texts[n], "encode_s": emb.seconds[n], "score_s": score_s[n]}
                            for n in suite.tasks},
                  "total_s": time.perf_counter() - t0}
        rows.append({"model": label, "spec": spec, "backend": model.backend, "description": model.description,
                     "identity": model.identity, "metrics": metrics, "timing": timing})
        del model

    markdown = results_markdown(rows, suite) + "\n" + timing_markdown(rows)
    results = {
        "config": dataclasses.asdict(cfg),
        "device": device,
        "unique_texts": len(texts),
        "tasks": {n: {"source": t.source, "size": t.size, "notes": t.notes} for n, t in suite.tasks.items()},
        "skipped": suite.skipped,
        "rows": rows,
        "wall_s": time.perf_counter() - t_start,
    }
    out = Path(cfg.out)
    save_report(out.with_suffix(".json") if out.suffix in ("", ".json", ".md") else Path(f"{out}.json"), results, markdown)
    return results


def timing_markdown(rows: list[dict]) -> str:
    """Wall time per model and task: encoding (a text is charged to the first task that needs it) and scoring."""
    lines = ["| model | step | texts encoded | encode s | score s |", "|---|---|---:|---:|---:|"]
    for row in rows:
        t = row["timing"]
        cached = " (embeddings from the cache)" if t["embeddings_from_cache"] else ""
        lines.append(f"| {row['model']} | load the model: {t['load_s']:.1f} s | | | |")
        for name, v in t["tasks"].items():
            lines.append(f"| {row['model']} | {name}{cached} | {v['new_texts']} | {v['encode_s']:.1f} | {v['score_s']:.2f} |")
        lines.append(f"| {row['model']} | total: {t['total_s']:.1f} s | | | |")
    return "\n".join(lines) + "\n"


def run(prog: str = "nda-eval-sentence") -> None:
    """The command line: ``nda-eval-sentence``, ``python -m nda.jobs.eval_sentence``, ``python tasks/eval_sentence.py``."""
    cli(main, prog)


if __name__ == "__main__":
    run()
