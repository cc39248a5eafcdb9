"""nda: negative data augmentation for images and text.

>>> import torch, nda
>>> jigsaw = nda.build("jigsaw:grid=2")
>>> x = torch.rand(8, 3, 32, 32)
>>> neg = jigsaw(x, generator=torch.Generator().manual_seed(0))
>>> neg.shape == x.shape
True

``nda.as_transform(spec)`` (a torchvision v2 transform / ``nn.Module``, :mod:`nda.vision.transform`) loads on
first use, so the core still imports torch only.
"""

import importlib
from typing import Any

from nda.base import Negative, NegativeGenerator
from nda.compose import Compose, RandomChoice, leaves
from nda.registry import available, build, get, register
from nda.sampling import make_generator

__version__ = "0.1.0"  # the one version source: pyproject.toml reads it (dynamic = ["version"])

_LAZY = {"as_transform": "nda.vision.transform", "NegativeTransform": "nda.vision.transform"}

__all__ = [
    "Negative",
    "NegativeGenerator",
    "Compose",
    "RandomChoice",
    "leaves",
    "available",
    "build",
    "get",
    "register",
    "make_generator",
    "__version__",
    "as_transform",  # noqa: F822 (module __getattr__)
    "NegativeTransform",  # noqa: F822
]


def __getattr__(name: str) -> Any:
    """Lazy exports: a string path (like the registry's built-ins) keeps core free of torchvision imports."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
