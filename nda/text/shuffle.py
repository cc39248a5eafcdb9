"""Token shuffle: permute the words (strings) or the non-special tokens (token ids) of each sentence.

A shuffled sentence keeps its bag of words but loses its syntax, so it is a negative that a model can only
reject by reading word order. ``window=w`` shuffles only inside consecutive windows of ``w`` words/tokens:
small windows corrupt word order locally (a tunable strength); ``None`` shuffles the whole sentence.

Never the identity: a sentence with >= 2 distinct words (in at least one window) always comes back
changed. A draw that happens to give the input back is replaced by a cyclic rotation of each window
(still seeded, a tensor op at token level). Sentences that *cannot* change -- empty strings, one word,
or all words equal ("no no no") -- are returned unchanged; use :meth:`TokenShuffle.can_change` to find
them.

String level: words are runs of letters/digits (with inner apostrophes/hyphens); punctuation and
whitespace stay where they are, so "Good movie, really!" -> "really movie, Good!".
Token level: ``{"input_ids", "attention_mask", ...}`` -> same keys; special tokens (from the tokenizer's
``all_special_ids`` or ``special_ids``) and padding never move; the other keys are position-aligned and
returned as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from nda.base import Negative, NegativeResult
from nda.sampling import check_generator, rand
from nda.text._words import TokenBatchMixin, check_texts, is_token_batch, split_words

__all__ = ["TokenShuffle"]


class TokenShuffle(TokenBatchMixin, Negative):
    """Permute words (``list[str]``) or non-special tokens (token mapping) of every sentence.

    >>> import torch
    >>> TokenShuffle()(["the cat sat on the mat"], generator=torch.Generator().manual_seed(0))[0] != "the cat sat on the mat"
    True

    Args:
        window: shuffle only within consecutive windows of this many words/tokens (``>= 2``); ``None``
            shuffles the whole sentence.
        tokenizer: a Hugging Face tokenizer, for its special-token ids and pad id (token level only).
        special_ids: ids that never move (override the tokenizer's ``all_special_ids``).
        pad_token_id: the padding id (defaults to the tokenizer's).
    """

    name = "token_shuffle"
    modality = "text"
    pairwise = False

    def __init__(
        self,
        window: int | None = None,
        tokenizer: Any = None,
        special_ids: Iterable[int] | None = None,
        pad_token_id: int | None = None,
    ) -> None:
        if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window < 2):
            raise ValueError(f"window must be an int >= 2 or None (whole sentence), got {window!r}")
        self.window = window
        self._init_tokens(tokenizer, special_ids, pad_token_id)

    def __call__(self, batch: Any, *, generator: torch.Generator | None = None) -> Any:
        check_generator(generator)
        if is_token_batch(batch):
            return self._tokens(batch, generator)
        return self._strings(check_texts(batch, "TokenShuffle"), generator)

    # ------------------------------------------------------------------ strings
    def _strings(self, texts: list[str], generator: torch.Generator | None) -> NegativeResult:
        pieces = [split_words(t) for t in texts]
        counts = [len(p) >> 1 for p in pieces]
        longest = max(counts, default=0)
        if longest < 2:
            return NegativeResult(texts, valid=[False] * len(texts))
        perm = self._perm_from_counts(torch.tensor(counts), longest, generator).tolist()
        out: list[str] = []
        window = self.window
        for text, p, n, order in zip(texts, pieces, counts, perm):
            if n < 2:
                out.append(text)
                continue
            words = p[1::2]
            new = [words[j] for j in order[:n]]
            if new == words:  # the draw gave the text back (or repeats hid the change): rotate a window
                new = _rotate(words, window or n)
            p[1::2] = new
            out.append("".join(p))
        return NegativeResult(out, valid=[o != t for o, t in zip(out, texts)])

    def _perm_from_counts(self, counts: torch.Tensor, longest: int, generator: torch.Generator | None) -> torch.Tensor:
        """``(B, longest)`` permutations of ``range(n_b)`` (positions >= n_b fixed), one batched argsort."""
        pos = torch.arange(longest)
        keys = rand(len(counts), longest, generator=generator)
        if self.window is not None:
            keys = keys + (pos // self.window).to(keys.dtype)
        keys = torch.where(pos < counts[:, None], keys, float(longest + 2) + pos.to(keys.dtype))
        return keys.argsort(dim=1)

    # ------------------------------------------------------------------- tokens
    def _tokens(self, batch: Mapping[str, Any], generator: torch.Generator | None) -> dict[str, Any]:
        ids, attended = self._unpack(batch)
        movable = self._content_mask(ids, attended)
        b, length = ids.shape
        device = ids.device
        pos = torch.arange(length, device=device)
        rank = movable.long().cumsum(dim=1) - 1  # rank of each movable token among its row's movable tokens
        w = self.window or max(length, 1)
        big = float(length + 2)
        keys = rand(b, length, generator=generator, device=device) + (rank.clamp_min(0) // w).to(torch.float32)
        keys = torch.where(movable, keys, big + pos.to(torch.float32))
        order = keys.argsort(dim=1)  # shuffled movable positions first, then fixed ones in position order
        slots = torch.where(movable, pos, length + pos).argsort(dim=1)  # movable positions in order, then fixed
        perm = torch.empty_like(slots).scatter_(1, slots, order)
        new_ids = ids.gather(1, perm)
        # Rows whose draw changed nothing: rotate every window by one (changes any window of >= 2 distinct tokens).
        unchanged = (new_ids == ids).all(dim=1, keepdim=True)
        m = movable.sum(dim=1, keepdim=True)
        k = pos.expand(b, length)
        start = (k // w) * w
        end = torch.minimum(start + w, m)
        src = torch.where(k < m, torch.where(k + 1 < end, k + 1, start), k)
        rot_perm = torch.empty_like(slots).scatter_(1, slots, slots.gather(1, src))
        new_ids = torch.where(unchanged, ids.gather(1, rot_perm), new_ids)
        out = dict(batch)
        out["input_ids"] = new_ids
        return out

    def can_change(self, texts: list[str]) -> list[bool]:
        """Whether shuffling can change each text (>= 2 distinct words in one window); the others come back as is."""
        flags = []
        for t in check_texts(texts, "TokenShuffle.can_change"):
            words = split_words(t)[1::2]
            w = self.window or max(len(words), 1)
            flags.append(any(len(set(words[s : s + w])) > 1 for s in range(0, len(words), w)))
        return flags


def _rotate(words: list[str], window: int) -> list[str]:
    """Rotate every window by one position (differs from ``words`` iff some window has 2 distinct words)."""
    out = list(words)
    for s in range(0, len(words), window):
        chunk = words[s : s + window]
        out[s : s + len(chunk)] = chunk[1:] + chunk[:1]
    return out
