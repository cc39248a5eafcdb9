"""Readers of the sentence-pair benchmark files (STS, SICK, CANNOT, PAWS), as the reference evaluators read them.

Data, not metrics: each reader takes a path and returns plain lists, so the evaluation
(:mod:`nda.metrics.sentence_eval`) never cares about file formats:

- :func:`load_senteval_sts_year`: STS12-16 in SentEval's layout (``STS.input.<subset>.txt`` +
  ``STS.gs.<subset>.txt``), SentEval's subset lists, pairs without a gold score skipped (SentEval does so),
  sentences whitespace-normalised (SentEval splits on whitespace and SimCSE joins with one space);
- :func:`load_sick_relatedness`: SICK-R (``SICK.txt``, ``relatedness_score`` of one ``SemEval_set``);
- :func:`load_sick_entailment`: SICK's entailment (label 1) vs contradiction (label 0) pairs of one
  ``SemEval_set`` (``NEUTRAL`` dropped) -- a negation probe: most SICK contradictions carry a negation cue;
- :func:`load_labelled_pairs`: TSV sentence pairs with a 0/1 label (CANNOT SemAntoNeg, PAWS).

STS-B itself is read by :func:`nda.metrics.sts.load_sts` (which also defines :class:`StsData`); labelled single
texts (CAD, SentEval SST/MR/CR) by :func:`nda.data.labeled_text.load_labeled_texts`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nda.metrics.sts import StsData

__all__ = [
    "SENTEVAL_STS_SUBSETS",
    "LabelledPairs",
    "StsYear",
    "load_labelled_pairs",
    "load_senteval_sts_year",
    "load_sick_entailment",
    "load_sick_relatedness",
    "read_table",
]

# SentEval's subsets per year (senteval/sts.py); STS13's SMT subset is not redistributable, so SentEval,
# SimCSE and every paper since report STS13 on FNWN + headlines + OnWN.
SENTEVAL_STS_SUBSETS: dict[int, tuple[str, ...]] = {
    2012: ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"),
    2013: ("FNWN", "headlines", "OnWN"),
    2014: ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"),
    2015: ("answers-forums", "answers-students", "belief", "headlines", "images"),
    2016: ("answer-answer", "headlines", "plagiarism", "postediting", "question-question"),
}


@dataclass
class StsYear:
    """One SemEval STS year, all subsets concatenated (SimCSE's "all" setting: one Spearman over all pairs)."""

    data: StsData
    subsets: dict[str, int]  # subset -> pairs with a gold score
    missing: list[str] = field(default_factory=list)  # SentEval subsets whose files are absent here
    notes: list[str] = field(default_factory=list)


@dataclass
class LabelledPairs:
    """Sentence pairs with a 0/1 label (``labels[i]`` for ``(sentences1[i], sentences2[i])``)."""

    sentences1: list[str]
    sentences2: list[str]
    labels: list[int]
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def load_senteval_sts_year(folder: str | os.PathLike, year: int) -> StsYear:
    """Pairs and gold scores of STS ``year`` (2012-2016) from ``folder`` = ``.../STS{yy}-en-test``.

    Subsets missing on disk are listed in ``missing`` (STS13's SMT is not one of SentEval's subsets, so it
    is never missing; a note says it is excluded). A gold line that is empty means "no score" and the pair is
    skipped, as in SentEval (STS15/16 ship all candidate pairs, only some scored).
    """
    if year not in SENTEVAL_STS_SUBSETS:
        raise ValueError(f"year must be one of {sorted(SENTEVAL_STS_SUBSETS)}, got {year!r}")
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"STS{year % 100} folder {root} does not exist")
    s1: list[str] = []
    s2: list[str] = []
    scores: list[float] = []
    subsets: dict[str, int] = {}
    missing: list[str] = []
    for name in SENTEVAL_STS_SUBSETS[year]:
        inp, gs = root / f"STS.input.{name}.txt", root / f"STS.gs.{name}.txt"
        if not (inp.is_file() and gs.is_file()):
            missing.append(name)
            continue
        pairs, golds = _lines(inp), _lines(gs)
        if len(pairs) != len(golds):
            raise ValueError(f"{inp} has {len(pairs)} lines but {gs} has {len(golds)}: the files must align")
        kept = 0
        for lineno, (pair, gold) in enumerate(zip(pairs, golds), start=1):
            if not gold.strip():
                continue  # no gold score for this pair
            fields = pair.split("\t")
            if len(fields) < 2:
                raise ValueError(f"{inp}:{lineno}: expected sentence1 TAB sentence2, got {len(fields)} field(s)")
            s1.append(" ".join(fields[0].split()))
            s2.append(" ".join(fields[1].split()))
            scores.append(float(gold))
            kept += 1
        subsets[name] = kept
    if not scores:
        raise FileNotFoundError(f"{root} holds none of STS{year % 100}'s subsets {SENTEVAL_STS_SUBSETS[year]}")
    notes = ["no SMT subset (not redistributable; excluded as in SentEval/SimCSE)"] if year == 2013 else []
    if missing:
        notes.append(f"missing subsets: {', '.join(missing)} (score over the rest, not comparable)")
    return StsYear(StsData(s1, s2, scores, source=str(root)), subsets, missing, notes)


