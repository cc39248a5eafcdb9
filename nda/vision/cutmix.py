"""CutMix as a negative: a box of the image replaced by the same box of a different image.

Why a negative (Sinha et al., ICLR 2021): the pasted box is real content in a wrong context, with sharp,
implausible boundaries; the result has realistic local statistics but two objects spliced together.
"""

from __future__ import annotations

import math

import torch

from nda.distributions import beta
from nda.sampling import derangement, derangement_from_uniform, draw_buffer
from nda.vision._base import ImageNegative
from nda.vision._ops import box_indicators, device_cached, paste_, stack_rows

__all__ = ["CutMix"]


class CutMix(ImageNegative):
    """Paste a box of a partner image (partner != self) at the same position, box as in CutMix (Yun et al. 2019).

    ``lam ~ Beta(alpha, alpha)``; box side ratio ``sqrt(1 - lam)`` of ``H`` and ``W`` (so its area is
    ``1 - lam`` of the image before clipping), centre uniform over the image, clipped to the image. Unlike
    the augmentation, the box is at least 1 x 1 pixel so a negative always differs from its source, and it never
    covers the whole image (at most ``H x (W - 1)``; ``(H - 1) x 1`` for one-pixel-wide images) so a negative is
    never just its partner (a real image): with small ``alpha``, ``lam`` is often exactly 0.

    Args:
        alpha: Beta parameter, a finite number > 0 (default 1: uniform box area).

    Params: ``partner`` ``(B,)``, ``top``, ``left``, ``height``, ``width`` ``(B,)`` long, ``lam`` ``(B,)`` float:
    the share of the image's own pixels after clipping (``1 - box area / (H W)``).
    """

    name = "cutmix"
    pairwise = True

    def __init__(self, alpha: float = 1.0) -> None:
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be a finite positive number, got alpha={alpha!r}")
        self.alpha = alpha

    def sample_params(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        self._check_batch(x)
        b, (h, w), dev = x.shape[0], x.shape[-2:], x.device
        if h * w < 2:
            raise ValueError(
                f"cutmix needs images of at least 2 pixels (a box must leave part of the image), got {h}x{w}"
            )
        # Draws, in their order: partner order, lam ~ Beta(alpha, alpha), box centre (row, column). Beta(1, 1) is
        # one uniform, so for the default alpha all four share one buffer.
        if self.alpha == 1:
            u = draw_buffer([("rand", (b,))] * 4, generator=generator, device=dev).view(4, b)
            partner, lam, u_centre = derangement_from_uniform(u[0]), u[1], u[2:]
        else:
            partner = derangement(b, generator=generator, device=dev)
            lam = beta(float(self.alpha), float(self.alpha), (b,), generator=generator, device=dev)
            u_centre = draw_buffer([("rand", (b,))] * 2, generator=generator, device=dev).view(2, b)
        ratio = torch.sqrt(1.0 - lam)
        size_f, size, one, cap = _sizes(h, w, dev)  # [[H], [W]] as float and int64, 1, the largest box sides
        cut = torch.clamp((ratio * size_f).long(), min=one, max=cap)  # (2, B): box height, width
        centre = (u_centre * size_f).long()  # uniform over the image: floor(u * H) < H, no clamp needed
        start = centre - (cut >> 1)
        # start <= centre < size and start + cut > centre >= 0: one side of each clip can never act.
        top_left = start.clamp_min(0)
        end = torch.minimum(start + cut, size)  # contains the centre, so never empty
        extent = end - top_left
        lam = 1.0 - torch.true_divide(extent[0] * extent[1], h * w)  # the int -> float32 cast inside the division
        return {
            "partner": partner, "top": top_left[0], "left": top_left[1], "height": extent[0], "width": extent[1],
            "lam": lam,
        }

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        h, w = x.shape[-2:]
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        starts = stack_rows(params["top"], params["left"])  # (2, B)
        rows, cols = box_indicators(starts, starts + stack_rows(params["height"], params["width"]), h, w, dtype)
        # 1 - box mask, in place (one allocation; an addcmul of the broadcast factors was 5x slower on CPU)
        outside = (rows[:, :, None] * cols[:, None, :])[:, None]
        torch.sub(_one(dtype, x.device), outside, out=outside)
        # The partner's images everywhere, then the image's own pixels back outside the box, in place.
        return paste_(x.index_select(0, params["partner"]), x, outside)


@device_cached(16)
def _sizes(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """``[[H], [W]]`` as float32 and int64, a 1, and the largest box sides: ``H x (W - 1)``, or ``(H - 1) x 1``
    when ``W == 1`` (so a box never covers the whole image)."""
    cap = [[h], [w - 1]] if w > 1 else [[h - 1], [1]]
    return (
        torch.tensor([[float(h)], [float(w)]], device=device),
        torch.tensor([[h], [w]], device=device),
        torch.ones((), dtype=torch.long, device=device),
        torch.tensor(cap, device=device),
    )


@device_cached(16)
def _one(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.ones((), dtype=dtype, device=device)
