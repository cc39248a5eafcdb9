"""``datasets.Dataset.map`` functions that add negative columns to a text dataset.

>>> from datasets import Dataset
>>> from nda.integrations.datasets import add_negatives
>>> ds = Dataset.from_dict({"text": ["the cat sat on the mat", "a dog barked at night"]})
>>> ds = ds.map(add_negatives("token_shuffle", k=2), batched=True, with_indices=True)
>>> ds.column_names
['text', 'negative_1', 'negative_2']

Reproducibility: the same ``seed`` gives the same columns on every run.

- Per-sample negatives (token_shuffle, counterfactual, ...) draw from a generator seeded by
  ``(seed, copy, index)`` when the map passes ``with_indices=True`` (else by a stable hash of the text),
  so the columns do *not* depend on ``batch_size``, ``num_proc`` or shuffling of the map.
- Pairwise negatives (span_stitch) need the other samples of the batch: one generator per batch, seeded by
  ``(seed, copy, indices or a hash of the batch's texts)``; the columns then depend on how the map batches
  the data (same ``batch_size`` -> same columns).

Label-flipping negatives (``counterfactual``, and any composite with one, such as
``"counterfactual|token_shuffle"``: the negative's ``flips_labels``) also add, per negative column,
``<column>_label`` (the label after the edit: flipped where ``_flipped``, the original elsewhere; only when
``label_column`` is in the batch), ``<column>_flipped`` (bool: the label flipped) and ``<column>_valid`` (bool:
usable as a negative -- False where a counterfactual could not flip the row, whose text is then the original) and
``<column>_paraphrase`` (bool: the text changed but its flips cancelled, e.g. antonym then negation of one clause,
so it keeps the label: a positive, never a negative). Filter on ``_flipped`` for label-flipped training data, on
``_valid`` for negatives, on ``_paraphrase`` for extra positives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["add_negatives"]


def _stable_seed(*parts: Any) -> int:
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(repr(p).encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def add_negatives(
    negative: Any,
    column: str = "text",
    k: int = 1,
    seed: int = 0,
    output_column: str = "negative",
    label_column: str | None = "label",
) -> Callable[..., dict[str, list[Any]]]:
    """A function for ``Dataset.map(fn, batched=True[, with_indices=True])`` adding negatives of ``column``.

    Args:
        negative: a text negative or any spec ``nda.build`` accepts (``"token_shuffle:window=3"``).
        column: the text column.
        k: negatives per row: one ``output_column`` (k=1) or ``output_column_1..k``.
        seed: base seed of the reproducible draws.
        output_column: name (prefix) of the new column(s).
        label_column: labels flipped by a counterfactual negative (ignored by the others; skipped if absent).
    """
    from nda.base import NegativeResult, apply_text
    from nda.registry import build

    neg = build(negative)
    if neg is None or not callable(neg):
        raise ValueError(f"negative must be a text negative or a spec for nda.build, got {negative!r}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    flips = bool(getattr(neg, "flips_labels", False))
    stochastic = bool(getattr(neg, "stochastic", True))
    if not stochastic and k != 1:
        raise ValueError(f"{neg!r} is deterministic (e.g. counterfactual edits), so k copies would be identical; use k=1")
    pairwise = bool(getattr(neg, "pairwise", False))
    names = [output_column] if k == 1 else [f"{output_column}_{r + 1}" for r in range(k)]

    def fn(batch: dict[str, list[Any]], indices: list[int] | None = None) -> dict[str, list[Any]]:
        if column not in batch:
            raise KeyError(f"add_negatives: column {column!r} not in the batch (columns: {sorted(batch)})")
        texts = list(batch[column])
        labels = list(batch[label_column]) if flips and label_column and label_column in batch else None
        keys = list(indices) if indices is not None else None
        out: dict[str, list[Any]] = {}
        for r, name in enumerate(names):
            if not stochastic:  # no randomness: one batched call
                res = apply_text(neg, texts, labels=labels)
            elif pairwise:
                batch_key = keys if keys is not None else hashlib.blake2b(
                    "\x1f".join(texts).encode("utf-8", "surrogatepass"), digest_size=16
                ).hexdigest()
                g = torch.Generator().manual_seed(_stable_seed(seed, r, batch_key))
                res = apply_text(neg, texts, generator=g, labels=labels)
            else:  # one generator per row: columns independent of batching, num_proc and map order
                rows = []
                for i, text in enumerate(texts):
                    g = torch.Generator().manual_seed(_stable_seed(seed, r, keys[i] if keys is not None else text))
                    rows.append(apply_text(neg, [text], generator=g, labels=None if labels is None else [labels[i]]))
                res = NegativeResult.concat(rows)
            out[name] = list(res)
            if flips:
                if labels is not None:
                    out[f"{name}_label"] = list(res.labels)
                out[f"{name}_flipped"] = list(res.flipped)
                out[f"{name}_valid"] = list(res.valid)
                out[f"{name}_paraphrase"] = list(res.paraphrase)
        return out

    return fn

