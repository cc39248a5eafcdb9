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

Supervised rows (NegMPNet / supervised SimCSE) add three things, all masked per row:

- hard negatives: ``""`` = this row has none (it is not encoded and adds no column);
- ``symmetric=True``: the positive -> anchor direction too (each positive picks its anchor among all
  anchors), averaged with anchor -> positive, as NegMPNet trains on both orders of its triples;
- NDA negatives from the anchor, the positive or both (``nda_source``), and extra positives from a
  label-keeping double flip (``paraphrase=``): only rows whose result says ``.paraphrase`` get one, and
  they enter as a second InfoNCE term weighted ``extra_weight`` (a double flip is a weaker positive than
  a human paraphrase: full weight collapsed negation sensitivity in the forecast).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from nda.distributed import gather_no_grad, gather_with_grad, world_info
from nda.models.sentence import SentenceEncoder
from nda.base import apply_text
from nda.text.negatives import text_negatives, token_negatives

__all__ = ["ContrastiveBatch", "StepOutput", "NDA_SOURCES", "paraphrases_of", "build_contrastive_batch", "contrastive_step"]

NDA_SOURCES = ("anchor", "positive", "both")


@dataclass
class ContrastiveBatch:
    """Tokenised rows ``[anchors (B); positives (B, unsupervised: the anchors again); hard negatives (num_hard);
    NDA negatives (k*B, k-major); extra positives (num_extra)]`` plus the ``(B, k)`` mask of usable NDA
    negatives (``None`` when k = 0). ``hard_rows`` ``(B,)``: which rows have a hard negative (``None``: all of
    them when ``num_hard`` > 0); ``extra_rows`` ``(B,)``: which rows have an extra positive (in row order)."""

    features: dict[str, torch.Tensor]
    batch_size: int
    num_hard: int
    k: int
    negative_mask: torch.Tensor | None
    hard_rows: torch.Tensor | None = None
    extra_rows: torch.Tensor | None = None

    @property
    def num_extra(self) -> int:
        return int(self.extra_rows.sum()) if self.extra_rows is not None else 0


class StepOutput(NamedTuple):
    """What :func:`contrastive_step` returns: the criterion's fields (``loss`` = the total to backpropagate,
    ``info_nce`` / ``margin`` averaged over the directions, ``logits`` / ``labels`` of anchor -> positive) and
    ``extra_positive``: the (detached, unweighted) extra-positive InfoNCE, summed over rows that have one / B."""

    loss: torch.Tensor
    info_nce: torch.Tensor
    margin: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    extra_positive: torch.Tensor


