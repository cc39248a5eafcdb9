"""Seeded Gamma, Beta and categorical draws (``torch.distributions`` takes no ``torch.Generator``).

Why a module of its own: these are distributions built *on* the draw helpers of :mod:`nda.sampling`
(Marsaglia-Tsang gammas, Beta as a ratio of two gammas, inverse-CDF categorical), with their own numerics
(float32 range limits, log-space ratios); :mod:`nda.sampling` keeps only the raw draws. Their old names
(``nda.sampling.beta`` ...) still resolve. Outputs for a given seed are pinned by
``tests/vision/test_vision_golden.py``.
"""

from __future__ import annotations

import functools
import math

import torch

from nda.sampling import DeviceLike, device_cached, draw_buffer, draws, rand

__all__ = ["gamma", "beta", "categorical"]

_F32_MAX = float(torch.finfo(torch.float32).max)
_F32_TINY = float(torch.finfo(torch.float32).tiny)
# Above this shape parameter Gamma(alpha) equals alpha to float32 precision (relative spread alpha**-0.5 < 1e-15),
# and the float32 Marsaglia-Tsang constants approach overflow: Beta draws use exact log-space ratios instead.
_HUGE_SHAPE = 1e30
_PROPOSALS = 16  # Marsaglia-Tsang proposals per Beta draw


def _shape_parameter(value: object, name: str, fn: str) -> float:
    """A Gamma/Beta shape parameter as a Python float: a real number, finite and > 0, else a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = float(value)
        else:
            raise TypeError(f"{fn} needs {name} as a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{fn} needs a finite {name} > 0, got {name}={value!r}")
    return float(value)


@functools.lru_cache(maxsize=256)
def _mt_constants(alpha: float) -> tuple[bool, float, float]:
    """``(boost, d, c)`` of Marsaglia-Tsang for a Python-float ``alpha`` (< 1 is boosted to ``alpha + 1``),
    computed once with the float32 tensor ops the draws always used, returned as Python floats that are
    exactly those float32 values: scalars need no host-to-device copy and give bit-identical kernels."""
    alpha_t = torch.as_tensor(alpha, dtype=torch.float32)
    boost = bool(alpha_t < 1)
    a = alpha_t + 1.0 if boost else alpha_t
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    return boost, d.item(), c.item()


@device_cached(64)
def _inverse_alpha(alpha: float, device: torch.device) -> torch.Tensor:
    """``1 / alpha`` as a float32 0-d tensor on ``device``, built once (the exponent of the boost step)."""
    return (1.0 / torch.as_tensor(alpha, dtype=torch.float32)).to(device)


def _rowwise(fn, x: torch.Tensor, *args) -> torch.Tensor:
    """``fn(x, *args)`` for a stack of independent draws ``x`` (leading dim), computed row by row on CPU.

    Why: a CPU kernel runs the bulk of a contiguous loop with SIMD code and its tail with scalar code, and for
    transcendental functions (``log``, ``pow`` with a general exponent) the two may differ in the last bit
    (measured: ``pow`` did). Each row is computed over exactly the loop it had as a tensor of its own, so
    stacking changes no value. On other devices every element runs the same code: one kernel for the stack.
    """
    if x.device.type != "cpu":
        return fn(x, *args)
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    for i in range(x.shape[0]):  # a loop over the (two) stacked draws, never over samples
        fn(x[i].contiguous(), *args, out=out[i])
    return out


def _mt_accept(
    z: torch.Tensor, u: torch.Tensor, d: float | torch.Tensor, c: float | torch.Tensor, stacked: bool = False
) -> torch.Tensor:
    """Marsaglia-Tsang: the first accepted proposal ``d * v`` along the last dim of ``z``/``u`` (normal and
    uniform proposals), or ``d`` (the mode) when none is accepted. ``stacked``: the leading dim stacks
    independent gammas (see :func:`_rowwise`)."""
    log = functools.partial(_rowwise, torch.log) if stacked else torch.log
    v = (1.0 + c * z) ** 3
    dv = d * v
    ok = (v > 0) & (log(u.clamp_min(1e-30)) < 0.5 * z**2 + d - dv + d * log(v.clamp_min(1e-30)))
    # One reduction gives both "any accepted" and the first accepted proposal (max returns the first maximal
    # index; it takes no bool, so the mask is read as uint8 without a copy).
    accepted, first = torch.max(ok.view(torch.uint8), dim=-1, keepdim=True)
    out = dv.gather(-1, first)
    mode = _scalar(d, dv.dtype, dv.device) if isinstance(d, float) else d
    return torch.where(accepted.view(torch.bool), out, mode).squeeze(-1)  # (astronomically rare) fallback: the mode


@device_cached(256)
def _scalar(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A 0-d constant on ``device``, built once (``torch.where`` with a Python number builds one per call)."""
    return torch.tensor(value, dtype=dtype, device=device)


