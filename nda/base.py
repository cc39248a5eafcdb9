"""The one protocol every negative follows, a small base class that implements the shared parts, and the one
result type of text negatives.

``neg = generator(batch, generator=torch.Generator().manual_seed(0))``

- images: ``(B, C, H, W)`` tensor, uint8 or float -> same shape, dtype and device;
- text: ``list[str] -> list[str]`` (a :class:`NegativeResult`, which *is* that list); token level: a mapping
  with ``input_ids`` / ``attention_mask`` -> same keys.

Label flipping is a declared contract, not a class check: a negative whose ``flips_labels`` is True accepts
``labels=`` (and ``label_map=``) and says per sample whether it flipped (``NegativeResult.flipped``);
:class:`~nda.compose.RandomChoice` / :class:`~nda.compose.Compose` forward labels to such members and keep
the per-sample flags, so integrations read ``.flipped`` / ``.valid`` / ``.paraphrase`` and never ask which class
made a text. Labels of every kind (``1``, ``1.0``, ``True``, numpy / tensor scalars) are normalised once, by
:func:`label_list`, so a label is checked and flipped the same way everywhere.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

__all__ = ["NegativeGenerator", "Negative", "NegativeResult", "as_result", "apply_text", "canonical_label", "label_list"]


@runtime_checkable
class NegativeGenerator(Protocol):
    """Anything that maps a batch to a batch of negatives of the same kind, seeded by ``generator``."""

    def __call__(self, batch: Any, *, generator: torch.Generator | None = None) -> Any: ...


class NegativeResult(list):
    """Negative texts plus what a consumer needs to use them; the object *is* the ``list[str]`` of texts.

    Attributes:
        flipped: one bool per sample, always present: True iff a label-flipping negative changed the sample's
            meaning and with it its label. All False for negatives that do not flip labels.
        valid: one bool per sample: True iff the text is usable as a negative -- it differs from its source, is
            not empty or whitespace-only (forced False here, whoever made the result: a blank text is nobody's
            negative) and, where a label-flipping negative was applied, that negative did flip it. A False
            sample's text is usually its source text, returned unchanged (mask it out, do not train on it as a
            negative).
        paraphrase: one bool per sample, default all False: True iff label-flipping edits changed the text but
            their flips cancelled on every target (two flips of the same predicate: "The man is fat." -> "The man
            is thin." -> "The man is not thin."; not "A tall woman is walking." -> "A short woman is not
            walking.", where the negation does not scope over the swapped word), so the label is kept -- usable
            as an extra *positive* of its source, never as a negative (``valid`` is False there). See
            :class:`~nda.compose.Compose`.
        labels: the labels after the edit (flipped where ``flipped``, the given label elsewhere) when labels
            were given, else ``None``; in the kind they came in (a tensor stays a tensor, a float a float).

    >>> r = NegativeResult(["Bad movie!", "Hmm."], flipped=[True, False], valid=[True, False], labels=[0, 1])
    >>> r.texts, r.flipped, r.valid, r.paraphrase, r.labels, r.flip_rate
    (['Bad movie!', 'Hmm.'], [True, False], [True, False], [False, False], [0, 1], 0.5)
    """

    def __init__(
        self,
        texts: Sequence[str],
        *,
        flipped: Sequence[bool] | None = None,
        valid: Sequence[bool] | None = None,
        labels: Any = None,
        paraphrase: Sequence[bool] | None = None,
    ) -> None:
        super().__init__(texts)
        n = len(self)
        self.flipped: list[bool] = [False] * n if flipped is None else [bool(f) for f in flipped]
        self.valid: list[bool] = [True] * n if valid is None else [bool(v) for v in valid]
        self.paraphrase: list[bool] = [False] * n if paraphrase is None else [bool(p) for p in paraphrase]
        if len(self.flipped) != n or len(self.valid) != n or len(self.paraphrase) != n:
            raise ValueError(
                f"flipped, valid and paraphrase need one flag per text ({n}), "
                f"got {len(self.flipped)}, {len(self.valid)} and {len(self.paraphrase)}"
            )
        if labels is not None and len(labels) != n:
            raise ValueError(f"labels need one entry per text ({n}), got {len(labels)}")
        blank = [isinstance(t, str) and not t.strip() for t in self]
        self.valid = [v and not b for v, b in zip(self.valid, blank)]
        self.paraphrase = [p and not b for p, b in zip(self.paraphrase, blank)]
        self.labels = labels

    @property
    def texts(self) -> list[str]:
        """The texts as a plain list."""
        return list(self)

    @property
    def flip_rate(self) -> float:
        """Share of the samples whose label flipped."""
        return sum(self.flipped) / len(self.flipped) if self.flipped else 0.0

    @classmethod
    def concat(cls, results: Sequence[NegativeResult]) -> NegativeResult:
        """``results`` as one result, in order, every per-sample flag kept; labels as one list (``None`` unless every
        part has labels). Why: code that builds a batch from parts merges the flags here, in one place, so a new
        per-sample field cannot be dropped by one hand-written merge."""
        labels = None if any(r.labels is None for r in results) else [lab for r in results for lab in r.labels]
        return cls(
            [t for r in results for t in r], flipped=[f for r in results for f in r.flipped],
            valid=[v for r in results for v in r.valid], paraphrase=[p for r in results for p in r.paraphrase],
            labels=labels,
        )

    def __repr__(self) -> str:
        return (
            f"NegativeResult({list(self)!r}, flipped={self.flipped!r}, valid={self.valid!r}, "
            f"paraphrase={self.paraphrase!r}, labels={self.labels!r})"
        )

    def __reduce__(self):  # keep the flags through pickling (datasets.map with num_proc, multiprocessing)
        return (_rebuild_result, (list(self), self.flipped, self.valid, self.labels, self.paraphrase))


def _rebuild_result(
    texts: list[str], flipped: list[bool], valid: list[bool], labels: Any, paraphrase: list[bool] | None = None
) -> NegativeResult:
    return NegativeResult(texts, flipped=flipped, valid=valid, labels=labels, paraphrase=paraphrase)


# --------------------------------------------------------------------------- labels
def canonical_label(value: Any, where: str = "labels") -> Any:
    """One label in the one form every label map is looked up with: whole numbers as ``int`` -- whatever they
    came as (``1``, ``1.0``, ``True``, a numpy or 0-d tensor scalar) -- strings as they are.

    Why: a polarity check that only knows ``int`` and a dict lookup where ``1.0 == 1`` must never disagree on
    what a label is (``1.0`` used to skip the check and still be flipped). A number that is not whole (``1.5``,
    NaN) is no class label: ``ValueError`` naming ``where``. Other values (tuples, ``None``) pass unchanged;
    label maps decide about them.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, torch.Tensor) or (hasattr(value, "item") and getattr(value, "shape", None) == ()):
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            raise ValueError(f"{where} must hold one scalar label per text, got a tensor of shape {tuple(value.shape)}")
        value = value.item()  # numpy / torch scalar -> Python number
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise ValueError(f"{where} must be whole numbers (ints, whole floats, bools) or strings, got {value!r}")
    return value


