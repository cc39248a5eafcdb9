"""Seeded, batched random draws used by every generator.

Why a module of its own: ``torch.rand(..., generator=g, device=d)`` fails when ``g`` lives on another
device than ``d``, and ``torch.distributions`` ignores ``torch.Generator`` altogether. Every negative draws
its per-sample parameters through these helpers, so one seed gives one result on any device, and a
generator on the data's device never forces a host round trip.

Launch overhead: on a GPU a small batch of negatives costs little compute and many tiny kernels, so the
helpers here keep the operator count low: :func:`draws` puts several draws in one buffer (one allocation,
one copy when the generator lives on another device) while giving exactly the numbers of the separate
``rand``/``randn`` calls, integer draws skip a clamp that provably cannot act, and :func:`beta` runs both
gamma draws of a symmetric Beta through one set of kernels. Outputs for a given seed are pinned by
``tests/vision/test_vision_golden.py`` (integers exact, floats within a stated tolerance).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

__all__ = [
    "make_generator",
    "check_generator",
    "rand",
    "randn",
    "draws",
    "draw_buffer",
    "randint_from_uniform",
    "randint",
    "batched_randperm",
    "non_identity_randperm",
    "derangement",
    "derangement_from_uniform",
    "gamma",
    "beta",
    "categorical",
]

_F = TypeVar("_F", bound=Callable[..., torch.Tensor])


def device_cached(maxsize: int = 32) -> Callable[[_F], _F]:
    """Cache a builder of constant tensors keyed by its (hashable) arguments, e.g. ``(h, w, device)``.

    Built tensors are shared between calls, so callers must never modify them in place. They are built outside
    inference mode and without autograd, so they work in every mode (an inference tensor cannot be saved for
    backward, e.g. as the index of a ``gather`` on an input that requires grad). ``maxsize`` bounds the memory
    (the largest table, stitch's segment index, holds 2 int64 per image row: 1/8 of a float32 batch at 32 px).
    """

    def decorate(fn: _F) -> _F:
        @functools.lru_cache(maxsize=maxsize)
        @functools.wraps(fn)
        def build(*args):
            with torch.inference_mode(False), torch.no_grad():
                return fn(*args)

        return build  # type: ignore[return-value]

    return decorate


DeviceLike = torch.device | str | None


def make_generator(seed: int, device: DeviceLike = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (convenience for reproducible negatives)."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    return torch.Generator(device=device).manual_seed(seed)


def check_generator(generator: object) -> torch.Generator | None:
    """Return ``generator`` if it is ``None`` or a ``torch.Generator``; raise a clear ``TypeError`` otherwise."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def _draw(fn, shape: tuple[int, ...], generator: torch.Generator | None, device: DeviceLike, **kwargs) -> torch.Tensor:
    device = torch.device(device) if device is not None else torch.device("cpu")
    check_generator(generator)
    if generator is None:
        return fn(shape, device=device, **kwargs)
    gen_device = generator.device
    if _same_device(gen_device, device):
        return fn(shape, generator=generator, device=device, **kwargs)
    # A generator on another device (e.g. a CPU generator for CUDA data): draw there, then one async copy of
    # the small parameter tensor. Same seed -> same negatives on every device.
    return fn(shape, generator=generator, device=gen_device, **kwargs).to(device, non_blocking=True)


def _same_device(gen_device: torch.device, device: torch.device) -> bool:
    """Whether a generator on ``gen_device`` can draw directly on ``device``. Comparing the type alone is not
    enough: a ``cuda:0`` generator cannot draw on ``cuda:1`` (one process per GPU, a generator made before
    ``torch.cuda.set_device``). An unspecified index (``"cuda"``) is taken to match."""
    if gen_device.type != device.type:
        return False
    return gen_device.index is None or device.index is None or gen_device.index == device.index


def rand(*shape: int, generator: torch.Generator | None = None, device: DeviceLike = None) -> torch.Tensor:
    """Uniform [0, 1) float32 draws of ``shape``."""
    return _draw(torch.rand, tuple(shape), generator, device)


def randn(*shape: int, generator: torch.Generator | None = None, device: DeviceLike = None) -> torch.Tensor:
    """Standard normal float32 draws of ``shape``."""
    return _draw(torch.randn, tuple(shape), generator, device)


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    """Where draws for data on ``device`` are made: on the generator's device when it cannot draw on ``device``."""
    if generator is None or _same_device(generator.device, device):
        return device
    return generator.device


def draws(
    *plan: tuple[str, tuple[int, ...]], generator: torch.Generator | None = None, device: DeviceLike = None
) -> list[torch.Tensor]:
    """Several draws in order, ``("rand" | "randn", shape)`` each, as views of ONE buffer.

    The numbers are exactly those of the separate calls ``rand(*shape)`` / ``randn(*shape)`` in the same order
    (``torch.rand`` is ``empty(...).uniform_()`` and ``torch.randn`` is ``empty(...).normal_()``; each draw fills
    a contiguous slice with that same in-place op), but there is one allocation, and with a generator on another
    device one copy instead of one per draw. Every view is contiguous.
    """
    buf = draw_buffer(plan, generator=generator, device=device)
    out, start = [], 0
    for _, shape in plan:
        n = math.prod(shape)
        out.append(buf[start : start + n].view(shape))
        start += n
    return out


def draw_buffer(
    plan: Sequence[tuple[str, tuple[int, ...]]], generator: torch.Generator | None = None, device: DeviceLike = None
) -> torch.Tensor:
    """The flat buffer behind :func:`draws`: the draws of ``plan`` one after the other, on ``device`` (view
    consecutive draws of one shape together, e.g. ``buf.view(3, b)`` for three ``(b,)`` draws).

    One fill per entry, never merged: on CPU one ``rand(2 * b)`` gives the numbers of two ``rand(b)``, but a
    CUDA generator assigns numbers per kernel and thread, so merged fills would change what a seed means there.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    check_generator(generator)
    sizes = [math.prod(shape) for _, shape in plan]
    where = _draw_device(generator, device)
    buf = torch.empty(sum(sizes), device=where)
    start = 0
    for (kind, _), n in zip(plan, sizes):
        piece = buf[start : start + n]
        if kind == "rand":
            piece.uniform_(0, 1, generator=generator)
        elif kind == "randn":
            piece.normal_(0, 1, generator=generator)
        else:
            raise ValueError(f"draw kind must be 'rand' or 'randn', got {kind!r}")
        start += n
    return buf.to(device, non_blocking=True) if where != device else buf


def _exact_span_limit(dtype: torch.dtype) -> int:
    """Largest integer span ``s`` for which ``floor(u * s) <= s - 1`` holds for every uniform ``u < 1`` of
    ``dtype``: up to ``2**(mantissa bits + 1)`` the rounded product ``u * s`` stays below ``s`` (checked
    exhaustively for float32 in the tests), so the clamp of :func:`randint` cannot act and is skipped."""
    return 2 * round(1 / torch.finfo(dtype).eps)  # 2**24 for float32, 2**53 for float64


def randint_from_uniform(u: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """``low + floor(u * (high - low))`` as int64, clamped to ``high - 1``: the integers :func:`randint` makes of
    the uniforms ``u``, in 2-3 kernels (the truncating cast is the floor of a non-negative product; the clamp is
    only dispatched for spans where it can act)."""
    span = high - low
    if span <= 0:
        raise ValueError(f"randint needs high > low, got low={low}, high={high}")
    out = (u * span).long()
    if span > _exact_span_limit(u.dtype):
        out = out.clamp_max_(span - 1)
    return out.add_(low) if low else out


def randint(
    low: int | torch.Tensor,
    high: int | torch.Tensor,
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """Integers uniform in ``[low, high)``; ``low``/``high`` may be tensors broadcastable to ``shape``
    (per-sample ranges, which ``torch.randint`` cannot do)."""
    u = rand(*shape, generator=generator, device=device)
    if isinstance(low, torch.Tensor) or isinstance(high, torch.Tensor):
        # Python-number bounds stay Python numbers: ``torch.as_tensor(0, device="cuda")`` is a blocking
        # host-to-device copy, i.e. a stream sync on every call.
        low_t = low.to(u.device) if isinstance(low, torch.Tensor) else low
        high_t = high.to(u.device) if isinstance(high, torch.Tensor) else high
        span = torch.as_tensor(high_t - low_t).long()
        # Checking the bounds costs a host sync on CUDA: only check where it is free (CPU tensors).
        if u.device.type == "cpu" and bool(torch.any(span <= 0)):
            raise ValueError("randint needs high > low for every element")
        return (low_t + torch.minimum(torch.floor(u * span).long(), span - 1)).long()
    if high <= low:
        raise ValueError(f"randint needs high > low, got low={low}, high={high}")
    return randint_from_uniform(u, low, high)


def batched_randperm(
    batch: int, n: int, *, generator: torch.Generator | None = None, device: DeviceLike = None
) -> torch.Tensor:
    """``(batch, n)`` independent uniform permutations of ``range(n)`` in one op (argsort of uniforms)."""
    return rand(batch, n, generator=generator, device=device).argsort(dim=1)


def non_identity_randperm(
    batch: int, n: int, *, generator: torch.Generator | None = None, device: DeviceLike = None
) -> torch.Tensor:
    """``(batch, n)`` permutations drawn uniformly among the ``n! - 1`` non-identity ones.

    Why not "resample until not identity": that is a data-dependent loop. For ``n <= 8`` the rank of the
    permutation is drawn uniformly from ``[1, n!)`` (rank 0 is the identity) and looked up in a table: exact
    and fully batched. For larger ``n`` (identity probability < 3e-6) rows that came out as the identity get
    one random transposition.
    """
    if n < 2:
        raise ValueError(f"a non-identity permutation needs n >= 2 elements, got n={n}")
    if n <= 8:
        return non_identity_perm_from_uniform(rand(batch, generator=generator, device=device), n)
    perm = batched_randperm(batch, n, generator=generator, device=device)
    ident = torch.arange(n, device=perm.device)
    is_identity = (perm == ident).all(dim=1)
    # Swap two random distinct positions of identity rows (probability 1/n! for n > 8: < 3e-6).
    i = randint(0, n, (batch,), generator=generator, device=device)
    j = (i + randint(1, n, (batch,), generator=generator, device=device)) % n
    swapped = perm.clone()
    rows = torch.arange(batch, device=perm.device)
    swapped[rows, i] = perm[rows, j]
    swapped[rows, j] = perm[rows, i]
    return torch.where(is_identity[:, None], swapped, perm)


def non_identity_perm_from_uniform(u: torch.Tensor, n: int) -> torch.Tensor:
    """The non-identity permutations (``n <= 8``) that :func:`non_identity_randperm` makes of the ``(batch,)``
    uniforms ``u``: rank ``1 + floor(u * (n! - 1))``, looked up in the table without its identity row (3 kernels)."""
    if not 2 <= n <= 8:
        raise ValueError(f"table lookup needs 2 <= n <= 8, got n={n}")
    rank = randint_from_uniform(u, 0, math.factorial(n) - 1)  # rank - 1 of the old formula: same draws
    return _permutation_table(n, u.device, True).index_select(0, rank)  # positional: device_cached keys on args


@device_cached(32)
def _permutation_table(n: int, device: torch.device, skip_identity: bool = False) -> torch.Tensor:
    """All ``n!`` permutations of ``range(n)`` in lexicographic order (row 0 is the identity, dropped with
    ``skip_identity``); ``n <= 8`` keeps it at most 40,320 x 8 int64 (2.6 MB), built once per ``(n, device)``."""
    table = torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long, device=device)
    return table[1:].clone() if skip_identity else table


def _unrank_permutations(rank: torch.Tensor, n: int) -> torch.Tensor:
    """Map ranks in ``[0, n!)`` to permutations (lexicographic order) with one table lookup, batched."""
    return _permutation_table(n, rank.device).index_select(0, rank)


def derangement(batch: int, *, generator: torch.Generator | None = None, device: DeviceLike = None) -> torch.Tensor:
    """A random partner index for every sample, never itself, each sample used once as a partner.

    Built as a random cyclic order: ``partner[p[i]] = p[(i + 1) % batch]``. Pairwise negatives (stitch,
    mixup, cutmix, span stitching) use it so no sample is mixed with itself.
    """
    if batch < 2:
        raise ValueError(f"pairwise negatives need a batch of at least 2 samples to pair, got {batch}")
    return derangement_from_uniform(rand(1, batch, generator=generator, device=device)[0])


def derangement_from_uniform(u: torch.Tensor) -> torch.Tensor:
    """The partners :func:`derangement` makes of ``(batch,)`` uniforms ``u`` (the cyclic order is their argsort),
    for callers that draw ``u`` together with other parameters (:func:`draw_buffer`)."""
    if u.dim() != 1 or u.shape[0] < 2:
        raise ValueError(
            f"pairwise negatives need a batch of at least 2 samples to pair, got uniforms of shape {tuple(u.shape)}"
        )
    p = u.view(1, -1).argsort(dim=1)[0]
    partner = torch.empty_like(p)
    partner[p] = p.roll(-1)
    return partner


# ------------------------------------------------------------------------------------------ gamma and beta
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