def _gamma_plan(boost: bool, shape: tuple[int, ...], proposals: int) -> list[tuple[str, tuple[int, ...]]]:
    """The draws of one gamma, in the order they were always made: normals, uniforms, [boost uniforms]."""
    plan = [("randn", (*shape, proposals)), ("rand", (*shape, proposals))]
    return plan + [("rand", tuple(shape))] if boost else plan


def gamma(
    alpha: float | torch.Tensor,
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    device: DeviceLike = None,
    proposals: int = 16,
) -> torch.Tensor:
    """Gamma(alpha, 1) draws (Marsaglia-Tsang), seeded and without a data-dependent loop.

    ``proposals`` candidates are drawn per sample at once and the first accepted is kept; for alpha >= 1
    the acceptance rate is > 0.95, so 16 proposals all failing has probability < 1e-20. ``alpha < 1`` uses
    ``Gamma(alpha + 1) * U**(1 / alpha)``, which underflows to 0 for very small ``alpha`` (the true value is
    below float32's range there; :func:`beta` handles that case in log space). ``alpha`` is a finite number
    > 0 (float32 draws: at most 3.4e38) or a tensor of them (per-element shapes).
    """
    if isinstance(alpha, torch.Tensor):
        return _gamma_tensor(alpha, shape, generator=generator, device=device, proposals=proposals)
    alpha = _shape_parameter(alpha, "alpha", "gamma")
    if alpha > _F32_MAX:
        raise ValueError(f"gamma draws are float32, so alpha must be <= {_F32_MAX:.3g}, got alpha={alpha!r}")
    boost, d, c = _mt_constants(alpha)
    parts = draws(*_gamma_plan(boost, tuple(shape), proposals), generator=generator, device=device)
    out = _mt_accept(parts[0], parts[1], d, c)
    if boost:
        out = out * parts[2].clamp_min(1e-30) ** _inverse_alpha(alpha, out.device)
    return out


def _gamma_tensor(
    alpha: torch.Tensor, shape: tuple[int, ...], *, generator: torch.Generator | None, device: DeviceLike,
    proposals: int,
) -> torch.Tensor:
    """:func:`gamma` with per-element shape parameters (a tensor broadcastable to ``shape``)."""
    alpha_t = torch.as_tensor(alpha, dtype=torch.float32).cpu()
    if not bool(torch.all(torch.isfinite(alpha_t) & (alpha_t > 0))):
        raise ValueError(f"gamma needs finite alpha > 0, got {alpha}")
    boost = bool(torch.any(alpha_t < 1))
    # Only the elements below 1 are boosted; d and c get a trailing dim for the proposals (per-element alpha
    # used to fail with a shape error).
    a = torch.where(alpha_t < 1, alpha_t + 1.0, alpha_t) if boost else alpha_t
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    parts = draws(*_gamma_plan(boost, tuple(shape), proposals), generator=generator, device=device)
    z, u = parts[0], parts[1]
    # Tiny CPU tensors to the data's device without a stream sync (a blocking copy would wait for the GPU).
    d, c = d.to(z.device, non_blocking=True), c.to(z.device, non_blocking=True)
    out = _mt_accept(z, u, d[..., None] if d.ndim else d, c[..., None] if c.ndim else c)
    if boost:
        a_orig = alpha_t.to(z.device, non_blocking=True)
        out = torch.where(a_orig < 1, out * parts[2].clamp_min(1e-30) ** (1.0 / a_orig), out)
    return out