def _like(original: Any, value: Any) -> Any:
    """``value`` (a canonical label) in the kind of ``original``: ``0`` for ``True`` -> ``False``, for ``1.0`` ->
    ``0.0``, for ``np.int64(1)`` -> ``np.int64(0)``; strings and other values as they are."""
    if not isinstance(value, int) or isinstance(value, bool) or isinstance(original, str):
        return value
    if isinstance(original, torch.Tensor):
        return torch.tensor(value, dtype=original.dtype, device=original.device)
    if isinstance(original, bool):
        return bool(value) if value in (0, 1) else value
    if isinstance(original, float) or (hasattr(original, "item") and getattr(original, "shape", None) == ()):
        return type(original)(value)
    return value


def label_list(labels: Any, n: int, *, arg: str = "labels") -> tuple[list[Any], Callable[[Sequence[Any]], Any]]:
    """``labels`` (a list, tuple, 1-D tensor or numpy array, one per text) as ``n`` canonical labels
    (:func:`canonical_label`), and the function that gives a list of ``n`` canonical labels back in the kind
    ``labels`` came in (a tensor of the same dtype and device, an array of the same dtype, or a list whose
    entries have the type of the entry they replace).

    The one normalisation every label-flipping path uses, so a label is checked and flipped the same way.
    """
    if isinstance(labels, (str, bytes)) or not (isinstance(labels, Sequence) or hasattr(labels, "tolist")):
        raise TypeError(f"{arg} must be a list (or 1-D tensor / array) with one label per text, got {type(labels).__name__}")
    ndim = getattr(labels, "ndim", 1)
    if ndim != 1:
        raise ValueError(f"{arg} must be 1-D with one label per text ({n}), got shape {tuple(labels.shape)}")
    if len(labels) != n:
        raise ValueError(f"{arg} must have one label per text: got {len(labels)} labels for {n} texts")
    if isinstance(labels, torch.Tensor):
        values = [canonical_label(v, arg) for v in labels.tolist()]
        return values, lambda new: torch.tensor(list(new), dtype=labels.dtype, device=labels.device)
    if not isinstance(labels, Sequence):  # a numpy array (core imports torch only: no numpy here)
        values = [canonical_label(v, arg) for v in labels.tolist()]

        def restore_array(new: Sequence[Any]) -> Any:
            if labels.dtype.kind in "biuf":
                out = labels.copy()
                out[:] = list(new)
                return out
            out = labels.astype(object)
            out[:] = list(new)
            return out.astype(str) if labels.dtype.kind == "U" else out

        return values, restore_array
    original = list(labels)
    values = [canonical_label(v, arg) for v in original]
    return values, lambda new: [_like(o, v) for o, v in zip(original, new)]


