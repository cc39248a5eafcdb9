"""Image negatives as a torchvision v2 transform and ``nn.Module``: usable in ``v2.Compose``, ``nn.Sequential``
and kornia's ``AugmentationSequential``.

Why a wrapper: the negatives follow the batch protocol (``(B, C, H, W)`` tensor in, same out), but per-image
``Dataset`` pipelines hand a transform a single ``(C, H, W)`` image, often inside an ``(image, label)`` sample
or as a ``tv_tensors.Image``, and module containers accept ``nn.Module`` only. :class:`NegativeTransform`
adapts the call, not the maths:

- a ``(B, C, H, W)`` batch goes to the negative as is; a ``(C, H, W)`` image is made a batch of one and back;
- v2's rules pick what is an image in a sample (a ``tv_tensors.Image``, else the first plain tensor): labels,
  ints and other entries pass through unchanged; ``tv_tensors.Image`` stays a ``tv_tensors.Image``;
- pairwise negatives (stitch, mixup, cutmix) combine two images, so a single image is a clear error;
- boxes, masks and keypoints are refused (a negative's pixels no longer match them), and so are videos.

Randomness, which a v2 ``forward`` cannot take as an argument, is owned by the transform:

- ``generator=g``: every call draws from ``g`` (you own its state);
- ``seed=s``: call ``n`` of epoch ``e`` in DataLoader worker ``w`` draws from a stream seeded by
  ``sha256(s/e/w)``, created on the first call of that (epoch, worker). Two passes over a DataLoader with
  the same ``seed`` (and ``set_epoch(e)`` before each, like ``DistributedSampler.set_epoch``) give identical
  negatives; workers get distinct streams (worker copies of the transform do not repeat each other), and a
  DataLoader that re-creates its workers every epoch still gets new negatives per epoch after ``set_epoch``;
- neither: torch's global RNG, like every negative called without ``generator``.

>>> import torch, nda
>>> t = nda.as_transform("jigsaw:grid=2", seed=0)
>>> t(torch.rand(3, 8, 8)).shape                     # a single image
torch.Size([3, 8, 8])
>>> img, label = t((torch.rand(3, 8, 8), 7))          # an (image, label) sample: the label passes through
>>> label
7
"""

from __future__ import annotations

import hashlib
from typing import Any

import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2._utils import is_pure_tensor

from nda.sampling import check_generator, make_generator

__all__ = ["NegativeTransform", "as_transform", "stream_seed"]

# a negative's pixels no longer match boxes, masks or keypoints; a video's frames are not a batch of images
_REFUSED = tuple(getattr(tv_tensors, n) for n in ("BoundingBoxes", "Mask", "KeyPoints", "Video") if hasattr(tv_tensors, n))


def stream_seed(seed: int, epoch: int, worker: int) -> int:
    """A 63-bit seed for ``(seed, epoch, worker)``; ``worker=-1`` is the main process.

    >>> stream_seed(0, 1, -1) == stream_seed(0, 1, -1) != stream_seed(0, 1, 0)
    True
    """
    digest = hashlib.sha256(f"nda.transform/{int(seed)}/{int(epoch)}/{int(worker)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _worker_id() -> int:
    info = torch.utils.data.get_worker_info()
    return -1 if info is None else int(info.id)


class NegativeTransform(v2.Transform):
    """An image negative as a v2 transform / ``nn.Module`` (see the module docstring).

    Args:
        negative: an image negative (``nda.build(...)`` result or any callable ``batch, generator=`` -> batch).
        seed: seed of the transform's own per-(epoch, worker) streams (exclusive with ``generator``).
        generator: a ``torch.Generator`` every call draws from.
    """

    # a tv_tensors.Image or a plain tensor (v2 treats only the first plain tensor of a sample as the image);
    # PIL images reach transform() to get a clear error instead of passing through unchanged
    _transformed_types = (tv_tensors.Image, is_pure_tensor, PIL.Image.Image)

    def __init__(self, negative: Any, *, seed: int | None = None, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if negative is None or not callable(negative):
            raise TypeError(f"negative must be an image negative (e.g. nda.build('jigsaw')), got {negative!r}")
        if getattr(negative, "modality", "image") != "image":
            raise ValueError(f"negative must be an image negative, got the {negative.modality} negative {negative!r}")
        if seed is not None and generator is not None:
            raise ValueError("pass seed or generator, not both")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        self.negative = negative
        self.seed = seed
        self.generator = check_generator(generator)
        self.epoch = 0
        self._stream: torch.Generator | None = None
        self._stream_key: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Restart the seeded streams at ``epoch`` (call before each pass; no effect without ``seed``)."""
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = epoch
        self._stream, self._stream_key = None, None

    def draw_generator(self) -> torch.Generator | None:
        """The generator of the next call: the given one, this (epoch, worker)'s stream, or ``None``."""
        if self.seed is None:
            return self.generator
        key = (self.epoch, _worker_id())
        if self._stream is None or self._stream_key != key:
            self._stream = make_generator(stream_seed(self.seed, *key))
            self._stream_key = key
        return self._stream

    def check_inputs(self, flat_inputs: list[Any]) -> None:
        refused = [type(x).__name__ for x in flat_inputs if _REFUSED and isinstance(x, _REFUSED)]
        if refused:
            raise TypeError(f"NegativeTransform cannot take a {refused[0]}: a negative's pixels no longer match boxes, "
                            "masks or keypoints (drop them from the sample first), and videos are not supported")

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, PIL.Image.Image):
            raise TypeError("NegativeTransform needs tensor images; put v2.ToImage() (and v2.ToDtype) before it")
        plain = inpt.as_subclass(torch.Tensor)
        if plain.ndim == 3:
            if getattr(self.negative, "pairwise", False):
                raise ValueError(f"{self.negative!r} is pairwise: it combines every image with another image of the "
                                 "batch, so it needs a (B, C, H, W) batch with B >= 2, not a single (C, H, W) image "
                                 "(apply it to batches, e.g. after the DataLoader)")
            out = self.negative(plain.unsqueeze(0), generator=self.draw_generator()).squeeze(0)
        elif plain.ndim == 4:
            out = self.negative(plain, generator=self.draw_generator())
        else:
            raise ValueError(f"NegativeTransform needs a (C, H, W) image or a (B, C, H, W) batch, got shape "
                             f"{tuple(plain.shape)}")
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out

    _transform = transform  # torchvision < 0.21 calls the private name

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers: each rebuilds its own stream
        state = self.__dict__.copy()
        state["_stream"], state["_stream_key"] = None, None
        return state

    def extra_repr(self) -> str:
        return f"negative={self.negative!r}, seed={self.seed!r}, epoch={self.epoch}"


def as_transform(spec: Any, *, seed: int | None = None, generator: torch.Generator | None = None) -> NegativeTransform:
    """``nda.build(spec)`` (image negatives only) as a :class:`NegativeTransform`.

    >>> import torch
    >>> from torchvision.transforms import v2
    >>> pipeline = v2.Compose([v2.ToDtype(torch.float32, scale=True), as_transform("cutout", seed=0)])
    >>> pipeline(torch.zeros(3, 16, 16, dtype=torch.uint8)).dtype
    torch.float32
    """
    from nda.registry import build

    if isinstance(spec, NegativeTransform):
        raise TypeError("spec is already a NegativeTransform")
    negative = build(spec, modality="image", argument="spec")  # a negative instance passes through
    if negative is None:
        raise ValueError(f"spec {spec!r} names no negative; give an image negative such as 'jigsaw'")
    return NegativeTransform(negative, seed=seed, generator=generator)