def beta(
    a: float,
    b: float,
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """Beta(a, b) draws via two gammas, seeded (``torch.distributions.Beta`` takes no generator).

    Finite and in ``[0, 1]`` for every finite ``a, b > 0``: where a gamma leaves float32's normal range (shape
    parameters well below 1; ``x / (x + y)`` was ``0 / 0 = NaN`` or lost its precision) the ratio is taken in
    log space, ``sigmoid(log x - log y)``, which rounds to exactly 0 or 1 when the true value is below
    float32's resolution; above ``1e30`` a gamma equals its shape parameter to float precision. A symmetric Beta
    (``a == b``, as MixUp and CutMix use) runs both gammas through one set of kernels.
    """
    a = _shape_parameter(a, "a", "beta")
    b = _shape_parameter(b, "b", "beta")
    if a == 1 and b == 1:
        return rand(*shape, generator=generator, device=device)
    shape = tuple(shape)
    if a != b and min(a, b) < 1e-300:
        raise ValueError(f"beta with a != b needs a, b >= 1e-300 (the log-space ratio overflows), got a={a!r}, b={b!r}")
    (boost_a, da, ca), (boost_b, db, cb) = (_mt_constants(min(v, _HUGE_SHAPE)) for v in (a, b))
    plan_a, plan_b = _gamma_plan(boost_a, shape, _PROPOSALS), _gamma_plan(boost_b, shape, _PROPOSALS)
    if a == b:
        return _symmetric_beta(draw_buffer(plan_a + plan_b, generator, device), a, boost_a, da, ca, shape)
    parts = draws(*plan_a, *plan_b, generator=generator, device=device)
    x = _BetaSide(parts[: len(plan_a)], a, boost_a, da, ca)
    y = _BetaSide(parts[len(plan_a) :], b, boost_b, db, cb)
    if x.linear is not None and y.linear is not None:
        lam = x.linear / (x.linear + y.linear)
        if not (boost_a or boost_b):
            return lam
        # a boosted gamma below float32's normal range: the ratio in log space (see _symmetric_beta)
        normal = torch.minimum(x.linear, y.linear) >= _F32_TINY
        return torch.where(normal, lam, torch.sigmoid(x.log() - y.log()).to(lam.dtype))
    # a shape parameter above 1e30: only the log-space ratio is finite
    return torch.sigmoid(x.log() - y.log()).to(torch.get_default_dtype())


def _symmetric_beta(
    buf: torch.Tensor, alpha: float, boost: bool, d: float, c: float, shape: tuple[int, ...]
) -> torch.Tensor:
    """Beta(alpha, alpha) from the flat draws of its two gammas, ``[z_x, u_x, (w_x), z_y, u_y, (w_y)]``: both
    gammas go through one set of kernels as the rows of ``(2, ...)`` views (elementwise, so every value is the
    one the two separate passes gave)."""
    if alpha > _HUGE_SHAPE:  # Beta(a, a) is 1/2 to float precision (spread (8a)**-0.5 < 4e-16)
        return torch.full(shape, 0.5, device=buf.device)
    n = math.prod(shape)
    rows = buf.view(2, -1)  # row 0: the first gamma's draws, row 1: the second's
    z = rows[:, : n * _PROPOSALS].view(2, *shape, _PROPOSALS)
    u = rows[:, n * _PROPOSALS : 2 * n * _PROPOSALS].view(2, *shape, _PROPOSALS)
    g = _mt_accept(z, u, d, c, stacked=True)  # (2, *shape)
    if not boost:
        return g[0] / (g[0] + g[1])
    w = rows[:, 2 * n * _PROPOSALS :].view(2, *shape).clamp_min(1e-30)
    x = g * _rowwise(torch.pow, w, _inverse_alpha(alpha, g.device))
    lam = x[0] / (x[0] + x[1])
    # Where a boosted gamma left float32's normal range (underflow to 0, or a subnormal with few significant
    # bits), x / (x + y) is 0 / 0 or inaccurate: the ratio in log space instead, with
    # log x = log g + log(w) / alpha, so log x - log y = (log g_x - log g_y) + (log w_x - log w_y) / alpha
    # (finite for any alpha > 0: the difference is taken before dividing).
    lg, lw = g.double().log(), w.double().log()
    logit = (lg[0] - lg[1]) + (lw[0] - lw[1]) / alpha
    return torch.where(x.amin(0) >= _F32_TINY, lam, torch.sigmoid(logit).to(lam.dtype))


class _BetaSide:
    """One gamma of an asymmetric Beta: its float32 value ``linear`` (None above 1e30, where it is the shape
    parameter itself) and, on demand, its float64 logarithm."""

    def __init__(self, parts: list[torch.Tensor], alpha: float, boost: bool, d: float, c: float) -> None:
        self.alpha, self.shape, self.device = alpha, parts[0].shape[:-1], parts[0].device
        self.linear: torch.Tensor | None = None
        if alpha > _HUGE_SHAPE:
            return
        self.g = _mt_accept(parts[0], parts[1], d, c)
        self.w = parts[2].clamp_min(1e-30) if boost else None
        self.linear = self.g if self.w is None else self.g * self.w ** _inverse_alpha(alpha, self.g.device)

    def log(self) -> torch.Tensor:
        if self.linear is None:
            return torch.full(self.shape, math.log(self.alpha), dtype=torch.float64, device=self.device)
        out = self.g.double().log()
        return out if self.w is None else out + self.w.double().log() / self.alpha


def categorical(
    weights: torch.Tensor, n: int, *, generator: torch.Generator | None = None, device: DeviceLike = None
) -> torch.Tensor:
    """``n`` indices drawn with probabilities proportional to ``weights`` (1-D), by inverse CDF."""
    w = torch.as_tensor(weights, dtype=torch.float64)
    if w.ndim != 1 or w.numel() == 0 or not bool(torch.all(torch.isfinite(w) & (w >= 0))) or float(w.sum()) <= 0:
        raise ValueError(
            f"weights must be a non-empty 1-D tensor of finite non-negative numbers with a positive sum, got {weights}"
        )
    cdf = (w.cumsum(0) / w.sum()).to(torch.float32)
    u = rand(n, generator=generator, device=device)
    return torch.searchsorted(cdf.to(u.device, non_blocking=True), u, right=True).clamp_max(w.numel() - 1)
