"""Composition of negatives: apply several in sequence, or pick one at random per sample.

Both work for every batch kind of the protocol (image tensors, lists of strings, token mappings), so a
task never needs to know which modality it is composing. On lists of strings both return one
:class:`~nda.base.NegativeResult` and keep the label-flipping contract of their members: ``labels=`` (and
``label_map=``) reach the members that declare ``flips_labels``, and ``flipped`` / ``valid`` / ``paraphrase`` /
``labels`` are kept per sample, whichever member made the sample. :class:`Compose` counts label flips per
target word (a double flip of one predicate, "fat" -> "thin" -> "not thin", is a paraphrase, not a negative) and
redraws image samples its members gave back unchanged.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from nda.base import Negative, NegativeResult, apply_text, label_list
from nda.distributions import categorical
from nda.sampling import check_generator

__all__ = ["Compose", "RandomChoice", "ChoiceResult", "leaves", "REDRAW_ROUNDS"]

REDRAW_ROUNDS = 8  # extra draws of a composition for image samples it gave back unchanged (see Compose)

ChoiceResult = NegativeResult  # the one text result type (this name is kept for code written against it)


def _is_text_list(batch: Any) -> bool:
    return isinstance(batch, Sequence) and not isinstance(batch, (str, bytes, torch.Tensor))


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
    """Apply ``negatives`` one after the other: ``Compose([Cutout(), Rotate()])(x)`` cuts out, then rotates.

    **Images** (tensors): members can undo each other ("rotate>rotate" draws 90 then 270 degrees for a third of
    the samples), and a composition never hands back an unchanged sample as a negative. Samples whose output
    equals their input (exactly for integer dtypes, ``torch.isclose`` for floats; one batched compare) are
    redrawn: the whole composition runs again on just those samples, up to :data:`REDRAW_ROUNDS` rounds (each
    round one host sync for the count; pairwise members pair the redrawn samples among themselves, or with the
    full batch when only one is left). Samples still unchanged after that (images no member can change, e.g. a
    constant image under ``rotate``, or members that always cancel) are reported, never silent:
    :meth:`with_valid` returns them as ``valid=False``, and a plain call warns (``RuntimeWarning``) with their
    number. The first draw is the same as without this check, so seeded outputs of changed samples do not move.

    **Texts**: see :meth:`_texts` -- flips are counted per target (the words each flip changed), so a double
    flip of one predicate is reported as a ``paraphrase`` (a positive), not a negative; two flips of different
    words are neither. Recommended spec for "antonym then negation":
    ``nda.build("counterfactual:negation=False>counterfactual:antonyms=False")``.
    """

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
            if isinstance(batch, torch.Tensor):
                out, valid = self._tensor(batch, generator)
                if valid is not None and not bool(valid.all()):
                    warnings.warn(
                        f"{self!r} gave back {int((~valid).sum())} of {valid.numel()} samples unchanged after "
                        f"{REDRAW_ROUNDS} redraws; use Compose.with_valid to mask them",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                return out
            return self._apply(batch, generator)
        return self._texts(list(batch), labels, label_map, generator)

    def with_valid(self, batch: torch.Tensor, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(negatives, valid)`` of an image batch: ``valid`` ``(B,)`` bool on the batch's device, False where the
        sample is still unchanged after the redraws (mask it out)."""
        check_generator(generator)
        if not isinstance(batch, torch.Tensor) or batch.ndim < 1:
            raise TypeError(f"Compose.with_valid needs a batched tensor (B, ...), got {type(batch).__name__}")
        out, valid = self._tensor(batch, generator)
        if valid is None:  # the output's shape differs from the input's: every sample changed
            valid = torch.ones(batch.shape[0], dtype=torch.bool, device=batch.device)
        return out, valid

    def _apply(self, batch: Any, generator: torch.Generator | None) -> Any:
        for negative in self.negatives:
            batch = negative(batch, generator=generator)
        return batch

    def _tensor(self, x: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The composition of ``x`` with unchanged samples redrawn, and the per-sample ``valid`` mask (``None``
        when the output cannot be compared with the input: no batch dimension or another shape)."""
        out = self._apply(x, generator)
        if x.ndim < 1 or not isinstance(out, torch.Tensor) or out.shape != x.shape:
            return out, None
        same = _unchanged(out, x)
        for _ in range(REDRAW_ROUNDS):
            idx = same.nonzero().squeeze(1)
            if idx.numel() == 0:  # one host sync per round
                break
            if idx.numel() == 1 and self.pairwise:  # a pairwise member needs partners: redraw on the full batch
                redo = self._apply(x, generator).index_select(0, idx)
            else:
                redo = self._apply(x.index_select(0, idx), generator)
            out = out.index_copy(0, idx, redo.to(out.dtype))
            same = same.index_copy(0, idx, _unchanged(redo, x.index_select(0, idx)))
        return out, ~same

    def _texts(self, texts: list[Any], labels: Any, label_map: Any, generator: torch.Generator | None) -> NegativeResult:
        """Apply the members in turn; labels follow the label-flipping members. Flips compose by *parity per
        target* -- the words a flip changed -- not per sample or per clause:

        - every flip a label-flipping member makes is recorded as the spans it flipped (sets of word positions,
          from the member's ``flip_targets(before, after, earlier)``, e.g. :meth:`~nda.text.Counterfactual.flip_targets`:
          an antonym swap is the replaced word, a negation the cue plus the head of the predicate it scopes
          over), and the spans of the earlier flips are carried along into the new text's positions;
        - a span's *hit count* is 1 plus the number of spans of other flips that overlap it: "fat" -> "thin" ->
          "not thin" hits {thin} twice (the negation scopes over it), "A tall woman is walking." -> "A short woman
          is walking." -> "A short woman is not walking." hits {short} once and {is, walking} once;
        - the result is a **negative with the flipped label** (``flipped``, ``valid`` when every label-flipping
          member made a valid edit and the text changed) iff the sample was flipped an odd number of times *and*
          every span was hit an odd number of times ("fat" -> "thin" -> "not thin" -> "thin": 3 hits each);
        - it is a **paraphrase** (``flipped=False``, ``valid=False``, ``paraphrase=True``, the label kept) iff the
          flips are even in number, every span was hit an even number of times, the text changed and no
          non-flipping member changed it ("The man is fat." -> "The man is thin." -> "The man is not thin.");
        - otherwise some target changed meaning an odd number of times while the label parity says "kept" (or
          the reverse) -- the tall woman above, or "The man looks fat and the room is blue." -> "thin" in clause 1,
          "is not blue" in clause 2. No label is sound for that (which target carries it is unknown), so it is
          **neither** a negative nor a paraphrase: ``valid=False``, ``paraphrase=False``, ``flipped=False``,
          the original label.

        Why per target: counting per clause called the tall woman a paraphrase (both edits in one clause), and
        training on it as an extra *positive* teaches the encoder that "short ... not walking" means "tall ...
        walking".

        A member without ``flip_targets`` (or an edit it cannot read, or one made after a non-flipping member
        rearranged the text) counts as a flip of the whole sample: alone, the parity is per sample; mixed with
        per-target flips the sample is neither (``valid=False``). A member's own ``paraphrase`` counts as two
        such flips. Even flips followed (or preceded) by a non-flipping change (a shuffle) are a plain negative
        with the kept label (``valid``, not a paraphrase). ``valid`` also needs the final text to differ from the
        input (a failed flip that a later shuffle hides is still a failed counterfactual).
        """
        n = len(texts)
        current, current_labels = texts, labels
        flips: list[list[list[frozenset[int]] | None]] = [[] for _ in range(n)]  # per sample: spans of each flip
        kept, restyled = [True] * n, [False] * n  # every flipping member valid / a non-flip edit changed it
        for negative in self.negatives:
            result = apply_text(negative, current, generator=generator, labels=current_labels, label_map=label_map)
            flipping = getattr(negative, "flips_labels", False)
            targets: _Targets | None = getattr(negative, "flip_targets", None)
            for i, (old, new) in enumerate(zip(current, result)):
                if result.flipped[i]:
                    _record_flip(flips[i], targets if not restyled[i] else None, old, new)
                elif result.paraphrase[i]:
                    flips[i] += [None, None]
                elif new != old:
                    restyled[i] = True
                if flipping:
                    kept[i] = kept[i] and (result.valid[i] or result.paraphrase[i])
            current, current_labels = list(result), result.labels if labels is not None else None
        verdicts = [_parity(f) for f in flips]  # "odd", "even" or "mixed"
        changed = [new != old for new, old in zip(current, texts)]
        flipped = [v == "odd" for v in verdicts]
        cancelled = [v == "even" and bool(f) and not r for v, f, r in zip(verdicts, flips, restyled)]  # label kept
        paraphrase = [x and k and c for x, k, c in zip(cancelled, kept, changed)]
        valid = [v != "mixed" and not x and k and c for v, x, k, c in zip(verdicts, cancelled, kept, changed)]
        out_labels = None
        if labels is not None:
            source, restore = label_list(labels, n)
            after = label_list(current_labels, n)[0]
            out_labels = restore([a if f else s for a, s, f in zip(after, source, flipped)])
        return NegativeResult(current, flipped=flipped, valid=valid, labels=out_labels, paraphrase=paraphrase)

    def config(self) -> dict[str, Any]:
        return {"compose": [_config(n) for n in self.negatives]}

    def __repr__(self) -> str:
        return f"Compose({self.negatives!r})"


_Targets = Callable[[str, str, Sequence[frozenset[int]]], tuple[list[frozenset[int]], list[frozenset[int]]] | None]


def _record_flip(flips: list[list[frozenset[int]] | None], targets: _Targets | None, old: str, new: str) -> None:
    """Append the spans of the flip ``old -> new`` to one sample's ``flips`` and carry the earlier flips' spans into
    ``new``'s word positions; ``None`` (a whole-sample flip) when the member cannot say, or an earlier flip could
    not (then per-target counting is already impossible for this sample)."""
    if targets is None or any(f is None for f in flips):
        flips.append(None)
        return
    earlier = [s for f in flips for s in f]  # type: ignore[union-attr]
    read = targets(old, new, earlier)
    if read is None or len(read[0]) != len(earlier) or not read[1]:  # unreadable, or a member breaking the contract
        flips.append(None)
        return
    carried, spans = iter(read[0]), read[1]
    flips[:] = [[next(carried) for _ in f] for f in flips] + [list(spans)]  # type: ignore[union-attr]


def _parity(flips: list[list[frozenset[int]] | None]) -> str:
    """``"odd"`` / ``"even"`` when the number of flips and the hit count of every span agree in parity,
    ``"mixed"`` when they do not (see :meth:`Compose._texts`). ``None`` entries are whole-sample flips."""
    odd = len(flips) % 2 == 1
    known = [f for f in flips if f is not None]
    if known and len(known) != len(flips):
        return "mixed"  # whole-sample and per-target flips cannot be matched up
    for k, spans in enumerate(known):
        for span in spans:
            hits = 1 + sum(1 for m, other in enumerate(known) if m != k for t in other if span & t)
            if (hits % 2 == 1) != odd:
                return "mixed"
    return "odd" if odd else "even"


def _unchanged(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: sample equal to its input (exact for integer / bool dtypes, ``isclose`` for floats)."""
    if out.is_floating_point() or x.is_floating_point() or out.is_complex():
        dtype = torch.promote_types(out.dtype, x.dtype)
        same = torch.isclose(out.to(dtype), x.to(dtype))
    else:
        same = out == x
    return same.reshape(x.shape[0], -1).all(dim=1)

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
        label_values, restore = label_list(labels, n) if labels is not None else (None, None)
        out, flipped, valid, paraphrase = list(texts), [False] * n, [True] * n, [False] * n
        new_labels = list(label_values) if label_values is not None else None
        for k, negative in enumerate(self.negatives):
            if self.weights[k] == 0:
                continue
            # Pairwise text negatives need partners from the full batch: run on all, keep the chosen.
            res = apply_text(negative, texts, generator=generator, labels=labels, label_map=label_map)
            res_labels = label_list(res.labels, n)[0] if new_labels is not None else None
            for i in chosen[k]:
                out[i], flipped[i], valid[i], paraphrase[i] = res[i], res.flipped[i], res.valid[i], res.paraphrase[i]
                if new_labels is not None:
                    new_labels[i] = res_labels[i]
        return NegativeResult(
            out, flipped=flipped, valid=valid, paraphrase=paraphrase,
            labels=restore(new_labels) if restore is not None and new_labels is not None else None,
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
