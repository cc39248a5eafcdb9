"""Moved to :mod:`nda.data.sentence_pairs` (data, not metrics). Kept only so that :mod:`nda.metrics.sentence_eval`
still imports: remove once it imports from ``nda.data``."""

from __future__ import annotations

import os

from nda.data.labeled_text import load_labeled_texts
from nda.data.sentence_pairs import (  # noqa: F401
    SENTEVAL_STS_SUBSETS,
    LabelledPairs,
    StsYear,
    load_labelled_pairs,
    load_senteval_sts_year,
    load_sick_entailment,
    load_sick_relatedness,
)


def load_labelled_texts(path: str | os.PathLike) -> tuple[list[str], list[int]]:
    """Deprecated: ``load_labeled_texts(path)`` as ``(texts, labels)``, for sentence_eval until it calls that."""
    data = load_labeled_texts(path, label_map="sentiment")
    return data.texts, data.labels
