"""Image negatives: batched, seeded generators of out-of-distribution images (Sinha et al., ICLR 2021).

Every class maps a ``(B, C, H, W)`` uint8/float batch to a batch of negatives of the same shape, dtype and
device: ``neg = Jigsaw()(x, generator=torch.Generator().manual_seed(0))``. Each also exposes
``sample_params(x, generator=...)`` and ``apply(x, params)`` to inspect or replay the random draws.

``as_transform(spec)`` / ``NegativeTransform`` (:mod:`nda.vision.transform`) wrap one as a torchvision v2
transform and ``nn.Module``; they load torchvision on first use, so importing ``nda.vision`` does not.
"""

from typing import Any

from nda.vision._checks import check_images
from nda.vision.cutmix import CutMix
from nda.vision.cutout import Cutout
from nda.vision.jigsaw import Jigsaw
from nda.vision.mixup import MixUp
from nda.vision.rotate import Rotate
from nda.vision.shift import Shift
from nda.vision.stitch import Stitch

__all__ = ["Jigsaw", "Stitch", "MixUp", "Cutout", "CutMix", "Rotate", "Shift", "check_images", "as_transform",
           "NegativeTransform"]  # noqa: F822 (module __getattr__)


def __getattr__(name: str) -> Any:
    """Lazy exports of :mod:`nda.vision.transform` (torchvision loads only when they are used)."""
    if name in ("as_transform", "NegativeTransform"):
        from nda.vision import transform

        return getattr(transform, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
