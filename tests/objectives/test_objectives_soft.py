"""Soft NDA negatives: weighted InfoNCE columns, SNCSE's bidirectional margin, and the one-call SoftNegativeLoss.

Reference values are computed independently (Python floats / per-sample loops), not by re-running the code.
"""

from __future__ import annotations

import math

import pytest
import torch

from nda.objectives import (
    ContrastiveNegativeLoss,
    SoftNegativeLoss,
    bidirectional_margin_loss,
    margin_delta,
    uses_negatives,
)


def _emb(*shape, seed=0, requires_grad=False):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).requires_grad_(requires_grad)


def _cos(a, b) -> float:
    a, b = [float(x) for x in a.detach()], [float(x) for x in b.detach()]
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


# --------------------------------------------------------------------------------------------------
# ContrastiveNegativeLoss(negative_weight=w)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0, 2.0])
def test_weighted_column_equals_hand_computed_softmax(w):
    # MoCo layout at T = 0.5: positive cos 1, two NDA negatives cos 0 and 0.6, one queue key cos -1
    q, k = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    negs = torch.tensor([[[0.0, 1.0], [0.6, 0.8]]])
    queue = torch.tensor([[-3.0, 0.0]])
    out = ContrastiveNegativeLoss(temperature=0.5, negative_weight=w)(q, k, negs, queue)
    e = math.exp
    expected = -math.log(e(2.0) / (e(2.0) + w * (e(0.0) + e(1.2)) + e(-2.0)))
    assert out.loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # the logits are the ones the loss saw: log w on the NDA columns (and no NDA columns at all for w = 0)
    if w == 0:
        assert out.logits.shape == (1, 2)
    else:
        torch.testing.assert_close(out.logits, torch.tensor([[2.0, math.log(w), 1.2 + math.log(w), -2.0]]))


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0, 2.0])
def test_weighted_shared_in_batch_layout_matches_a_per_sample_reference(w):
    B, K, D, T = 3, 2, 5, 0.1
    q, k, negs = _emb(B, D, seed=1), _emb(B, D, seed=2), _emb(B, K, D, seed=3)
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[1, 0] = False
    out = ContrastiveNegativeLoss(temperature=T, in_batch=True, negative_weight=w)(q, k, negs, negative_mask=mask)
    losses = []
    for i in range(B):  # deliberately per sample, in Python floats
        pos = math.exp(_cos(q[i], k[i]) / T)
        others = sum(math.exp(_cos(q[i], k[j]) / T) for j in range(B) if j != i)
        nda = sum(math.exp(_cos(q[i], negs[b, j]) / T) for b in range(B) for j in range(K) if mask[b, j])
        losses.append(-math.log(pos / (pos + others + w * nda)))
    assert out.loss.item() == pytest.approx(sum(losses) / B, rel=1e-5)


def test_weight_one_is_todays_loss_and_weight_zero_is_no_nda_exactly():
    B, K, D = 4, 2, 8
    q, k = _emb(B, D, seed=1, requires_grad=True), _emb(B, D, seed=2, requires_grad=True)
    negs = _emb(B, K, D, seed=3, requires_grad=True)
    queue = _emb(6, D, seed=4)
    default = ContrastiveNegativeLoss(temperature=0.1)(q, k, negs, queue)
    one = ContrastiveNegativeLoss(temperature=0.1, negative_weight=1)(q, k, negs, queue)
    assert torch.equal(default.loss, one.loss) and torch.equal(default.logits, one.logits)

    for in_batch in (False, True):
        crit0 = ContrastiveNegativeLoss(temperature=0.1, negative_weight=0.0, in_batch=in_batch)
        plain = ContrastiveNegativeLoss(temperature=0.1, in_batch=in_batch)
        zero = crit0(q, k, negs, queue, negative_mask=torch.ones(B, K, dtype=torch.bool))
        ref = plain(q, k, None, queue)
        assert torch.equal(zero.loss, ref.loss) and torch.equal(zero.logits, ref.logits)
        g_zero = torch.autograd.grad(zero.loss, (q, k))
        g_ref = torch.autograd.grad(ref.loss, (q, k))
        assert all(torch.equal(a, b) for a, b in zip(g_zero, g_ref))
    crit0(q, k, negs).loss.backward()
    assert negs.grad is None  # left out of the graph, not multiplied by 0


