"""Labelled texts for classifiers: CAD, SentEval (SST-2, MR, CR), any TSV/CSV, or a Hugging Face dataset.

Labels are mapped to the integers of a task's label map, the same integers the ``counterfactual`` negative
flips: ``sentiment`` -> 0 negative, 1 positive; ``nli`` -> 0 entailment, 1 neutral, 2 contradiction. Every
source spelling is accepted case-insensitively (``Positive``, ``pos``, ``1``); anything else is a clear error
naming the value and the file, never a silently wrong label.

Sources (``load_labeled_texts(source, split=...)``):

- a ``.tsv`` / ``.csv`` file with a header naming a text column (``text``, ``sentence``, ``review``, ...) and a
  label column (``label``, ``sentiment``, ``gold_label``, ...) -- CAD's ``sentiment/orig/train.tsv``;
- a headerless two-column file, text and label in either order -- SentEval's ``SST/binary/sentiment-dev``;
- a SentEval folder: ``.../SST/binary`` (with ``split``), ``.../MR`` or ``.../CR`` (``*.pos`` / ``*.neg`` files);
- ``hf:<name>[:<config>]`` with ``split`` -- e.g. ``hf:imdb``, ``hf:glue:sst2`` (needs the hub).
"""

from __future__ import annotations

import csv
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LabeledTexts", "LABEL_NAMES", "load_labeled_texts", "parse_label", "subset_per_class"]

LABEL_NAMES: dict[str, tuple[str, ...]] = {
    "sentiment": ("negative", "positive"),
    "nli": ("entailment", "neutral", "contradiction"),
}
_ALIASES: dict[str, dict[str, int]] = {
    "sentiment": {"negative": 0, "neg": 0, "0": 0, "positive": 1, "pos": 1, "1": 1},
    "nli": {"entailment": 0, "0": 0, "neutral": 1, "1": 1, "contradiction": 2, "2": 2},
}
_TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "hypothesis")
_PAIR_COLUMNS = ("sentence1", "sentence2", "premise", "hypothesis", "sentence_a", "sentence_b")
_LABEL_COLUMNS = ("label", "sentiment", "gold_label", "labels", "polarity", "class")


@dataclass
class LabeledTexts:
    """Texts with integer labels of ``label_map``; ``name`` says where they came from."""

    texts: list[str]
    labels: list[int]
    name: str
    label_map: str = "sentiment"
    meta: dict[str, Any] = field(default_factory=dict)
    sources: list[int] | None = None  # for derived examples (counterfactuals): the index of the original each came from

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_classes(self) -> int:
        return len(LABEL_NAMES[self.label_map])

    def counts(self) -> dict[str, int]:
        names = LABEL_NAMES[self.label_map]
        return {names[c]: self.labels.count(c) for c in range(len(names))}


def parse_label(value: Any, label_map: str, where: str = "") -> int:
    """The label map's integer for one source label, or a ``ValueError`` naming it and ``where``."""
    if label_map not in _ALIASES:
        raise ValueError(f"label_map must be one of {sorted(_ALIASES)}, got {label_map!r}")
    key = str(value).strip().lower()
    if key.endswith(".0"):  # "1.0" from a CSV of floats
        key = key[:-2]
    if key not in _ALIASES[label_map]:
        known = sorted({k for k in _ALIASES[label_map] if not k.isdigit()})
        raise ValueError(f"{where}unknown {label_map} label {value!r} (expected one of {known} or their "
                         f"integers 0..{len(LABEL_NAMES[label_map]) - 1})")
    return _ALIASES[label_map][key]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason}); re-encode it, e.g. "
                         f"`iconv -f latin1 -t utf-8 {path.name}`") from err


