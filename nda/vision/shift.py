"""Shift: a cyclic translation (``torch.roll``) of the image by a large amount.

Why a negative (Sinha et al., ICLR 2021; the official code rolls the image by a random amount): rolling by
10-25 px of a 32 px image cuts the object and wraps its parts around the borders, producing a seam and a
split object with the exact pixel statistics of a real image.
"""

from __future__ import annotations


import torch

from nda.sampling import draw_buffer
from nda.vision._base import ImageNegative
from nda.vision._checks import check_px_range, check_reference
from nda.vision._ops import device_cached, px_range

__all__ = ["Shift"]

_DIRECTIONS = ("random", "horizontal", "vertical", "both")


class Shift(ImageNegative):
    """Roll each image by a per-sample amount and sign, ``out[b] = torch.roll(x[b], (dy, dx), dims=(-2, -1))``.

    Args:
        min_shift, max_shift: amount range (inclusive) in pixels at the ``reference`` size (the paper's 10-25 px
            at 32 px), finite numbers with ``0 < min_shift <= max_shift``, scaled per axis by ``size / reference`` and clamped to ``[1, size - 1]`` so the roll is
            never the identity. ``reference=None``: absolute pixels.
        direction: ``"random"`` (default; per sample, horizontal or vertical with probability 1/2),
            ``"horizontal"``, ``"vertical"`` or ``"both"`` (both axes shifted, independent amounts).
            The sign (left/right, up/down) is random per sample.

    Params: ``shift`` ``(B, 2)`` long: ``(dy, dx)`` as ``torch.roll`` shifts.
    """

    name = "shift"
    pairwise = False

    def __init__(
        self, min_shift: float = 10, max_shift: float = 25, reference: int | None = 32, direction: str = "random"
    ) -> None:
        check_px_range("min_shift", min_shift, "max_shift", max_shift, "amounts")
        check_reference(reference)
        if direction not in _DIRECTIONS:
            raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
        self.min_shift = min_shift
        self.max_shift = max_shift
        self.reference = reference
        self.direction = direction

    def shift_range(self, size: int) -> tuple[int, int]:
        """Inclusive amount range in pixels along an axis of ``size`` pixels."""
        return px_range(self.min_shift, self.max_shift, size, self.reference, cap=size - 1)

    def sample_params(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        self._check_batch(x)
        b, (h, w), dev = x.shape[0], x.shape[-2:], x.device
        need_h, need_w = self.direction != "horizontal", self.direction != "vertical"
        if (need_h and h < 2) or (need_w and w < 2):
            raise ValueError(f"shift direction={self.direction!r} needs at least 2 pixels along each shifted axis, got {h}x{w}")
        # Draws, as always: 3 uniforms per sample (sign of dy, sign of dx, direction), then one uniform per sample
        # for the amount along each shifted axis; all in one buffer.
        axes = tuple(axis for axis, needed in ((0, need_h), (1, need_w)) if needed)
        buf = draw_buffer([("rand", (3, b))] + [("rand", (b,))] * len(axes), generator=generator, device=dev)
        u, u_amount = buf[: 3 * b].view(3, b), buf[3 * b :].view(len(axes), b)
        low, span, place = _shift_tables((self.shift_range(h), self.shift_range(w)), axes, dev)
        # Amounts in [lo, hi] per shifted axis: floor(u * span) < span for spans up to 2**24, so no clamp is needed.
        amount = (u_amount * span).long() + low  # (len(axes), B)
        below = u < 0.5  # (3, B): negative dy, negative dx, vertical
        signed = torch.where(below[axes[0] : axes[-1] + 1], -amount, amount)
        if self.direction == "random":
            # per sample: vertical (dy only) when u[2] < 0.5, else horizontal (dx only)
            shift = signed * (below[2] == place)
        elif len(axes) == 1:
            shift = signed * place  # the other axis is not shifted
        else:
            shift = signed
        return {"shift": shift.t().contiguous()}  # (B, 2): (dy, dx)

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        b, c, h, w = x.shape
        row_table, col_table, size = _roll_tables(h, w, x.device)
        s = params["shift"] % size  # (B, 2): shifts in [0, H) and [0, W)
        index = row_table.index_select(0, s[:, 0])[:, :, None] + col_table.index_select(0, s[:, 1])[:, None, :]
        return x.reshape(b, c, h * w).gather(2, index.view(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)


@device_cached(32)
def _shift_tables(
    ranges: tuple[tuple[int, int], tuple[int, int]], axes: tuple[int, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per shifted axis ``(n, 1)``: the smallest amount and the number of amounts (float32, the multiplier of
    ``randint``); and ``(2, 1)`` ``place``: which rows of ``(dy, dx)`` a single axis fills (``[[1], [0]]`` or
    ``[[0], [1]]``), or for two axes ``[[True], [False]]`` (a "vertical" sample keeps dy)."""
    low = torch.tensor([[ranges[a][0]] for a in axes], device=device)
    span = torch.tensor([[float(ranges[a][1] - ranges[a][0] + 1)] for a in axes], device=device)
    if len(axes) == 2:
        place = torch.tensor([[True], [False]], device=device)
    else:
        place = torch.tensor([[int(a == axes[0])] for a in (0, 1)], device=device)
    return low, span, place


@device_cached(16)
def _roll_tables(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``row[s, i] = ((i - s) % H) * W`` and ``col[s, j] = (j - s) % W``: the flat source index parts of
    ``torch.roll`` by ``(s_y, s_x)``, one row per shift; and ``[H, W]`` to reduce shifts into range."""
    i, j = torch.arange(h, device=device), torch.arange(w, device=device)
    row = ((i[None, :] - i[:, None]) % h) * w
    col = (j[None, :] - j[:, None]) % w
    return row, col, torch.tensor([h, w], device=device)
