"""Tests for nda.objectives: hand-computed values, gradients, the mix variant, InfoNCE layouts and masks."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from nda.objectives import (
    ContrastiveNegativeLoss,
    DiscriminatorNegativeLoss,
    generator_loss,
    mix_fake_and_negative,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------------
# DiscriminatorNegativeLoss: values
# --------------------------------------------------------------------------------------------------


def test_hinge_matches_hand_computed_values():
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - d) = 0, 0.5, 2   -> mean 5/6
    fake = torch.tensor([-2.0, 0.0, 1.0])  # relu(1 + d) = 0, 1, 2     -> mean 1
    neg = torch.tensor([0.5, -3.0])  # relu(1 + d) = 1.5, 0         -> mean 0.75
    out = DiscriminatorNegativeLoss(loss="hinge")(real, fake, neg)
    assert out.real.item() == pytest.approx(5 / 6)
    assert out.fake.item() == pytest.approx(1.0)
    assert out.negative.item() == pytest.approx(0.75)
    assert out.loss.item() == pytest.approx(5 / 6 + 0.25 * 1.0 + 0.75 * 0.75)


def test_bce_matches_hand_computed_values():
    # softplus(-0) = log 2 (real), softplus(0) = log 2 (fake), softplus(log 3) = log(1 + 3) = log 4 (negative)
    real, fake, neg = torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([math.log(3.0)])
    out = DiscriminatorNegativeLoss(loss="bce", fake_weight=0.25, negative_weight=0.75)(real, fake, neg)
    assert out.real.item() == pytest.approx(math.log(2))
    assert out.negative.item() == pytest.approx(math.log(4))
    assert out.loss.item() == pytest.approx(math.log(2) + 0.25 * math.log(2) + 0.75 * math.log(4))


def test_bce_is_stable_for_large_half_precision_logits():
    real = torch.tensor([-60000.0, 60000.0], dtype=torch.float16)
    fake = torch.tensor([60000.0, -60000.0], dtype=torch.float16)
    out = DiscriminatorNegativeLoss(loss="bce")(real, fake, fake)
    assert out.loss.dtype == torch.float32
    assert torch.isfinite(out.loss)
    # mean(softplus(-d_real)) = (60000 + 0) / 2 ; same for the fake side
    assert out.real.item() == pytest.approx(30000.0, rel=1e-3)


def test_logits_of_shape_b1_equal_shape_b():
    real, fake, neg = torch.randn(5, generator=_gen(1)), torch.randn(7, generator=_gen(2)), torch.randn(3, generator=_gen(3))
    crit = DiscriminatorNegativeLoss()
    a = crit(real, fake, neg).loss
    b = crit(real[:, None], fake[:, None], neg[:, None]).loss
    assert torch.equal(a, b)


def test_negative_weight_zero_is_the_plain_gan_loss_exactly():
    real, fake, neg = torch.randn(6, generator=_gen(1)), torch.randn(6, generator=_gen(2)), torch.randn(6, generator=_gen(3))
    for kind in ("hinge", "bce"):
        if kind == "hinge":
            manual = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        else:
            manual = F.softplus(-real).mean() + F.softplus(fake).mean()
        plain = DiscriminatorNegativeLoss.plain(kind)
        assert (plain.fake_weight, plain.negative_weight) == (1.0, 0.0)
        explicit = DiscriminatorNegativeLoss(kind, fake_weight=1.0, negative_weight=0.0)
        assert torch.equal(plain(real, fake).loss, manual)
        assert torch.equal(explicit(real, fake, neg).loss, manual)  # negatives given but weighted 0
        # default weights, no negatives: the fake term takes the whole fake-side weight 0.25 + 0.75 = 1
        assert torch.equal(DiscriminatorNegativeLoss(kind)(real, fake).loss, manual)


def test_weights_that_do_not_sum_to_one_warn_and_bad_weights_raise():
    with pytest.warns(UserWarning, match="plain"):
        DiscriminatorNegativeLoss(negative_weight=0.0)  # the trap: 0.25 * fake is not the plain loss
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DiscriminatorNegativeLoss()  # paper defaults: no warning
        DiscriminatorNegativeLoss(fake_weight=0.5, negative_weight=0.5)
    with pytest.raises(ValueError, match="negative_weight"):
        DiscriminatorNegativeLoss(negative_weight=-0.1)
    with pytest.raises(ValueError, match="both 0"):
        DiscriminatorNegativeLoss(fake_weight=0.0, negative_weight=0.0)
    with pytest.raises(ValueError, match="loss"):
        DiscriminatorNegativeLoss(loss="wgan")
    with pytest.raises(ValueError, match="mode"):
        DiscriminatorNegativeLoss(mode="concat")


# --------------------------------------------------------------------------------------------------
# DiscriminatorNegativeLoss: gradients
# --------------------------------------------------------------------------------------------------


def test_gradients_reach_each_part_with_its_weight():
    real = torch.tensor([0.0, 2.0], requires_grad=True)  # hinge active only for the first: d/dd = -1/2
    fake = torch.tensor([0.0, -2.0, 0.0, 0.0], requires_grad=True)  # active 1, 3, 4: +1/4 each, * a
    neg = torch.tensor([0.0], requires_grad=True)  # active: +1/1, * b
    out = DiscriminatorNegativeLoss(fake_weight=0.25, negative_weight=0.75)(real, fake, neg)
    out.loss.backward()
    torch.testing.assert_close(real.grad, torch.tensor([-0.5, 0.0]))
    torch.testing.assert_close(fake.grad, torch.tensor([0.0625, 0.0, 0.0625, 0.0625]))
    torch.testing.assert_close(neg.grad, torch.tensor([0.75]))
    assert out.loss.requires_grad
    assert not (out.real.requires_grad or out.fake.requires_grad or out.negative.requires_grad)


def test_negative_weight_zero_sends_no_gradient_to_negatives():
    real, fake = torch.randn(4, requires_grad=True), torch.randn(4, requires_grad=True)
    neg = torch.randn(4, requires_grad=True)
    out = DiscriminatorNegativeLoss.plain()(real, fake, neg)
    out.loss.backward()
    assert neg.grad is None  # left out of the graph, not multiplied by 0
    assert out.negative is not None  # still reported for logging
    assert real.grad is not None and fake.grad is not None


def test_generator_loss_values_and_gradient():
    d = torch.tensor([1.0, -3.0], requires_grad=True)
    assert generator_loss(d, "hinge").item() == pytest.approx(1.0)  # -mean(d)
    assert generator_loss(d[:, None], "bce").item() == pytest.approx(
        (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(3.0))) / 2
    )
    generator_loss(d, "hinge").backward()
    torch.testing.assert_close(d.grad, torch.tensor([-0.5, -0.5]))
    assert DiscriminatorNegativeLoss(loss="bce").generator_loss(d).item() == pytest.approx(generator_loss(d, "bce").item())


def test_bad_logits_raise_naming_the_argument():
    crit = DiscriminatorNegativeLoss()
    ok = torch.zeros(4)
    with pytest.raises(ValueError, match="fake_logits"):
        crit(ok, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="real_logits"):
        crit(torch.zeros(2, 3, 1), ok)
    with pytest.raises(ValueError, match="negative_logits"):
        crit(ok, ok, torch.zeros(0))
    with pytest.raises(TypeError, match="real_logits"):
        crit(torch.zeros(4, dtype=torch.long), ok)
    with pytest.raises(TypeError, match="fake_logits"):
        crit(ok, [0.0, 1.0])
    with pytest.raises(ValueError, match="negative_mask"):
        crit(ok, ok, negative_mask=torch.zeros(4, dtype=torch.bool))  # separate mode


# --------------------------------------------------------------------------------------------------
# mix mode
# --------------------------------------------------------------------------------------------------


def test_mix_replaces_exactly_the_share_and_is_seeded():
    fake = torch.zeros(64, 3, 4, 4)
    neg = torch.arange(64, dtype=torch.float32).view(64, 1, 1, 1).expand(64, 3, 4, 4) + 1.0
    mixed, is_neg = mix_fake_and_negative(fake, neg, 0.75, generator=_gen(0))
    assert is_neg.dtype == torch.bool and is_neg.shape == (64,)
    assert int(is_neg.sum()) == 48
    assert torch.equal(mixed[is_neg], neg[is_neg]) and torch.equal(mixed[~is_neg], fake[~is_neg])
    again, is_neg2 = mix_fake_and_negative(fake, neg, 0.75, generator=_gen(0))
    assert torch.equal(is_neg, is_neg2) and torch.equal(mixed, again)
    _, other = mix_fake_and_negative(fake, neg, 0.75, generator=_gen(1))
    assert not torch.equal(is_neg, other)
    # round half up, and the criterion's share b / (a + b)
    assert int(mix_fake_and_negative(torch.zeros(5), torch.ones(5), 0.5, generator=_gen(0))[1].sum()) == 3
    crit = DiscriminatorNegativeLoss(fake_weight=0.5, negative_weight=0.5, mode="mix")
    assert int(crit.mix(torch.zeros(10, 2), torch.ones(10, 2), generator=_gen(0))[1].sum()) == 5


def test_mix_bernoulli_share_is_right_on_average():
    _, is_neg = mix_fake_and_negative(torch.zeros(20000), torch.ones(20000), 0.3, generator=_gen(0), exact=False)
    assert abs(is_neg.float().mean().item() - 0.3) < 0.015


def test_mix_keeps_gradient_to_the_fake_samples():
    fake = torch.zeros(8, 2, requires_grad=True)
    mixed, is_neg = mix_fake_and_negative(fake, torch.ones(8, 2), 0.5, generator=_gen(0))
    mixed.sum().backward()
    torch.testing.assert_close(fake.grad, (~is_neg).float()[:, None].expand(8, 2))


@pytest.mark.parametrize("kind", ["hinge", "bce"])
def test_one_mixed_pass_equals_separate_batches_on_the_same_samples(kind):
    real = torch.randn(16, generator=_gen(1))
    d_mixed = torch.randn(16, generator=_gen(2), requires_grad=True)
    _, mask = mix_fake_and_negative(torch.zeros(16), torch.ones(16), 0.75, generator=_gen(3))
    mixer = DiscriminatorNegativeLoss(kind, mode="mix")
    mixed_out = mixer(real, d_mixed, negative_mask=mask)
    sep_out = DiscriminatorNegativeLoss(kind)(real, d_mixed[~mask], d_mixed[mask])
    for field in ("loss", "real", "fake", "negative"):
        torch.testing.assert_close(getattr(mixed_out, field), getattr(sep_out, field))
    (g_mixed,) = torch.autograd.grad(mixed_out.loss, d_mixed)
    (g_sep,) = torch.autograd.grad(sep_out.loss, d_mixed)
    torch.testing.assert_close(g_mixed, g_sep)


def test_mix_without_negatives_in_the_batch_is_the_plain_loss():
    real, d = torch.randn(8, generator=_gen(1)), torch.randn(8, generator=_gen(2))
    out = DiscriminatorNegativeLoss(mode="mix")(real, d, negative_mask=torch.zeros(8, dtype=torch.bool))
    torch.testing.assert_close(out.loss, DiscriminatorNegativeLoss.plain()(real, d).loss)
    assert math.isnan(out.negative.item())


def test_mix_mode_errors():
    mixer = DiscriminatorNegativeLoss(mode="mix")
    z = torch.zeros(4)
    with pytest.raises(ValueError, match="negative_mask"):
        mixer(z, z)
    with pytest.raises(ValueError, match="negative_logits"):
        mixer(z, z, z, negative_mask=torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="negative_mask"):
        mixer(z, z, negative_mask=torch.zeros(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="negative_mask"):
        mixer(z, z, negative_mask=torch.zeros(4))
    with pytest.raises(ValueError, match="negative"):
        mix_fake_and_negative(torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(TypeError, match="negative"):
        mix_fake_and_negative(torch.zeros(4, 3), torch.zeros(4, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="share"):
        mix_fake_and_negative(torch.zeros(4), torch.zeros(4), 1.5)
    with pytest.raises(TypeError, match="generator"):
        mix_fake_and_negative(torch.zeros(4), torch.zeros(4), generator=0)


# --------------------------------------------------------------------------------------------------
# ContrastiveNegativeLoss
# --------------------------------------------------------------------------------------------------


def _emb(*shape, seed=0, requires_grad=False):
    return torch.randn(*shape, generator=_gen(seed)).requires_grad_(requires_grad)


def test_infonce_hand_computed_value():
    q, k = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    neg = torch.tensor([[[0.0, 1.0]]])  # cos = 0 -> logits [1, 0] at T = 1
    out = ContrastiveNegativeLoss(temperature=1.0)(q, k, neg)
    assert out.loss.item() == pytest.approx(math.log(1 + math.exp(-1.0)))
    torch.testing.assert_close(out.logits, torch.tensor([[1.0, 0.0]]))
    # normalize=True: scaling an input changes nothing; T = 0.5 doubles the logits
    out2 = ContrastiveNegativeLoss(temperature=0.5)(3 * q, 2 * k, 5 * neg)
    assert out2.loss.item() == pytest.approx(math.log(1 + math.exp(-2.0)))


def test_moco_layout_equals_cross_entropy_on_manual_logits():
    B, K, N, D, T = 4, 3, 10, 8, 0.07
    q, k, negs, queue = _emb(B, D, seed=1), _emb(B, D, seed=2), _emb(B, K, D, seed=3), _emb(N, D, seed=4)
    out = ContrastiveNegativeLoss(temperature=T)(q, k, negs, queue)
    assert out.logits.shape == (B, 1 + K + N)
    assert out.labels.tolist() == [0] * B
    qn, kn, nn_, un = (F.normalize(t, dim=-1) for t in (q, k, negs, queue))
    manual = torch.empty(B, 1 + K + N)
    for i in range(B):  # deliberately per-sample: an independent reference
        manual[i, 0] = qn[i] @ kn[i]
        for j in range(K):
            manual[i, 1 + j] = qn[i] @ nn_[i, j]
        for j in range(N):
            manual[i, 1 + K + j] = qn[i] @ un[j]
    manual /= T
    torch.testing.assert_close(out.logits, manual)
    torch.testing.assert_close(out.loss, F.cross_entropy(manual, torch.zeros(B, dtype=torch.long)))


def test_shared_in_batch_layout_is_batch_plus_batch_times_k():
    B, K, D, T = 5, 2, 6, 0.05
    q, k, negs = _emb(B, D, seed=1), _emb(B, D, seed=2), _emb(B, K, D, seed=3)
    crit = ContrastiveNegativeLoss(temperature=T, in_batch=True)
    out = crit(q, k, negs)
    assert out.logits.shape == (B, B + B * K)
    assert out.labels.tolist() == list(range(B))
    qn, kn, nn_ = (F.normalize(t, dim=-1) for t in (q, k, negs))
    manual = torch.cat([qn @ kn.T, qn @ nn_.reshape(B * K, D).T], dim=1) / T
    torch.testing.assert_close(out.logits, manual)
    torch.testing.assert_close(out.loss, F.cross_entropy(manual, torch.arange(B)))
    # per-call override: own negatives only -> B + K; the same via the constructor
    own = crit(q, k, negs, share_negatives=False)
    assert own.logits.shape == (B, B + K)
    manual_own = torch.cat([qn @ kn.T, torch.einsum("bd,bkd->bk", qn, nn_)], dim=1) / T
    torch.testing.assert_close(own.loss, F.cross_entropy(manual_own, torch.arange(B)))
    torch.testing.assert_close(
        ContrastiveNegativeLoss(temperature=T, in_batch=True, share_negatives=False)(q, k, negs).loss, own.loss
    )
    # MoCo layout with a per-call in_batch switch from a MoCo-default criterion
    assert ContrastiveNegativeLoss(temperature=T)(q, k, negs, in_batch=True).logits.shape == (B, B + B * K)


def test_positive_offset_for_keys_gathered_from_other_ranks():
    B, D = 3, 4
    q, keys = _emb(B, D, seed=1), _emb(3 * B, D, seed=2)  # keys of 3 ranks; this is rank 1
    out = ContrastiveNegativeLoss(in_batch=True)(q, keys, positive_offset=B)
    assert out.labels.tolist() == [3, 4, 5]
    assert out.logits.shape == (B, 3 * B)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, out.labels))


def test_negative_identical_to_the_positive_raises_the_loss():
    B, K, D = 6, 3, 16
    k = _emb(B, D, seed=2)
    q = k + 0.1 * _emb(B, D, seed=1)  # the positive is the query's nearest key
    negs = _emb(B, K, D, seed=3)
    crit = ContrastiveNegativeLoss(temperature=0.1, reduction="none")
    hard = negs.clone()
    hard[:, 0] = k  # one NDA negative that is a copy of the positive
    easy, copy = crit(q, k, negs).loss, crit(q, k, hard).loss
    assert (copy > easy + 0.5).all()  # the copy ties the positive's logit: at least log 2 ~ 0.69
    assert (copy >= math.log(2) - 1e-6).all()


def test_negative_mask_removes_a_negative_exactly():
    B, K, D = 4, 3, 8
    q, k, negs, queue = _emb(B, D, seed=1), _emb(B, D, seed=2), _emb(B, K, D, seed=3), _emb(6, D, seed=4)
    crit = ContrastiveNegativeLoss(temperature=0.1, reduction="none")
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[:, 1] = False
    masked = crit(q, k, negs, queue, negative_mask=mask)
    absent = crit(q, k, negs[:, [0, 2]], queue)
    torch.testing.assert_close(masked.loss, absent.loss)
    assert torch.isinf(masked.logits[:, 2]).all() and (masked.logits[:, 2] < 0).all()
    # shared mode: drop one negative of one anchor; every anchor loses exactly that column
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[2, 0] = False
    shared = crit(q, k, negs, negative_mask=mask, in_batch=True)
    keep = mask.reshape(-1)
    remaining = negs.reshape(B * K, D)[keep][None]  # (1, B*K - 1, D), shared across anchors
    torch.testing.assert_close(shared.loss, crit(q, k, remaining, in_batch=True, share_negatives=True).loss)


def test_gradients_flow_to_query_keys_negatives_and_not_to_detached_keys():
    B, K, D = 3, 2, 5
    q, k = _emb(B, D, seed=1, requires_grad=True), _emb(B, D, seed=2, requires_grad=True)
    negs = _emb(B, K, D, seed=3, requires_grad=True)
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[0, 1] = False
    ContrastiveNegativeLoss()(q, k, negs, negative_mask=mask).loss.backward()
    for t in (q, k, negs):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert torch.equal(negs.grad[0, 1], torch.zeros(D))  # a masked negative gets no gradient
    assert negs.grad[0, 0].abs().sum() > 0
    # MoCo: keys from the momentum encoder are detached by the caller
    q2, k2 = _emb(B, D, seed=1, requires_grad=True), _emb(B, D, seed=2, requires_grad=True)
    queue = _emb(7, D, seed=5, requires_grad=True)
    ContrastiveNegativeLoss()(q2, k2.detach(), None, queue.detach()).loss.backward()
    assert q2.grad is not None and k2.grad is None and queue.grad is None


def test_half_precision_inputs_give_float32_logits():
    B, K, D = 4, 2, 16
    q, k, negs = _emb(B, D, seed=1), _emb(B, D, seed=2), _emb(B, K, D, seed=3)
    crit = ContrastiveNegativeLoss(temperature=0.05)
    for dtype in (torch.bfloat16, torch.float16):
        lo = crit(q.to(dtype), k.to(dtype), negs.to(dtype))
        ref = crit(q.to(dtype).float(), k.to(dtype).float(), negs.to(dtype).float())  # same rounded inputs
        assert lo.logits.dtype == torch.float32 and lo.loss.dtype == torch.float32
        torch.testing.assert_close(lo.loss, ref.loss)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = crit(q, k, negs)
    torch.testing.assert_close(auto.loss, crit(q, k, negs).loss)  # autocast does not lower precision


def test_contrastive_bad_inputs_raise_naming_the_argument():
    crit = ContrastiveNegativeLoss()
    q, k = torch.zeros(4, 8), torch.zeros(4, 8)
    cases = [
        ((torch.zeros(8), k), {}, "query"),
        ((q, torch.zeros(4, 7)), {}, "positive_key"),
        ((q, torch.zeros(3, 8)), {}, "positive_key"),
        ((q, k, torch.zeros(4, 8)), {}, "nda_negatives"),
        ((q, k, torch.zeros(3, 2, 8)), {}, "nda_negatives"),  # own-negatives mode needs B rows
        ((q, k, torch.zeros(4, 2, 8)), {"negative_mask": torch.ones(4, 3, dtype=torch.bool)}, "negative_mask"),
        ((q, k), {"negative_mask": torch.ones(4, 3, dtype=torch.bool)}, "negative_mask"),
        ((q, k, None, torch.zeros(10, 9)), {}, "queue"),
        ((q, k), {"positive_offset": 1}, "positive_offset"),
        ((q, torch.zeros(4, 8)), {"in_batch": True, "positive_offset": 1}, "positive_key"),
    ]
    for args, kwargs, name in cases:
        with pytest.raises(ValueError, match=name):
            crit(*args, **kwargs)
    with pytest.raises(TypeError, match="query"):
        crit(torch.zeros(4, 8, dtype=torch.long), k)
    with pytest.raises(TypeError, match="negative_mask"):
        crit(q, k, torch.zeros(4, 2, 8), negative_mask=torch.ones(4, 2))
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            ContrastiveNegativeLoss(temperature=bad)
    with pytest.raises(ValueError, match="reduction"):
        ContrastiveNegativeLoss(reduction="sum")
