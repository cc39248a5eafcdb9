"""A composition never hands back an unchanged sample as an unmarked negative (issue 17 item 9), and a blank text
is never a valid negative.

Regression: ``rotate>rotate`` left 86 of 256 images unchanged (90 then 270 degrees), ``jigsaw>jigsaw`` 9 and
``shift>shift`` 6; ``span_stitch`` turned whitespace-only texts into "" marked valid.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import nda
from nda.base import NegativeResult, as_result
from nda.compose import REDRAW_ROUNDS, Compose
from nda.text import Counterfactual, SpanStitch, TokenShuffle


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def unchanged(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (out == x).flatten(1).all(1)


@pytest.mark.parametrize("spec", ["rotate>rotate", "jigsaw>jigsaw", "shift>shift"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_self_compositions_hand_back_no_unchanged_image(spec, dtype):
    x = torch.randint(0, 256, (256, 3, 16, 16), generator=g(1)).to(dtype)
    comp = nda.build(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left to warn about
        out = comp(x, generator=g(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert int(unchanged(out, x).sum()) == 0
    assert torch.equal(out, comp(x, generator=g(0)))  # still seeded
    neg, valid = comp.with_valid(x, generator=g(0))
    assert torch.equal(neg, out) and valid.dtype == torch.bool and bool(valid.all())


def test_samples_that_cannot_change_are_masked_and_warned_about():
    x = torch.randint(0, 256, (6, 3, 8, 8), generator=g(1), dtype=torch.uint8)
    x[2] = 7  # a constant image: no rotation changes it
    comp = nda.build("rotate>rotate")
    neg, valid = comp.with_valid(x, generator=g(0))
    assert valid.tolist() == [True, True, False, True, True, True]
    assert torch.equal(unchanged(neg, x), ~valid)
    with pytest.warns(RuntimeWarning, match="1 of 6 samples unchanged"):
        comp(x, generator=g(0))
    cancel = nda.build("rotate:angles=(180,)>rotate:angles=(180,)")  # always the identity
    neg, valid = cancel.with_valid(x, generator=g(0))
    assert not valid.any() and torch.equal(neg, x)


class PairwiseStub(nda.Negative):
    """Leaves sample 0 unchanged on its first call; later calls reverse the batch (needs >= 2 samples)."""

    name, modality, pairwise = "pairwise_stub", "image", True

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x, *, generator=None):
        self.calls += 1
        if self.calls == 1:
            out = x.clone()
            out[1:] += 1
            return out
        return x.flip(0)


def test_a_single_unchanged_sample_of_a_pairwise_composition_is_redrawn_with_the_full_batch():
    x = torch.arange(4 * 3 * 2 * 2, dtype=torch.uint8).view(4, 3, 2, 2)
    neg, valid = Compose([PairwiseStub()]).with_valid(x, generator=g(0))
    assert valid.all() and torch.equal(neg[0], x[3])


def test_redraws_are_bounded():
    class Never(nda.Negative):
        name, modality = "never", "image"
        calls = 0

        def __call__(self, x, *, generator=None):
            Never.calls += 1
            return x

    _, valid = Compose([Never()]).with_valid(torch.zeros(3, 1, 2, 2), generator=g(0))
    assert Never.calls == 1 + REDRAW_ROUNDS and not valid.any()


def test_blank_texts_are_never_valid_negatives():
    texts = ["   ", "", "hello world", "\n\t", "the cat sat"]
    r = SpanStitch()(texts, generator=g(0))
    blank = [not t.strip() for t in r]
    assert any(blank)  # the seed gives blank outputs: they must be masked
    assert all(not v for v, b in zip(r.valid, blank) if b)
    assert NegativeResult(["  ", "x"], valid=[True, True], paraphrase=[True, True]).valid == [False, True]
    assert NegativeResult(["  "], paraphrase=[True]).paraphrase == [False]
    assert as_result(["x", "y"], ["", "z"]).valid == [False, True]
    assert TokenShuffle()(["  ", "a b"], generator=g(0)).valid == [False, True]
    blanker = Compose([SpanStitch(), TokenShuffle()])
    out = blanker(texts, generator=g(0))
    assert all(not v for t, v in zip(out, out.valid) if not t.strip())
    assert Counterfactual()(["   "], labels=[1]).valid == [False]
