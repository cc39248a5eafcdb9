"""Evaluation metrics: FID/KID over any feature extractor (cached reference statistics), GAN evaluation,
AUROC, kNN / linear probe, STS Spearman.

Submodules load on first use, so importing one metric never pulls in the stack of another.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    # anomaly detection
    "anomaly_auroc": "nda.metrics.anomaly",
    "auroc_table": "nda.metrics.anomaly",
    "fpr_at_tpr": "nda.metrics.anomaly",
    # image generation quality
    "frechet_distance": "nda.metrics.fid",
    "kernel_inception_distance": "nda.metrics.fid",
    "fid_from_features": "nda.metrics.fid",
    "kid_from_features": "nda.metrics.fid",
    "compute_features": "nda.metrics.fid",
    "get_extractor": "nda.metrics.extractors",
    "ReferenceStats": "nda.metrics.reference",
    "reference_stats": "nda.metrics.reference",
    "load_reference_stats": "nda.metrics.reference",
    # GAN evaluation (the GAN job and tasks/eval_gan.py)
    "fid_kid": "nda.metrics.gan_eval",
    "discriminator_anomaly": "nda.metrics.gan_eval",
    # representation quality
    "knn_accuracy": "nda.metrics.representation",
    "linear_probe": "nda.metrics.representation",
    # sentence embeddings
    "sts_spearman": "nda.metrics.sts",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nda.metrics' has no attribute {name!r}")
