"""InfoNCE where each anchor also gets negatives made from itself by NDA.

A jigsawed crop of the query image, or the query sentence with its words shuffled, shares the anchor's
low-level statistics but not its meaning: as an extra negative it forbids the encoder from matching on
texture or bag-of-words alone (Sinha et al., ICLR 2021, sec. 4). The loss sees embeddings only; making
the negatives and encoding them is the task's job.

A full-weight negative column says "as far from the anchor as any other sentence", which is wrong for a
negated or reordered sentence that gold similarity scores still rate as partly similar. ``negative_weight``
softens that (SimCSE's ``hard_negative_weight``, as a weight rather than a log weight): each NDA negative
counts ``w`` times in the softmax denominator. :class:`nda.objectives.SoftNegativeLoss` adds a bounded
alternative (SNCSE's margin) behind the same call.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from nda.objectives._checks import check_temperature, check_tensor, check_weight

__all__ = ["ContrastiveOutput", "ContrastiveNegativeLoss"]


class ContrastiveOutput(NamedTuple):
    """``loss``: scalar (or ``(B,)`` with ``reduction="none"``); ``logits``: ``(B, C)`` float32, already divided
    by the temperature (NDA columns plus ``log negative_weight``: the logits the loss saw), masked negatives at
    ``-inf``; ``labels``: ``(B,)`` long, the column of each positive."""

    loss: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor


class ContrastiveNegativeLoss(nn.Module):
    """InfoNCE with NDA negatives beside queue (MoCo) or in-batch (SimCLR/SimCSE) negatives.

    Logit layout (columns, left to right), all divided by ``temperature``:

    * ``in_batch=False`` (MoCo): ``[positive (1) | NDA negatives | queue (N)]``, label ``0``.
    * ``in_batch=True`` (SimCSE): ``[keys of the batch (M) | NDA negatives | queue (N)]``, label
      ``i + positive_offset``: the other anchors' positives are negatives.

    NDA negatives block: with ``share_negatives=False`` anchor ``i`` gets its own ``K`` negatives
    ``nda_negatives[i]`` (``K`` columns); with ``share_negatives=True`` every anchor gets all ``B_n * K``
    negatives of the batch (SimCSE-with-hard-negatives style, ``B_n * K`` columns). The default
    (``None``) shares in in-batch mode and not in MoCo mode. So in-batch + shared gives ``B + B*K`` logits per
    anchor, MoCo gives ``1 + K + N``.

    ``negative_mask`` (``(B_n, K)`` bool) drops negatives whose entry is ``False`` (their logits become
    ``-inf``, so the loss equals the loss without them): a counterfactual that could not be flipped, or a
    generator that returned its input unchanged, must not be pushed away from its own anchor.

    ``negative_weight`` ``w`` makes each NDA negative count ``w`` times in the softmax denominator:
    ``log w`` is added to the NDA columns (after the division by the temperature), so anchor ``i``'s loss is
    ``-log(exp(s_pos) / (sum_other exp(s) + w * sum_nda exp(s)))``. ``w = 1`` is plain InfoNCE (the same
    operations, bit for bit); ``w = 0`` leaves the NDA block out of the logits altogether, so loss, logits
    and gradients are those of a call without ``nda_negatives`` (the negatives get no gradient at all).

    Args:
        temperature: softmax temperature ``tau > 0`` (0.07: MoCo; SimCSE uses 0.05).
        normalize: L2-normalise query, keys, negatives and queue (cosine similarity). Turn off only if the
            caller already normalised.
        in_batch: default layout (see above); ``forward(..., in_batch=...)`` overrides it per call.
        share_negatives: default for the NDA block (``None``: ``in_batch``); overridable per call.
        reduction: ``"mean"`` (default) or ``"none"`` (per-anchor losses).
        negative_weight: ``w >= 0`` (finite), the weight of each NDA negative in the denominator (default 1).

    Shapes:
        query ``(B, D)``; positive_key ``(B, D)`` (in-batch mode: ``(M, D)`` with ``M >= B``, e.g. keys
        gathered from all ranks, query ``i``'s positive at row ``i + positive_offset``); nda_negatives
        ``(B, K, D)`` (shared: ``(B_n, K, D)``, any ``B_n``); queue ``(N, D)``; negative_mask ``(B_n, K)``.
        Logits are computed in float32 with autocast off, so fp16/bf16 embeddings are safe.

    Gradients flow into every input that requires them: detach the keys (MoCo momentum encoder) or the
    queue before the call where the method wants no gradient through them.

    Examples:
        >>> criterion = ContrastiveNegativeLoss(temperature=0.07)
        >>> q, k = torch.randn(4, 16), torch.randn(4, 16)
        >>> negs = torch.randn(4, 2, 16)  # two NDA views of each query, encoded
        >>> queue = torch.randn(32, 16)
        >>> out = criterion(q, k, negs, queue=queue)
        >>> out.logits.shape, out.labels.tolist()  # 1 + K + N columns, positives in column 0
        (torch.Size([4, 35]), [0, 0, 0, 0])
        >>> out = criterion(q, k, negs, in_batch=True)  # SimCSE: B in-batch keys + all B*K NDA negatives
        >>> out.logits.shape, out.labels.tolist()
        (torch.Size([4, 12]), [0, 1, 2, 3])
    """

    def __init__(
        self,
        temperature: float = 0.07,
        normalize: bool = True,
        in_batch: bool = False,
        share_negatives: bool | None = None,
        reduction: Literal["mean", "none"] = "mean",
        negative_weight: float = 1.0,
    ) -> None:
        super().__init__()
        temperature = check_temperature(temperature)
        self.negative_weight = check_weight("negative_weight", negative_weight)
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        for name, value in (("normalize", normalize), ("in_batch", in_batch)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
        if share_negatives is not None and not isinstance(share_negatives, bool):
            raise TypeError(f"share_negatives must be a bool or None, got {type(share_negatives).__name__}")
        self.temperature = temperature
        self.normalize = normalize
        self.in_batch = in_batch
        self.share_negatives = share_negatives
        self.reduction = reduction

    def forward(
        self,
        query: torch.Tensor,
        positive_key: torch.Tensor,
        nda_negatives: torch.Tensor | None = None,
        queue: torch.Tensor | None = None,
        *,
        negative_mask: torch.Tensor | None = None,
        in_batch: bool | None = None,
        share_negatives: bool | None = None,
        positive_offset: int = 0,
    ) -> ContrastiveOutput:
        in_batch = self.in_batch if in_batch is None else in_batch
        if share_negatives is None:
            share_negatives = self.share_negatives if self.share_negatives is not None else in_batch
        q, k, negs, queue, negative_mask = self._check(
            query, positive_key, nda_negatives, queue, negative_mask, in_batch, share_negatives, positive_offset
        )
        batch = q.shape[0]
        if self.negative_weight == 0.0:
            negs, negative_mask = None, None  # w = 0: the block is absent, not multiplied by 0 (exact, no gradient)
        # float32 with autocast off: a bf16 matmul of unit vectors divided by tau = 0.05 loses ~3 digits.
        with torch.autocast(device_type=q.device.type, enabled=False):
            q, k = q.float(), k.float()
            negs = negs.float() if negs is not None else None
            queue = queue.float() if queue is not None else None
            if self.normalize:
                q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
                negs = F.normalize(negs, dim=-1) if negs is not None else None
                queue = F.normalize(queue, dim=-1) if queue is not None else None

            if in_batch:
                blocks = [q @ k.T]  # (B, M)
                labels = torch.arange(batch, device=q.device) + positive_offset
            else:
                blocks = [(q * k).sum(dim=-1, keepdim=True)]  # (B, 1)
                labels = torch.zeros(batch, dtype=torch.long, device=q.device)
            nda_cols = None
            if negs is not None:
                if share_negatives:
                    flat = negs.reshape(-1, negs.shape[-1])  # (B_n * K, D)
                    neg_logits = q @ flat.T  # (B, B_n * K)
                    keep = negative_mask.reshape(1, -1) if negative_mask is not None else None
                else:
                    neg_logits = torch.einsum("bd,bkd->bk", q, negs)  # (B, K)
                    keep = negative_mask
                if keep is not None:
                    neg_logits = neg_logits.masked_fill(~keep, float("-inf"))
                start = blocks[0].shape[1]
                nda_cols = (start, start + neg_logits.shape[1])
                blocks.append(neg_logits)
            if queue is not None:
                blocks.append(q @ queue.T)  # (B, N)
            logits = torch.cat(blocks, dim=1) / self.temperature
            if nda_cols is not None and self.negative_weight != 1.0:
                # log w on the NDA columns: each counts w times in the denominator (-inf stays -inf)
                bias = logits.new_zeros(logits.shape[1])
                bias[nda_cols[0] : nda_cols[1]] = math.log(self.negative_weight)
                logits = logits + bias
            loss = F.cross_entropy(logits, labels, reduction=self.reduction)
        return ContrastiveOutput(loss, logits, labels)

    @staticmethod
    def _check(query, positive_key, nda_negatives, queue, negative_mask, in_batch, share_negatives, positive_offset):
        q = check_tensor("query", query)
        k = check_tensor("positive_key", positive_key)
        if q.ndim != 2 or q.shape[0] == 0:
            raise ValueError(f"query must have shape (B, D) with B >= 1, got {tuple(q.shape)}")
        batch, dim = q.shape
        if k.ndim != 2 or k.shape[1] != dim:
            raise ValueError(f"positive_key must have shape (B, D) with D={dim} like query, got {tuple(k.shape)}")
        if isinstance(positive_offset, bool) or not isinstance(positive_offset, int) or positive_offset < 0:
            raise ValueError(f"positive_offset must be an int >= 0, got {positive_offset!r}")
        if in_batch:
            if k.shape[0] < batch + positive_offset:
                raise ValueError(
                    f"positive_key must have at least B + positive_offset = {batch + positive_offset} rows in "
                    f"in-batch mode (query i's positive is row i + positive_offset), got {k.shape[0]}"
                )
        else:
            if k.shape[0] != batch:
                raise ValueError(
                    f"positive_key must have shape (B, D) = {(batch, dim)} (one positive per query), "
                    f"got {tuple(k.shape)}"
                )
            if positive_offset != 0:
                raise ValueError("positive_offset only applies to in_batch=True (the positive is column 0 otherwise)")
        if nda_negatives is not None:
            check_tensor("nda_negatives", nda_negatives)
            if nda_negatives.ndim != 3 or nda_negatives.shape[2] != dim or nda_negatives.shape[1] == 0:
                raise ValueError(
                    f"nda_negatives must have shape (B, K, D) with K >= 1 and D={dim}, got {tuple(nda_negatives.shape)}"
                )
            if not share_negatives and nda_negatives.shape[0] != batch:
                raise ValueError(
                    f"nda_negatives must have B={batch} rows (anchor i gets nda_negatives[i]) unless "
                    f"share_negatives=True, got {tuple(nda_negatives.shape)}"
                )
        if negative_mask is not None:
            if nda_negatives is None:
                raise ValueError("negative_mask was given without nda_negatives")
            if not isinstance(negative_mask, torch.Tensor) or negative_mask.dtype != torch.bool:
                got = negative_mask.dtype if isinstance(negative_mask, torch.Tensor) else type(negative_mask).__name__
                raise TypeError(f"negative_mask must be a bool tensor (True = use this negative), got {got}")
            if negative_mask.shape != nda_negatives.shape[:2]:
                raise ValueError(
                    f"negative_mask must have shape (B, K) = {tuple(nda_negatives.shape[:2])} like nda_negatives, "
                    f"got {tuple(negative_mask.shape)}"
                )
            negative_mask = negative_mask.to(q.device)
        if queue is not None:
            check_tensor("queue", queue)
            if queue.ndim != 2 or queue.shape[1] != dim:
                raise ValueError(f"queue must have shape (N, D) with D={dim}, got {tuple(queue.shape)}")
        return q, k, nda_negatives, queue, negative_mask

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature:g}, normalize={self.normalize}, in_batch={self.in_batch}, "
            f"share_negatives={self.share_negatives}, reduction={self.reduction!r}, "
            f"negative_weight={self.negative_weight:g}"
        )
