"""MixUp as a negative: a convex blend of two different images with weight near 1/2.

Why a negative (Sinha et al., ICLR 2021): with lambda ~ Beta(25, 25) (concentrated around 0.5) the blend is a
ghostly double exposure that no real photo looks like, while its colour statistics stay those of real data.
"""

from __future__ import annotations

import math

import torch

from nda.distributions import beta
from nda.sampling import derangement
from nda.vision._base import ImageNegative
from nda.vision._ops import compute_dtype, restore_dtype

__all__ = ["MixUp"]


class MixUp(ImageNegative):
    """``neg = lam * x + (1 - lam) * x[partner]`` with ``lam ~ Beta(alpha, alpha)`` per sample, partner != self.

    Args:
        alpha: both Beta parameters, a finite number > 0 (the paper's 25: lambda in about [0.36, 0.64] 95% of
            the time).
        min_weight: ``lam`` is clipped to ``[min_weight, 1 - min_weight]`` (a number in ``(0, 0.5]``; default
            0.01). Why: a blend weight of 0 or 1 returns one of the two real images unchanged, which is not a
            negative, and small ``alpha`` puts most of Beta's mass there (in float32, 60% of the draws are
            exactly 0 or 1 at ``alpha=0.01``, 94% at ``alpha=1e-3``). Clipping keeps every output a blend; it
            changes no draw at the default ``alpha=25`` (P(lam < 0.01) = 5e-37) and about 2% of the draws at
            ``alpha=1``.

    uint8/half inputs are mixed in float32 and rounded back. Params: ``partner`` ``(B,)``, ``lam`` ``(B,)``
    (after clipping).
    """

    name = "mixup"
    pairwise = True

    def __init__(self, alpha: float = 25.0, min_weight: float = 0.01) -> None:
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be a finite positive number, got alpha={alpha!r}")
        if (
            not isinstance(min_weight, (int, float))
            or isinstance(min_weight, bool)
            or not 0 < min_weight <= 0.5
        ):
            raise ValueError(
                f"min_weight must be a number in (0, 0.5] (lam is clipped to [min_weight, 1 - min_weight] so no "
                f"output is an unchanged real image), got min_weight={min_weight!r}"
            )
        self.alpha = alpha
        self.min_weight = min_weight

    def sample_params(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        self._check_batch(x)
        b, dev = x.shape[0], x.device
        partner = derangement(b, generator=generator, device=dev)
        lam = beta(float(self.alpha), float(self.alpha), (b,), generator=generator, device=dev)
        return {"partner": partner, "lam": lam.clamp_(self.min_weight, 1.0 - self.min_weight)}

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        xf = compute_dtype(x)
        lam = params["lam"].to(xf.dtype).view(-1, 1, 1, 1)
        out = xf.index_select(0, params["partner"]).lerp_(xf, lam)  # other + lam * (x - other), in place
        return restore_dtype(out, x.dtype)