def test_small_weight_lowers_the_loss_of_a_hard_negative():
    B, D = 5, 16
    k = _emb(B, D, seed=2)
    q = k + 0.1 * _emb(B, D, seed=1)
    hard = k[:, None] + 0.05 * _emb(B, 1, D, seed=3)  # a negative almost equal to the positive
    losses = [ContrastiveNegativeLoss(temperature=0.05, negative_weight=w)(q, k, hard).loss.item() for w in (0.0, 0.1, 1.0, 2.0)]
    assert losses == sorted(losses) and losses[0] < losses[-1]


def test_negative_weight_and_temperature_are_validated():
    for bad in (-0.5, float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="negative_weight"):
            ContrastiveNegativeLoss(negative_weight=bad)
    for bad in ("1", True, None):
        with pytest.raises(TypeError, match="negative_weight"):
            ContrastiveNegativeLoss(negative_weight=bad)
    for bad in (float("inf"), float("nan"), 0.0, -0.1, "0.05"):
        with pytest.raises(ValueError, match="temperature"):
            ContrastiveNegativeLoss(temperature=bad)
        with pytest.raises(ValueError, match="temperature"):
            SoftNegativeLoss(temperature=bad)


# --------------------------------------------------------------------------------------------------
# bidirectional margin loss
# --------------------------------------------------------------------------------------------------


def _unit(cos: float) -> list[float]:
    return [cos, math.sqrt(max(0.0, 1 - cos * cos))]


def test_margin_matches_the_direct_formula():
    B, K, D, alpha, beta = 4, 3, 6, 0.1, 0.3
    q, pos, negs = _emb(B, D, seed=1), _emb(B, D, seed=2), _emb(B, K, D, seed=3)
    total = 0.0
    for i in range(B):
        for j in range(K):
            d = _cos(q[i], negs[i, j]) - _cos(q[i], pos[i])
            total += max(0.0, d + alpha) + max(0.0, -d - beta)
    assert bidirectional_margin_loss(q, pos, negs, alpha=alpha, beta=beta).item() == pytest.approx(total / (B * K), rel=1e-5)
    d = margin_delta(q, pos, negs)
    assert d.shape == (B, K) and d.dtype == torch.float32
    assert d[2, 1].item() == pytest.approx(_cos(q[2], negs[2, 1]) - _cos(q[2], pos[2]), abs=1e-6)


def test_margin_is_zero_inside_the_band_and_linear_outside():
    q = torch.tensor([[1.0, 0.0]])
    pos = torch.tensor([[1.0, 0.0]])  # cos(q, pos) = 1, so d = cos(q, neg) - 1
    cases = {0.8: 0.0, 0.75: 0.0, 0.85: 0.0, 0.95: 0.05, 1.0: 0.1, 0.5: 0.2, 0.0: 0.7}  # cos(q, neg) -> loss
    for cos, expected in cases.items():
        neg = torch.tensor([[_unit(cos)]], requires_grad=True)
        loss = bidirectional_margin_loss(q, pos, neg, alpha=0.1, beta=0.3)
        assert loss.item() == pytest.approx(expected, abs=1e-6), cos
        (grad,) = torch.autograd.grad(loss, neg)
        if expected == 0.0:
            assert torch.equal(grad, torch.zeros_like(grad))  # nothing pulls or pushes inside the band
    # boundaries d = -alpha and d = -beta are inside (up to rounding)
    for cos in (0.9, 0.7):
        assert bidirectional_margin_loss(q, pos, torch.tensor([[_unit(cos)]])).item() == pytest.approx(0.0, abs=1e-6)


