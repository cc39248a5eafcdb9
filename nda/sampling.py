"""Seeded, batched random draws used by every generator.

Why a module of its own: ``torch.rand(..., generator=g, device=d)`` fails when ``g`` lives on another
device than ``d``, and ``torch.distributions`` ignores ``torch.Generator`` altogether. Every negative draws
its per-sample parameters through these helpers, so one seed gives one result on any device, and a
generator on the data's device never forces a host round trip.

Launch overhead: on a GPU a small batch of negatives costs little compute and many tiny kernels, so the
helpers here keep the operator count low: :func:`draws` puts several draws in one buffer (one allocation,
one copy when the generator lives on another device) while giving exactly the numbers of the separate
``rand``/``randn`` calls, and integer draws skip a clamp that provably cannot act. The distributions built
on these draws (gamma, beta, categorical) live in :mod:`nda.distributions`; their names here still resolve.
Outputs for a given seed are pinned by ``tests/vision/test_vision_golden.py`` (integers exact, floats within a stated tolerance).
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
    "gamma",  # noqa: F822 (module __getattr__: nda.distributions)
    "beta",  # noqa: F822
    "categorical",  # noqa: F822
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


_MOVED = ("gamma", "beta", "categorical")


def __getattr__(name: str) -> object:
    """``nda.sampling.beta`` etc.: the distributions moved to :mod:`nda.distributions`; the old names stay
    importable (resolved lazily, because nda.distributions itself imports this module)."""
    if name in _MOVED:
        from nda import distributions

        return getattr(distributions, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