def _load_table(path: Path, label_map: str) -> LabeledTexts:
    raw = _read_text(path)
    delimiter = "\t" if path.suffix.lower() != ".csv" else ","
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long reviews
    first = raw.split("\n", 1)[0].split(delimiter)
    header = [c.strip().lower() for c in first]
    if sum(c in header for c in _PAIR_COLUMNS) >= 2:
        raise ValueError(f"{path}: a sentence-pair file ({', '.join(c for c in header if c in _PAIR_COLUMNS)}); "
                         "classifiers here take single texts -- give one text column (e.g. the hypothesis) and a label")
    has_header = any(c in header for c in _TEXT_COLUMNS) and any(c in header for c in _LABEL_COLUMNS)
    # a header means a spreadsheet-style file with CSV quoting (CAD: "a ""quoted"" review"); headerless
    # SentEval files are raw text, where a leading quote is a character, not quoting
    rows = list(csv.reader(io.StringIO(raw), delimiter=delimiter,
                           quoting=csv.QUOTE_MINIMAL if has_header or delimiter == "," else csv.QUOTE_NONE))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise ValueError(f"{path} holds no rows")
    text_col = next((header.index(c) for c in _TEXT_COLUMNS if c in header), None)
    label_col = next((header.index(c) for c in _LABEL_COLUMNS if c in header), None)
    if text_col is not None and label_col is not None:
        body = rows[1:]
    else:  # headerless two columns: which one holds labels?
        if any(len(r) != 2 for r in rows[:50]):
            raise ValueError(f"{path}: no header naming a text column ({', '.join(_TEXT_COLUMNS)}) and a label "
                             f"column ({', '.join(_LABEL_COLUMNS)}), and not two columns (text, label)")
        first_is_label = all(r[0].strip().lower() in _ALIASES[label_map] for r in rows[:50])
        text_col, label_col = (1, 0) if first_is_label else (0, 1)
        body = rows
    texts, labels = [], []
    for n, r in enumerate(body, start=2 if body is not rows else 1):
        if len(r) <= max(text_col, label_col):
            raise ValueError(f"{path}:{n}: expected at least {max(text_col, label_col) + 1} columns, got {len(r)}")
        texts.append(_clean(r[text_col]))
        labels.append(parse_label(r[label_col], label_map, f"{path}:{n}: "))
    return LabeledTexts(texts, labels, str(path), label_map)


def _clean(text: str) -> str:
    """IMDb reviews (CAD) carry HTML line breaks: a tokenizer would read ``<br />`` as words."""
    return " ".join(text.replace("<br />", " ").replace("<br/>", " ").split())


def _load_pos_neg(folder: Path, label_map: str) -> LabeledTexts:
    if label_map != "sentiment":
        raise ValueError(f"{folder}: *.pos / *.neg files hold sentiment labels, not {label_map}")
    pos, neg = sorted(folder.glob("*.pos")), sorted(folder.glob("*.neg"))
    if len(pos) != 1 or len(neg) != 1:
        raise ValueError(f"{folder}: expected one *.pos and one *.neg file (SentEval MR/CR), found {len(pos)} and {len(neg)}")
    texts, labels = [], []
    for file, label in ((neg[0], 0), (pos[0], 1)):
        lines = [ln.strip() for ln in _read_text(file).splitlines() if ln.strip()]
        texts += lines
        labels += [label] * len(lines)
    return LabeledTexts(texts, labels, str(folder), label_map)


def _load_hf(spec: str, split: str | None, label_map: str) -> LabeledTexts:
    from datasets import load_dataset

    name, _, config = spec.partition(":")
    ds = load_dataset(name, config or None, split=split or "train")
    cols = ds.column_names
    text_col = next((c for c in cols if c.lower() in _TEXT_COLUMNS), None)
    label_col = next((c for c in cols if c.lower() in _LABEL_COLUMNS), None)
    if text_col is None or label_col is None:
        raise ValueError(f"hf:{spec}: no text/label columns among {cols}")
    names = getattr(ds.features[label_col], "names", None)
    labels = [parse_label(names[v] if names else v, label_map, f"hf:{spec}: ") for v in ds[label_col]]
    return LabeledTexts(list(ds[text_col]), labels, f"hf:{spec}[{split or 'train'}]", label_map)


