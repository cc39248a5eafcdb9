r"""Shared helpers of the text negatives: a lossless word splitter and token-level masks.

Why a regex and not NLTK's ``word_tokenize``: it needs the ``punkt`` data (not available offline) and
does not give the text back. ``split_words`` returns ``[gap, word, gap, word, ..., gap]`` pieces whose
concatenation *is* the input, so an edit on the words rebuilds the text with its case, punctuation and
whitespace intact. Words are runs of letters/digits with inner apostrophes or hyphens ("can't",
"well-made", "élan", "東京"); everything else (spaces, punctuation, emoji) lives in the gaps.

Combining marks belong to the word they follow, so a word is whole grapheme clusters: "cafe\u0301"
(e + combining acute), Devanagari vowel signs ("हिन्दी") and variation selectors move with their word
instead of staying behind in a gap (Python's ``\w`` does not match marks). Zero-width (non-)joiners inside a
word ("می‌خواهم") keep it one word.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["WORD_RE", "split_words", "check_texts", "is_token_batch", "match_case", "TokenBatchMixin", "supports_token_level"]

def _mark_class() -> str:
    """A regex character-class body with every combining mark (categories Mn, Mc, Me) of planes 0-1 and the
    variation selectors supplement; computed once at import (~20 ms)."""
    cat = unicodedata.category
    points = [cp for cp in range(0x20000) if cat(chr(cp))[0] == "M"] + list(range(0xE0100, 0xE01F0))
    ranges: list[list[int]] = []
    for cp in points:
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


_MARKS = _mark_class()
WORD_RE = re.compile(rf"(\w[\w{_MARKS}]*(?:['’\-\u200c\u200d][\w{_MARKS}]+)*)")
_split = WORD_RE.split
_split_ascii = re.compile(r"(\w+(?:['\-]\w+)*)").split  # same words on ASCII text (no marks), ~1.5x faster


def split_words(text: str) -> list[str]:
    """``[gap0, word0, gap1, word1, ..., gapN]``; ``"".join(pieces) == text`` and words are ``pieces[1::2]``."""
    return _split_ascii(text) if text.isascii() else _split(text)


def check_texts(texts: Any, who: str) -> list[str]:
    """A list of strings, or a clear ``TypeError`` naming ``who``'s ``texts`` argument."""
    if isinstance(texts, str):
        raise TypeError(f"{who} expects a list of strings (a batch), got a single str; wrap it: [text]")
    if not isinstance(texts, Sequence):
        raise TypeError(
            f"{who} expects a list of strings or a token mapping with 'input_ids', got {type(texts).__name__}"
        )
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{who}: texts[{i}] must be a str, got {type(t).__name__}")
    return texts


def is_token_batch(batch: Any) -> bool:
    return isinstance(batch, Mapping) and "input_ids" in batch


class TokenBatchMixin:
    """Special-token and padding bookkeeping shared by the token-level negatives.

    ``tokenizer`` (any Hugging Face tokenizer) supplies ``all_special_ids`` and ``pad_token_id``;
    ``special_ids`` / ``pad_token_id`` override or replace it (pass ``special_ids=()`` for ids without
    special tokens).
    """

    tokenizer: Any
    special_ids: Iterable[int] | None
    pad_token_id: int | None

    def _init_tokens(self, tokenizer: Any, special_ids: Iterable[int] | None, pad_token_id: int | None) -> None:
        if tokenizer is not None and not hasattr(tokenizer, "all_special_ids"):
            raise TypeError(
                f"tokenizer must be a Hugging Face tokenizer (with all_special_ids), got {type(tokenizer).__name__}"
            )
        if special_ids is not None:
            if isinstance(special_ids, (str, bytes)) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in special_ids
            ):
                raise TypeError(f"special_ids must be an iterable of ints, got {special_ids!r}")
            special_ids = tuple(int(i) for i in special_ids)
        if pad_token_id is not None and (not isinstance(pad_token_id, int) or isinstance(pad_token_id, bool)):
            raise TypeError(f"pad_token_id must be an int or None, got {pad_token_id!r}")
        self.tokenizer = tokenizer
        self.special_ids = special_ids
        if pad_token_id is None and tokenizer is not None:
            pad_token_id = getattr(tokenizer, "pad_token_id", None)
        self.pad_token_id = pad_token_id
        self._special_cache: dict[torch.device, torch.Tensor] = {}

    def _all_special_ids(self) -> tuple[int, ...]:
        if self.special_ids is not None:
            ids = set(self.special_ids)
        elif self.tokenizer is not None:
            ids = set(int(i) for i in self.tokenizer.all_special_ids)
        else:
            raise ValueError(
                f"{type(self).__name__} at token level needs tokenizer= (a Hugging Face tokenizer) or special_ids= "
                "(the ids of CLS/SEP/BOS/EOS...; pass special_ids=() if the ids contain no special tokens)"
            )
        if self.pad_token_id is not None:
            ids.add(int(self.pad_token_id))
        return tuple(sorted(ids))

    def _special_tensor(self, device: torch.device) -> torch.Tensor:
        t = self._special_cache.get(device)
        if t is None:
            t = torch.tensor(self._all_special_ids(), dtype=torch.long, device=device)
            self._special_cache[device] = t
        return t

    def _unpack(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attended)``: validated ids ``(B, L)`` and a bool mask of real (non-pad) tokens."""
        ids = batch["input_ids"]
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise TypeError(
                "input_ids must be an integer tensor of shape (batch, length); "
                "tokenize with return_tensors='pt' and padding=True"
            )
        mask = batch.get("attention_mask")
        if mask is None:
            if self.pad_token_id is None:
                attended = torch.ones_like(ids, dtype=torch.bool)
            else:
                attended = ids != self.pad_token_id
        else:
            if not isinstance(mask, torch.Tensor) or mask.shape != ids.shape:
                raise ValueError(
                    f"attention_mask must be a tensor of the same shape as input_ids {tuple(ids.shape)}, "
                    f"got {getattr(mask, 'shape', type(mask).__name__)}"
                )
            attended = mask.bool()
        return ids, attended

    def _content_mask(self, ids: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Positions that may move: real tokens that are not special tokens."""
        return attended & ~torch.isin(ids, self._special_tensor(ids.device))

    def _pad_id(self) -> int:
        return int(self.pad_token_id) if self.pad_token_id is not None else 0


def match_case(new: str, old: str) -> str:
    """``new`` written in the case pattern of ``old`` ("Good" -> "Bad", "GOOD" -> "BAD")."""
    if old.isupper() and len(old) > 1:
        return new.upper()
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def supports_token_level(negative: Any) -> bool:
    """Whether every leaf of ``negative`` works on token-id mappings (token shuffle and span stitch do;
    counterfactuals edit words and plain callables are unknown, so they do not)."""
    from nda.compose import leaves

    parts = leaves(negative)
    return bool(parts) and all(isinstance(part, TokenBatchMixin) for part in parts)
