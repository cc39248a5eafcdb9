"""Input validation shared by the image negatives: one clear error instead of a shape mismatch deep inside
an indexing kernel."""

from __future__ import annotations

import math

import torch

__all__ = ["check_images", "check_pairwise", "check_px_range", "check_reference"]


def check_px_range(lo_name: str, lo: object, hi_name: str, hi: object, noun: str) -> None:
    """``lo`` and ``hi`` finite numbers with ``0 < lo <= hi`` (a pixel range such as cutout sizes)."""
    finite = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (lo, hi))
    if not finite or not 0 < lo <= hi:  # type: ignore[operator]
        raise ValueError(f"need finite {noun} with 0 < {lo_name} <= {hi_name}, got {lo_name}={lo!r}, {hi_name}={hi!r}")


def check_reference(reference: object) -> None:
    """The image size pixel arguments refer to: a positive int, or ``None`` for absolute pixels."""
    if reference is not None and (not isinstance(reference, int) or isinstance(reference, bool) or reference < 1):
        raise ValueError(f"reference must be a positive int or None, got {reference!r}")


def check_images(x: object, name: str = "x") -> torch.Tensor:
    """Check that ``x`` is a ``(B, C, H, W)`` image batch of dtype uint8 or floating point; return it.

    Raises ``TypeError`` for a non-tensor or an unsupported dtype (int64 labels passed by mistake, bool masks),
    ``ValueError`` for a wrong number of dimensions (a single ``(C, H, W)`` image gets the ``unsqueeze(0)`` hint)
    or an empty batch / empty image.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of images (B, C, H, W), got {type(x).__name__}")
    if x.dtype != torch.uint8 and not x.dtype.is_floating_point:
        raise TypeError(
            f"{name} must have dtype uint8 or a floating dtype (float32, float16, bfloat16, float64), got {x.dtype}; "
            f"convert with {name}.to(torch.uint8) for 0-255 images or {name}.float()"
        )
    if x.ndim != 4:
        hint = f"; for a single image use {name}.unsqueeze(0)" if x.ndim == 3 else ""
        raise ValueError(f"{name} must be a 4-D batch (B, C, H, W), got shape {tuple(x.shape)}{hint}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (B=0); negatives need at least one image")
    if x.shape[1] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name} has an empty channel or spatial dimension: shape {tuple(x.shape)}")
    return x


def check_pairwise(x: torch.Tensor, what: str, name: str = "x") -> None:
    """Pairwise negatives combine each sample with a *different* one: a batch of one cannot be paired."""
    if x.shape[0] < 2:
        raise ValueError(
            f"{what} is pairwise: it combines every image with another image of the batch, so {name} needs a batch "
            f"of at least 2 images, got {x.shape[0]}"
        )
