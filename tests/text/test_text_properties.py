"""Property tests: the text negatives never crash on arbitrary unicode and keep their invariants."""

from __future__ import annotations

import re
from collections import Counter

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nda.text import Counterfactual, SpanStitch, TokenShuffle

WORD = re.compile(r"\w+(?:['’\-]\w+)*")
texts_st = st.lists(st.text(max_size=60), min_size=1, max_size=6)
wordy = st.lists(
    st.lists(st.sampled_from(["good", "is", "not", "can't", "Ça", "東京", "no", "never", "x", "!", ",", " "]), max_size=12).map(
        " ".join
    ),
    min_size=1,
    max_size=6,
)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(texts=st.one_of(texts_st, wordy), seed=st.integers(0, 2**31), window=st.sampled_from([None, 2, 3]))
def test_shuffle_permutes_words(texts, seed, window):
    shuffle = TokenShuffle(window=window)
    out = shuffle(texts, generator=torch.Generator().manual_seed(seed))
    assert len(out) == len(texts)
    for a, b, can_change in zip(texts, out, shuffle.can_change(texts)):
        assert Counter(WORD.findall(a)) == Counter(WORD.findall(b))
        assert len(a) == len(b)
        assert (a != b) == can_change  # never the identity when a change is possible, untouched otherwise


@SETTINGS
@given(texts=st.one_of(texts_st, wordy), seed=st.integers(0, 2**31))
def test_stitch_never_crashes(texts, seed):
    texts = texts + ["filler words here"]
    out = SpanStitch()(texts, generator=torch.Generator().manual_seed(seed))
    assert len(out) == len(texts) and all(isinstance(o, str) for o in out)
    words = [WORD.findall(t) for t in texts]
    for i, o in enumerate(out):  # a head of sentence i + a tail of another sentence, each a strict part if >= 2 words
        assert any(_is_stitch(WORD.findall(o), words[i], words[j]) for j in range(len(texts)) if j != i), (texts, o)


def _is_stitch(out: list[str], head_src: list[str], tail_src: list[str]) -> bool:
    for k in range(len(out) + 1):
        m = len(out) - k
        head_ok = out[:k] == head_src[:k] and (k == len(head_src) if len(head_src) < 2 else 1 <= k < len(head_src))
        tail_ok = m <= len(tail_src) and out[k:] == tail_src[len(tail_src) - m :]
        if head_ok and tail_ok and (m == len(tail_src) if len(tail_src) < 2 else 1 <= m < len(tail_src)):
            return True
    return False


@SETTINGS
@given(texts=st.one_of(texts_st, wordy))
def test_counterfactual_never_crashes_and_flags_honestly(texts):
    r = Counterfactual()(texts, labels=[1] * len(texts))
    assert len(r.texts) == len(texts) == len(r.flipped) == len(r.labels)
    for src, new, flipped, label in zip(texts, r.texts, r.flipped, r.labels):
        if flipped:
            assert new != src and label == 0
        else:
            assert new == src and label == 1


@SETTINGS
@given(
    rows=st.lists(st.lists(st.integers(5, 30), max_size=10), min_size=2, max_size=6),
    seed=st.integers(0, 2**31),
)
def test_token_level_invariants(rows, seed):
    cls, sep, pad = 1, 2, 0
    length = max(len(r) for r in rows) + 2
    ids = torch.full((len(rows), length), pad)
    for i, r in enumerate(rows):
        ids[i, : len(r) + 2] = torch.tensor([cls, *r, sep])
    batch = {"input_ids": ids, "attention_mask": (ids != pad).long()}
    g = torch.Generator().manual_seed(seed)
    out = TokenShuffle(special_ids=[cls, sep], pad_token_id=pad)(batch, generator=g)["input_ids"]
    special = (ids == cls) | (ids == sep) | (ids == pad)
    assert torch.equal(out[special], ids[special])
    for i, r in enumerate(rows):
        assert sorted(out[i, 1 : len(r) + 1].tolist()) == sorted(r)
        assert (out[i].tolist() != ids[i].tolist()) == (len(set(r)) > 1)
    st_out = SpanStitch(special_ids=[cls, sep], pad_token_id=pad)(batch, generator=g)
    assert torch.equal(st_out["attention_mask"].bool(), st_out["input_ids"] != pad)
    assert (st_out["input_ids"][:, 0] == cls).all()
