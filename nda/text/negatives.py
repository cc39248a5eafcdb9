"""k negatives per anchor plus the mask of usable ones: the one place every consumer of text negatives gets them.

Why one helper: the sentence model, the sentence-transformers loss and the data collator all need "k NDA
negatives of these anchors, and which of them are real negatives". A negative is *not* usable when it equals
its anchor (a one-word sentence cannot be shuffled) or when a label-flipping member could not flip it (a
counterfactual returns the original text then) -- also inside ``"counterfactual|token_shuffle"``, because the
mask is read from :class:`~nda.base.NegativeResult` (``.valid``), never from the class of the negative.

>>> import torch
>>> from nda.text import TokenShuffle
>>> negs, valid = text_negatives(["the cat sat", "Hmm."], TokenShuffle(), k=2, generator=torch.Generator().manual_seed(0))
>>> len(negs), len(negs[0]), valid.tolist()
(2, 2, [[True, True], [False, False]])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from nda.base import NegativeResult, apply_text
from nda.text._words import check_texts

__all__ = ["text_negatives", "token_negatives"]


def _check_k(k: Any) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    return k


def text_negatives(
    anchors: Sequence[str],
    negative: Callable[..., Any],
    k: int = 1,
    *,
    generator: torch.Generator | None = None,
    labels: Any = None,
    label_map: Any = None,
    device: torch.device | str | None = None,
) -> tuple[list[NegativeResult], torch.Tensor]:
    """``k`` negatives of every anchor string and the ``(B, k)`` bool mask of the usable ones.

    Returns ``(negatives, valid)``: ``negatives[r]`` is the :class:`~nda.base.NegativeResult` of the ``r``-th
    call of ``negative`` on all anchors (so ``negatives[r][b]`` is the ``r``-th negative of ``anchors[b]``, with
    ``negatives[r].flipped[b]`` and, when ``labels`` were given, ``negatives[r].labels[b]``); ``valid[b, r]`` is
    False where that negative equals its anchor or is not a valid negative (``NegativeResult.valid``: e.g. a
    counterfactual that did not flip). The ``k`` calls share ``generator`` in order, exactly as ``k`` plain
    calls would. ``labels`` / ``label_map`` reach label-flipping negatives only. ``valid`` lives on ``device``
    (default CPU).
    """
    anchors = check_texts(anchors, "text_negatives")
    if not callable(negative):
        raise TypeError(f"negative must be a callable text negative, got {type(negative).__name__}")
    k = _check_k(k)
    negatives: list[NegativeResult] = []
    rows: list[list[bool]] = []
    for _ in range(k):
        result = apply_text(negative, anchors, generator=generator, labels=labels, label_map=label_map)
        if len(result) != len(anchors):
            raise ValueError(f"{negative!r} returned {len(result)} texts for {len(anchors)} anchors")
        negatives.append(result)
        rows.append([ok and text != anchor for ok, text, anchor in zip(result.valid, result, anchors)])
    valid = torch.tensor(rows, dtype=torch.bool).reshape(k, len(anchors)).T.contiguous()
    return negatives, valid.to(device) if device is not None else valid


def token_negatives(
    tokens: Mapping[str, torch.Tensor],
    negative: Callable[..., Any],
    k: int = 1,
    *,
    generator: torch.Generator | None = None,
) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
    """``k`` token-level negatives of a tokenised batch and the ``(B, k)`` mask of rows whose ids changed.

    Each returned dict has exactly the keys of ``tokens`` (a key the negative did not return is the anchor's);
    a negative whose width differs from the anchors' (span stitching re-pads) counts as changed. The mask lives
    on the device of ``input_ids``.
    """
    if not isinstance(tokens, Mapping) or not isinstance(tokens.get("input_ids"), torch.Tensor):
        raise TypeError("tokens must be a mapping with an 'input_ids' tensor (a tokenised batch)")
    k = _check_k(k)
    ids = tokens["input_ids"]
    outs: list[dict[str, torch.Tensor]] = []
    changed: list[torch.Tensor] = []
    for _ in range(k):
        neg = negative(dict(tokens), generator=generator)
        neg = {key: neg[key] if key in neg else tokens[key] for key in tokens}
        if neg["input_ids"].shape == ids.shape:
            changed.append((neg["input_ids"] != ids).any(dim=1))
        else:
            changed.append(torch.ones(ids.shape[0], dtype=torch.bool, device=ids.device))
        outs.append(neg)
    return outs, torch.stack(changed, dim=1)
