"""One evaluation suite for sentence encoders: the 7 STS tasks, negation and word-order sensitivity, and a
counterfactual-robustness probe -- from frozen embeddings, each unique sentence encoded once.

Why these: STS rewards putting "the movie was good" near "the movie was not good" (gold scores rate such
pairs as partly similar), so an objective that helps negation can only show its worth next to tasks that
measure it. Every number is x100 and higher = better:

=========  =========================================================================================
STS12-16   Spearman of cos(s1, s2) vs gold over *all* pairs of a year's subsets (SimCSE's "all" setting),
           SentEval's subsets (STS13: no SMT), pairs without a gold score skipped
STS-B      Spearman on the STS Benchmark test split (1,379 pairs)
SICK-R     Spearman on SICK relatedness, ``SemEval_set == TEST``
STS avg    mean of the seven (only when all seven ran)
CANNOT     negation sensitivity: AUROC of ``-cos`` for negated/antonym pairs (label 1) against paraphrases
           (label 0) = P(cos(negated pair) < cos(paraphrase pair)); 50 = blind to negation; the mean cosine of
           each arm is reported too (a low AUROC can come from paraphrases as much as from negations)
SICK-EC    a second negation probe: AUROC of ``cos`` for SICK TEST entailment pairs (label 1) against
           contradiction pairs (label 0; most carry a negation cue) = P(cos(entailment) > cos(contradiction))
PAWS       word-order sensitivity: AUROC of ``cos`` for paraphrases (label 1) against non-paraphrases
           with the same words (label 0)
CAD        counterfactual robustness: logistic probe (:func:`nda.metrics.probe.logistic_probe`) on frozen
           embeddings of CAD IMDb ``orig/train``; accuracy on ``orig/dev`` and on the human
           counterfactuals ``new/dev`` (same reviews minimally edited to flip the label)
=========  =========================================================================================

The dev suite (``split="dev"``, :data:`DEV_TASKS`) is for *choosing* between recipes without looking at a
test number ("tune on dev splits, never fit to one number"): the same definitions on other splits, so a
choice made there is not fitted to the numbers reported above.

=============  =====================================================================================
STS-B-dev      STS-B Spearman on the STS Benchmark dev split (``sts-dev.csv``, 1,500 pairs)
SICK-R-trial   SICK-R Spearman on ``SemEval_set == TRIAL`` (495 pairs)
SICK-EC-trial  SICK-EC AUROC on the TRIAL entailment and contradiction pairs
dev avg        mean of the two Spearman columns (the AUROC stays separate: another scale, another question)
=============  =====================================================================================

Flow: :func:`load_suite` (``split`` picks the task list; missing datasets become "skipped" lines, never
errors) -> :func:`embed_suite` (dedupe, longest-first batches, a progress bar, an on-disk cache keyed by (model
identity, text set)) -> :func:`score_suite` -> :func:`results_markdown`.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nda.data.labeled_text import load_labeled_texts
from nda.data.sentence_pairs import (
    load_labelled_pairs,
    load_senteval_sts_year,
    load_sick_entailment,
    load_sick_relatedness,
)
from nda.files import atomic_path, sha256_bytes
from nda.metrics.finite import check_finite_embeddings, nonfinite_rows
from nda.metrics.sts import load_sts, spearman

__all__ = [
    "split_holding",
    "stsb_file_error",
    "TASKS",
    "STS_TASKS",
    "DEV_TASKS",
    "DEV_STS_TASKS",
    "SPLIT_TASKS",
    "DEFAULT_PATHS",
    "DEV_DEFAULT_PATHS",
    "SuiteTask",
    "Suite",
    "load_suite",
    "EmbeddingCache",
    "SuiteEmbeddings",
    "encode_texts",
    "embed_suite",
    "score_suite",
    "results_markdown",
]

STS_TASKS = ("STS12", "STS13", "STS14", "STS15", "STS16", "STS-B", "SICK-R")
TASKS = (*STS_TASKS, "CANNOT", "SICK-EC", "PAWS", "CAD")
DEV_STS_TASKS = ("STS-B-dev", "SICK-R-trial")
DEV_TASKS = (*DEV_STS_TASKS, "SICK-EC-trial")
# a suite is one split's tasks: a test name in a dev suite (or the reverse) is refused, never mixed in
SPLIT_TASKS: dict[str, tuple[str, ...]] = {"test": TASKS, "dev": DEV_TASKS}

# relative to the repository root, where the README's commands run (the issue's ``../shared/data/text``)
DEFAULT_PATHS: dict[str, str] = {
    "sts": "../shared/data/text/senteval/STS",  # holds STS12-en-test ... STS16-en-test
    "stsb": "../shared/data/text/stsbenchmark/sts-test.csv",
    "sick": "../shared/data/text/senteval/SICK/SICK.txt",
    "cannot": "../shared/data/text/cannot/sem_anto_neg.tsv",
    "paws": "../shared/data/text/paws-wiki/dev.tsv",
    "cad": "../shared/data/text/cad",  # holds sentiment/orig/{train,dev}.tsv and sentiment/new/dev.tsv
}
# what differs on the dev split (the SICK file holds every SemEval_set)
DEV_DEFAULT_PATHS: dict[str, str] = {**DEFAULT_PATHS, "stsb": "../shared/data/text/stsbenchmark/sts-dev.csv"}
_PATH_OF_TASK = {**{f"STS1{y}": "sts" for y in range(2, 7)}, "STS-B": "stsb", "SICK-R": "sick", "CANNOT": "cannot",
                 "SICK-EC": "sick", "PAWS": "paws", "CAD": "cad",
                 "STS-B-dev": "stsb", "SICK-R-trial": "sick", "SICK-EC-trial": "sick"}
# (task it repeats, the split its loader reads): one loader per definition, the split is an argument
_DEFINITION = {"STS-B": ("STS-B", "test"), "SICK-R": ("SICK-R", "TEST"), "SICK-EC": ("SICK-EC", "TEST"),
               "STS-B-dev": ("STS-B", "dev"), "SICK-R-trial": ("SICK-R", "TRIAL"), "SICK-EC-trial": ("SICK-EC", "TRIAL")}


@dataclass
class SuiteTask:
    """One loaded task. ``kind``: ``sts`` (pairs + gold scores), ``auroc`` (pairs + 0/1 labels, positive class
    scored by ``sign * cos``; ``arms`` names label 0 and label 1) or ``probe`` (``splits``: name -> (texts,
    labels); the first split trains)."""

    name: str
    kind: str
    source: str
    sentences1: list[str] = field(default_factory=list)
    sentences2: list[str] = field(default_factory=list)
    targets: list[float] = field(default_factory=list)
    sign: float = 1.0
    arms: tuple[str, str] = ("label 0", "label 1")
    splits: dict[str, tuple[list[str], list[int]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def texts(self) -> list[str]:
        if self.kind == "probe":
            return [t for texts, _ in self.splits.values() for t in texts]
        return [*self.sentences1, *self.sentences2]

    @property
    def size(self) -> int:
        return sum(len(y) for _, y in self.splits.values()) if self.kind == "probe" else len(self.targets)


@dataclass
class Suite:
    """Loaded tasks (in the order of their split's :data:`SPLIT_TASKS`) and the ones skipped, with the reason;
    ``split``: ``test`` or ``dev`` (which columns and notes the report shows)."""

    tasks: dict[str, SuiteTask]
    skipped: dict[str, str]
    split: str = "test"

    def texts(self) -> list[str]:
        """Every unique text of every task, sorted (a deterministic text set for the cache key)."""
        return sorted({t for task in self.tasks.values() for t in task.texts()})


def _load_task(name: str, path: Path) -> SuiteTask:
    definition, split = _DEFINITION.get(name, (name, ""))
    if name.startswith("STS1"):
        year = 2000 + int(name[3:])
        loaded = load_senteval_sts_year(path / f"STS{name[3:]}-en-test", year)
        d = loaded.data
        notes = [*loaded.notes, f"{len(d)} pairs from {', '.join(f'{k} ({v})' for k, v in loaded.subsets.items())}"]
        return SuiteTask(name, "sts", d.source, d.sentences1, d.sentences2, d.scores, notes=notes)
    if definition == "STS-B":
        d = load_sts(path, split)
        note = f"{len(d)} pairs" if split == "test" else f"{len(d)} pairs (STS Benchmark {split} split)"
        return SuiteTask(name, "sts", d.source, d.sentences1, d.sentences2, d.scores, notes=[note])
    if definition == "SICK-R":
        d = load_sick_relatedness(path, split)
        note = "SentEval's SICK_test_annotated has 4,927" if split == "TEST" else "not TRAIN, not TEST"
        return SuiteTask(name, "sts", d.source, d.sentences1, d.sentences2, d.scores,
                         notes=[f"{len(d)} pairs (SemEval_set == {split} of SICK.txt; {note})"])
    if name == "CANNOT":
        p = load_labelled_pairs(path, (0, 1, 2))
        return SuiteTask(name, "auroc", p.source, p.sentences1, p.sentences2, [float(x) for x in p.labels], sign=-1.0,
                         arms=("paraphrase", "negated/antonym"),
                         notes=[f"{len(p)} pairs ({sum(p.labels)} negated/antonym = positive class, scored by -cos)"])
    if definition == "SICK-EC":
        p = load_sick_entailment(path, split)
        return SuiteTask(name, "auroc", p.source, p.sentences1, p.sentences2, [float(x) for x in p.labels], sign=1.0,
                         arms=("contradiction", "entailment"),
                         notes=[f"{len(p)} pairs of SemEval_set == {split} ({sum(p.labels)} entailment = positive class, "
                                f"{len(p) - sum(p.labels)} contradiction, NEUTRAL dropped; scored by cos)"])
    if name == "PAWS":
        p = load_labelled_pairs(path, (1, 2, 3))
        return SuiteTask(name, "auroc", p.source, p.sentences1, p.sentences2, [float(x) for x in p.labels], sign=1.0,
                         arms=("non-paraphrase", "paraphrase"),
                         notes=[f"{len(p)} pairs ({sum(p.labels)} paraphrases = positive class, scored by cos)"])
    if name == "CAD":
        files = {"train": path / "sentiment/orig/train.tsv", "orig/dev": path / "sentiment/orig/dev.tsv",
                 "new/dev": path / "sentiment/new/dev.tsv"}
        absent = [str(f) for f in files.values() if not f.is_file()]
        if absent:
            raise FileNotFoundError(f"missing {', '.join(absent)}")
        splits = {k: _texts_and_labels(f) for k, f in files.items()}
        sizes = ", ".join(f"{k} {len(v[1])}" for k, v in splits.items())
        return SuiteTask(name, "probe", str(path), splits=splits, notes=[f"reviews: {sizes}"])
    raise ValueError(f"unknown task {name!r}; choose from {TASKS}")


_STSB_FILE_SPLIT = {"sts-train.csv": "train", "sts-dev.csv": "dev", "sts-test.csv": "test"}


def stsb_file_error(task: str, path: str | os.PathLike) -> str | None:
    """Why ``path`` is the wrong STS-B file for ``task`` (``STS-B`` reads test, ``STS-B-dev`` dev), or ``None``.
    A file named for another split would report its numbers under this task's name -- a recipe chosen on test,
    or dev numbers reported as test -- so it is refused by name (a folder picks the right file itself)."""
    want = "dev" if task == "STS-B-dev" else "test"
    got = _STSB_FILE_SPLIT.get(Path(path).name)
    if got is None or got == want:
        return None
    return f"{task} reads the STS-B {want} split, but {path} is the {got} file: give sts-{want}.csv or the stsbenchmark folder"


def _texts_and_labels(path: Path) -> tuple[list[str], list[int]]:
    data = load_labeled_texts(path, label_map="sentiment")
    return data.texts, data.labels


def split_holding(tasks: Sequence[str]) -> str | None:
    """The split whose tasks include every one of ``tasks`` (``None``: none does): named in the error when a
    task of one split is asked for under the other."""
    return next((s for s, names in SPLIT_TASKS.items() if tasks and set(tasks) <= set(names)), None)


def load_suite(paths: Mapping[str, str | os.PathLike | None] | None = None, tasks: Sequence[str] | None = None,
               split: str = "test") -> Suite:
    """Load ``tasks`` (default: every task of ``split``) from ``paths`` (keys of :data:`DEFAULT_PATHS`; missing
    keys take the split's default -- :data:`DEV_DEFAULT_PATHS` for ``dev`` --, ``None`` or ``"none"`` skips).
    A dataset that is absent or unreadable is skipped with the reason, never an error; a task of the other
    split, or the STS-B test file in a dev suite, is a ``ValueError`` (a recipe is never chosen on test)."""
    if split not in SPLIT_TASKS:
        raise ValueError(f"split must be one of {list(SPLIT_TASKS)}, got {split!r}")
    names = SPLIT_TASKS[split]
    tasks = names if tasks is None else tasks
    unknown = [t for t in tasks if t not in names]
    if unknown:
        other = split_holding(unknown)
        where = f" are {other} tasks, not {split} ones" if other else ""
        raise ValueError(f"unknown task(s) {unknown}{where}; choose from {list(names)}")
    paths = {**(DEV_DEFAULT_PATHS if split == "dev" else DEFAULT_PATHS), **(paths or {})}
    loaded: dict[str, SuiteTask] = {}
    skipped: dict[str, str] = {}
    for name in names:
        if name not in tasks:
            continue
        value = paths.get(_PATH_OF_TASK[name])
        if value is None or str(value).lower() in ("", "none"):
            skipped[name] = f"skipped: --{_PATH_OF_TASK[name]} none"
            continue
        path = Path(value)
        if not path.exists():
            skipped[name] = f"skipped: {path} not found"
            continue
        wrong = stsb_file_error(name, path) if name in ("STS-B", "STS-B-dev") else None
        if wrong:
            raise ValueError(wrong)  # a wrong split is a mistake to fix, not a dataset to skip
        try:
            loaded[name] = _load_task(name, path)
        except (OSError, ValueError) as err:
            skipped[name] = f"skipped: {err}"
    return Suite(loaded, skipped, split)


# ------------------------------------------------------------------------------------------------ encoding
class EmbeddingCache:
    """Embeddings of one text set by one model, stored as ``<dir>/<sha(identity)>_<sha(texts)>.npy`` (float32):
    re-running the suite on an unchanged model costs no encoding.

    Why verified on read: a cache file may be truncated (a killed job on a full disk), garbage, or a pickle
    someone put there. It is read as ``.npy`` only (header, dtype, exact byte length checked, then
    ``np.load(allow_pickle=False)``: nothing is ever unpickled), must hold one row per text and only finite
    values; anything else is a warning and ``None`` (the caller encodes again and overwrites it)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    @staticmethod
    def _sha(text: str) -> str:
        return sha256_bytes(text.encode("utf-8", "surrogatepass"), 20)

    def path(self, identity: str, texts: Sequence[str]) -> Path:
        return self.directory / f"{self._sha(identity)}_{self._sha(chr(0).join(texts))}.npy"

    def load(self, identity: str, texts: Sequence[str]) -> torch.Tensor | None:
        """The cached ``(len(texts), D)`` embeddings, or ``None`` when absent or unusable (with a warning)."""
        from nda.data.cache import check_npy

        path = self.path(identity, texts)
        if not path.is_file():
            return None
        try:
            check_npy(path, dtype=np.float32)  # header, dtype, C order and exact length: truncation is caught here
            arr = np.load(path, allow_pickle=False)
            if arr.ndim != 2 or arr.shape[0] != len(texts) or arr.shape[1] < 1:
                raise ValueError(f"shape {arr.shape}, expected ({len(texts)}, D)")
            emb = torch.from_numpy(arr)
            bad = nonfinite_rows(emb)
            if bool(bad.any()):
                raise ValueError(f"{int(bad.sum())} of {len(bad)} rows hold NaN/inf")
        except (OSError, ValueError) as err:
            warnings.warn(f"embedding cache {path.name} is unusable ({err}); encoding again", stacklevel=2)
            return None
        return emb

    def save(self, identity: str, texts: Sequence[str], embeddings: torch.Tensor) -> Path:
        """Write atomically (temp file + rename); non-finite embeddings are refused, never cached."""
        emb = embeddings.detach().to("cpu", torch.float32).contiguous()
        if emb.ndim != 2 or emb.shape[0] != len(texts):
            raise ValueError(f"embeddings must be ({len(texts)}, D) for {len(texts)} texts, got {tuple(emb.shape)}")
        if bool(nonfinite_rows(emb).any()):
            raise ValueError("embeddings hold NaN/inf: refusing to cache them")
        path = self.path(identity, texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, emb.numpy(), allow_pickle=False)
        return path


def encode_texts(
    encode: Callable[[list[str]], Any], texts: Sequence[str], batch_size: int = 64, progress: bool = True,
    desc: str = "encode", model: str = "the encoder", task: str | None = None,
) -> torch.Tensor:
    """``(len(texts), D)`` float32 CPU embeddings in input order, encoded longest first (least padding) in
    batches of ``batch_size`` with a progress bar. ``encode``: one batch of texts -> ``(n, D)`` tensor/array.
    A NaN/inf embedding is a ``ValueError`` naming ``model`` (and ``task``) and the first such text."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: nothing to encode")
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    starts = range(0, len(texts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="batch", leave=False)
    chunks = []
    with torch.inference_mode():
        for start in starts:
            out = torch.as_tensor(encode([texts[i] for i in order[start : start + batch_size]]))
            chunks.append(out.detach().float().cpu())
    emb = torch.cat(chunks)
    if emb.ndim != 2 or emb.shape[0] != len(texts):
        raise ValueError(f"encode must return (n, D) embeddings, got {tuple(emb.shape)} for {len(texts)} texts")
    emb = torch.empty_like(emb).index_copy_(0, torch.tensor(order), emb)
    check_finite_embeddings(emb, model, texts, task)
    return emb


@dataclass
class SuiteEmbeddings:
    """``rows``: text -> row of ``embeddings``; ``seconds``/``new_texts``: encoding cost per task (a text is
    charged to the first task, in :data:`TASKS` order, that needs it); ``cached``: loaded from the cache."""

    embeddings: torch.Tensor
    rows: dict[str, int]
    seconds: dict[str, float]
    new_texts: dict[str, int]
    cached: bool

    def of(self, texts: Sequence[str]) -> torch.Tensor:
        return self.embeddings[torch.tensor([self.rows[t] for t in texts], dtype=torch.long)]


def embed_suite(
    suite: Suite, encode: Callable[[list[str]], Any], identity: str | None = None, cache: EmbeddingCache | None = None,
    batch_size: int = 64, progress: bool = True, model: str = "the encoder",
) -> SuiteEmbeddings:
    """Encode every unique text of ``suite`` once (task by task, so each task's encoding time is known), or
    load them from ``cache`` when ``identity`` (the model's) and the text set are unchanged (a damaged cache
    file is a warning and is encoded again). ``model`` names the model in errors (NaN/inf embeddings)."""
    texts = suite.texts()
    rows = {t: i for i, t in enumerate(texts)}
    if cache is not None and identity is not None:
        emb = cache.load(identity, texts)
        if emb is not None:
            return SuiteEmbeddings(emb, rows, {n: 0.0 for n in suite.tasks}, {n: 0 for n in suite.tasks}, True)
    parts: list[torch.Tensor] = []
    order: list[str] = []
    seen: set[str] = set()
    seconds: dict[str, float] = {}
    new_texts: dict[str, int] = {}
    for name, task in suite.tasks.items():
        new = list(dict.fromkeys(t for t in task.texts() if t not in seen))
        seen.update(new)
        t0 = time.perf_counter()
        if new:
            parts.append(encode_texts(encode, new, batch_size=batch_size, progress=progress, desc=f"encode {name}",
                                      model=model, task=name))
            order.extend(new)
        seconds[name], new_texts[name] = time.perf_counter() - t0, len(new)
    if not order:
        raise ValueError("the suite has no texts: every dataset was skipped")
    emb = _reorder(torch.cat(parts), order, rows)
    if cache is not None and identity is not None:
        cache.save(identity, texts, emb)
    return SuiteEmbeddings(emb, rows, seconds, new_texts, False)


def _reorder(emb: torch.Tensor, order: list[str], rows: dict[str, int]) -> torch.Tensor:
    """Rows of ``emb`` (in ``order``) placed at ``rows[text]`` (the sorted text set)."""
    index = torch.tensor([rows[t] for t in order], dtype=torch.long)
    return torch.empty_like(emb).index_copy_(0, index, emb)


# ------------------------------------------------------------------------------------------------- scoring
def _pair_cos(emb: SuiteEmbeddings, s1: Sequence[str], s2: Sequence[str]) -> torch.Tensor:
    a = F.normalize(emb.of(s1).double(), dim=-1)
    b = F.normalize(emb.of(s2).double(), dim=-1)
    return (a * b).sum(dim=-1)


def score_suite(suite: Suite, emb: SuiteEmbeddings, probe_kwargs: Mapping[str, Any] | None = None,
                model: str = "the encoder") -> tuple[dict, dict]:
    """``(metrics, seconds)``: per task ``{"spearman"|"auroc"|"orig_dev_acc","new_dev_acc", ...}`` (x100) plus
    ``"STS avg"`` when all seven STS tasks ran (``"dev avg"`` when both dev Spearman tasks did); and the
    scoring time of each task. AUROC tasks also give the mean cosine of each arm (``mean_cos_label0/1``, named
    in ``arms``). NaN/inf embeddings of a task are a ``ValueError`` naming ``model`` and the task, never a score."""
    from nda.metrics.anomaly import anomaly_auroc
    from nda.metrics.probe import logistic_probe

    metrics: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name, task in suite.tasks.items():
        t0 = time.perf_counter()
        texts = task.texts()
        check_finite_embeddings(emb.of(texts), model, texts, name)
        if task.kind == "sts":
            cos = _pair_cos(emb, task.sentences1, task.sentences2)
            metrics[name] = {"spearman": 100.0 * spearman(cos, task.targets), "pairs": task.size}
        elif task.kind == "auroc":
            score = task.sign * _pair_cos(emb, task.sentences1, task.sentences2)
            labels = torch.tensor(task.targets)
            metrics[name] = {"auroc": 100.0 * anomaly_auroc(score[labels == 0], score[labels == 1]), "pairs": task.size,
                             "mean_cos_label0": float(_mean(score[labels == 0]) * task.sign),
                             "mean_cos_label1": float(_mean(score[labels == 1]) * task.sign),
                             "arms": {"label0": task.arms[0], "label1": task.arms[1]}}
        else:
            # unit-length embeddings for every model: a model's own Normalize module (which a trained copy may
            # lack) must not change its row; the probe then standardises them
            (train_x, train_y), *evals = [(F.normalize(emb.of(t).float(), dim=-1), y) for t, y in task.splits.values()]
            names = list(task.splits)[1:]
            res = logistic_probe(train_x, train_y, dict(zip(names, evals)), **dict(probe_kwargs or {}))
            metrics[name] = {f"{n.replace('/', '_')}_acc": 100.0 * res.accuracy[n] for n in names}
            metrics[name].update({"C": res.C, "train_acc": 100.0 * res.train_accuracy,
                                  "cv_acc": {str(c): 100.0 * a for c, a in res.cv_accuracy.items()},
                                  "train_reviews": len(train_y)})
        seconds[name] = time.perf_counter() - t0
    if all(t in metrics for t in STS_TASKS):
        metrics["STS avg"] = sum(metrics[t]["spearman"] for t in STS_TASKS) / len(STS_TASKS)
    if all(t in metrics for t in DEV_STS_TASKS):
        metrics["dev avg"] = sum(metrics[t]["spearman"] for t in DEV_STS_TASKS) / len(DEV_STS_TASKS)
    return metrics, seconds


def _mean(x: torch.Tensor) -> float:
    return float(x.mean()) if x.numel() else float("nan")


# ------------------------------------------------------------------------------------------------- report
_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("STS12", "STS12", "spearman"), ("STS13", "STS13*", "spearman"), ("STS14", "STS14", "spearman"),
    ("STS15", "STS15", "spearman"), ("STS16", "STS16", "spearman"), ("STS-B", "STS-B", "spearman"),
    ("SICK-R", "SICK-R", "spearman"), ("STS avg", "STS avg", ""), ("CANNOT", "Negation AUROC (CANNOT)", "auroc"),
    ("SICK-EC", "Ent-vs-contra AUROC (SICK)", "auroc"), ("PAWS", "Word-order AUROC (PAWS)", "auroc"),
    ("CAD", "CAD orig dev acc", "orig_dev_acc"),
    ("CAD", "CAD new dev acc", "new_dev_acc"),
)
_DEV_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("STS-B-dev", "STS-B-dev", "spearman"), ("SICK-R-trial", "SICK-R-trial", "spearman"),
    ("dev avg", "dev avg", ""), ("SICK-EC-trial", "Ent-vs-contra AUROC (SICK-EC-trial)", "auroc"),
)
_DEV_NOTES = [
    "",
    "DEV SPLITS ONLY: numbers for choosing a recipe, not for reporting (the test suite's numbers are the ones to "
    "report). All numbers x100, higher = better. STS-B-dev: Spearman of cosine vs gold on the STS Benchmark "
    "dev split (sts-dev.csv). SICK-R-trial: the same on SICK relatedness, SemEval_set == TRIAL. dev avg: mean of "
    "those two Spearman columns (shown only when both ran). Ent-vs-contra AUROC (SICK-EC-trial): cos separating "
    "SICK TRIAL entailment pairs (positive) from contradiction pairs, i.e. P(cos(entailment) > cos(contradiction)); "
    "kept out of dev avg.",
    "",
]


def results_markdown(rows: Sequence[Mapping[str, Any]], suite: Suite) -> str:
    """One markdown table (a row per model: ``{"model": name, "metrics": score_suite()[0]}``) plus notes:
    metric definitions, what each dataset held (its file and split), and every skipped dataset with its reason.
    A dev suite gets its own columns and notes."""
    columns = _DEV_COLUMNS if suite.split == "dev" else _COLUMNS
    header = "| model | " + " | ".join(c[1] for c in columns) + " |"
    lines = [header, "|---|" + "---:|" * len(columns)]
    for row in rows:
        m = row["metrics"]
        cells = []
        for task, _, key in columns:
            value = m.get(task)
            if isinstance(value, Mapping):
                value = value.get(key)
            cells.append("–" if value is None else f"{value:.2f}")
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    notes = [*_DEV_NOTES] if suite.split == "dev" else [
        "",
        "All numbers x100, higher = better. STS: Spearman of cosine vs gold; STS12-16 in SimCSE's \"all\" setting "
        "(one Spearman over all pairs of a year's SentEval subsets; pairs without a gold score skipped). "
        "STS avg: mean of the 7 STS columns (shown only when all 7 ran). "
        "Negation AUROC: -cos separating CANNOT SemAntoNeg negated/antonym pairs (label 1) from paraphrases "
        "(label 0), i.e. P(cos(negated) < cos(paraphrase)); 50 = blind to negation. Ent-vs-contra AUROC: cos "
        "separating SICK TEST entailment pairs (positive) from contradiction pairs (most carry a negation cue), "
        "i.e. P(cos(entailment) > cos(contradiction)). Word-order AUROC: cos separating "
        "PAWS-Wiki paraphrases (1) from non-paraphrases (0). CAD: logistic probe (standardised frozen embeddings, C by "
        "5-fold CV on orig/train only) trained on CAD IMDb orig/train, accuracy on orig/dev and on the human "
        "counterfactuals new/dev. Long reviews are truncated to the model's max sequence length.",
        "",
        "*STS13 has no SMT subset (not redistributable; SentEval and SimCSE leave it out too).",
    ]
    for name, task in suite.tasks.items():
        notes.append(f"- {name}: {task.source}; " + "; ".join(task.notes))
    for name, reason in suite.skipped.items():
        notes.append(f"- {name}: {reason}")
    return "\n".join(lines + notes + _arms_markdown(rows, suite)) + "\n"


def _arms_markdown(rows: Sequence[Mapping[str, Any]], suite: Suite) -> list[str]:
    """Mean cosine of each arm of every AUROC task (a row per model): whether an AUROC moved because the
    negated pairs drifted apart or because the paraphrases did."""
    arms = [(n, t.arms) for n, t in suite.tasks.items() if t.kind == "auroc"]
    if not arms:
        return []
    cols = [(n, f"mean_cos_label{k}", f"{n} {a[k]}") for n, a in arms for k in (0, 1)]
    lines = ["", "Mean cosine per arm of the AUROC tasks (raw cosine, not x100):", "",
             "| model | " + " | ".join(c[2] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    for row in rows:
        cells = [row["metrics"].get(n, {}).get(key) for n, key, _ in cols]
        shown = ("–" if v is None else f"{v + 0.0:.3f}" for v in cells)  # + 0.0: no "-0.000"
        lines.append(f"| {row['model']} | " + " | ".join(shown) + " |")
    return lines
