"""Train/eval overlap guard: drop training pairs (or sentences) that contain a sentence of an evaluation set.

Why: supervised pair data (SNLI dev/test, MRPC, SICK, STS-B train) share sentences with the STS / SICK /
PAWS / CANNOT evaluation sets; a pair trained on makes its evaluation sentence's score meaningless. The guard
compares *normalised* sentences -- lower-cased, punctuation stripped, whitespace collapsed -- and matches on
that text with the spaces removed as well, so SentEval's tokenised copies (``"do n't"``, ``"packages ."``)
match their untokenised originals (``"don't"``, ``"packages."``).

The caller gathers the evaluation texts (the task reads the evaluation suite's own default paths); this module
only normalises and filters, and records what it could check::

    guard = OverlapGuard.from_texts(eval_texts, checked=["STS12", ...], missing={"PAWS": "not found"})
    kept, dropped = guard.filter(rows)          # rows: tuples of sentences ('' = absent, ignored)
    corpus, dropped = guard.filter_corpus(corpus)   # an indexed TextCorpus (unsupervised sentences too)
    guard.report(dropped_per_source)            # -> JSON-ready dict for results.json

An empty guard (no evaluation set on disk) cannot claim that nothing overlaps: :meth:`OverlapGuard.report`
says ``"ran": False`` and the reason, never ``dropped: 0``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["normalise", "overlap_key", "OverlapGuard"]

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower-case, punctuation and symbols removed (Unicode categories P* and S*), whitespace collapsed."""
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text.lower())
    return _SPACE.sub(" ", text).strip()


def overlap_key(text: str) -> str:
    """The key two sentences are compared by: :func:`normalise` with every space removed as well (a tokenised
    ``"do n't"`` and ``"don't"`` both give ``"dont"``)."""
    return normalise(text).replace(" ", "")


@dataclass
class OverlapGuard:
    """The keys of every evaluation sentence, which evaluation sets were read and which could not be."""

    keys: frozenset[str]
    checked: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    reason: str = ("no evaluation set was found on disk: the overlap guard could not run, so training rows were "
                   "NOT checked against evaluation sentences")

    @classmethod
    def disabled(cls, why: str) -> OverlapGuard:
        """A guard that did not run, and why (``--overlap-guard none``)."""
        return cls(frozenset(), [], {}, why)

    @classmethod
    def from_texts(cls, texts: Iterable[str], checked: Sequence[str] = (), missing: Mapping[str, str] | None = None
                   ) -> OverlapGuard:
        keys = frozenset(k for k in map(overlap_key, texts) if k)
        return cls(keys, list(checked), dict(missing or {}))

    @property
    def ran(self) -> bool:
        """Whether any evaluation set was read (otherwise nothing can be said about overlap)."""
        return bool(self.checked) and bool(self.keys)

    def overlaps(self, row: Sequence[str]) -> bool:
        """Whether any non-empty sentence of ``row`` is an evaluation sentence."""
        return any(s and overlap_key(s) in self.keys for s in row)

    def filter(self, rows: Sequence[Sequence[str]]) -> tuple[list[tuple[str, ...]], int]:
        """``(kept rows, number dropped)``; every row kept when the guard did not run."""
        if not self.ran:
            return [tuple(r) for r in rows], 0
        kept = [tuple(r) for r in rows if not self.overlaps(r)]
        return kept, len(rows) - len(kept)

    def filter_corpus(self, corpus: Any, chunk: int = 65536) -> tuple[Any, int]:
        """``(corpus without the overlapping rows, number dropped)`` for an indexed ``nda.data.text.TextCorpus``
        (sentences -- checked as training reads them, :func:`nda.data.text.sentence_text` -- or pairs), read
        ``chunk`` rows at a time so a million-line file never becomes one list."""
        if not self.ran:
            return corpus, 0
        from nda.data.text import sentence_text

        keep = np.ones(len(corpus), dtype=bool)
        for start in range(0, len(corpus), chunk):
            rows = corpus[start:start + chunk]
            keep[start:start + len(rows)] = [
                not self.overlaps((sentence_text(r),) if isinstance(r, str) else r) for r in rows]
        dropped = int((~keep).sum())
        return (corpus.select(keep) if dropped else corpus), dropped

    def report(self, dropped: Mapping[str, int] | None = None, before: Mapping[str, int] | None = None) -> dict:
        """JSON-ready record for ``results.json``: ``dropped`` per source only when the guard ran."""
        out: dict = {"ran": self.ran, "eval_sets": list(self.checked), "not_checked": dict(self.missing),
                     "eval_sentences": len(self.keys),
                     "match": "lower-case, punctuation stripped, whitespace collapsed, then spaces removed"}
        if self.ran:
            out["dropped"] = dict(dropped or {})
            if before is not None:
                out["rows_before"] = dict(before)
        else:
            out["dropped"] = None
            out["reason"] = self.reason
        return out
