"""Text classification with label-flipped counterfactuals as extra training data (Kaushik et al., ICLR 2020;
Wang & Culotta, AAAI 2021): knowing what a review is *not* is cheap supervision.

    # frozen encoder + logistic regression (seconds once embeddings are cached); compare augmentations, 3 seeds
    python tasks/classify.py --mode probe --train $CAD/orig/train.tsv \\
        --eval orig_dev=$CAD/orig/dev.tsv,cad_dev=$CAD/new/dev.tsv \\
        --augment none,counterfactual,human:$CAD/../combined/paired/train_paired.tsv --repeats 3 --out-dir runs/cad_probe
    # few-label curve on SST-2 (class-balanced seeded subsets), with and without counterfactuals
    python tasks/classify.py --mode probe --train $SENTEVAL/SST/binary --train-size 20,50,100,500,all \\
        --eval sst2_dev=$SENTEVAL/SST/binary@dev,cad_dev=$CAD/new/dev.tsv --augment none,counterfactual --repeats 3
    # end to end: encoder + linear head (AdamW, warmup, mixed precision, checkpoints, exact --resume)
    accelerate launch tasks/classify.py --mode finetune --train ... --augment counterfactual --steps 500

``--augment counterfactual`` runs the ``counterfactual`` negative (``--counterfactual`` spec) over a seeded
``--augment-ratio`` share of the training originals and adds only the ones it could flip, with flipped
labels; ``--augment human:<file>`` adds given counterfactuals (a CAD paired file matches each chosen
original to its partner, so few-label subsets get exactly their own counterfactuals); ``--cf-filter probe``
keeps only automatic counterfactuals that a probe trained on the originals scores as flipped.
``--train-size`` totals are class-balanced subsets drawn per seed (``all``: every example).
Writes ``results.json`` and ``results.md`` (one row per train size x augmentation, mean +- sd over seeds).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch

import nda
from nda.data.cache import sha256_file
from nda.data.labeled_text import (LABEL_NAMES, LabeledTexts, load_counterfactual_pairs, load_labeled_texts,
                                   subset_per_class)
from nda.reporting import plot_metrics
from nda.run import Run, RunConfig, cli, data_fingerprint, parse_config
from nda.run.config import check_choice, check_non_negative, check_positive
from nda.run.run import make_accelerator
from nda.run.schedule import MicroSchedule, set_lr, warmup_lr


@dataclass
class ClassifyConfig(RunConfig):
    """Train a text classifier on a sentence encoder, optionally with counterfactual augmentation."""

    mode: str = field(default="probe", metadata={"help": "probe (frozen encoder + logistic regression) | finetune"})
    train: str | None = field(default=None, metadata={"help": "training set: .tsv/.csv, SentEval folder, hf:<name>"})
    train_split: str = field(default="train", metadata={"help": "split of --train where the source has several"})
    eval: list[str] = field(default_factory=list, metadata={"help": "name=source[@split],... evaluation sets"})
    label_map: str = field(default="sentiment", metadata={"help": "sentiment | nli (label integers the counterfactual flips)"})
    model: str = field(default="default", metadata={"help": "sentence encoder: default (all-MiniLM-L6-v2), folder, hub name, tiny-random"})
    max_length: int = field(default=256, metadata={"help": "tokens per text (reviews are long)"})
    augment: list[str] = field(default_factory=lambda: ["none"], metadata={
        "help": "none | counterfactual (the --counterfactual spec) | any label-flipping spec "
                "(counterfactual:strategy=rules) | human:<file>; probe mode takes a comma list to compare"})
    augment_ratio: float = field(default=1.0, metadata={"help": "share of training originals given an automatic counterfactual"})
    counterfactual: str = field(default="counterfactual", metadata={"help": "nda.build spec of the label-flipping negative"})
    cf_filter: str = field(default="none", metadata={"help": "none | probe: keep counterfactuals a probe on originals scores as flipped"})
    train_size: list[str] = field(default_factory=lambda: ["all"], metadata={"help": "class-balanced totals, e.g. 50,100,all"})
    repeats: int = field(default=1, metadata={"help": "probe mode: seeds --seed .. --seed + repeats - 1"})
    probe_c: float | None = field(default=None, metadata={"help": "probe: inverse L2 strength (default: 5-fold CV on train)"})
    batch_size: int = field(default=16, metadata={"help": "finetune: texts per process per micro-batch"})
    lr: float = field(default=3e-5, metadata={"help": "finetune: peak AdamW learning rate"})
    weight_decay: float = 0.01
    warmup_steps: int = field(default=0, metadata={"help": "finetune: linear warmup, then linear decay to 0"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "finetune: gradient clipping (0: off)"})
    eval_every: int = field(default=0, metadata={"help": "finetune: evaluate every N steps (0: at the end)"})
    eval_batch_size: int = 64
    cache_dir: str | None = field(default=None, metadata={"help": "embedding cache (default $NDA_CACHE or ~/.cache/nda)"})
    out_dir: str = "runs/classify"
    steps: int = 300

    resume_may_change = RunConfig.resume_may_change - {"steps"} | {"eval", "eval_every", "eval_batch_size", "cache_dir"}


def validate(cfg: ClassifyConfig) -> ClassifyConfig:
    cfg.check_run_fields()
    check_choice(cfg, "mode", ("probe", "finetune"))
    check_choice(cfg, "label_map", tuple(LABEL_NAMES))
    check_choice(cfg, "cf_filter", ("none", "probe"))
    check_positive(cfg, "max_length", "repeats", "batch_size", "eval_batch_size")
    check_non_negative(cfg, "weight_decay", "warmup_steps", "max_grad_norm", "eval_every", "lr")
    if cfg.train is None:
        raise ValueError("--train is required (a .tsv/.csv file, a SentEval folder or hf:<name>)")
    if not 0.0 < cfg.augment_ratio <= 1.0:
        raise ValueError(f"--augment-ratio must be in (0, 1], got {cfg.augment_ratio}")
    for size in cfg.train_size:
        if size != "all" and not (size.isdigit() and int(size) > 0):
            raise ValueError(f"--train-size must be positive ints or 'all', got {size!r}")
    if cfg.mode == "finetune" and (len(cfg.augment) > 1 or len(cfg.train_size) > 1 or cfg.repeats > 1):
        raise ValueError("--mode finetune trains one model: give one --augment, one --train-size and --repeats 1 "
                         "(loop over them in a script, one --out-dir each)")
    if cfg.mode == "probe" and cfg.resume is not None:
        raise ValueError("--resume: --mode probe trains nothing and keeps no checkpoints to continue from; run it "
                         "again with --overwrite (the embeddings are cached, so it takes seconds)")
    if cfg.probe_c is not None and not cfg.probe_c > 0:
        raise ValueError(f"--probe-c must be > 0, got {cfg.probe_c}")
    for how in cfg.augment:
        if how.startswith("human:") and not Path(how.split(":", 1)[1]).is_file():
            raise FileNotFoundError(f"--augment {how}: file not found")
    build_negatives(cfg)  # a bad --augment / --counterfactual spec fails under its flag, before any loading
    parse_eval_specs(cfg.eval)
    from nda.models.sentence import check_model_name

    check_model_name(cfg.model)  # a missing model folder is one line, before the run folder is touched
    return cfg


def parse_eval_specs(specs: list[str]) -> dict[str, tuple[str, str | None]]:
    """``["dev=path@dev", "cad=file.tsv"]`` -> ``{"dev": ("path", "dev"), "cad": ("file.tsv", None)}``."""
    out: dict[str, tuple[str, str | None]] = {}
    for spec in specs:
        name, sep, source = spec.partition("=")
        if not sep or not name or not source:
            raise ValueError(f"--eval entries must look like name=source[@split], got {spec!r}")
        if name in out:
            raise ValueError(f"--eval names must be unique, {name!r} is given twice")
        src, at, split = source.rpartition("@")
        out[name] = (src, split) if at and "/" not in split else (source, None)
    return out


def build_negatives(cfg: ClassifyConfig) -> dict:
    """The label-flipping negative of each automatic ``--augment`` entry (``counterfactual``: the
    ``--counterfactual`` spec), by entry."""
    automatic = [how for how in cfg.augment if how != "none" and not how.startswith("human:")]
    return {how: build_counterfactual(cfg.counterfactual, "--counterfactual") if how == "counterfactual"
            else build_counterfactual(how, "--augment") for how in automatic}


def build_counterfactual(spec: str, flag: str = "--counterfactual"):
    """The label-flipping negative of ``spec`` (given as ``flag``): text, and declared to flip labels."""
    negative = nda.build(spec, modality="text", argument=flag)
    if negative is None:
        raise ValueError(f"{flag} must name a label-flipping text negative, got none")
    parts = nda.leaves(negative)
    if not all(getattr(p, "flips_labels", False) for p in parts):
        raise ValueError(f"{flag} {spec!r} must flip labels (e.g. 'counterfactual'); "
                         f"{[getattr(p, 'name', p) for p in parts if not getattr(p, 'flips_labels', False)]} do not")
    return negative


def main(argv: list[str] | None = None) -> dict:
    cfg = validate(parse_config(ClassifyConfig, argv))
    negatives = build_negatives(cfg)
    train = load_labeled_texts(cfg.train, cfg.train_split, cfg.label_map)
    evals = {name: load_labeled_texts(src, split, cfg.label_map) for name, (src, split) in parse_eval_specs(cfg.eval).items()}
    acc = make_accelerator(cfg)
    with Run(cfg, acc, job="classify") as run:
        humans = [Path(how.split(":", 1)[1]) for how in cfg.augment if how.startswith("human:")]
        run.bind_data(lambda: data_fingerprint(train.texts, train.labels, [sha256_file(p) for p in humans]),
                      f"{train.name} ({len(train)} texts)" + "".join(f" + {p.name}" for p in humans))
        acc.print(f"train: {train.name} ({len(train)}: {train.counts()}); eval: "
                  + ", ".join(f"{k} ({len(v)})" for k, v in evals.items()))
        if cfg.mode == "probe":
            rows = probe_mode(cfg, run, train, evals, negatives)
        else:
            rows = run_finetune(cfg, run, train, evals, negatives)
        return report(cfg, run, train, evals, rows)


def probe_mode(cfg: ClassifyConfig, run: Run, train: LabeledTexts, evals: dict[str, LabeledTexts],
              negatives: dict) -> list[dict]:
    """Probe mode: frozen embeddings and logistic regressions on the main process; no training loop, no
    checkpoints (``validate`` refuses ``--resume``). The encoder loads first, so a bad model writes nothing;
    then the run folder is started (``config.json``)."""
    embed = CachedEncoder(cfg) if run.is_main else None
    run.start()
    return run_probe(cfg, embed, train, evals, negatives) if run.is_main else []


def report(cfg: ClassifyConfig, run: Run, train: LabeledTexts, evals: dict[str, LabeledTexts], rows: list[dict]
           ) -> dict:
    """``results.md`` (the summary table), ``results.json`` (summary and per-seed rows) and, in finetune mode,
    ``loss_plot.png`` (probe mode has no training curve)."""
    names = list(evals)
    summary = summarise(rows, names) if run.is_main else []
    if run.is_main:
        table = markdown(summary, names, f"{cfg.mode}: {cfg.model} on {train.name}")
        (run.out_dir / "results.md").write_text(table)
        print(table)
    out = run.finish({"task": "classify", "mode": cfg.mode, "train": train.name,
                      "eval": {k: v.name for k, v in evals.items()}, "summary": summary, "rows": rows})
    if cfg.mode == "finetune" and run.is_main:
        plot_metrics(run.out_dir / "metrics.csv", run.out_dir / "loss_plot.png",
                     {"loss": ("loss",), "training batch accuracy": ("train_acc",),
                      "eval accuracy (%)": tuple(f"acc_{name}" for name in names)})
    return out


# ----------------------------------------------------------------------------------------- augmentation
def augmentation(how: str, train: LabeledTexts, chosen: list[int], cfg: ClassifyConfig, negatives: dict, seed: int) -> LabeledTexts:
    """The extra (counterfactual) examples ``how`` adds for the chosen training originals."""
    empty = LabeledTexts([], [], how, cfg.label_map)
    if how == "none":
        return empty
    if not how.startswith("human:"):  # an automatic, label-flipping negative
        negative = negatives[how]
        g = torch.Generator().manual_seed(seed)
        count = max(1, round(cfg.augment_ratio * len(chosen)))
        pick = sorted(torch.randperm(len(chosen), generator=g)[:count].tolist())
        texts = [train.texts[chosen[i]] for i in pick]
        out = negative(texts, labels=[train.labels[chosen[i]] for i in pick], label_map=cfg.label_map, generator=g)
        keep = [i for i, ok in enumerate(out.flipped) if ok]
        return LabeledTexts([out.texts[i] for i in keep], [int(out.labels[i]) for i in keep], how,
                            cfg.label_map, {"attempted": len(texts), "flipped": len(keep)},
                            sources=[chosen[pick[i]] for i in keep])
    path = Path(how.split(":", 1)[1])
    try:
        partners = load_counterfactual_pairs(path, cfg.label_map)
    except ValueError:
        partners = None
    if partners is None:  # an unpaired file: all of it, which only matches "all" originals
        if len(chosen) != len(train):
            raise ValueError(f"--augment {how}: matching human counterfactuals to a --train-size subset needs a paired "
                             "file with a batch_id column (CAD's combined/paired/*.tsv)")
        return load_labeled_texts(path, label_map=cfg.label_map)
    texts, labels, sources, missing = [], [], [], 0
    for i in chosen:
        found = partners.get(train.texts[i], [])
        missing += not found
        texts += [t for t, _ in found]
        labels += [y for _, y in found]
        sources += [i] * len(found)
    return LabeledTexts(texts, labels, f"human:{path.name}", cfg.label_map,
                        {"originals_without_partner": missing}, sources=sources)


# ------------------------------------------------------------------------------------------------ probe
class CachedEncoder:
    """The frozen ``--model`` as ``texts -> (N, D)`` numpy embeddings, each text list encoded once and cached
    under the model's identity (the evaluation suite's cache, so both jobs share it)."""

    def __init__(self, cfg: ClassifyConfig) -> None:
        from nda.data.cache import default_cache_dir
        from nda.metrics.sentence_encoders import load_sentence_model
        from nda.metrics.sentence_eval import EmbeddingCache

        self.model = load_sentence_model(cfg.model, max_length=cfg.max_length)
        self.cache = EmbeddingCache(Path(cfg.cache_dir or default_cache_dir()) / "embeddings")
        self.batch_size, self.progress, self.name = cfg.eval_batch_size, cfg.progress, cfg.model

    def __call__(self, texts: list[str]):
        from nda.metrics.sentence_eval import encode_texts

        emb = self.cache.load(self.model.identity, texts)
        if emb is None:
            emb = encode_texts(self.model.encode, texts, self.batch_size, progress=self.progress, model=self.name)
            self.cache.save(self.model.identity, texts, emb)
        return emb.numpy()


def run_probe(cfg: ClassifyConfig, embed: CachedEncoder, train: LabeledTexts, evals: dict[str, LabeledTexts],
              negatives: dict) -> list[dict]:
    import numpy as np

    from nda.metrics.probe import logistic_probe

    plan = [(size, cfg.seed + r, list(range(len(train))) if size == "all" else subset_per_class(train, int(size), cfg.seed + r))
            for size in cfg.train_size for r in range(cfg.repeats)]
    needed = sorted(set().union(*(chosen for _, _, chosen in plan)))  # encode only what some subset uses
    row_of = {i: n for n, i in enumerate(needed)}
    train_x = embed([train.texts[i] for i in needed])
    eval_xy = {name: (embed(ev.texts), np.asarray(ev.labels)) for name, ev in evals.items()}
    rows = []
    for size, seed, chosen in plan:
        base_x = train_x[[row_of[i] for i in chosen]]
        base_y = np.asarray([train.labels[i] for i in chosen])
        for how in cfg.augment:
            added = augmentation(how, train, chosen, cfg, negatives, seed)
            if not how.startswith("human:") and cfg.cf_filter == "probe" and len(added):
                added = probe_filter(added, embed, base_x, base_y, cfg, seed)
            x, y, groups = base_x, base_y, list(chosen)
            if len(added):
                x = np.concatenate([base_x, embed(added.texts)])
                y = np.concatenate([base_y, np.asarray(added.labels)])
                groups += added.sources if added.sources is not None else [-1 - i for i in range(len(added))]
            # C by CV with each counterfactual in its original's fold: a held-out review's near-copy with the
            # opposite label must not sit in the training folds
            res = logistic_probe(x, y, eval_xy, C=cfg.probe_c, seed=seed, groups=groups)
            rows.append({"train_size": size, "seed": seed, "augment": how, "n_original": len(chosen),
                         "n_added": len(added), "C": res.C, **added.meta,
                         **{f"acc_{k}": 100 * v for k, v in res.accuracy.items()}})
            print(f"size {size} seed {seed} {how}: " + "  ".join(f"{k} {100 * v:.2f}" for k, v in res.accuracy.items()))
    return rows


def probe_filter(added: LabeledTexts, embed, base_x, base_y, cfg: ClassifyConfig, seed: int) -> LabeledTexts:
    """Keep the counterfactuals that a probe trained on the originals assigns their flipped label."""
    from nda.metrics.probe import logistic_probe

    res = logistic_probe(base_x, base_y, {}, C=cfg.probe_c, seed=seed)
    pred = res.model.predict(embed(added.texts))
    keep = [i for i, p in enumerate(pred) if int(p) == added.labels[i]]
    meta = {**added.meta, "kept_by_filter": len(keep)}
    sources = [added.sources[i] for i in keep] if added.sources is not None else None
    return LabeledTexts([added.texts[i] for i in keep], [added.labels[i] for i in keep], added.name,
                        added.label_map, meta, sources)


# --------------------------------------------------------------------------------------------- finetune
def run_finetune(cfg: ClassifyConfig, run: Run, train: LabeledTexts, evals: dict[str, LabeledTexts], negatives: dict) -> list[dict]:
    from nda.models.sentence import SentenceEncoder
    from nda.models.text_classifier import TextClassifier

    acc = run.acc
    size = cfg.train_size[0]
    chosen = list(range(len(train))) if size == "all" else subset_per_class(train, int(size), cfg.seed)
    added = augmentation(cfg.augment[0], train, chosen, cfg, negatives, cfg.seed)
    if cfg.cf_filter == "probe" and len(added):
        import numpy as np

        embed = CachedEncoder(cfg)
        added = probe_filter(added, embed, embed(train.texts)[chosen],
                             np.asarray([train.labels[i] for i in chosen]), cfg, cfg.seed)
    texts = [train.texts[i] for i in chosen] + added.texts
    labels = torch.tensor([train.labels[i] for i in chosen] + added.labels)
    acc.print(f"train: {len(chosen)} originals + {len(added)} {cfg.augment[0]} = {len(texts)} examples")

    torch.manual_seed(cfg.seed)  # head init: identical on every process
    model = TextClassifier(SentenceEncoder.from_pretrained(cfg.model, max_length=cfg.max_length), train.num_classes)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model, opt = acc.prepare(model, opt)
    run.restore(model=model, optimizer=opt)
    core = acc.unwrap_model(model)

    def evaluate() -> dict[str, float]:
        if not run.is_main:
            return {}
        out = {f"acc_{name}": 100 * float((core.predict(ev.texts, cfg.eval_batch_size) == torch.tensor(ev.labels)).float().mean())
               for name, ev in evals.items()}
        model.train()
        return out

    micro_steps = MicroSchedule(cfg.grad_accum)
    for step in run.loop():
        set_lr(opt, lr_at(step, cfg))
        for micro, i in micro_steps.micro_steps(step):
            idx = run.batch_indices(i, len(texts), cfg.batch_size)
            features = core.tokenize([texts[i] for i in idx.tolist()], device=run.device)
            with run.accumulate(model, micro):
                logits = model(**features)
                loss = torch.nn.functional.cross_entropy(logits.float(), labels[idx].to(run.device))
                acc.backward(loss / cfg.grad_accum)
        if cfg.max_grad_norm:
            acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if run.log_due:
            run.log({"loss": loss.detach(), "train_acc": (logits.argmax(1) == labels[idx].to(run.device)).float().mean(),
                     "lr": opt.param_groups[0]["lr"]})
        if run.every(cfg.eval_every) and run.step + 1 < cfg.steps:
            scores = evaluate()
            if run.is_main:
                run.tracker.log(scores, run.step + 1)
            acc.wait_for_everyone()
    scores: dict[str, float] = {}
    if not run.stopped_early:  # a --max-minutes stop checkpoints and leaves evaluation to the resumed run
        scores = evaluate()
        if run.is_main:
            run.tracker.log(scores, run.step)
            core.save_pretrained(run.out_dir / "model")
    return [{"train_size": size, "seed": cfg.seed, "augment": cfg.augment[0], "n_original": len(chosen),
             "n_added": len(added), "steps": run.step, "stopped_early": run.stopped_early, **added.meta, **scores}]


def lr_at(step: int, cfg: ClassifyConfig) -> float:
    """Linear warmup over ``warmup_steps``, then linear decay to 0 at ``steps``: a pure function of the step."""
    return warmup_lr(step, cfg.lr, cfg.warmup_steps, cfg.steps, "linear")


# ---------------------------------------------------------------------------------------------- report
def summarise(rows: list[dict], eval_names: list[str]) -> list[dict]:
    """Mean and sd over seeds per (train size, augmentation)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["train_size"], r["augment"]), []).append(r)
    out = []
    for (size, how), rs in groups.items():
        row = {"train_size": size, "augment": how, "seeds": len(rs),
               "n_original": statistics.mean(r["n_original"] for r in rs), "n_added": statistics.mean(r["n_added"] for r in rs)}
        for name in eval_names:
            vals = [r[f"acc_{name}"] for r in rs if f"acc_{name}" in r]
            if vals:
                row[f"acc_{name}"] = statistics.mean(vals)
                row[f"sd_{name}"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out.append(row)
    return out


def markdown(summary: list[dict], eval_names: list[str], title: str) -> str:
    head = ["train size", "augment", "seeds", "originals", "added"] + [f"{n} acc" for n in eval_names]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        cells = [r["train_size"], r["augment"], str(r["seeds"]), f"{r['n_original']:.0f}", f"{r['n_added']:.0f}"]
        cells += [f"{r[f'acc_{n}']:.2f} ± {r[f'sd_{n}']:.2f}" if f"acc_{n}" in r else "-" for n in eval_names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(prog: str = "nda-classify") -> None:
    """The command line: ``nda-classify``, ``python -m nda.jobs.classify``, ``python tasks/classify.py``."""
    cli(main, prog)


if __name__ == "__main__":
    run()
