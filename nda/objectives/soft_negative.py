"""One call for every way a sentence job spends its NDA negatives: weighted InfoNCE columns or SNCSE's margin.

Why one module: ``tasks/sentence.py`` and the sentence-transformers loss (``nda.integrations``) must compute
the same maths from the same options (``--nda-loss column|margin``, ``--nda-weight``, ``--nda-lambda``,
``--margin-alpha``, ``--margin-beta``, ``--nda-every``). Both hand their embeddings to
:class:`SoftNegativeLoss` and get the total loss and its parts back:

* ``mode="column"``: InfoNCE where each NDA negative is an extra column counting ``negative_weight`` times in
  the softmax denominator (:class:`~nda.objectives.ContrastiveNegativeLoss`; ``w = 1``: full-weight negatives,
  ``w = 0``: no NDA at all).
* ``mode="margin"``: InfoNCE *without* NDA columns plus ``margin_weight`` x SNCSE's bidirectional margin loss
  (:func:`~nda.objectives.margin.bidirectional_margin_loss`) between each anchor and its own NDA negatives.

"NDA on every N-th step" (UNA) is the caller passing ``nda_negatives=None`` on the other steps (and not
making or encoding negatives there); :func:`uses_negatives` is the one rule for which steps those are. The
InfoNCE part of a step without negatives is exactly the plain SimCSE loss in both modes.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import nn

from nda.objectives._checks import check_number, check_weight
from nda.objectives.contrastive import ContrastiveNegativeLoss, ContrastiveOutput
from nda.objectives.margin import bidirectional_margin_loss

__all__ = ["SoftNegativeLoss", "SoftNegativeOutput", "uses_negatives", "NEGATIVE_LOSS_MODES"]

NEGATIVE_LOSS_MODES = ("column", "margin")


class SoftNegativeOutput(NamedTuple):
    """``loss``: the scalar to backpropagate, ``info_nce + margin_weight * margin`` (margin mode) or the
    weighted InfoNCE (column mode). ``info_nce``, ``margin``: detached scalar parts for logging (``margin`` is
    0 in column mode and on steps without negatives). ``logits`` / ``labels``: the InfoNCE logits ``(B, C)``
    (float32, divided by the temperature; in margin mode without NDA columns) and the positive's column."""

    loss: torch.Tensor
    info_nce: torch.Tensor
    margin: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor


def uses_negatives(step: int, every: int = 1) -> bool:
    """Whether optimizer step ``step`` (0-based) uses NDA negatives under "NDA on every ``every``-th step":
    steps ``0, every, 2 * every, ...``. A pure function of the step, so a resumed run agrees with an
    uninterrupted one."""
    for name, value, low in (("step", step, 0), ("every", every, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return step % every == 0


class SoftNegativeLoss(nn.Module):
    """InfoNCE (SimCSE in-batch by default, or MoCo) whose NDA negatives enter as weighted columns or a margin.

    Args:
        mode: ``"column"`` (NDA negatives as InfoNCE columns of weight ``negative_weight``) or ``"margin"``
            (InfoNCE without them + ``margin_weight`` x the bidirectional margin loss).
        temperature: InfoNCE temperature, finite and > 0 (SimCSE: 0.05 = sentence-transformers' ``scale=20``).
        negative_weight: column mode: each NDA negative counts ``w`` times in the denominator (``--nda-weight``).
        margin_weight: margin mode: ``lambda`` in ``info_nce + lambda * margin`` (``--nda-lambda``; SNCSE ~1e-3).
        alpha, beta: margin mode: the zero-loss band ``-beta <= cos(q, neg) - cos(q, pos) <= -alpha``
            (``--margin-alpha``, ``--margin-beta``; SNCSE: 0.1, 0.3).
        normalize: cosine similarity (default) for both parts.
        in_batch, share_negatives: InfoNCE layout defaults, as in :class:`ContrastiveNegativeLoss` (default
            here: in-batch, SimCSE); ``forward`` may override both per call.

    ``forward(query, positive_key, nda_negatives=None, queue=None, *, negative_mask=None, in_batch=None,
    share_negatives=None, positive_offset=0)`` takes exactly :class:`ContrastiveNegativeLoss`'s arguments, so
    it drops into ``nda.models.sentence.contrastive_step``. Shapes: query ``(B, D)``; positive_key ``(M, D)``
    (in-batch: query ``i``'s positive is row ``i + positive_offset``, e.g. keys gathered from all ranks; MoCo:
    ``(B, D)``); nda_negatives ``(B_n, K, D)``; negative_mask ``(B_n, K)`` bool (``False``: skip, e.g. a
    counterfactual that did not flip). The margin pairs query ``i`` with its *own* negatives: row ``i`` when
    ``B_n == B``, else row ``i + positive_offset`` (negatives gathered from all ranks like the keys).
    Everything is computed in float32 with autocast off.

    Exactness: ``negative_weight=0`` (column) and ``margin_weight=0`` (margin) give the plain InfoNCE value and
    gradients, with no gradient reaching the negatives; ``nda_negatives=None`` gives plain InfoNCE in both modes.

    Examples:
        >>> q, pos = torch.randn(4, 8), torch.randn(4, 8)
        >>> negs, mask = torch.randn(4, 1, 8), torch.tensor([[True], [True], [False], [True]])
        >>> crit = SoftNegativeLoss("margin", margin_weight=1e-3, alpha=0.1, beta=0.3)
        >>> out = crit(q, pos, negs, negative_mask=mask)
        >>> torch.allclose(out.loss, out.info_nce + 1e-3 * out.margin), out.logits.shape  # no NDA columns
        (True, torch.Size([4, 4]))
        >>> out = SoftNegativeLoss("column", negative_weight=0.5)(q, pos, negs, negative_mask=mask)
        >>> out.logits.shape, out.margin.item()  # B in-batch keys + B*K shared NDA columns
        (torch.Size([4, 8]), 0.0)
        >>> plain = SoftNegativeLoss("margin")(q, pos, None)  # a step without NDA (--nda-every N)
        >>> torch.equal(plain.loss, SoftNegativeLoss("column")(q, pos, None).loss)
        True
    """

    def __init__(
        self,
        mode: Literal["column", "margin"] = "column",
        temperature: float = 0.05,
        negative_weight: float = 1.0,
        margin_weight: float = 1e-3,
        alpha: float = 0.1,
        beta: float = 0.3,
        normalize: bool = True,
        in_batch: bool = True,
        share_negatives: bool | None = None,
    ) -> None:
        super().__init__()
        if mode not in NEGATIVE_LOSS_MODES:
            raise ValueError(f"mode must be one of {NEGATIVE_LOSS_MODES}, got {mode!r}")
        self.mode = mode
        self.negative_weight = check_weight("negative_weight", negative_weight)
        self.margin_weight = check_weight("margin_weight", margin_weight)
        self.alpha, self.beta = check_number("alpha", alpha), check_number("beta", beta)
        if self.alpha > self.beta:
            raise ValueError(f"alpha must be <= beta (the zero-loss band is [-beta, -alpha]), got {alpha} > {beta}")
        self.info_nce = ContrastiveNegativeLoss(
            temperature=temperature, normalize=normalize, in_batch=in_batch, share_negatives=share_negatives,
            negative_weight=self.negative_weight if mode == "column" else 1.0,
        )

    @property
    def temperature(self) -> float:
        return self.info_nce.temperature

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
    ) -> SoftNegativeOutput:
        if self.mode == "column":
            out = self.info_nce(query, positive_key, nda_negatives, queue, negative_mask=negative_mask,
                                in_batch=in_batch, share_negatives=share_negatives, positive_offset=positive_offset)
            return self._info_nce_only(out)

        in_batch = self.info_nce.in_batch if in_batch is None else in_batch
        # the same argument checks as the column mode (any number of negative rows, as when shared)
        ContrastiveNegativeLoss._check(query, positive_key, nda_negatives, queue, negative_mask, in_batch, True,
                                       positive_offset)
        out = self.info_nce(query, positive_key, None, queue, in_batch=in_batch, positive_offset=positive_offset)
        if nda_negatives is None:
            return self._info_nce_only(out)
        positive, negatives, mask = self._own(query, positive_key, nda_negatives, negative_mask, in_batch, positive_offset)

        def margin() -> torch.Tensor:
            return bidirectional_margin_loss(query, positive, negatives, mask, self.alpha, self.beta,
                                             normalize=self.info_nce.normalize)

        if self.margin_weight == 0.0:  # exact: the negatives stay out of the graph (reported for logging only)
            with torch.no_grad():
                value = margin()
            return self._info_nce_only(out, margin=value)
        value = margin()
        return SoftNegativeOutput(out.loss + self.margin_weight * value, out.loss.detach(), value.detach(),
                                  out.logits, out.labels)

    @staticmethod
    def _info_nce_only(out: ContrastiveOutput, margin: torch.Tensor | None = None) -> SoftNegativeOutput:
        """The InfoNCE loss alone (the margin, if given, is only reported)."""
        reported = out.loss.new_zeros(()) if margin is None else margin
        return SoftNegativeOutput(out.loss, out.loss.detach(), reported, out.logits, out.labels)

    @staticmethod
    def _own(query, positive_key, nda_negatives, negative_mask, in_batch, offset):
        """Query ``i``'s positive and its own negatives (and mask), one row per query."""
        b = query.shape[0]
        positive = positive_key[offset : offset + b] if in_batch else positive_key
        rows = nda_negatives.shape[0]
        if rows == b:
            start = 0
        elif rows >= b + offset:
            start = offset
        else:
            raise ValueError(
                f"nda_negatives has {rows} rows: the margin needs each query's own negatives, in row i (B={b} rows) "
                f"or row i + positive_offset (>= B + positive_offset = {b + offset} rows, gathered from all ranks)"
            )
        negatives = nda_negatives[start : start + b]
        mask = negative_mask[start : start + b].to(query.device) if negative_mask is not None else None
        return positive, negatives, mask

    def extra_repr(self) -> str:
        if self.mode == "column":
            return f"mode='column', negative_weight={self.negative_weight:g}"
        return f"mode='margin', margin_weight={self.margin_weight:g}, alpha={self.alpha:g}, beta={self.beta:g}"