def load_labeled_texts(source: str | os.PathLike, split: str | None = None,
                       label_map: str = "sentiment") -> LabeledTexts:
    """Load one labelled set (see the module docstring for the accepted sources)."""
    if label_map not in LABEL_NAMES:
        raise ValueError(f"label_map must be one of {sorted(LABEL_NAMES)}, got {label_map!r}")
    text = str(source)
    if text.startswith("hf:"):
        return _load_hf(text[3:], split, label_map)
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / f"sentiment-{split or 'train'}").is_file():
            return _load_table(path / f"sentiment-{split or 'train'}", label_map)
        if list(path.glob("*.pos")):
            return _load_pos_neg(path, label_map)
        if split and (path / f"{split}.tsv").is_file():  # a CAD-style folder: orig/ with train.tsv, dev.tsv
            return _load_table(path / f"{split}.tsv", label_map)
        raise ValueError(f"{path}: not a known layout (SST 'sentiment-<split>' files, MR/CR *.pos/*.neg, or "
                         "<split>.tsv)")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected a .tsv/.csv file, a SentEval folder or hf:<name>)")
    return _load_table(path, label_map)


def subset_per_class(data: LabeledTexts, size: int, seed: int) -> list[int]:
    """Indices of a class-balanced random subset of ``size`` examples (``size // C`` per class, the remainder
    to the first classes), a pure function of ``(data, size, seed)``. Few-label curves use it."""
    import random

    if isinstance(size, bool) or not isinstance(size, int) or size < data.num_classes:
        raise ValueError(f"train size must be an int >= the number of classes ({data.num_classes}), got {size!r}")
    by_class: dict[int, list[int]] = {c: [] for c in range(data.num_classes)}
    for i, y in enumerate(data.labels):
        by_class[y].append(i)
    rng = random.Random(seed)
    chosen: list[int] = []
    for c in range(data.num_classes):
        want = size // data.num_classes + (1 if c < size % data.num_classes else 0)
        if len(by_class[c]) < want:
            raise ValueError(f"{data.name}: train size {size} needs {want} examples of class "
                             f"{LABEL_NAMES[data.label_map][c]!r}, it has {len(by_class[c])}")
        chosen += rng.sample(by_class[c], want)
    return sorted(chosen)


def load_counterfactual_pairs(path: str | os.PathLike, label_map: str = "sentiment") -> dict[str, list[tuple[str, int]]]:
    """CAD's paired file (``combined/paired/*.tsv``: rows sharing a ``batch_id`` are an original and its human
    counterfactual) as ``{text: [(partner text, partner label), ...]}`` in both directions, so the partners of
    any chosen original can be looked up by its (cleaned) text."""
    path = Path(path)
    raw = _read_text(path)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.DictReader(io.StringIO(raw), delimiter="\t" if path.suffix.lower() != ".csv" else ",")
    fields = {f.lower(): f for f in reader.fieldnames or []}
    text_col = next((fields[c] for c in _TEXT_COLUMNS if c in fields), None)
    label_col = next((fields[c] for c in _LABEL_COLUMNS if c in fields), None)
    if text_col is None or label_col is None or "batch_id" not in fields:
        raise ValueError(f"{path}: a paired counterfactual file needs text, label and batch_id columns, got "
                         f"{reader.fieldnames}")
    groups: dict[str, list[tuple[str, int]]] = {}
    for n, row in enumerate(reader, start=2):
        groups.setdefault(row[fields["batch_id"]], []).append(
            (_clean(row[text_col]), parse_label(row[label_col], label_map, f"{path}:{n}: ")))
    partners: dict[str, list[tuple[str, int]]] = {}
    for rows in groups.values():
        for i, (text, _) in enumerate(rows):
            # a "counterfactual" identical to its original (after cleaning) would add the same text with the
            # opposite label: a contradiction, not a counterfactual
            partners.setdefault(text, []).extend(r for j, r in enumerate(rows) if j != i and r[0] != text)
    return partners
