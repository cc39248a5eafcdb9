"""Tests of nda.sampling beyond test_core: the one-buffer draws, the clamp-free integer draws, and Beta/Gamma
draws that are finite and correctly distributed for every finite shape parameter > 0 (issue 9 item 6: Beta
with small alpha returned NaN, alpha=inf was accepted)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nda import sampling


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _Ops(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


# ---------------------------------------------------------------- draws
@pytest.mark.parametrize("sizes", [(5, 17, 3), (16, 16, 35), (4096, 4096, 256), (1, 1, 15)])
def test_draws_give_exactly_the_numbers_of_separate_calls(sizes):
    n0, n1, n2 = sizes
    gen = g(3)
    expected = [torch.randn(n0, generator=gen), torch.rand(2, n1, generator=gen), torch.randn(n2, generator=gen)]
    got = sampling.draws(("randn", (n0,)), ("rand", (2, n1)), ("randn", (n2,)), generator=g(3))
    assert all(torch.equal(a, b) and b.is_contiguous() for a, b in zip(expected, got))
    buf = sampling.draw_buffer([("randn", (n0,)), ("rand", (2, n1)), ("randn", (n2,))], generator=g(3))
    assert torch.equal(buf, torch.cat([t.reshape(-1) for t in expected]))


def test_draws_with_a_generator_on_another_device_copy_once():
    with _Ops() as ops:
        out = sampling.draws(("rand", (4,)), ("randn", (3, 2)), ("rand", (5,)), generator=g(1), device="meta")
    assert all(t.device.type == "meta" for t in out)
    assert ops.names.count("_to_copy") == 1  # one copy of the whole buffer, not one per draw


def test_draws_reject_unknown_kinds():
    with pytest.raises(ValueError, match="rand"):
        sampling.draws(("randint", (3,)))


# ---------------------------------------------------------------- integers
def test_floor_of_u_times_span_never_reaches_span_for_float32_spans_up_to_2_pow_24():
    """The proof behind skipping randint's clamp: the largest float32 below 1 times any integer span
    s <= 2**24 rounds to a value whose floor is <= s - 1 (every span checked)."""
    assert sampling._exact_span_limit(torch.float32) == 2**24
    span = np.arange(1, 2**24 + 1, dtype=np.float64).astype(np.float32)
    u_max = np.float32(1) - np.float32(2**-24)
    assert bool((np.floor(u_max * span) <= span - 1).all())


@pytest.mark.parametrize("low, high", [(0, 1), (1, 24), (3, 17), (-5, 5), (0, 2**24), (0, 2**25 + 3), (7, 10**9)])
def test_randint_from_uniform_equals_the_clamped_floor_formula(low, high):
    u = torch.cat([torch.rand(5000, generator=g(2)), torch.tensor([0.0, 1 - 2**-24, 0.5])])
    expected = (low + torch.floor(u * (high - low)).long().clamp_max(high - low - 1)).long()
    got = sampling.randint_from_uniform(u, low, high)
    assert got.dtype == torch.long and torch.equal(got, expected)
    assert int(got.min()) >= low and int(got.max()) <= high - 1
    with pytest.raises(ValueError, match="high > low"):
        sampling.randint_from_uniform(u, high, high)


def test_non_identity_perm_from_uniform_matches_non_identity_randperm():
    for n in (2, 3, 4, 8):
        assert torch.equal(
            sampling.non_identity_perm_from_uniform(sampling.rand(300, generator=g(n)), n),
            sampling.non_identity_randperm(300, n, generator=g(n)),
        )


# ---------------------------------------------------------------- beta / gamma
@pytest.mark.parametrize("a", [25.0, 2.5, 0.5, 0.3, 0.9])
@pytest.mark.parametrize("n", [7, 200, 201, 1031])  # odd sizes: CPU loops end in a scalar tail
def test_symmetric_beta_is_bit_identical_to_two_separate_gammas(a, n):
    """The fast path runs both gammas through one set of kernels; wherever both gammas are normal floats
    (everywhere for a >= 1) it must give exactly x / (x + y) of two separate gamma calls."""
    gen = g(n)
    x = sampling.gamma(a, (n,), generator=gen)
    y = sampling.gamma(a, (n,), generator=gen)
    got = sampling.beta(a, a, (n,), generator=g(n))
    normal = torch.minimum(x, y) >= torch.finfo(torch.float32).tiny
    assert bool(normal.all()) or a < 1
    assert torch.equal(got[normal], (x / (x + y))[normal])


@pytest.mark.parametrize("alpha", [0.01, 1e-3])
def test_beta_small_alpha_is_finite_and_follows_beta(alpha):
    """Regression (issue 9 item 6): both gammas underflowed to 0 and x / (x + y) was NaN for ~14% (0.01) and
    ~81% (1e-3) of the draws."""
    stats = pytest.importorskip("scipy.stats")
    lam = sampling.beta(alpha, alpha, (40000,), generator=g(5)).double()
    assert bool(torch.isfinite(lam).all()) and float(lam.min()) >= 0 and float(lam.max()) <= 1
    for q in (1e-30, 1e-6, 0.01, 0.3, 0.5, 0.7, 0.99):
        expected = stats.beta(alpha, alpha).cdf(q)
        assert abs(float((lam <= q).double().mean()) - expected) < 0.015, q


@pytest.mark.parametrize("alpha", [1e-30, 1e-200, 5e-324])
def test_beta_tiny_alpha_is_a_fair_coin_between_0_and_1(alpha):
    lam = sampling.beta(alpha, alpha, (20000,), generator=g(6))
    assert bool(torch.isfinite(lam).all())
    extreme = (lam == 0) | (lam == 1)
    assert float(extreme.float().mean()) > 0.999
    assert abs(float(lam.mean()) - 0.5) < 0.02


@pytest.mark.parametrize("alpha", [0.2, 0.5, 3.0, 25.0, 1e4])
def test_beta_moments(alpha):
    lam = sampling.beta(alpha, alpha, (60000,), generator=g(7)).double()
    var = 1 / (4 * (2 * alpha + 1))
    assert abs(float(lam.mean()) - 0.5) < 5 * math.sqrt(var / 60000) + 1e-4
    assert abs(float(lam.var()) / var - 1) < 0.05


def test_asymmetric_beta_moments_including_a_boosted_side():
    for a, b in ((2.0, 5.0), (0.3, 2.0), (0.05, 0.5)):
        lam = sampling.beta(a, b, (60000,), generator=g(8)).double()
        assert bool(torch.isfinite(lam).all())
        mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
        assert abs(float(lam.mean()) - mean) < 5 * math.sqrt(var / 60000) + 1e-4, (a, b)


@pytest.mark.parametrize("alpha", [1e31, 1e38, 1e300])
def test_beta_huge_alpha_is_one_half(alpha):
    """Regression: alpha=1e300 gave NaN (float32 overflow of the gamma constants), inf was accepted."""
    lam = sampling.beta(alpha, alpha, (100,), generator=g(9))
    assert bool((lam == 0.5).all())
    assert float(sampling.beta(alpha, 1.0, (100,), generator=g(9)).min()) > 0.999999
    assert float(sampling.beta(2.0, alpha, (100,), generator=g(9)).max()) < 1e-6


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 0.0, -1.0])
def test_beta_and_gamma_reject_non_finite_or_non_positive_parameters(bad):
    with pytest.raises(ValueError, match="a="):
        sampling.beta(bad, 1.0, (3,))
    with pytest.raises(ValueError, match="b="):
        sampling.beta(1.0, bad, (3,))
    with pytest.raises(ValueError, match="alpha="):
        sampling.gamma(bad, (3,))
    with pytest.raises(TypeError, match="number"):
        sampling.beta("1", 1.0, (3,))


def test_gamma_rejects_alpha_beyond_float32_and_handles_per_element_alpha():
    with pytest.raises(ValueError, match="float32"):
        sampling.gamma(1e39, (3,))
    # per-element shape parameters, some below 1 (boosted) and some above (regression: a crash before)
    draws = sampling.gamma(torch.tensor([0.5, 3.0]), (40000, 2), generator=g(10))
    torch.testing.assert_close(draws.mean(0), torch.tensor([0.5, 3.0]), atol=0.05, rtol=0)
    with pytest.raises(ValueError, match="finite"):
        sampling.gamma(torch.tensor([1.0, math.nan]), (3, 2))


@pytest.mark.parametrize("bad", [[math.nan, 1.0], [math.inf, 1.0], [-1.0, 2.0], [0.0, 0.0]])
def test_categorical_rejects_non_finite_weights(bad):
    """Regression: NaN/inf weights were accepted and always picked the last index."""
    with pytest.raises(ValueError, match="finite"):
        sampling.categorical(torch.tensor(bad), 5)


def test_distributions_live_in_their_own_module_and_old_names_still_resolve():
    """Issue 20 item 4: gamma/beta/categorical moved to nda.distributions (importable first, no import cycle);
    ``nda.sampling.beta`` and ``from nda.sampling import beta`` still give the same functions."""
    import subprocess
    import sys

    from nda import distributions
    from nda.sampling import beta, categorical, gamma

    assert (beta, gamma, categorical) == (distributions.beta, distributions.gamma, distributions.categorical)
    assert not hasattr(sampling, "_mt_accept") and not hasattr(sampling, "_BetaSide")  # the numerics moved too
    with pytest.raises(AttributeError, match="no attribute 'poisson'"):
        sampling.poisson  # noqa: B018
    code = "import nda.distributions as d, nda.sampling as s; assert s.beta is d.beta"
    subprocess.run([sys.executable, "-c", code], check=True)  # nda.distributions imported first: no cycle