def _pad_cat(parts: Sequence[Mapping[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    length = max(p["input_ids"].shape[1] for p in parts)
    out: dict[str, torch.Tensor] = {}
    for key in parts[0]:
        value = pad_id if key == "input_ids" else 0
        out[key] = torch.cat([F.pad(p[key], (0, length - p[key].shape[1]), value=value) for p in parts])
    return out


def paraphrases_of(texts: Sequence[str], maker: Callable[..., Any], generator: torch.Generator | None = None
                   ) -> tuple[list[str], list[bool]]:
    """``maker``'s texts and its per-sample ``.paraphrase`` flags (True: the text changed and its flips cancel, so
    it keeps the meaning). A generator that does not report ``.paraphrase`` is an error, never a guess."""
    result = apply_text(maker, list(texts), generator=generator)
    flags = getattr(result, "paraphrase", None)
    if flags is None:
        raise ValueError(f"--nda-positive {maker!r} does not report .paraphrase (label-keeping double flips, e.g. an "
                         "antonym swap then a negation); only such generators can make extra positives")
    flags = [bool(f) for f in flags]
    if len(flags) != len(texts) or len(result) != len(texts):
        raise ValueError(f"--nda-positive {maker!r} returned {len(result)} texts / {len(flags)} flags for {len(texts)}")
    return list(result), [f and new != old for f, new, old in zip(flags, result, texts)]


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
    *,
    nda_source: str = "anchor",
    paraphrase: Callable[..., Any] | None = None,
    paraphrase_needs_negative: bool = False,
) -> ContrastiveBatch:
    """Make ``k`` NDA negatives per source sentence and tokenise everything into one padded batch.

    ``positives=None`` is unsupervised SimCSE (the anchors are encoded twice). ``negative=None`` makes no
    negatives at all (plain SimCSE, or a step skipped by ``--nda-every``). ``level="string"`` applies
    ``negative`` to the strings before tokenising (every text negative, counterfactuals included);
    ``"token"`` applies it to the token ids (no re-tokenisation; the negative must support it).
    ``nda_source``: make them from the anchors, the positives or both (``2k`` per row, anchors' first).
    ``hard_negatives``: ``""`` marks a row without one. ``paraphrase``: a label-keeping double flip of the
    anchors as an extra positive, kept only where its result's ``.paraphrase`` is True (and, with
    ``paraphrase_needs_negative``, where the row also has a usable NDA negative on this step: the single flip
    that the double flip must be pulled away from, so the pair teaches "flips count" rather than "edits don't").
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
    if nda_source not in NDA_SOURCES:
        raise ValueError(f"nda_source must be one of {NDA_SOURCES}, got {nda_source!r}")
    if nda_source != "anchor" and positives is None and negative is not None:
        raise ValueError(f"nda_source={nda_source!r} needs positives (supervised rows)")
    if negative is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
        raise ValueError(f"k must be an int >= 1 when a negative is given, got {k!r}")
    k = k if negative is not None else 0
    sources = [] if not k else [anchors] if nda_source == "anchor" else \
        [list(positives)] if nda_source == "positive" else [anchors, list(positives)]

    hard_rows = None
    hard: list[str] = []
    if hard_negatives is not None:
        hard_rows = torch.tensor([bool(h) for h in hard_negatives], dtype=torch.bool)
        hard = [h for h in hard_negatives if h]
    texts = anchors + list(positives or []) + hard
    masks: list[torch.Tensor] = []
    if k and level == "string":
        for source in sources:
            negs, m = text_negatives(source, negative, k, generator=generator)
            masks.append(m)
            for result in negs:
                texts.extend(result)
    string_end = len(texts)
    extra_rows = None
    if paraphrase is not None:
        made, flags = paraphrases_of(anchors, paraphrase, generator=generator)
        extra_rows = torch.tensor(flags, dtype=torch.bool)
        texts.extend(t for t, f in zip(made, flags) if f)
    feats = encoder.tokenize(texts)
    n_pos = b if positives is not None else 0
    n_hard = len(hard)
    parts = [{key: v[:b] for key, v in feats.items()}]
    parts.append({key: v[b : b + n_pos] for key, v in feats.items()} if n_pos else parts[0])
    parts.append({key: v[b + n_pos : string_end] for key, v in feats.items()})  # hard negatives, string-level NDA
    if k and level == "token":
        for source_part in ([parts[0]] if nda_source == "anchor" else [parts[1]] if nda_source == "positive"
                            else [parts[0], parts[1]]):
            token_negs, m = token_negatives(source_part, negative, k, generator=generator)
            masks.append(m.cpu())
            parts.extend(token_negs)
    parts.append({key: v[string_end:] for key, v in feats.items()})  # extra positives
    mask = torch.cat(masks, dim=1) if masks else None
    if extra_rows is not None and paraphrase_needs_negative:
        keep = extra_rows & (mask.any(dim=1) if mask is not None else torch.zeros(b, dtype=torch.bool))
        drop = extra_rows & ~keep  # their rows leave the extra-positive block
        if drop.any():
            order = torch.nonzero(extra_rows).flatten()
            rows = keep[order]
            parts[-1] = {key: v[rows] for key, v in parts[-1].items()}
        extra_rows = keep
    features = _pad_cat(parts, encoder.tokenizer.pad_token_id or 0)
    if device is not None:
        features = {key: v.to(device, non_blocking=True) for key, v in features.items()}
        mask = mask.to(device, non_blocking=True) if mask is not None else None
        hard_rows = hard_rows.to(device) if hard_rows is not None else None
        extra_rows = extra_rows.to(device) if extra_rows is not None else None
    return ContrastiveBatch(features, b, n_hard, k * len(sources) if k else 0, mask, hard_rows, extra_rows)


def _gathered_hard(hard: torch.Tensor, hard_rows: torch.Tensor | None, b: int, distributed: bool) -> torch.Tensor:
    """The hard negatives of every process (rows without one dropped). Processes hold different numbers, so
    each pads its own to ``B`` rows, gathers, and drops the padding by the gathered ``hard_rows``."""
    if not distributed:
        return hard
    if hard_rows is None:
        return gather_with_grad(hard) if hard.shape[0] else hard
    index = torch.nonzero(hard_rows).flatten()
    padded = hard.new_zeros(b, hard.shape[1]).index_copy(0, index, hard)
    return gather_with_grad(padded)[gather_no_grad(hard_rows)]


def contrastive_step(model: nn.Module, batch: ContrastiveBatch, criterion: Callable[..., Any], gather: bool = True,
                     symmetric: bool = False, extra_weight: float = 1.0) -> StepOutput:
    """Encode a :class:`ContrastiveBatch` in one forward pass and return the loss (a :class:`StepOutput`).

    Logit layout per anchor (in-batch InfoNCE): ``[positives of all ranks | hard negatives of all ranks | NDA
    negatives of all ranks]``; with ``gather=False`` (or one process) that is ``B (+ H) + B*K`` columns. A
    criterion in margin mode (``criterion.mode == "margin"``) uses each anchor's own negatives only, so they
    are not gathered. ``symmetric``: also positive -> ``[anchors of all ranks | hard negatives | NDA]``, and the
    loss is the mean of both directions. Extra positives: anchor ``i`` with one gets a second InfoNCE term whose
    positive is that extra row and whose keys are the same minus its own positive (this rank's keys only are
    swapped, the term is summed over those rows / B and weighted ``extra_weight``). ``model`` may be wrapped
    (DDP): it is only called.
    """
    emb = model(**batch.features)
    b, h, k, p = batch.batch_size, batch.num_hard, batch.k, batch.num_extra
    query, positive = emb[:b], emb[b : 2 * b]
    hard = emb[2 * b : 2 * b + h]
    end = 2 * b + h + k * b
    nda = emb[2 * b + h : end].reshape(k, b, -1).transpose(0, 1) if k else None  # (B, K, D)
    extra = emb[end : end + p]
    mask = batch.negative_mask
    rank, world = world_info()
    distributed = gather and world > 1
    offset = rank * b if distributed else 0
    margin_mode = getattr(criterion, "mode", "column") == "margin"
    positives = gather_with_grad(positive) if distributed else positive
    hard = _gathered_hard(hard, batch.hard_rows, b, distributed)
    if distributed and nda is not None and not margin_mode:
        nda = gather_with_grad(nda.contiguous())
        mask = gather_no_grad(mask) if mask is not None else None

    def run(q: torch.Tensor, keys: torch.Tensor, off: int, negs, neg_mask) -> Any:
        keys = torch.cat([keys, hard]) if hard.shape[0] else keys
        return criterion(q, keys, negs, negative_mask=neg_mask, in_batch=True, share_negatives=True, positive_offset=off)

    def parts(o: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # any InfoNCE criterion's output
        return o.loss, getattr(o, "info_nce", o.loss.detach()), getattr(o, "margin", o.loss.new_zeros(()))

    out = run(query, positives, offset, nda, mask)
    loss, info_nce, margin = parts(out)
    if symmetric:
        back = parts(run(positive, gather_with_grad(query) if distributed else query, offset, nda, mask))
        loss, info_nce, margin = ((a + c) / 2 for a, c in zip((loss, info_nce, margin), back))
    extra_loss = loss.new_zeros(())
    if p:
        rows = torch.nonzero(batch.extra_rows).flatten()
        others = torch.ones(positives.shape[0], dtype=torch.bool, device=positives.device)
        others[rows + offset] = False  # each such anchor's own positive is not a negative of its extra positive
        negs, neg_mask = (nda[rows], mask[rows] if mask is not None else None) if margin_mode and nda is not None \
            else (nda, mask)
        term = run(query[rows], torch.cat([extra, positives[others]]), 0, negs, neg_mask)
        extra_loss = term.loss * (p / b)
        loss = loss + extra_weight * extra_loss
    return StepOutput(loss, info_nce, margin, out.logits, out.labels, extra_loss.detach())