def test_a_masked_negative_changes_nothing_value_and_gradient():
    B, K, D = 3, 3, 8
    q, pos = _emb(B, D, seed=1, requires_grad=True), _emb(B, D, seed=2, requires_grad=True)
    negs = _emb(B, K, D, seed=3, requires_grad=True)
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[1, 2] = False
    other = negs.detach().clone()
    other[1, 2] = 1e4 * _emb(D, seed=9)  # the masked negative can be anything
    other.requires_grad_(True)
    a = bidirectional_margin_loss(q, pos, negs, mask)
    b = bidirectional_margin_loss(q, pos, other, mask)
    assert torch.equal(a, b)
    ga, gb = torch.autograd.grad(a, (q, pos, negs)), torch.autograd.grad(b, (q, pos, other))
    for x, y in zip(ga, gb):
        assert torch.equal(x, y)
    assert torch.equal(ga[2][1, 2], torch.zeros(D))
    # a fully masked column equals the loss without that column (the mean is over valid negatives)
    col = torch.ones(B, K, dtype=torch.bool)
    col[:, 0] = False
    torch.testing.assert_close(bidirectional_margin_loss(q, pos, negs, col), bidirectional_margin_loss(q, pos, negs[:, 1:]))
    # nothing valid: 0, with a graph and zero gradients
    none = bidirectional_margin_loss(q, pos, negs, torch.zeros(B, K, dtype=torch.bool))
    assert none.item() == 0.0
    assert all(torch.equal(g, torch.zeros_like(g)) for g in torch.autograd.grad(none, (q, pos, negs)))


def test_margin_is_float32_with_autocast_off_for_bf16_inputs():
    B, K, D = 4, 2, 16
    q, pos, negs = _emb(B, D, seed=1), _emb(B, D, seed=2), _emb(B, K, D, seed=3)
    for dtype in (torch.bfloat16, torch.float16):
        low = bidirectional_margin_loss(q.to(dtype), pos.to(dtype), negs.to(dtype))
        ref = bidirectional_margin_loss(q.to(dtype).float(), pos.to(dtype).float(), negs.to(dtype).float())
        assert low.dtype == torch.float32
        torch.testing.assert_close(low, ref)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = bidirectional_margin_loss(q, pos, negs)
        soft = SoftNegativeLoss("margin", margin_weight=1.0)(q, pos, negs)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, bidirectional_margin_loss(q, pos, negs))
    torch.testing.assert_close(soft.loss, SoftNegativeLoss("margin", margin_weight=1.0)(q, pos, negs).loss)


def test_margin_bad_inputs_raise_naming_the_argument():
    q, pos, negs = torch.zeros(4, 8), torch.zeros(4, 8), torch.zeros(4, 2, 8)
    with pytest.raises(ValueError, match="alpha"):
        bidirectional_margin_loss(q, pos, negs, alpha=0.5, beta=0.3)
    with pytest.raises(ValueError, match="beta"):
        bidirectional_margin_loss(q, pos, negs, beta=float("nan"))
    with pytest.raises(ValueError, match="positive"):
        bidirectional_margin_loss(q, torch.zeros(3, 8), negs)
    with pytest.raises(ValueError, match="negatives"):
        bidirectional_margin_loss(q, pos, torch.zeros(4, 8))
    with pytest.raises(ValueError, match="negatives"):
        bidirectional_margin_loss(q, pos, torch.zeros(5, 2, 8))
    with pytest.raises(TypeError, match="negative_mask"):
        bidirectional_margin_loss(q, pos, negs, torch.ones(4, 2))
    with pytest.raises(ValueError, match="negative_mask"):
        bidirectional_margin_loss(q, pos, negs, torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="query"):
        bidirectional_margin_loss(torch.zeros(4, 8, dtype=torch.long), pos, negs)


# --------------------------------------------------------------------------------------------------
# SoftNegativeLoss: the one call
# --------------------------------------------------------------------------------------------------


