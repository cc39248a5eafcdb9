"""The SimCSE batch and step with NDA negatives: what ``tasks/sentence.py`` runs and ``benchmarks/`` times.

One micro-batch is two calls:

- :func:`build_contrastive_batch` -- ``k`` NDA negatives per anchor (strings before tokenising, or token ids
  after; :func:`nda.text.text_negatives` / :func:`nda.text.token_negatives`, with the mask of usable ones)
  and one padded batch ``[anchors; positives; hard negatives; NDA negatives]``;
- :func:`contrastive_step` -- one forward pass over that batch, the in-batch keys (and, for NDA columns,
  the negatives) gathered from every process with gradients, and the criterion
  (:class:`nda.objectives.SoftNegativeLoss`: weighted NDA columns or SNCSE's margin).

Unsupervised SimCSE (Gao et al., 2021) passes no positives: the positive of a sentence is the sentence
itself encoded a second time under another dropout mask, so the model must be in train mode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nda.distributed import gather_no_grad, gather_with_grad, world_info
from nda.models.sentence import SentenceEncoder
from nda.text.negatives import text_negatives, token_negatives

__all__ = ["ContrastiveBatch", "build_contrastive_batch", "contrastive_step"]


@dataclass
class ContrastiveBatch:
    """Tokenised rows ``[anchors (B); positives (B, unsupervised: the anchors again); hard negatives (B or 0);
    NDA negatives (K*B, k-major)]`` plus the ``(B, K)`` mask of usable NDA negatives (``None`` when K = 0)."""

    features: dict[str, torch.Tensor]
    batch_size: int
    num_hard: int
    k: int
    negative_mask: torch.Tensor | None


def _pad_cat(parts: Sequence[Mapping[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    length = max(p["input_ids"].shape[1] for p in parts)
    out: dict[str, torch.Tensor] = {}
    for key in parts[0]:
        value = pad_id if key == "input_ids" else 0
        out[key] = torch.cat([F.pad(p[key], (0, length - p[key].shape[1]), value=value) for p in parts])
    return out


def build_contrastive_batch(
    encoder: SentenceEncoder,
    anchors: Sequence[str],
    positives: Sequence[str] | None = None,
    hard_negatives: Sequence[str] | None = None,
    negative: Callable[..., Any] | None = None,
    k: int = 1,
    level: str = "string",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> ContrastiveBatch:
    """Make ``k`` NDA negatives per anchor and tokenise everything into one padded batch.

    ``positives=None`` is unsupervised SimCSE (the anchors are encoded twice). ``negative=None`` makes no
    negatives at all (plain SimCSE, or a step skipped by ``--nda-every``). ``level="string"`` applies
    ``negative`` to the anchor strings before tokenising (every text negative, counterfactuals included);
    ``"token"`` applies it to the anchors' token ids (no re-tokenisation; the negative must support it).
    ``encoder`` provides the tokenizer and ``max_length`` only (the forward pass is :func:`contrastive_step`'s).
    """
    anchors = list(anchors)
    b = len(anchors)
    if b == 0:
        raise ValueError("anchors must be a non-empty list of strings")
    if positives is not None and len(positives) != b:
        raise ValueError(f"positives must have one entry per anchor ({b}), got {len(positives)}")
    if hard_negatives is not None and len(hard_negatives) != b:
        raise ValueError(f"hard_negatives must have one entry per anchor ({b}), got {len(hard_negatives)}")
    if level not in ("string", "token"):
        raise ValueError(f"level must be 'string' or 'token', got {level!r}")
    if negative is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
        raise ValueError(f"k must be an int >= 1 when a negative is given, got {k!r}")
    k = k if negative is not None else 0

    texts = anchors + list(positives or []) + list(hard_negatives or [])
    mask: torch.Tensor | None = None
    if k and level == "string":
        negs, mask = text_negatives(anchors, negative, k, generator=generator)
        for result in negs:
            texts.extend(result)
    feats = encoder.tokenize(texts)
    parts = [{key: v[:b] for key, v in feats.items()}]
    n_pos = b if positives is not None else 0
    parts.append({key: v[b : b + n_pos] for key, v in feats.items()} if n_pos else parts[0])
    parts.append({key: v[b + n_pos :] for key, v in feats.items()})  # hard negatives, string-level NDA
    if k and level == "token":
        token_negs, mask = token_negatives(parts[0], negative, k, generator=generator)
        parts.extend(token_negs)
    features = _pad_cat(parts, encoder.tokenizer.pad_token_id or 0)
    if device is not None:
        features = {key: v.to(device, non_blocking=True) for key, v in features.items()}
        mask = mask.to(device, non_blocking=True) if mask is not None else None
    return ContrastiveBatch(features, b, len(hard_negatives) if hard_negatives is not None else 0, k, mask)


def contrastive_step(model: nn.Module, batch: ContrastiveBatch, criterion: Callable[..., Any], gather: bool = True) -> Any:
    """Encode a :class:`ContrastiveBatch` in one forward pass and return ``criterion``'s output.

    Logit layout per anchor (in-batch InfoNCE): ``[positives of all ranks | hard negatives of all ranks | NDA
    negatives of all ranks]``; with ``gather=False`` (or one process) that is ``B (+ B) + B*K`` columns. A
    criterion in margin mode (``criterion.mode == "margin"``) uses each anchor's own negatives only, so they
    are not gathered. ``model`` may be wrapped (DDP): it is only called.
    """
    emb = model(**batch.features)
    b, h, k = batch.batch_size, batch.num_hard, batch.k
    query, positive = emb[:b], emb[b : 2 * b]
    hard = emb[2 * b : 2 * b + h]
    nda = emb[2 * b + h :].reshape(k, b, -1).transpose(0, 1) if k else None  # (B, K, D)
    mask = batch.negative_mask
    rank, world = world_info()
    offset = 0
    if gather and world > 1:
        offset = rank * b
        positive = gather_with_grad(positive)
        hard = gather_with_grad(hard) if h else hard
        if nda is not None and getattr(criterion, "mode", "column") != "margin":
            nda = gather_with_grad(nda.contiguous())
            mask = gather_no_grad(mask) if mask is not None else None
    keys = torch.cat([positive, hard]) if h else positive
    return criterion(query, keys, nda, negative_mask=mask, in_batch=True, share_negatives=True, positive_offset=offset)