def as_result(sources: Sequence[str], output: Any, *, flips_labels: bool = False, labels: Any = None) -> NegativeResult:
    """``output`` (texts made from ``sources`` by any text negative) as a :class:`NegativeResult`.

    A :class:`NegativeResult` passes through (its ``labels`` filled with ``labels`` if it had none). Anything
    else is a plain list from a negative that knows no flags: ``valid`` is "differs from its source", ``flipped``
    is all False -- unless the object carries its own ``flipped`` list (older label-flipping negatives), which
    then also masks ``valid`` and, if ``flips_labels``, is kept as ``flipped``.
    """
    if isinstance(output, NegativeResult):
        if output.labels is None and labels is not None:
            output.labels = labels
        return output
    if isinstance(output, (str, bytes)) or not isinstance(output, Sequence):
        raise TypeError(f"a text negative must return a list of strings, got {type(output).__name__}")
    texts = list(output)
    if len(texts) != len(sources):
        raise ValueError(f"a text negative returned {len(texts)} texts for {len(sources)} inputs")
    valid = [t != s for t, s in zip(texts, sources)]
    own = getattr(output, "flipped", None)
    flipped = None
    if own is not None:
        own = [bool(f) for f in own]
        valid = [v and f for v, f in zip(valid, own)]
        flipped = own if flips_labels else None
    return NegativeResult(texts, flipped=flipped, valid=valid, labels=getattr(output, "labels", None) if labels is None else labels)


def apply_text(
    negative: Any,
    texts: list[str],
    *,
    generator: torch.Generator | None = None,
    labels: Any = None,
    label_map: Any = None,
) -> NegativeResult:
    """Run a text negative on ``texts`` and return a :class:`NegativeResult`.

    ``labels`` (and ``label_map`` when given) reach the negative only if it declares ``flips_labels``; for any
    other negative the result's ``labels`` are the given labels, unchanged (a shuffled review is not a review
    of the other class).
    """
    if getattr(negative, "flips_labels", False):
        kwargs: dict[str, Any] = {}
        if labels is not None:
            kwargs["labels"] = labels
        if label_map is not None:
            kwargs["label_map"] = label_map
        return as_result(texts, negative(texts, generator=generator, **kwargs), flips_labels=True, labels=labels)
    return as_result(texts, negative(texts, generator=generator), labels=labels)


class Negative:
    """Base class of the built-in negatives.

    Subclasses set ``name`` (their registry name), ``modality`` (``"image"`` or ``"text"``), ``pairwise``
    (True when each sample is combined with another sample of the batch), ``flips_labels`` (True when the
    negative changes the meaning so that the label flips: it then accepts ``labels=`` and returns a
    :class:`NegativeResult` with per-sample ``flipped``), ``stochastic`` (False when the output does not depend
    on ``generator``, so k copies would be identical), and implement ``__call__``.
    The repr shows the constructor arguments so a config round-trips through ``nda.build``.
    """

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""
    pairwise: ClassVar[bool] = False
    flips_labels: ClassVar[bool] = False
    stochastic: ClassVar[bool] = True

    def __call__(self, batch: Any, *, generator: torch.Generator | None = None) -> Any:  # pragma: no cover
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The constructor arguments of this negative (``nda.build(neg.config())`` rebuilds it)."""
        params = inspect.signature(type(self).__init__).parameters
        cfg: dict[str, Any] = {"name": self.name}
        for key in params:
            if key == "self" or params[key].kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                continue
            if hasattr(self, key):
                cfg[key] = getattr(self, key)
        return cfg

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"
