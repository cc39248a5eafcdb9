"""Refuse non-finite embeddings before they become a plausible number.

Why: one NaN weight (a LayerNorm scale, a diverged step) makes every embedding NaN, and NaN cosines still
rank (they sort last), so a broken encoder got STS-B 13.19 instead of an error. Every sentence metric checks
its embeddings here and names the model (and the task) in a one-line error.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["nonfinite_rows", "check_finite_embeddings"]


def nonfinite_rows(embeddings: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: rows of an ``(N, D)`` tensor holding any NaN or inf (one batched op)."""
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {tuple(embeddings.shape)}")
    return ~torch.isfinite(embeddings).all(dim=1)


def check_finite_embeddings(embeddings: torch.Tensor, model: str, texts: Sequence[str] | None = None,
                            task: str | None = None) -> None:
    """Raise a one-line ``ValueError`` naming ``model`` (and ``task``) when a row of ``embeddings`` is not finite.

    ``texts[i]`` is the text of row ``i``: the first bad one is quoted so the failure can be reproduced."""
    bad = nonfinite_rows(embeddings)
    if not bool(bad.any()):
        return
    first = int(bad.nonzero()[0, 0])
    where = f" on task {task}" if task else ""
    example = f", e.g. for {texts[first][:60]!r}" if texts is not None and first < len(texts) else ""
    raise ValueError(f"model {model!r}{where}: {int(bad.sum())} of {len(bad)} embeddings hold NaN/inf{example}; "
                     "its weights or outputs are broken (refusing to score it)")
