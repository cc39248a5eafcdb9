"""Span stitching: the first part of one sentence joined to the last part of a *different* sentence.

The text analogue of the paper's image stitching: each half is fluent and in-distribution, the whole is
incoherent. Partners come from :func:`nda.sampling.derangement` (never the sentence itself, each sentence
gives its tail once), so a batch of one is a ``ValueError``.

Cut points: sentence ``i`` keeps its first ``round(f * n_i)`` words and its partner gives its last
``round(g * n_p)`` words, ``f, g ~ U(min_fraction, max_fraction)``, each part clamped to
``[1, n - 1]`` words so both are strict parts of sentences of >= 2 words (a one-word sentence gives its
one word; an empty sentence gives nothing, so the result is the other part alone).

String level: cut at word boundaries, joined with one space; punctuation inside each part is kept.
Token level: content tokens (non-special, non-pad) are cut the same way; sentence ``i`` keeps its leading
special tokens (CLS/BOS) and its trailing ones (SEP/EOS), the partner's tail goes between; the output is
re-padded (to the longest result, right padding unless the tokenizer pads on the left) with a correct
``attention_mask``; other ``(B, L)`` keys (``token_type_ids``...) follow their tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from nda.base import Negative, NegativeResult
from nda.sampling import check_generator, derangement, rand
from nda.text._words import TokenBatchMixin, check_texts, is_token_batch, split_words

__all__ = ["SpanStitch"]


class SpanStitch(TokenBatchMixin, Negative):
    """Head of sentence ``i`` + tail of sentence ``partner(i) != i``, cut at random points.

    Args:
        min_fraction, max_fraction: range of the share of a sentence's words (tokens) that its part keeps.
        tokenizer, special_ids, pad_token_id: special tokens and padding for token-level input.
    """

    name = "span_stitch"
    modality = "text"
    pairwise = True

    def __init__(
        self,
        min_fraction: float = 0.25,
        max_fraction: float = 0.75,
        tokenizer: Any = None,
        special_ids: Iterable[int] | None = None,
        pad_token_id: int | None = None,
    ) -> None:
        for arg, v in (("min_fraction", min_fraction), ("max_fraction", max_fraction)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{arg} must be a number in [0, 1], got {v!r}")
        if min_fraction > max_fraction:
            raise ValueError(f"min_fraction ({min_fraction}) must be <= max_fraction ({max_fraction})")
        self.min_fraction = float(min_fraction)
        self.max_fraction = float(max_fraction)
        self._init_tokens(tokenizer, special_ids, pad_token_id)

    def __call__(self, batch: Any, *, generator: torch.Generator | None = None) -> Any:
        check_generator(generator)
        if is_token_batch(batch):
            return self._tokens(batch, generator)
        return self._strings(check_texts(batch, "SpanStitch"), generator)

    def _parts(self, counts: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Head length of every sentence and tail length it gives as a partner, each in ``[1, n-1]`` for n >= 2."""
        span = self.max_fraction - self.min_fraction
        f = self.min_fraction + span * u
        want = torch.round(f * counts[:, None].to(f.dtype)).long()
        lo = torch.ones_like(counts)
        hi = (counts - 1).clamp_min(1)
        clamped = torch.maximum(torch.minimum(want, hi[:, None]), lo[:, None])
        parts = torch.where((counts >= 2)[:, None], clamped, counts[:, None].expand_as(want))
        return parts[:, 0], parts[:, 1]

    # ------------------------------------------------------------------ strings
    def _strings(self, texts: list[str], generator: torch.Generator | None) -> NegativeResult:
        partner = derangement(len(texts), generator=generator)
        pieces = [split_words(t) for t in texts]
        counts = torch.tensor([len(p) >> 1 for p in pieces])
        head, tail = self._parts(counts, rand(len(texts), 2, generator=generator))
        tails = tail.tolist()
        out = []
        for p, h, j in zip(pieces, head.tolist(), partner.tolist()):
            q = pieces[j]
            t = tails[j]
            left = "".join(p[: 2 * h]) if h else ""
            right = "".join(q[len(q) - 2 * t :]) if t else ""  # the last t words and the gaps after them
            if left and right:
                out.append(left + " " + right)
            else:
                out.append((left or right).strip())
        return NegativeResult(out, valid=[o != t for o, t in zip(out, texts)])

    # ------------------------------------------------------------------- tokens
    def _tokens(self, batch: Mapping[str, Any], generator: torch.Generator | None) -> dict[str, Any]:
        ids, attended = self._unpack(batch)
        b, length = ids.shape
        device = ids.device
        partner = derangement(b, generator=generator, device=device)
        if length == 0:  # (B, 0) ids, e.g. empty strings without special tokens: nothing to cut or join
            return dict(batch)
        u = rand(b, 2, generator=generator, device=device)
        pos = torch.arange(length, device=device)
        # Compact real tokens to the front (handles left padding); everything below is right-padded.
        compact = torch.where(attended, pos, length + pos).argsort(dim=1)
        ids_c = ids.gather(1, compact)
        n_real = attended.sum(dim=1)
        content = self._content_mask(ids_c, pos < n_real[:, None])
        m = content.sum(dim=1)
        cpos = torch.where(content, pos, length + pos).argsort(dim=1)  # content positions in order first
        head, tail = self._parts(m, u)
        last = torch.where(m > 0, cpos.gather(1, (m - 1).clamp_min(0)[:, None])[:, 0], torch.full_like(m, -1))
        cut = cpos.gather(1, head.clamp_max(length - 1)[:, None])[:, 0]
        prefix = torch.where(head < m, cut, last + 1)
        prefix = torch.where(m > 0, prefix, (n_real + 1) // 2)  # no content: put the tail among the specials
        suffix_start = torch.where(m > 0, last + 1, prefix)
        suffix = n_real - suffix_start
        t = tail[partner]
        t_start = (m - tail)[partner]
        n_out = prefix + t + suffix
        out_len = int(n_out.max())  # one host sync: the output width depends on the data
        j = torch.arange(out_len, device=device).expand(b, out_len)
        if getattr(self.tokenizer, "padding_side", "right") == "left":
            j = j - (out_len - n_out)[:, None]
        valid = (j >= 0) & (j < n_out[:, None])
        in_prefix = j < prefix[:, None]
        in_tail = (~in_prefix) & (j < (prefix + t)[:, None])
        tail_rank = (t_start[:, None] + j - prefix[:, None]).clamp(0, length - 1)
        tail_pos = cpos.index_select(0, partner).gather(1, tail_rank)
        suffix_pos = suffix_start[:, None] + j - (prefix + t)[:, None]
        col = torch.where(in_prefix, j, torch.where(in_tail, tail_pos, suffix_pos)).clamp(0, length - 1)
        row = torch.where(in_tail, partner[:, None], torch.arange(b, device=device)[:, None])
        flat = row * length + col
        out: dict[str, Any] = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor) and value.shape == ids.shape:
                if key == "attention_mask":
                    out[key] = valid.to(value.dtype)
                    continue
                fill = self._pad_id() if key == "input_ids" else 0
                src = value.gather(1, compact).reshape(-1)[flat]
                out[key] = torch.where(valid, src, torch.full_like(src, fill))
            else:
                out[key] = value
        if "attention_mask" not in out:
            out["attention_mask"] = valid.long()
        return out