def read_table(path: Path, names: Sequence[str]) -> list[tuple[int, list[str]]]:
    """``(line number, [fields named by names])`` of each row of a tab-separated file with a header (``SICK.txt``):
    one reader for SICK here and SICK / CAD-NLI training pairs (:mod:`nda.data.pairs`), so a missing column or a
    short row reads as the same clear error. Fields are as written (callers strip what they compare)."""
    rows = [(lineno, line.split("\t")) for lineno, line in enumerate(_lines(path), start=1) if line.strip()]
    if not rows:
        raise ValueError(f"{path} is empty")
    header = rows[0][1]
    missing = [n for n in names if n not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; header is {header}")
    idx = [header.index(n) for n in names]
    out = []
    for lineno, row in rows[1:]:
        if len(row) <= max(idx):
            raise ValueError(f"{path}:{lineno}: expected {len(header)} tab-separated fields, got {len(row)}")
        out.append((lineno, [row[i] for i in idx]))
    return out


def load_sick_relatedness(path: str | os.PathLike, split: str = "TEST") -> StsData:
    """SICK-R: ``(sentence_A, sentence_B, relatedness_score)`` of the rows whose ``SemEval_set`` is ``split``
    (``TRAIN``, ``TRIAL`` or ``TEST``) in the full ``SICK.txt`` (tab-separated, with a header)."""
    path = Path(path)
    s1, s2, scores = [], [], []
    columns = ("sentence_A", "sentence_B", "relatedness_score", "SemEval_set")
    for lineno, (a, b, score, part) in read_table(path, columns):
        if part.strip() != split:
            continue
        s1.append(a)
        s2.append(b)
        try:
            scores.append(float(score))
        except ValueError:
            raise ValueError(f"{path}:{lineno}: relatedness_score {score!r} is not a number") from None
    if not scores:
        raise ValueError(f"{path}: no rows with SemEval_set == {split!r}")
    return StsData(s1, s2, scores, source=f"{path}:{split}")


def load_sick_entailment(path: str | os.PathLike, split: str = "TEST") -> LabelledPairs:
    """SICK pairs of ``SemEval_set == split`` whose ``entailment_label`` is ``ENTAILMENT`` (label 1) or
    ``CONTRADICTION`` (label 0); ``NEUTRAL`` pairs are dropped (TEST: 1,404 entailments, 712 contradictions)."""
    path = Path(path)
    known = {"ENTAILMENT": 1, "CONTRADICTION": 0, "NEUTRAL": None}
    s1, s2, labels = [], [], []
    columns = ("sentence_A", "sentence_B", "entailment_label", "SemEval_set")
    for lineno, (a, b, label, part) in read_table(path, columns):
        if part.strip() != split:
            continue
        value = label.strip()
        if value not in known:
            raise ValueError(f"{path}:{lineno}: entailment_label {value!r} is not one of {sorted(known)}")
        if known[value] is None:
            continue
        s1.append(a)
        s2.append(b)
        labels.append(known[value])
    if len(set(labels)) < 2:
        raise ValueError(f"{path}: SemEval_set == {split!r} needs both ENTAILMENT and CONTRADICTION pairs, "
                         f"found {labels.count(1)} and {labels.count(0)}")
    return LabelledPairs(s1, s2, labels, source=f"{path}:{split}")


def load_labelled_pairs(path: str | os.PathLike, columns: tuple[int, int, int] = (0, 1, 2)) -> LabelledPairs:
    """Tab-separated ``sentence1, sentence2, label`` at the given column indices (CANNOT: ``(0, 1, 2)``;
    PAWS: ``id, sentence1, sentence2, label`` -> ``(1, 2, 3)``). A first line whose label is not 0/1 is a header."""
    path = Path(path)
    c1, c2, cl = columns
    s1, s2, labels = [], [], []
    for lineno, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) <= max(columns):
            raise ValueError(f"{path}:{lineno}: expected at least {max(columns) + 1} tab-separated fields, got {len(fields)}")
        label = fields[cl].strip()
        if label not in ("0", "1"):
            if lineno == 1:
                continue  # header
            raise ValueError(f"{path}:{lineno}: label {label!r} is not 0 or 1")
        s1.append(fields[c1])
        s2.append(fields[c2])
        labels.append(int(label))
    if not labels:
        raise ValueError(f"{path}: no labelled pairs")
    return LabelledPairs(s1, s2, labels, source=str(path))
