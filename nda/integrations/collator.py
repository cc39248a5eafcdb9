"""A data collator that adds tokenised negatives to each batch (``transformers.Trainer`` / custom loops).

>>> collator = NegativeDataCollator(tokenizer, "token_shuffle", k=2)          # doctest: +SKIP
>>> batch = collator([{"text": "a cat sat", "label": 1}, {"text": "dogs bark", "label": 0}])  # doctest: +SKIP
>>> batch["input_ids"].shape, batch["negative_input_ids"].shape              # doctest: +SKIP
(torch.Size([2, L]), torch.Size([4, L']))

Layout: ``negative_input_ids`` / ``negative_attention_mask`` are ``(B * k, L')``, sample-major:
row ``b * k + r`` is the ``r``-th negative of sample ``b``, so ``encoder(...).view(B, k, -1)`` gives the
``(B, K, D)`` negatives a contrastive objective expects. ``L'`` is the negatives' own padded length.

Level: ``level="auto"`` makes token-level negatives (token_shuffle, span_stitch) on the padded ids, a
batched tensor op on the batch's own tokens; any other negative (counterfactual, composed specs) is applied
to the strings, then tokenised. Both go through :mod:`nda.text.negatives` (the helpers the sentence model and
the sentence-transformers loss use).

``negative_valid`` (bool ``(B*k,)``, same layout) is False for rows that are not usable negatives: equal to
their anchor (a one-word sentence cannot be shuffled) or a counterfactual that could not flip (its text is
the original). Label-flipping negatives (``flips_labels``: ``counterfactual`` alone or inside
``"counterfactual|token_shuffle"``) also add ``negative_flipped`` (bool ``(B*k,)``) and, when the features
carry labels, ``negative_labels`` (the labels after the edit).

Consumers: :class:`nda.integrations.NDATrainer` (a ``transformers.Trainer`` whose loss uses these keys). A plain
``Trainer`` hands them to ``model(**batch)``, where a Hugging Face model swallows them through ``**kwargs``
and trains without negatives -- use ``NDATrainer`` or a loss of your own that reads them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["NegativeDataCollator"]


class NegativeDataCollator:
    """Wrap a padding collator and add ``negative_input_ids`` / ``negative_attention_mask`` (``(B*k, L')``).

    Args:
        tokenizer: a Hugging Face tokenizer (fast or slow).
        negative: a text negative or an ``nda.build`` spec (``"token_shuffle"``, ``"span_stitch|token_shuffle"``).
        k: negatives per sample.
        text_column: the raw-text field of each feature (dropped from the returned batch).
        seed: ``None`` draws from torch's global RNG; an int seeds a generator owned by the collator
            (reproducible for the same sequence of batches).
        base_collator: the collator for the anchors (default ``DataCollatorWithPadding(tokenizer)``).
        level: ``"auto"``, ``"token"`` (only token_shuffle / span_stitch) or ``"string"``.
        max_length: truncation length when tokenising texts (default: the tokenizer's model_max_length).
        label_column: the label field passed to counterfactuals.
    """

    def __init__(
        self,
        tokenizer: Any,
        negative: Any,
        k: int = 1,
        text_column: str = "text",
        seed: int | None = None,
        base_collator: Any = None,
        level: str = "auto",
        max_length: int | None = None,
        label_column: str = "label",
    ) -> None:
        from nda.registry import build
        from nda.text._words import TokenBatchMixin, supports_token_level

        if tokenizer is None or not callable(tokenizer):
            raise TypeError("tokenizer must be a Hugging Face tokenizer")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if level not in ("auto", "token", "string"):
            raise ValueError(f"level must be 'auto', 'token' or 'string', got {level!r}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        neg = build(negative, tokenizer=tokenizer) if not callable(negative) else negative
        if neg is None:
            raise ValueError(f"negative must be a text negative or an nda.build spec, got {negative!r}")
        token_capable = supports_token_level(neg)
        if level == "token" and not token_capable:
            raise ValueError(f"level='token' needs a token-level negative (token_shuffle, span_stitch), got {neg!r}")
        self.level = ("token" if token_capable else "string") if level == "auto" else level
        if self.level == "token" and isinstance(neg, TokenBatchMixin) and neg.tokenizer is None and neg.special_ids is None:
            neg = copy.copy(neg)  # don't mutate the caller's object
            neg._init_tokens(tokenizer, None, neg.pad_token_id)
        if base_collator is None:
            from transformers import DataCollatorWithPadding

            base_collator = DataCollatorWithPadding(tokenizer)
        self.tokenizer = tokenizer
        self.negative = neg
        self.k = k
        self.text_column = text_column
        self.seed = seed
        self.base_collator = base_collator
        self.max_length = max_length
        self.label_column = label_column
        self._flips = bool(getattr(neg, "flips_labels", False))
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def _tokenize(self, texts: list[str], padding: bool) -> Any:
        return self.tokenizer(
            texts, truncation=True, max_length=self.max_length, padding=padding, return_tensors="pt" if padding else None
        )

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not features:
            raise ValueError("NegativeDataCollator got an empty list of features")
        if any(self.text_column not in f for f in features):
            raise KeyError(
                f"every feature needs the raw text field {self.text_column!r}: train with "
                "nda.integrations.NDATrainer, which keeps it and turns the negatives into a loss (a plain "
                "transformers.Trainer with remove_unused_columns=False keeps it too, but its model ignores negative_*)"
            )
        texts = [f[self.text_column] for f in features]
        rest = [{key: v for key, v in f.items() if key != self.text_column} for f in features]
        if "input_ids" not in rest[0]:
            enc = self._tokenize(texts, padding=False)
            rest = [{**r, **{key: enc[key][i] for key in enc.keys()}} for i, r in enumerate(rest)]
        batch = dict(self.base_collator(rest))
        from nda.text.negatives import text_negatives, token_negatives

        b, k = len(texts), self.k
        if self.level == "token":
            tok_batch = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in batch}
            outs, valid = token_negatives(tok_batch, self.negative, k, generator=self.generator)
            width = max(o["input_ids"].shape[1] for o in outs)
            pad_id = self.tokenizer.pad_token_id or 0
            left = getattr(self.tokenizer, "padding_side", "right") == "left"  # keep the batch's padding layout
            for key in outs[0]:
                fill = pad_id if key == "input_ids" else 0
                padded = [
                    torch.nn.functional.pad(o[key], _pad_sides(width - o[key].shape[1], left), value=fill) for o in outs
                ]
                # (k, B, L) -> (B, k, L) -> (B*k, L): sample-major
                batch[f"negative_{key}"] = torch.stack(padded, dim=1).reshape(-1, width)
            batch["negative_valid"] = valid.reshape(-1)
            return batch
        labels = [f.get(self.label_column) for f in features] if self._flips else None
        has_labels = labels is not None and all(lab is not None for lab in labels)
        negs, valid = text_negatives(texts, self.negative, k, generator=self.generator, labels=labels if has_labels else None)
        flat = [negs[r][i] for i in range(b) for r in range(k)]  # sample-major
        enc = self._tokenize(flat, padding=True)
        for key in enc.keys():
            batch[f"negative_{key}"] = enc[key]
        batch["negative_valid"] = valid.reshape(-1)  # (B, k) -> (B*k,): sample-major
        if self._flips:
            batch["negative_flipped"] = torch.tensor([negs[r].flipped[i] for i in range(b) for r in range(k)], dtype=torch.bool)
            if has_labels:
                flat_labels = [_plain(negs[r].labels[i]) for i in range(b) for r in range(k)]
                try:
                    batch["negative_labels"] = torch.tensor(flat_labels)
                except (TypeError, ValueError):
                    batch["negative_labels"] = flat_labels
        return batch


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value

def _pad_sides(n: int, left: bool) -> tuple[int, int]:
    """``F.pad`` widths that add ``n`` columns on the left or the right of the last dimension."""
    return (n, 0) if left else (0, n)


