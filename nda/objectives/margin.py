"""SNCSE's bidirectional margin loss: a soft negative sits *between* an unrelated sentence and the positive.

A negated sentence ("the movie was not good") shares almost every word with its anchor and gold similarity
scores still rate the pair as partly similar, so pushing it as far away as an unrelated sentence (a full
InfoNCE column) hurts STS. SNCSE (Wang et al., 2022, "SNCSE: Contrastive Learning for Unsupervised Sentence
Embedding with Soft Negative Samples") instead bounds the gap between the two cosines::

    d    = cos(q, neg) - cos(q, pos)
    loss = relu(d + alpha) + relu(-d - beta)        # 0 exactly when -beta <= d <= -alpha

i.e. the negative must be *less* similar to the anchor than the positive by at least ``alpha`` but by at most
``beta`` (defaults 0.1 and 0.3). It is used next to InfoNCE without NDA columns, with a small weight
(:class:`nda.objectives.SoftNegativeLoss`, ``mode="margin"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nda.objectives._checks import check_number, check_tensor

__all__ = ["margin_delta", "bidirectional_margin_loss"]


def _check_inputs(query: object, positive: object, negatives: object, negative_mask: object) -> None:
    q = check_tensor("query", query)
    p = check_tensor("positive", positive)
    n = check_tensor("negatives", negatives)
    if q.ndim != 2 or q.shape[0] == 0:
        raise ValueError(f"query must have shape (B, D) with B >= 1, got {tuple(q.shape)}")
    if p.shape != q.shape:
        raise ValueError(f"positive must have the query's shape {tuple(q.shape)} (one positive per query), got {tuple(p.shape)}")
    if n.ndim != 3 or n.shape[0] != q.shape[0] or n.shape[2] != q.shape[1] or n.shape[1] == 0:
        raise ValueError(
            f"negatives must have shape (B, K, D) = ({q.shape[0]}, K >= 1, {q.shape[1]}) (query i's own negatives "
            f"in row i), got {tuple(n.shape)}"
        )
    if negative_mask is not None:
        if not isinstance(negative_mask, torch.Tensor) or negative_mask.dtype != torch.bool:
            got = negative_mask.dtype if isinstance(negative_mask, torch.Tensor) else type(negative_mask).__name__
            raise TypeError(f"negative_mask must be a bool tensor (True = use this negative), got {got}")
        if negative_mask.shape != n.shape[:2]:
            raise ValueError(f"negative_mask must have shape (B, K) = {tuple(n.shape[:2])}, got {tuple(negative_mask.shape)}")


def margin_delta(
    query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, normalize: bool = True
) -> torch.Tensor:
    """``d[i, k] = sim(query[i], negatives[i, k]) - sim(query[i], positive[i])``, ``(B, K)`` float32.

    ``sim`` is the cosine (``normalize=True``) or the dot product of already-normalised inputs. Computed in
    float32 with autocast off, so bf16/fp16 embeddings are safe.
    """
    _check_inputs(query, positive, negatives, None)
    return _delta(query, positive, negatives, normalize)


def _delta(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, normalize: bool) -> torch.Tensor:
    """:func:`margin_delta` on inputs already checked (the loss checks once, then calls this)."""
    with torch.autocast(device_type=query.device.type, enabled=False):
        q, p, n = query.float(), positive.float(), negatives.float()
        if normalize:
            q, p, n = F.normalize(q, dim=-1), F.normalize(p, dim=-1), F.normalize(n, dim=-1)
        pos = (q * p).sum(dim=-1, keepdim=True)  # (B, 1)
        neg = torch.einsum("bd,bkd->bk", q, n)  # (B, K)
        return neg - pos


def bidirectional_margin_loss(
    query: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    negative_mask: torch.Tensor | None = None,
    alpha: float = 0.1,
    beta: float = 0.3,
    normalize: bool = True,
) -> torch.Tensor:
    """Mean of ``relu(d + alpha) + relu(-d - beta)`` over the valid negatives (see the module doc), a scalar.

    Args:
        query: ``(B, D)`` anchors.
        positive: ``(B, D)``, query ``i``'s positive in row ``i``.
        negatives: ``(B, K, D)``, query ``i``'s own NDA negatives in row ``i``.
        negative_mask: ``(B, K)`` bool, ``False`` = skip this negative (a counterfactual that did not flip):
            it changes neither the value nor any gradient. No valid negative at all gives ``0``.
        alpha, beta: the band ``[-beta, -alpha]`` where the loss is 0; ``alpha <= beta``.
        normalize: cosine similarity (default) or dot product of already-normalised inputs.

    >>> q = torch.tensor([[1.0, 0.0]]); pos = torch.tensor([[1.0, 0.0]])
    >>> neg = torch.tensor([[[0.8, 0.6]]])  # cos 0.8: d = -0.2, inside [-0.3, -0.1]
    >>> bidirectional_margin_loss(q, pos, neg).item()
    0.0
    """
    alpha, beta = check_number("alpha", alpha), check_number("beta", beta)
    if alpha > beta:
        raise ValueError(f"alpha must be <= beta (the zero-loss band is [-beta, -alpha]), got alpha={alpha}, beta={beta}")
    _check_inputs(query, positive, negatives, negative_mask)
    d = _delta(query, positive, negatives, normalize)
    with torch.autocast(device_type=d.device.type, enabled=False):
        per = F.relu(d + alpha) + F.relu(-d - beta)  # (B, K)
        if negative_mask is None:
            return per.mean()
        mask = negative_mask.to(per.device)
        # where, not a product: a masked entry contributes an exact 0 and sends back an exact 0 gradient
        total = torch.where(mask, per, per.new_zeros(())).sum()
        return total / mask.sum().clamp_min(1).to(per.dtype)
