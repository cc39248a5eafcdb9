"""A small CIFAR-10 classifier whose penultimate features serve as the offline FID/KID feature space.

Why: the standard Inception-v3 FID weights need a download; a classifier trained by this project ships
with the repository (``nda/models/weights/cifar10_classifier.safetensors``, stored in float16, < 5 MB)
so FID/KID can be measured anywhere. Numbers in its feature space are *not* comparable with published
Inception FIDs; they are for side-by-side comparisons, and are always reported with the extractor's name.

Architecture: a ResNet-9-style net (conv-BN-ReLU stages with max-pool, two residual blocks), widths
``(w, 2w, 4w, 8w)``; ``features(x)`` is the global-max-pooled ``8w``-d vector before the linear layer.
Input: float ``(B, 3, 32, 32)`` normalised with :data:`CIFAR_MEAN` / :data:`CIFAR_STD`.
"""

from __future__ import annotations

import torch
from torch import nn

from nda.models.registry import HubModel, register_model

__all__ = ["CifarClassifier", "CIFAR_MEAN", "CIFAR_STD"]

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def _conv_bn(cin: int, cout: int, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class _Residual(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(ch, ch), _conv_bn(ch, ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register_model
class CifarClassifier(nn.Module, HubModel):
    """ResNet-9-style CIFAR-10 classifier; ``width=32`` gives about 1.6 M parameters (3.3 MB in float16)."""

    def __init__(self, width: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.width, self.num_classes = width, num_classes
        w = width
        self.body = nn.Sequential(
            _conv_bn(3, w),
            _conv_bn(w, 2 * w, pool=True),  # 16x16
            _Residual(2 * w),
            _conv_bn(2 * w, 4 * w, pool=True),  # 8x8
            _conv_bn(4 * w, 8 * w, pool=True),  # 4x4
            _Residual(8 * w),
        )
        self.fc = nn.Linear(8 * w, num_classes)

    @property
    def feature_dim(self) -> int:
        return 8 * self.width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(B, 8 * width)`` (global max pool of the last stage)."""
        return self.body(x).amax(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
