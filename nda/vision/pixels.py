"""Pixel ranges of image tensors: uint8 ``[0, 255]`` (stored, saved, fed to metrics) <-> float ``[-1, 1]``
(what the GAN's generator emits and its discriminator reads).

Why here: image-generic, used by data loading, the GAN step (:mod:`nda.models.gan_train`) and its metrics,
so it sits in the lowest layer they share instead of inside the data loader.
"""

from __future__ import annotations

import torch

__all__ = ["to_float", "to_uint8"]


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float32 ``[-1, 1]`` (the GAN's range); float input is returned unchanged."""
    if images.dtype == torch.uint8:
        return images.float().div_(127.5).sub_(1.0)
    return images


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float ``[-1, 1]`` -> uint8 ``[0, 255]`` (rounded, clamped); uint8 input is returned unchanged."""
    if images.dtype == torch.uint8:
        return images
    return ((images.float().clamp(-1, 1) + 1.0) * 127.5).round_().to(torch.uint8)
