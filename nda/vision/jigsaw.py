"""Jigsaw: cut each image into a K x K grid and shuffle the patches (never the identity permutation).

Why a negative (Sinha et al., ICLR 2021): a jigsaw-shuffled image keeps every local statistic of a real
image (colours, textures, edges inside each patch) but breaks the global structure. Told that such images
are *fake*, a GAN discriminator must look at global coherence instead of local texture; the paper found
jigsaw with K=2 the most effective negative for CIFAR-10 GANs and for contrastive learning.
"""

from __future__ import annotations

import torch

from nda.sampling import non_identity_randperm
from nda.vision._base import ImageNegative
from nda.vision._ops import device_cached, segment_select

__all__ = ["Jigsaw"]

_REMAINDER = ("keep", "error")


class Jigsaw(ImageNegative):
    """Shuffle a ``grid x grid`` patch grid, per sample, with a uniformly drawn non-identity permutation.

    Args:
        grid: patches per side ``K`` (the paper uses 2: 4 patches, 23 non-identity permutations).
        remainder: what to do when ``H`` or ``W`` is not divisible by ``grid``. ``"keep"`` (default) shuffles
            the divisible top-left region ``(H - H % K, W - W % K)`` and leaves the remainder rows/columns at
            the bottom/right unchanged (``jigsaw:grid=3`` then works on 32 px CIFAR images, with a 2 px
            untouched border); ``"error"`` raises ``ValueError`` instead.

    ``params["perm"][b, j]`` is the source cell of output cell ``j`` (cells numbered row-major).

    >>> x = torch.rand(4, 3, 32, 32)
    >>> Jigsaw(grid=2)(x, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3, 32, 32])
    """

    name = "jigsaw"
    pairwise = False

    def __init__(self, grid: int = 2, remainder: str = "keep") -> None:
        if not isinstance(grid, int) or isinstance(grid, bool) or grid < 2:
            raise ValueError(f"grid must be an int >= 2 (a 1x1 grid has nothing to shuffle), got {grid!r}")
        if remainder not in _REMAINDER:
            raise ValueError(f"remainder must be one of {_REMAINDER}, got {remainder!r}")
        self.grid = grid
        self.remainder = remainder

    def _check_size(self, x: torch.Tensor) -> None:
        k, (h, w) = self.grid, x.shape[-2:]
        if k > h or k > w:
            raise ValueError(f"grid={k} is larger than the image ({h}x{w}): every patch needs at least one pixel")
        if self.remainder == "error" and (h % k or w % k):
            raise ValueError(
                f"image size {h}x{w} is not divisible by grid={k}; resize/crop the images or use remainder='keep' "
                f"(shuffles the top-left {h - h % k}x{w - w % k} region, leaves the remainder border unchanged)"
            )

    def sample_params(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        self._check_batch(x)
        self._check_size(x)
        k = self.grid
        return {"perm": non_identity_randperm(x.shape[0], k * k, generator=generator, device=x.device)}

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        self._check_size(x)
        k, (h, w) = self.grid, x.shape[-2:]
        hc, wc = h - h % k, w - w % k
        if (hc, wc) == (h, w):
            return _shuffle_cells(x, params["perm"], k)
        out = x.clone()
        out[..., :hc, :wc] = _shuffle_cells(x[..., :hc, :wc], params["perm"], k)
        return out


def _shuffle_cells(x: torch.Tensor, perm: torch.Tensor, k: int) -> torch.Tensor:
    """One ``index_select`` over patch-row segments of the ``(B, C, K, h, K, w)`` view.

    A patch is ``h`` contiguous row segments of ``w`` pixels, so the batch is viewed as ``B*C*H*K`` segments of
    length ``w``: output segment ``(b, c, r*h + a, cc)`` (patch row ``r``, row ``a`` inside it, patch column
    ``cc``) copies source segment ``(b, c, sr*h + a, sc)`` where ``(sr, sc)`` is the source cell. Moving whole
    segments is close to a memory copy, several times faster than a per-pixel gather.

    The source index is ``first[perm] + offset``: ``first[cell] = (cell // K) * h * K + cell % K`` is the
    first segment of a cell inside its image and ``offset[b, c, a] = (b*C + c) * H*K + a*K`` the row inside
    the patch plus the image/channel start, both built once per shape: 3 kernels per call.
    """
    b, c, hh, _ = x.shape
    h = hh // k
    first, offset = _cell_tables(b, c, h, k, x.device)
    seg = first.index_select(0, perm.reshape(-1)).view(b, 1, k, 1, k) + offset  # (b, c, patch row, a, patch col)
    return segment_select(x, seg, k)


@device_cached(16)
def _cell_tables(b: int, c: int, h: int, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    cell = torch.arange(k * k, device=device)
    first = torch.div(cell, k, rounding_mode="floor") * (h * k) + cell % k
    image = torch.arange(b * c, device=device).view(b, c, 1, 1, 1) * (h * k * k)
    offset = image + (torch.arange(h, device=device) * k).view(1, 1, 1, h, 1)
    return first, offset