def test_column_mode_is_the_weighted_contrastive_loss():
    B, K, D = 4, 2, 8
    q, k, negs = _emb(B, D, seed=1), _emb(B, D, seed=2), _emb(B, K, D, seed=3)
    mask = torch.tensor([[True, False], [True, True], [False, False], [True, True]])
    out = SoftNegativeLoss("column", temperature=0.05, negative_weight=0.3)(q, k, negs, negative_mask=mask)
    ref = ContrastiveNegativeLoss(temperature=0.05, in_batch=True, negative_weight=0.3)(q, k, negs, negative_mask=mask)
    assert torch.equal(out.loss, ref.loss) and torch.equal(out.logits, ref.logits) and torch.equal(out.labels, ref.labels)
    assert torch.equal(out.info_nce, ref.loss) and out.margin.item() == 0.0


def test_margin_mode_is_infonce_without_nda_columns_plus_lambda_margin():
    B, K, D, lam = 4, 2, 8, 0.5
    q, k = _emb(B, D, seed=1, requires_grad=True), _emb(B, D, seed=2, requires_grad=True)
    negs = _emb(B, K, D, seed=3, requires_grad=True)
    mask = torch.tensor([[True, False], [True, True], [False, False], [True, True]])
    out = SoftNegativeLoss("margin", temperature=0.05, margin_weight=lam, alpha=0.05, beta=0.4)(q, k, negs, negative_mask=mask)
    plain = ContrastiveNegativeLoss(temperature=0.05, in_batch=True)(q, k)
    # independent margin reference over the valid negatives
    terms = []
    for i in range(B):
        for j in range(K):
            if mask[i, j]:
                d = _cos(q[i], negs[i, j]) - _cos(q[i], k[i])
                terms.append(max(0.0, d + 0.05) + max(0.0, -d - 0.4))
    margin = sum(terms) / len(terms)
    assert torch.equal(out.info_nce, plain.loss.detach())
    assert out.margin.item() == pytest.approx(margin, rel=1e-5)
    assert out.loss.item() == pytest.approx(plain.loss.item() + lam * margin, rel=1e-6)
    assert out.logits.shape == (B, B) and torch.equal(out.logits, plain.logits)
    assert out.loss.requires_grad and not out.info_nce.requires_grad and not out.margin.requires_grad
    out.loss.backward()
    assert negs.grad is not None and torch.equal(negs.grad[2], torch.zeros(K, D)) and torch.equal(negs.grad[0, 1], torch.zeros(D))


def test_weight_zero_and_missing_negatives_are_plain_infonce_exactly():
    B, K, D = 4, 2, 8
    q, k = _emb(B, D, seed=1, requires_grad=True), _emb(B, D, seed=2, requires_grad=True)
    negs = _emb(B, K, D, seed=3, requires_grad=True)
    plain = ContrastiveNegativeLoss(temperature=0.05, in_batch=True)(q, k)
    g_plain = torch.autograd.grad(plain.loss, (q, k))
    cases = [
        SoftNegativeLoss("column", negative_weight=0.0)(q, k, negs),
        SoftNegativeLoss("margin", margin_weight=0.0)(q, k, negs),
        SoftNegativeLoss("column", negative_weight=0.5)(q, k, None),  # a step without NDA (--nda-every N)
        SoftNegativeLoss("margin", margin_weight=1e-3)(q, k, None),
    ]
    for out in cases:
        assert torch.equal(out.loss, plain.loss) and torch.equal(out.logits, plain.logits)
        g = torch.autograd.grad(out.loss, (q, k))
        assert torch.equal(g[0], g_plain[0]) and torch.equal(g[1], g_plain[1])
    assert cases[1].margin.item() > 0  # still reported, for logging
    (SoftNegativeLoss("column", negative_weight=0.0)(q, k, negs).loss
     + SoftNegativeLoss("margin", margin_weight=0.0)(q, k, negs).loss).backward()
    assert negs.grad is None  # left out of the graph, not multiplied by 0


