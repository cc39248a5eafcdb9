"""Stitch: half of one image next to (or above) half of a different image of the batch.

Why a negative (Sinha et al., ICLR 2021): each half is a real image region, so the stitched image passes any
local test; only the seam and the global layout give it away. A discriminator or encoder that learns to call
it fake/dissimilar must model the global consistency of a scene.
"""

from __future__ import annotations

import torch

from nda.sampling import derangement, derangement_from_uniform, draw_buffer
from nda.vision._base import ImageNegative
from nda.vision._ops import device_cached, paste_, segment_select

__all__ = ["Stitch"]

_DIRECTIONS = ("random", "horizontal", "vertical")


class Stitch(ImageNegative):
    """Each image keeps one half and takes the other half from a partner (a derangement: never itself).

    Args:
        direction: ``"horizontal"``: halves side by side (left half of the image, right half of the partner,
            split at ``W // 2``); ``"vertical"``: top half of the image over the bottom half of the partner (split
            at ``H // 2``); ``"random"`` (default): drawn per sample with probability 1/2.

    Params: ``partner`` ``(B,)`` long, ``vertical`` ``(B,)`` bool.
    """

    name = "stitch"
    pairwise = True

    def __init__(self, direction: str = "random") -> None:
        if direction not in _DIRECTIONS:
            raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
        self.direction = direction

    def sample_params(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        self._check_batch(x)
        b, dev = x.shape[0], x.device
        if self.direction == "random":  # partner order and direction: two draws, one buffer
            u = draw_buffer([("rand", (b,)), ("rand", (b,))], generator=generator, device=dev).view(2, b)
            return {"partner": derangement_from_uniform(u[0]), "vertical": u[1] < 0.5}
        partner = derangement(b, generator=generator, device=dev)
        vertical = torch.full((b,), self.direction == "vertical", dtype=torch.bool, device=dev)
        return {"partner": partner, "vertical": vertical}

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        h, w = x.shape[-2:]
        if (self.direction != "vertical" and w < 2) or (self.direction != "horizontal" and h < 2):
            raise ValueError(f"stitch needs at least 2 pixels along the split axis, got an image of {h}x{w}")
        b, c = x.shape[:2]
        partner, vertical = params["partner"], params["vertical"]
        if w % 2 == 0:
            # Each output row is two half-row segments, taken from the image itself or from its partner: the
            # partner's segment index is the own index of the partner's row of a cached table (4 kernels).
            own, from_partner_v, from_partner_h = _segment_tables(b, c, h, x.device)
            from_partner = torch.where(vertical.view(b, 1, 1, 1), from_partner_v, from_partner_h)  # (B, 1, H, 2)
            seg = torch.where(from_partner, own.index_select(0, partner), own)
            return segment_select(x, seg, 2)
        keep_rows, keep_cols = _keep_own_patterns(h, w, x.device)
        keep_own = torch.where(vertical.view(b, 1, 1, 1), keep_rows, keep_cols)
        return paste_(x.index_select(0, partner), x, keep_own)


@device_cached(16)
def _segment_tables(b: int, c: int, h: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``own[b, c, r, half]``: flat index of the half-row segment in a ``(B*C*H*2)`` segment view; which
    segments come from the partner for a vertical (bottom half) and a horizontal (right half) stitch."""
    own = torch.arange(b * c * h * 2, device=device).view(b, c, h, 2)
    rows = torch.arange(h, device=device).view(1, 1, h, 1)
    halves = torch.arange(2, device=device).view(1, 1, 1, 2)
    return own, rows >= h // 2, halves == 1


@device_cached(16)
def _keep_own_patterns(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Where an image keeps its own pixels: the top half rows (vertical stitch), the left half columns."""
    rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
    return (rows < h // 2).view(1, 1, h, 1), (cols < w // 2).view(1, 1, 1, w)
