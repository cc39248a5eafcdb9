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

CAD's paired files (an original and its human counterfactuals per ``batch_id``) have one reader,
:func:`read_counterfactual_pairs`, with one rule for which row is the original; :func:`word_diff` is the one
measure of what an edit changed.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "LABEL_NAMES",
    "CounterfactualPair",
    "LabeledTexts",
    "WordDiff",
    "load_counterfactual_pairs",
    "load_labeled_texts",
    "parse_label",
    "read_counterfactual_pairs",
    "subset_per_class",
    "word_diff",
]

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
        line = err.object[: err.start].count(b"\n") + 1
        raise ValueError(f"{path} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}, line "
                         f"{line}); re-encode it, e.g. `iconv -f latin1 -t utf-8 {path.name}`") from err


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
    if not body:
        raise ValueError(f"{path} holds no rows (only a header)")
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


@dataclass(frozen=True)
class CounterfactualPair:
    """An original text and one human counterfactual of it, texts and labels as the file writes them (each
    consumer cleans or maps them as it needs: the preview shows them verbatim, the classifier parses labels)."""

    batch_id: str
    original: str
    label: str
    counterfactual: str
    counterfactual_label: str
    lines: tuple[int, int]  # file rows of the original and of the counterfactual, for error messages

    @property
    def changed(self) -> bool:
        """False when the "counterfactual" is the original again (after cleaning): not a counterfactual."""
        return _clean(self.original) != _clean(self.counterfactual)


def read_counterfactual_pairs(path: str | os.PathLike) -> list[CounterfactualPair]:
    """The one reader of CAD's paired files (``combined/paired/*.tsv``: ``Sentiment``, ``Text``, ``batch_id``;
    any text / label column name of :func:`load_labeled_texts`; ``.csv`` is comma-separated).

    Which row is the original: **the first row of each ``batch_id`` (in file order); every later row of that
    batch is a human counterfactual of it**, one pair each. This is the order of CAD's release: in
    ``sentiment/combined/paired`` 244 of 245 dev and 1,703 of 1,707 train batches start with a review of
    ``sentiment/orig`` verbatim and none ends with one (the rest differ from it only by HTML breaks or
    whitespace). A batch of one row has no counterfactual and is skipped; a file without pairs gives ``[]``.
    """
    path = Path(path)
    raw = _read_text(path)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.DictReader(io.StringIO(raw), delimiter="\t" if path.suffix.lower() != ".csv" else ",")
    fields = {f.strip().lower(): f for f in reader.fieldnames or []}
    columns = {"text": next((fields[c] for c in _TEXT_COLUMNS if c in fields), None),
               "label": next((fields[c] for c in _LABEL_COLUMNS if c in fields), None),
               "batch_id": fields.get("batch_id")}
    missing = [what for what, column in columns.items() if column is None]
    if missing:
        raise ValueError(f"{path}: a paired counterfactual file needs text ({', '.join(_TEXT_COLUMNS)}), label "
                         f"({', '.join(_LABEL_COLUMNS)}) and batch_id columns; missing {', '.join(missing)} in "
                         f"the header {reader.fieldnames}")
    groups: dict[str, list[tuple[int, str, str]]] = {}
    for n, row in enumerate(reader, start=2):
        if None in row.values():
            raise ValueError(f"{path}:{n}: expected {len(fields)} columns ({', '.join(reader.fieldnames or [])})")
        groups.setdefault(row[columns["batch_id"]], []).append((n, row[columns["text"]], row[columns["label"]]))
    return [CounterfactualPair(batch, first[1], first[2], text, label, (first[0], n))
            for batch, (first, *rest) in groups.items() for n, text, label in rest]


def load_counterfactual_pairs(path: str | os.PathLike, label_map: str = "sentiment") -> dict[str, list[tuple[str, int]]]:
    """The pairs of :func:`read_counterfactual_pairs` as ``{text: [(partner text, partner label), ...]}`` in both
    directions (original -> its counterfactuals, counterfactual -> its original), texts cleaned as
    :func:`load_labeled_texts` cleans them, so the partners of any chosen training text can be looked up."""
    partners: dict[str, list[tuple[str, int]]] = {}
    for pair in read_counterfactual_pairs(path):
        original, counterfactual = _clean(pair.original), _clean(pair.counterfactual)
        y_original = parse_label(pair.label, label_map, f"{path}:{pair.lines[0]}: ")
        y_counterfactual = parse_label(pair.counterfactual_label, label_map, f"{path}:{pair.lines[1]}: ")
        of_original, of_counterfactual = partners.setdefault(original, []), partners.setdefault(counterfactual, [])
        # a "counterfactual" identical to its original (after cleaning) would add the same text with the
        # opposite label: a contradiction, not a counterfactual
        if pair.changed:
            of_original.append((counterfactual, y_counterfactual))
            of_counterfactual.append((original, y_original))
    return partners


class WordDiff(NamedTuple):
    """How one text was edited into another, word by word."""

    shown: str  # "… how {bad -> good} this movie …": the edits with ``context`` words around them
    changed: int  # words changed (a replacement of 2 words by 3 counts 3)
    positions: frozenset[int]  # word positions of ``before`` that were edited, to compare two edits of one text


def word_diff(before: str, after: str, context: int = 3) -> WordDiff:
    """The word-level diff of ``before`` -> ``after`` (words as :mod:`nda.text` splits them): the one measure
    of how much a counterfactual, human or automatic, changed its original."""
    import difflib

    from nda.text._words import split_words

    a, b = split_words(before)[1::2], split_words(after)[1::2]
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    shown: set[int] = set()
    changed, positions = 0, set()
    for tag, i1, i2, j1, j2 in ops:
        if tag != "equal":
            changed += max(i2 - i1, j2 - j1)
            positions.update(range(i1, max(i2, i1 + 1)))
            shown.update(range(i1 - context, i2 + context))
    parts: list[str] = []
    gap = False
    for tag, i1, i2, j1, j2 in ops:
        if tag != "equal":
            parts += ["…"] if gap else []
            parts.append("{" + " ".join(a[i1:i2]) + " -> " + " ".join(b[j1:j2]) + "}")
            gap = False
            continue
        for i in range(i1, i2):
            if i in shown:
                parts += ["…"] if gap else []
                parts.append(a[i])
                gap = False
            else:
                gap = True
    if gap and parts:
        parts.append("…")
    return WordDiff(" ".join(parts) if parts else "(no edit)", changed, frozenset(positions))