def test_margin_pairs_each_query_with_its_own_gathered_negatives():
    B, K, D, world, rank = 2, 2, 6, 3, 1
    q = _emb(B, D, seed=1)
    keys, negs = _emb(world * B, D, seed=2), _emb(world * B, K, D, seed=3)  # gathered from 3 ranks
    mask = torch.ones(world * B, K, dtype=torch.bool)
    mask[rank * B + 1, 0] = False
    out = SoftNegativeLoss("margin", margin_weight=1.0)(q, keys, negs, negative_mask=mask, positive_offset=rank * B)
    rows = slice(rank * B, rank * B + B)
    expected = bidirectional_margin_loss(q, keys[rows], negs[rows], mask[rows])
    torch.testing.assert_close(out.margin, expected)
    assert out.labels.tolist() == [2, 3]
    # local negatives (B rows) pair by row i even when the keys were gathered
    local = SoftNegativeLoss("margin", margin_weight=1.0)(q, keys, negs[rows], positive_offset=rank * B)
    torch.testing.assert_close(local.margin, bidirectional_margin_loss(q, keys[rows], negs[rows]))
    with pytest.raises(ValueError, match="nda_negatives"):
        SoftNegativeLoss("margin")(q, keys, negs[:3], positive_offset=rank * B)


def test_moco_layout_margin():
    B, K, D = 3, 2, 8
    q, k, negs, queue = _emb(B, D, seed=1), _emb(B, D, seed=2), _emb(B, K, D, seed=3), _emb(7, D, seed=4)
    out = SoftNegativeLoss("margin", temperature=0.2, margin_weight=0.1, in_batch=False)(q, k, negs, queue)
    plain = ContrastiveNegativeLoss(temperature=0.2)(q, k, None, queue)
    torch.testing.assert_close(out.loss, plain.loss + 0.1 * bidirectional_margin_loss(q, k, negs))
    assert out.logits.shape == (B, 1 + 7)


def test_soft_negative_loss_drops_into_the_sentence_step():
    from nda.models.sentence import tiny_random_encoder
    from nda.models.simcse import build_contrastive_batch, contrastive_step
    from nda.registry import build

    enc = tiny_random_encoder()
    anchors = ["a man is playing a guitar", "the dog ran in the park", "two women are eating food", "a cat sat"]
    batch = build_contrastive_batch(enc, anchors, negative=build("token_shuffle"), k=1,
                                    generator=torch.Generator().manual_seed(0))
    for crit in (SoftNegativeLoss("margin", margin_weight=1e-3), SoftNegativeLoss("column", negative_weight=0.5)):
        enc.zero_grad()
        out = contrastive_step(enc, batch, crit)
        assert torch.isfinite(out.loss) and out.logits.shape[0] == 4
        out.loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def test_soft_negative_loss_validates_its_options():
    with pytest.raises(ValueError, match="mode"):
        SoftNegativeLoss("both")
    with pytest.raises(ValueError, match="negative_weight"):
        SoftNegativeLoss(negative_weight=-1.0)
    with pytest.raises(ValueError, match="margin_weight"):
        SoftNegativeLoss("margin", margin_weight=float("inf"))
    with pytest.raises(ValueError, match="alpha"):
        SoftNegativeLoss("margin", alpha=0.4, beta=0.3)
    with pytest.raises(TypeError, match="beta"):
        SoftNegativeLoss("margin", beta="0.3")
    crit = SoftNegativeLoss("margin")
    q = torch.zeros(4, 8)
    with pytest.raises(ValueError, match="negative_mask"):
        crit(q, q, None, negative_mask=torch.ones(4, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="nda_negatives"):
        crit(q, q, torch.zeros(4, 2, 7))
    assert "margin_weight=0.001" in repr(crit) and "negative_weight=0.5" in repr(SoftNegativeLoss(negative_weight=0.5))


def test_uses_negatives_every_nth_step():
    assert [s for s in range(10) if uses_negatives(s, 3)] == [0, 3, 6, 9]
    assert all(uses_negatives(s) for s in range(5))
    for bad in ((0, 0), (-1, 2), (1.0, 2), (True, 1)):
        with pytest.raises(ValueError):
            uses_negatives(*bad)
