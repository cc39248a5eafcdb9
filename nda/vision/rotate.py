"""Rotate: each image rotated by an angle drawn per sample from a set that excludes 0 degrees.

Why a negative (Sinha et al., ICLR 2021): natural photos have a canonical orientation (sky up, ground down);
a rotated image has real content in an unreal pose. Rotations by 90/180/270 degrees are exact pixel
permutations (no interpolation artefact a model could latch onto); the paper also uses a smaller rotation
(60 degrees), done here with a batched affine resampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from nda.sampling import rand, randint_from_uniform
from nda.vision._base import ImageNegative
from nda.vision._ops import compute_dtype, device_cached, restore_dtype

__all__ = ["Rotate"]

_F32_MAX = float(torch.finfo(torch.float32).max)
_INTERPOLATION = ("bilinear", "nearest")
_PADDING = ("zeros", "border", "reflection")


class Rotate(ImageNegative):
    """Rotate every image counter-clockwise by an angle drawn uniformly per sample from ``angles``.

    Args:
        angles: degrees, counter-clockwise as displayed (``torch.rot90`` convention for multiples of 90);
            a finite number or a sequence of them (within float32's range), none a multiple of 360. Default
            ``(90, 180, 270)``. ``angles=60`` (or ``(60, -60)``) gives the paper's small-rotation variant.
        interpolation, padding_mode: for angles that are not all multiples of 90 degrees, passed to
            ``F.grid_sample`` (``"bilinear"``/``"nearest"``; ``"zeros"``/``"border"``/``"reflection"`` fills the
            corners that rotate in from outside the image).

    When every angle is a multiple of 90 the rotation is an exact per-sample pixel permutation (one gather).
    90/270 degrees on non-square images would change the image shape, so they raise ``ValueError``
    (use ``angles=(180,)``, square crops, or an angle that is not a multiple of 90, which rotates about the
    centre inside the same frame). Other angles: one batched ``affine_grid`` + ``grid_sample`` in float32
    (uint8 is rounded back); aspect ratio is preserved on non-square images. Params: ``angle`` ``(B,)`` float.
    """

    name = "rotate"
    pairwise = False

    def __init__(
        self,
        angles: float | Sequence[float] = (90, 180, 270),
        interpolation: str = "bilinear",
        padding_mode: str = "zeros",
    ) -> None:
        values = [angles] if isinstance(angles, (int, float)) else list(angles) if isinstance(angles, Sequence) else None
        if not values or not all(
            isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) and abs(a) <= _F32_MAX
            for a in values
        ):
            # Beyond float32's range an angle becomes inf on the device and the rotated image NaN.
            raise ValueError(
                f"angles must be a finite number or a non-empty sequence of finite numbers (degrees, |angle| <= "
                f"{_F32_MAX:.3g}), got {angles!r}"
            )
        if any(a % 360 == 0 for a in values):
            raise ValueError(f"angles must not contain multiples of 360 degrees (the identity is not a negative), got {angles!r}")
        if interpolation not in _INTERPOLATION:
            raise ValueError(f"interpolation must be one of {_INTERPOLATION}, got {interpolation!r}")
        if padding_mode not in _PADDING:
            raise ValueError(f"padding_mode must be one of {_PADDING}, got {padding_mode!r}")
        self.angles = angles
        self.interpolation = interpolation
        self.padding_mode = padding_mode
        self._values = [float(a) for a in values]
        self._exact = all(a % 90 == 0 for a in values)
        self._odd_quarter = any((a // 90) % 2 == 1 for a in values) if self._exact else False

    def sample_params(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        self._check_batch(x)
        self._check_shape(x)
        choice = randint_from_uniform(rand(x.shape[0], generator=generator, device=x.device), 0, len(self._values))
        return {"angle": _device_table(tuple(self._values), torch.float32, x.device).index_select(0, choice)}

    def _check_shape(self, x: torch.Tensor) -> None:
        h, w = x.shape[-2:]
        if self._odd_quarter and h != w:
            raise ValueError(
                f"rotations by 90/270 degrees of non-square images ({h}x{w}) change the image shape; use square "
                f"images, angles=(180,), or an angle that is not a multiple of 90 (rotated inside the same frame)"
            )

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        self._check_shape(x)
        angle = params["angle"]
        if self._exact:
            return _rot90_batched(x, torch.round(angle / 90).long() % 4)
        return self._affine(x, angle)

    def _affine(self, x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        xf = compute_dtype(x)
        rad = torch.deg2rad(angle.to(xf.dtype))
        # The sampling grid of F.affine_grid for theta = [[cos, -sin*h/w, 0], [sin*w/h, cos, 0]] (output pixel ->
        # source pixel, normalised coordinates; the h/w factors keep pixels square), built as the broadcast sum
        # of a per-row and a per-column term: affine_grid's (B, H, W, 3) base grid and bmm cost more than the
        # resampling itself. The four per-sample coefficients [-sin*h/w, cos | cos, sin*w/h] come from one
        # multiply; the row/column coordinates are cached per shape.
        ys, xs, scale = _affine_tables(h, w, xf.dtype, x.device)
        sin, cos = torch.sin(rad), torch.cos(rad)
        coeff = torch.stack([sin, cos, cos, sin], dim=1) * scale  # (B, 4)
        grid = coeff[:, :2].view(b, 1, 1, 2) * ys + coeff[:, 2:].view(b, 1, 1, 2) * xs  # (B, H, W, 2) as (x, y)
        out = F.grid_sample(xf, grid, mode=self.interpolation, padding_mode=self.padding_mode, align_corners=False)
        return restore_dtype(out, x.dtype)


@device_cached(64)
def _device_table(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small constant tensor on ``device``, built once: ``torch.tensor(..., device="cuda")`` on every call
    would be a blocking host-to-device copy (a stream sync) in the hot path."""
    return torch.tensor(values, dtype=dtype, device=device)


@device_cached(16)
def _affine_tables(h: int, w: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Pixel-centre coordinates ``ys`` ``(1, H, 1, 1)`` and ``xs`` ``(1, 1, W, 1)`` in ``[-1, 1]``, and the
    coefficient scales ``[-h/w, 1, 1, w/h]`` of ``[sin, cos, cos, sin]``."""
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=device, dtype=dtype).view(1, h, 1, 1)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=device, dtype=dtype).view(1, 1, w, 1)
    return ys, xs, torch.tensor([-(h / w), 1.0, 1.0, w / h], device=device, dtype=dtype)


@device_cached(16)
def _rot90_index(h: int, w: int, device: torch.device) -> torch.Tensor:
    """``(4, H*W)``: row ``k`` is the flat source pixel of every output pixel of ``torch.rot90(img, k)``.

    The flat source index of output pixel ``(i, j)`` is ``a_i * i + a_j * j + c`` with per-k coefficients,
    e.g. k=1: ``x[j, W-1-i]`` -> ``a_i=-1, a_j=W, c=W-1`` (odd k only for square images)."""
    i = torch.arange(h, device=device).view(1, h, 1)
    j = torch.arange(w, device=device).view(1, 1, w)
    coeff = torch.tensor(((w, 1, 0), (-1, w, w - 1), (-w, -1, h * w - 1), (1, -w, (h - 1) * w)), device=device)
    return (coeff[:, :1, None] * i + coeff[:, 1:2, None] * j + coeff[:, 2:, None]).view(4, h * w)


def _rot90_batched(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``out[b] = torch.rot90(x[b], k[b], dims=(-2, -1))`` for all ``b`` in one gather (square images for odd k):
    one row of a cached per-k index table per sample."""
    b, c, h, w = x.shape
    index = _rot90_index(h, w, x.device).index_select(0, k).view(b, 1, h * w).expand(b, c, h * w)
    return x.reshape(b, c, h * w).gather(2, index).view(b, c, h, w)
