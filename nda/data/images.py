"""Image datasets for the jobs: decoded once to a uint8 ``.npy`` cache, then held in RAM (small sets) or read
from the memory-mapped file (sets larger than RAM), behind one API.

API the jobs use::

    data = load_images("cifar10-jpg.tar.gz", "train", image_size=32, channels=3)   # -> ImageData
    idx = batch_indices(step, len(data), batch_size, seed, rank, world_size)       # nda.run
    x = data.take(idx, device)          # uint8 (B, C, H, W) on ``device``
    y = data.labels.to(device)[idx.to(device)]                                     # long (N,) in RAM
    len(data), data.num_classes, data.channels, data.image_size, data.name, data.classes, data.in_memory

:meth:`ImageData.take` is the per-step call: for an in-RAM set it copies the whole set to ``device`` on first
use and gathers there (what the jobs did by hand); for a memory-mapped set it gathers the rows from the file
into a (pinned, on CUDA) host buffer and copies them over, so memory does not grow with the dataset. Pass
indices on the CPU for memory-mapped sets (``batch_indices`` returns CPU tensors); CUDA indices cost a sync.
``data.images`` still gives the whole ``(N, C, H, W)`` tensor (for a memory-mapped set: a zero-copy view of
the file, copy-on-write), for evaluation code that wants it.

Sources accepted by :func:`load_images`:

- ``None`` / ``"digits"``: scikit-learn's bundled ``load_digits()`` (1,797 real 8x8 handwritten digits with
  labels; ships with scikit-learn, so it works offline). Values 0..16 are scaled to 0..255 and resized
  (bilinear) to ``image_size`` (default 32). Splits: a fixed seeded 80/20 split, ``"train"`` (1,438),
  ``"test"`` (359), or ``"all"`` (1,797). Always in RAM, never cached.
- a folder in ``ImageFolder`` layout: ``<root>/<split>/<class>/*.png|jpg|...`` or ``<root>/<class>/*``
  (the latter only for ``split="train"`` or ``"all"``), or a flat folder of images (unlabelled: labels -1,
  e.g. generated samples for ``tasks/eval_gan.py --images``). Names starting with ``.`` are skipped
  (macOS ``._x.jpg`` resource files are not images).
- a ``.tar`` / ``.tar.gz`` / ``.tgz`` / ``.tar.bz2`` / ``.tar.xz`` of such a folder, decoded straight from
  the archive (streamed twice: once to list it, once to decode; never unpacked to disk). Hard and symbolic
  links load the file they point to, as in the folder; a link out of the archive, dangling, looping or to a
  folder, and two members with one name, are errors naming the member (never a dropped or black image).

- ``"hf:<name>"`` (or a name that is not an existing path): ``datasets.load_dataset(name, split=split)``,
  or a ``datasets.Dataset`` object, with the image and label columns auto-detected. Keyed on the dataset's
  content fingerprint; if the hub is unreachable, the last complete cache for that name/split is used.

Pixels are loaded as they are (:func:`to_8bit`): 16-bit levels (``I;16``, ``I``) rescaled by 255/65535,
float (``F``) in [0, 1] scaled by 255 or in [0, 255] rounded, alpha composited over black, palette /
``CMYK`` / ``1`` converted to RGB / gray. The channel count is ``channels=`` or else the majority of the
files' own (a tie is 3), the size ``image_size=`` or else the most common one (others resized, logged);
both read from the headers, for Hugging Face ``Image`` columns too. Each converted file is counted in one
log warning per build. (:mod:`nda.data.image_decode`)

Where each part lives (one job per module; this one is the public entry and re-exports what callers use):
:mod:`nda.data.image_sources` (digits, folder layouts, folders), :mod:`nda.data.image_tar` (archives),
:mod:`nda.data.image_hf` (Hugging Face), :mod:`nda.data.image_decode` (pixels, header votes, the chunked
decoder), :mod:`nda.data.image_cache` (the decoded ``.npy`` cache, its checks and builds),
:mod:`nda.data.image_store` (:class:`ImageData`: RAM or memory-mapped rows) and :mod:`nda.vision.pixels`
(the ``[-1, 1]`` float range the GAN uses).

In RAM or memory-mapped, chosen by size: a set of at most :data:`IN_MEMORY_MAX_BYTES` (2 GiB; environment
``NDA_IN_MEMORY_MAX_BYTES``) is read into RAM, a larger one is memory-mapped; ``load_images(...,
in_memory=True/False)`` overrides. Memory-mapped rows are read with ``reader="mmap"`` (default: fast, but the
mapped page cache shows in RSS) or ``"pread"`` (flat RSS, a system call per image); see
:mod:`nda.data.image_store`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nda.data.cache import default_cache_dir
from nda.data.image_cache import build_image_cache, open_image_cache, open_mapped, subset
from nda.data.image_decode import IMAGE_EXTENSIONS, image_channels, is_image_name, to_8bit
from nda.data.image_hf import hf_entry, is_hf_dataset
from nda.data.image_sources import folder_entry, load_digits
from nda.data.image_store import IN_MEMORY_MAX_BYTES, ImageData, resolve_reader
from nda.data.image_tar import is_tarball, tar_entry
from nda.vision.pixels import to_float, to_uint8

__all__ = [
    "IMAGE_EXTENSIONS",
    "IN_MEMORY_MAX_BYTES",
    "ImageData",
    "build_image_cache",
    "default_cache_dir",
    "image_channels",
    "is_image_name",
    "load_images",
    "open_image_cache",
    "to_8bit",
    "to_float",
    "to_uint8",
]


def load_images(
    source: Any = None,
    split: str = "train",
    image_size: int | None = None,
    channels: int | None = None,
    limit: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    in_memory: bool | None = None,
    reader: str | None = None,
) -> ImageData:
    """Load an image dataset as uint8 ``(N, C, H, W)`` (see the module docstring for sources and caching).

    Args:
        source: ``None``/``"digits"``, a folder, a tarball, ``"hf:<name>"`` or a ``datasets.Dataset``.
        split: ``"train"``, ``"test"``, ... (folder: the sub-folder name; HF: the split name).
        image_size: square output size (bilinear resize); ``None`` keeps the source size (digits: 32).
        channels: 1 (grayscale) or 3 (RGB); ``None`` keeps the source's (digits: 1).
        limit: keep at most this many images, a fixed seeded random subset (so classes stay mixed).
        cache_dir: where decoded arrays go (default ``$NDA_CACHE`` or ``~/.cache/nda``).
        in_memory: ``True`` RAM, ``False`` memory-mapped, ``None`` by size (:data:`IN_MEMORY_MAX_BYTES`).
        reader: how memory-mapped rows are read, ``"mmap"`` or ``"pread"`` (default ``NDA_IMAGE_READER``
            or ``"mmap"``).
    """
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty string such as 'train' or 'test', got {split!r}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
    if channels not in (None, 1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    if in_memory not in (None, True, False):
        raise ValueError(f"in_memory must be True, False or None (by size), got {in_memory!r}")
    reader = resolve_reader(reader)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    if source is None or (isinstance(source, str) and source == "digits"):
        return subset(load_digits(split, image_size or 32, channels or 1), limit, True)
    if is_hf_dataset(source):
        entry = hf_entry(source, None, split, image_size, channels, cache)
    else:
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(f"source must be a path, 'digits', 'hf:<name>' or a datasets.Dataset, "
                            f"got {type(source).__name__}")
        text = os.fspath(source)
        path = Path(text).expanduser()
        if text.startswith("hf:"):
            entry = hf_entry(None, text[3:], split, image_size, channels, cache)
        elif path.exists():
            if path.is_dir():
                entry = folder_entry(path, split, image_size, channels, cache)
            elif is_tarball(path):
                entry = tar_entry(path, split, image_size, channels, cache)
            else:
                raise ValueError(f"source {text!r} is a file but not a .tar/.tar.gz/.tgz archive of an image folder")
        elif any(sep in text for sep in ("/", "\\")) and (text.startswith((".", "/", "~")) or path.suffix):
            raise FileNotFoundError(f"source {text!r} does not exist (expected a folder, a tarball, 'digits' or "
                                    f"'hf:<name>')")
        else:
            entry = hf_entry(None, text, split, image_size, channels, cache)
    data = entry if isinstance(entry, ImageData) else open_mapped(entry, reader)
    return subset(data, limit, in_memory)
