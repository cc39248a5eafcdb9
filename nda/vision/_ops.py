"""Batched building blocks shared by the image negatives.

Every spatial negative here is a per-sample *pixel permutation* (jigsaw, shift, rotate by 90 degrees) or a
per-sample *masked mix* (cutout, cutmix, stitch, mixup). Both are one batched kernel once the per-sample
parameters are tensors: a gather with a flat source index (or an ``index_select`` of whole row segments),
or a masked select on a broadcast mask. The choices below were measured on CPU (see each docstring and
``benchmarks/vision_negatives.py``); all of them are plain tensor ops, so they run unchanged on CUDA.

Launch overhead: on a GPU a (256, 3, 32, 32) negative moves 3 MB, a few microseconds of memory traffic, while
every dispatched operator costs several microseconds of launch. So the constant parts of an index (pixel
grids, per-shift tables, per-image offsets) are built once per ``(shape, device)`` by :func:`device_cached`
functions, and a call only combines them with its per-sample parameters: typically one small lookup or add
and then ONE gather / ``index_select`` over the batch (``benchmarks/vision_negatives.py`` counts the operators).
"""

from __future__ import annotations

import torch

from nda.sampling import device_cached

__all__ = [
    "compute_dtype",
    "restore_dtype",
    "scaled_px",
    "px_range",
    "device_cached",
    "arange_cached",
    "segment_select",
    "box_indicators",
    "stack_rows",
    "select",
    "paste_",
]

@device_cached(64)
def arange_cached(n: int, device: torch.device) -> torch.Tensor:
    """``torch.arange(n)`` (int64) on ``device``, built once."""
    return torch.arange(n, device=device)


