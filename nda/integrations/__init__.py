"""Hugging Face glue: ``datasets.map`` functions, data collators, a ``transformers.Trainer`` that uses the
negatives, sentence-transformers losses and an evaluator.

Submodules import their (heavy) Hugging Face dependency on first use; so do the names below
(``nda.integrations.NDATrainer`` imports transformers when first read, not with this package).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "NDATrainer": "nda.integrations.trainer",
    "NegativeDataCollator": "nda.integrations.collator",
    "add_negatives": "nda.integrations.datasets",
    "NDAMultipleNegativesRankingLoss": "nda.integrations.sentence_transformers",
    "NDASuiteEvaluator": "nda.integrations.sentence_transformers",
}

__all__ = list(_LAZY)  # noqa: F822 (module __getattr__)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
