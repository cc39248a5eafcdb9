"""Composition of negatives: apply several in sequence, or pick one at random per sample.

Both work for every batch kind of the protocol (image tensors, lists of strings, token mappings), so a
task never needs to know which modality it is composing. On lists of strings both return one
:class:`~nda.base.NegativeResult` and keep the label-flipping contract of their members: ``labels=`` (and
``label_map=``) reach the members that declare ``flips_labels``, and ``flipped`` / ``valid`` / ``labels`` are
kept per sample, whichever member made the sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nda.base import Negative, NegativeResult, apply_text
from nda.sampling import categorical, check_generator

__all__ = ["Compose", "RandomChoice", "ChoiceResult", "leaves"]

ChoiceResult = NegativeResult  # the one text result type (this name is kept for code written against it)


def _is_text_list(batch: Any) -> bool:
    return isinstance(batch, Sequence) and not isinstance(batch, (str, bytes, torch.Tensor))


def _label_list(labels: Any, n: int) -> tuple[list[Any], torch.Tensor | None]:
    """``labels`` as a list of ``n`` entries, and the tensor they came as (to give the same kind back)."""
    if isinstance(labels, torch.Tensor):
        if labels.ndim != 1 or labels.shape[0] != n:
            raise ValueError(f"labels must be a 1-D tensor with one label per text ({n}), got shape {tuple(labels.shape)}")
        return labels.tolist(), labels
    if hasattr(labels, "tolist") and not isinstance(labels, (str, bytes)):
        labels = labels.tolist()
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence) or len(labels) != n:
        raise ValueError(f"labels must be a list with one label per text ({n}), got {labels!r:.80}")
    return list(labels), None


def _same_kind(values: list[Any], like: torch.Tensor | None) -> Any:
    return torch.tensor(values, dtype=like.dtype, device=like.device) if like is not None else values


def _no_labels_for(batch: Any, labels: Any) -> None:
    if labels is not None:
        raise TypeError(f"labels= needs a list of strings (label-flipping text negatives), got a {type(batch).__name__} batch")


def _check_items(items: Sequence[Any], what: str) -> list[Any]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or len(items) == 0:
        raise ValueError(f"{what} needs a non-empty list of negative generators, got {items!r}")
    for item in items:
        if not callable(item):
            raise TypeError(f"{what} items must be callable negative generators, got {type(item).__name__}")
    return list(items)


class _Group(Negative):
    """A negative made of other negatives: the members' modality when they share one (``"mixed"`` otherwise),
    pairwise if any member is."""

    negatives: list[Any]

    @property
    def modality(self) -> str:  # type: ignore[override]
        kinds = {getattr(n, "modality", "") for n in self.negatives}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    @property
    def pairwise(self) -> bool:  # type: ignore[override]
        return any(getattr(n, "pairwise", False) for n in self.negatives)

    @property
    def flips_labels(self) -> bool:  # type: ignore[override]
        return any(getattr(n, "flips_labels", False) for n in self.negatives)


def leaves(negative: Any) -> list[Any]:
    """The leaf negatives of a (nested) :class:`Compose` / :class:`RandomChoice`, in order; ``[]`` for ``None``.

    Callers that must check every member of a composite (its modality, whether it works on token ids) walk
    this list instead of re-implementing the recursion.
    """
    if negative is None:
        return []
    children = getattr(negative, "negatives", None)
    return [leaf for child in children for leaf in leaves(child)] if children else [negative]


class Compose(_Group):
    """Apply ``negatives`` one after the other: ``Compose([Cutout(), Rotate()])(x)`` cuts out, then rotates."""

    name = "compose"

    def __init__(self, negatives: Sequence[Any]) -> None:
        self.negatives = _check_items(negatives, "Compose")

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return any(getattr(n, "stochastic", True) for n in self.negatives)

    def __call__(
        self, batch: Any, *, labels: Any = None, label_map: Any = None, generator: torch.Generator | None = None
    ) -> Any:
        check_generator(generator)
        if not _is_text_list(batch):
            _no_labels_for(batch, labels)
            for negative in self.negatives:
                batch = negative(batch, generator=generator)
            return batch
        return self._texts(list(batch), labels, label_map, generator)

    def _texts(self, texts: list[Any], labels: Any, label_map: Any, generator: torch.Generator | None) -> NegativeResult:
        """Apply the members in turn. The labels follow the label-flipping members; ``flipped`` is True where an
        odd number of them flipped the sample; ``valid`` needs every label-flipping member to have made a valid
        negative *and* the final text to differ from the input (a failed flip that a later shuffle hides is
        still a failed counterfactual)."""
        n = len(texts)
        current, current_labels = texts, labels
        flipped, kept = [False] * n, [True] * n
        for negative in self.negatives:
            result = apply_text(negative, current, generator=generator, labels=current_labels, label_map=label_map)
            if getattr(negative, "flips_labels", False):
                flipped = [a != b for a, b in zip(flipped, result.flipped)]
                kept = [a and b for a, b in zip(kept, result.valid)]
            current, current_labels = list(result), result.labels if labels is not None else None
        valid = [k and new != old for k, new, old in zip(kept, current, texts)]
        return NegativeResult(current, flipped=flipped, valid=valid, labels=current_labels)

    def config(self) -> dict[str, Any]:
        return {"compose": [_config(n) for n in self.negatives]}

    def __repr__(self) -> str:
        return f"Compose({self.negatives!r})"


class RandomChoice(_Group):
    """Each sample gets one of ``negatives``, drawn with probability proportional to ``weights``.

    ``per="sample"`` (default) draws one choice per sample; ``per="batch"`` one per call (cheaper: only the
    chosen negative runs). Per-sample choice on tensors runs every negative on the whole batch and selects
    (pairwise negatives need the full batch to find partners), so it costs the sum of their times.
    """

    name = "choice"

    def __init__(self, negatives: Sequence[Any], weights: Sequence[float] | None = None, per: str = "sample") -> None:
        self.negatives = _check_items(negatives, "RandomChoice")
        if weights is None:
            weights = [1.0] * len(self.negatives)
        if isinstance(weights, (str, bytes, Mapping)):
            raise TypeError(f"weights must be a list of numbers, got {type(weights).__name__}")
        try:
            weights = [float(w) for w in weights]  # a list, tuple, tensor or array
        except (TypeError, ValueError):
            raise TypeError(f"weights must be a list of numbers, got {list(weights)!r}") from None
        if (
            len(weights) != len(self.negatives)
            or not all(math.isfinite(w) and w >= 0 for w in weights)
            or sum(weights) <= 0
        ):
            raise ValueError(
                f"weights must be {len(self.negatives)} finite non-negative numbers with a positive sum, got {weights}"
            )
        if per not in ("sample", "batch"):
            raise ValueError(f"per must be 'sample' or 'batch', got {per!r}")
        self.weights = weights
        self.per = per

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        live = [n for n, w in zip(self.negatives, self.weights) if w > 0]
        return len(live) > 1 or any(getattr(n, "stochastic", True) for n in live)

    def __call__(
        self, batch: Any, *, labels: Any = None, label_map: Any = None, generator: torch.Generator | None = None
    ) -> Any:
        check_generator(generator)
        text = _is_text_list(batch)
        if not text:
            _no_labels_for(batch, labels)
        if self.per == "batch":
            idx = int(self._choices(1, _gen_device(generator), generator)[0])
            if text:
                return apply_text(self.negatives[idx], list(batch), generator=generator, labels=labels, label_map=label_map)
            return self.negatives[idx](batch, generator=generator)
        if isinstance(batch, torch.Tensor):
            return self._per_sample_tensor(batch, generator)
        if isinstance(batch, Mapping):
            return self._per_sample_mapping(batch, generator)
        if text:
            return self._per_sample_list(list(batch), labels, label_map, generator)
        raise TypeError(f"batch must be a tensor, a list of strings or a token mapping, got {type(batch).__name__}")

    def _choices(self, n: int, device: torch.device | str, generator: torch.Generator | None) -> torch.Tensor:
        return categorical(torch.tensor(self.weights), n, generator=generator, device=device)

    def _per_sample_tensor(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if x.ndim == 0:
            raise ValueError("batch must have a leading batch dimension")
        choice = self._choices(x.shape[0], x.device, generator)
        out = None
        for k, negative in enumerate(self.negatives):
            if self.weights[k] == 0:
                continue
            neg = negative(x, generator=generator)
            mask = (choice == k).view(-1, *([1] * (x.ndim - 1)))
            out = neg if out is None else torch.where(mask, neg, out)
        return out

    def _per_sample_list(
        self, texts: list[Any], labels: Any, label_map: Any, generator: torch.Generator | None
    ) -> NegativeResult:
        n = len(texts)
        chosen: list[list[int]] = [[] for _ in self.negatives]  # sample indices per member
        for i, c in enumerate(self._choices(n, "cpu", generator).tolist()):
            chosen[c].append(i)
        label_list, like = _label_list(labels, n) if labels is not None else (None, None)
        out, flipped, valid = list(texts), [False] * n, [True] * n
        new_labels = list(label_list) if label_list is not None else None
        for k, negative in enumerate(self.negatives):
            if self.weights[k] == 0:
                continue
            # Pairwise text negatives need partners from the full batch: run on all, keep the chosen.
            res = apply_text(negative, texts, generator=generator, labels=labels, label_map=label_map)
            res_labels = _label_list(res.labels, n)[0] if new_labels is not None else None
            for i in chosen[k]:
                out[i], flipped[i], valid[i] = res[i], res.flipped[i], res.valid[i]
                if new_labels is not None:
                    new_labels[i] = res_labels[i]
        return NegativeResult(
            out, flipped=flipped, valid=valid, labels=_same_kind(new_labels, like) if new_labels is not None else None
        )

    def _per_sample_mapping(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator | None) -> dict:
        ids = batch["input_ids"]
        choice = self._choices(ids.shape[0], ids.device, generator)
        outs = [(k, n(batch, generator=generator)) for k, n in enumerate(self.negatives) if self.weights[k] > 0]
        length = max(o["input_ids"].shape[1] for _, o in outs)
        result: dict[str, Any] | None = None
        for k, out in outs:
            padded = _pad_tokens(out, length, self.negatives[k])
            if result is None:
                result = padded
            else:
                mask = choice == k
                result = {
                    key: torch.where(mask.view(-1, *([1] * (t.ndim - 1))), t, result[key])
                    if isinstance(t, torch.Tensor) and t.ndim >= 1 and t.shape[0] == mask.shape[0] else t
                    for key, t in padded.items()
                }
        assert result is not None
        return result

    def config(self) -> dict[str, Any]:
        return {"choice": [_config(n) for n in self.negatives], "weights": list(self.weights), "per": self.per}

    def __repr__(self) -> str:
        return f"RandomChoice({self.negatives!r}, weights={self.weights!r}, per={self.per!r})"


def _pad_tokens(out: Mapping[str, Any], length: int, negative: Any) -> dict[str, Any]:
    """Pad the position-aligned ``(B, L)`` tensors of a token batch to ``length``, on the side the negative's
    tokenizer pads (so a left-padded output stays left-padded); other keys (e.g. ``(B, 1)`` labels) pass."""
    width = out["input_ids"].shape[1]
    pad_id = getattr(negative, "pad_token_id", None) or 0
    left = getattr(getattr(negative, "tokenizer", None), "padding_side", "right") == "left"
    sides = (length - width, 0) if left else (0, length - width)
    return {
        key: torch.nn.functional.pad(t, sides, value=pad_id if key == "input_ids" else 0)
        if isinstance(t, torch.Tensor) and t.ndim == 2 and t.shape[1] == width else t
        for key, t in out.items()
    }


def _config(negative: Any) -> Any:
    return negative.config() if hasattr(negative, "config") else negative


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")