def compute_dtype(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a float tensor to do arithmetic in: float32/float64 unchanged, uint8/half/bfloat16 -> float32."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def restore_dtype(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Back to the input dtype; uint8 is rounded and clamped to [0, 255] (a plain cast would truncate/wrap)."""
    if y.dtype == dtype:
        return y
    if dtype == torch.uint8:
        return y.round().clamp_(0, 255).to(torch.uint8)
    return y.to(dtype)


def scaled_px(px: float, size: int, reference: int | None) -> int:
    """``px`` pixels at a ``reference`` image size (the paper's 32 px CIFAR-10) scaled to ``size`` pixels;
    ``reference=None`` means ``px`` is absolute."""
    return int(round(px * size / reference)) if reference else int(round(px))


def px_range(lo_px: float, hi_px: float, size: int, reference: int | None, cap: int) -> tuple[int, int]:
    """The inclusive pixel range ``[lo, hi]`` of ``lo_px..hi_px`` scaled to ``size``: ``1 <= lo <= hi <= cap``."""
    lo = min(max(1, scaled_px(lo_px, size, reference)), cap)
    return lo, min(max(lo, scaled_px(hi_px, size, reference)), cap)


def box_indicators(
    starts: torch.Tensor, ends: torch.Tensor, h: int, w: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row ``(B, H)`` and column ``(B, W)`` 0/1 indicators in ``dtype`` of boxes ``[starts[0], ends[0]) x
    [starts[1], ends[1])`` (``starts``/``ends``: ``(2, B)`` int64, rows then columns), in 3 kernels: both
    axes compared at once against one cached ``arange(max(H, W))``, the indicator written straight in ``dtype``.
    The views may be non-contiguous when ``H != W``."""
    b, n = starts.shape[1], max(h, w)
    ar = arange_cached(n, starts.device)
    out = torch.empty(2, b, n, dtype=dtype, device=starts.device)
    torch.logical_and(ar >= starts[:, :, None], ar < ends[:, :, None], out=out)
    return out[0, :, :h], out[1, :, :w]


def stack_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.stack([a, b])``, without a copy when ``a`` and ``b`` are the two rows of one contiguous ``(2, N)``
    tensor, as ``sample_params`` returns related parameters (``top``/``left``, ``height``/``width``): then that
    tensor *is* the stack (same memory, so always the same values)."""
    base = a._base
    if (
        base is not None
        and b._base is base
        and base.dim() == 2
        and base.shape[0] == 2
        and base.is_contiguous()
        and a.shape == b.shape == base.shape[1:]
        and a.stride() == b.stride() == (1,)
        and a.storage_offset() == base.storage_offset()
        and b.storage_offset() == base.storage_offset() + base.shape[1]
    ):
        return base
    return torch.stack([a, b])


_SAME_SIZE_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bit_view(t: torch.Tensor) -> torch.Tensor:
    return t.view(_SAME_SIZE_INT[t.element_size()])


def _all_ones(mask: torch.Tensor, itype: torch.dtype) -> torch.Tensor:
    """Bool mask -> integers with every bit set where True (255 for uint8, -1 for signed types)."""
    return mask.to(itype).mul_(255) if itype == torch.uint8 else mask.to(itype).neg_()


def select(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.where(mask, a, b)`` for image batches (new tensor shaped like ``b``), 3-10x faster on CPU.

    ``torch.where`` runs a scalar (non-vectorised) CPU kernel: on a ``(256, 3, 32, 32)`` float batch it cost
    7x a ``clone()``. Here: float32/float64 use ``torch.lerp(b, a, mask)``, exact for weights 0 and 1
    (``b + 0 * d`` and ``a - d * 0``) for finite values, up to the sign of a zero; 1- and 2-byte dtypes (uint8,
    float16, bfloat16) select bits exactly with vectorised integer ops on a same-size integer view:
    ``b ^ ((a ^ b) & m)``.

    Known limit, kept on purpose: with float32/float64 a non-finite pixel (or ``|a - b|`` above the dtype's
    max) on the *unselected* side turns the output pixel into NaN, possibly in another sample (a partner's
    inf). Such a batch already holds the non-finite value, so a loss on it is NaN either way: loud, not
    silently wrong. The bit-exact path for float32 (int32 view) was measured 1.6x slower for cutout and cutmix
    end to end (``benchmarks/vision_negatives.py --small --timer cpu --threads 1``), three passes over the
    batch instead of lerp's one, so it is not used.
    ``mask`` (bool, or 0/1 numbers) and ``a`` may broadcast to ``b``'s shape (e.g. a ``(B, 1, H, W)`` mask, a
    ``(B, C, 1, 1)`` fill).
    """
    if b.dtype in (torch.float32, torch.float64):
        return torch.lerp(b, a.to(b.dtype), mask.to(b.dtype))
    return paste_(b.clone(), a, mask)


def paste_(dst: torch.Tensor, src: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """In place: ``dst[mask] = src[mask]`` (with broadcasting) without a temporary batch; returns ``dst``.

    For negatives that first build a fresh tensor (e.g. the partner images) and then paste the image's own
    pixels back: one allocation fewer than :func:`select`, which matters on CPU where every new
    multi-megabyte buffer is page-faulted in. Same exactness notes as :func:`select`.
    """
    if dst.dtype in (torch.float32, torch.float64):
        return dst.lerp_(src.to(dst.dtype), mask.to(dst.dtype))
    d = _bit_view(dst)
    diff = _bit_view(src.to(dst.dtype)) ^ d
    diff &= _all_ones(mask, d.dtype)
    d ^= diff
    return dst


def segment_select(x: torch.Tensor, source: torch.Tensor, segments: int) -> torch.Tensor:
    """Rebuild a batch from whole row segments: ``x`` ``(B, C, H, W)`` is viewed as ``B*C*H*segments`` row
    segments of ``W // segments`` pixels and ``source`` (any shape with ``B*C*H*segments`` elements, in output
    order) gives the flat source segment of every output segment. One ``index_select`` of contiguous rows:
    close to a memory copy, several times faster than a per-pixel gather (used by jigsaw and stitch)."""
    b, c, h, w = x.shape
    return x.contiguous().view(b * c * h * segments, w // segments).index_select(0, source.reshape(-1)).view(b, c, h, w)
