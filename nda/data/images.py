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

Pixels are loaded as they are (:func:`to_8bit`): 16-bit levels (``I;16``, ``I``) rescaled by 255/65535,
float (``F``) in [0, 1] scaled by 255 or in [0, 255] rounded, alpha composited over black, palette /
``CMYK`` / ``1`` converted to RGB / gray. The channel count is ``channels=`` or else the majority of the
files' own (a tie is 3), the size ``image_size=`` or else the most common one (others resized, logged);
both read from the headers, for Hugging Face ``Image`` columns too. Each converted file is counted in one
log warning per build.
- ``"hf:<name>"`` (or a name that is not an existing path): ``datasets.load_dataset(name, split=split)``,
  or a ``datasets.Dataset`` object, with the image and label columns auto-detected. Keyed on the dataset's
  content fingerprint; if the hub is unreachable, the last complete cache for that name/split is used.

The decoded cache (``<cache_dir>/arrays/<name>-<split>-<key>.{images.npy,labels.npy,json}``):

- ``images.npy`` is a plain ``(N, C, H, W)`` uint8 ``.npy`` (``np.load(path, mmap_mode="r")`` reads it too);
  the ``.json`` beside it is the completion record, written last. ``key`` hashes the *content* of the
  source (every decoded file's BLAKE2b digest, or the archive's, or the HF fingerprint), the split, size and
  channels: a same-size rewrite with a restored mtime is a new key. Digests are remembered by
  ``(size, mtime_ns, ctime_ns, inode)`` so a warm start only ``stat``\\ s the files (see :mod:`nda.data.cache`).
- Decoding streams in chunks of ~64 MiB of decoded pixels (bounded memory), with a progress bar; after each
  chunk the data is synced and ``images.npy.progress.json`` records how far it got, so an interrupted build
  resumes where it stopped. A partial file (``images.npy.part``), a truncated or over-long ``images.npy``, a
  damaged header, or a spot-check digest mismatch is detected, logged and rebuilt -- never read as data.
- A file that cannot be decoded (a corrupt JPEG) stops the build with ``ValueError`` naming the file: a
  silently smaller dataset would change results without a word. Chunks decoded before it stay in the
  partial cache (but fixing the folder changes its content key, so that build starts afresh).
- Processes of one machine that load the same source take a file lock: one decodes, the others wait and read.

In RAM or memory-mapped, chosen by size: a set of at most :data:`IN_MEMORY_MAX_BYTES` (2 GiB; environment
``NDA_IN_MEMORY_MAX_BYTES``) is read into RAM, a larger one is memory-mapped; ``load_images(...,
in_memory=True/False)`` overrides. Memory-mapped rows are read with ``reader="mmap"`` (default: fast, but the
mapped page cache shows in RSS) or ``"pread"`` (flat RSS, a system call per image); see
:mod:`nda.data.image_store`.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import posixpath
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nda.data.image_store import (
    IN_MEMORY_MAX_BYTES,
    ImageData,
    MappedImages,
    in_memory_max_bytes,
    resolve_reader,
)
from nda.data.cache import (
    CacheWriteError,
    DigestMemo,
    ResumableArray,
    atomic_write_text,
    check_npy,
    default_cache_dir,
    file_lock,
    short_hash,
    span_digest,
    writing,
)

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

log = logging.getLogger("nda.data")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
CHUNK_BYTES = 64 << 20
"""Decoded pixels per decode/write chunk: the build's memory bound and its resume granularity."""
_CACHE_VERSION = 3  # 3: 16-bit/float/alpha decoded as they are, channels by majority, tar links
_CHECK_SPAN = 1 << 20  # bytes spot-checked (digest) at each end of images.npy when a cache is opened
_DIGITS_SPLIT_SEED = 1234
_DIGITS_TEST_FRACTION = 0.2


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


# ---------------------------------------------------------------------------------------------- entry
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
        return _subset(_load_digits(split, image_size or 32, channels or 1), limit, True)
    if _is_hf_dataset(source):
        entry = _hf_entry(source, None, split, image_size, channels, cache)
    else:
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(f"source must be a path, 'digits', 'hf:<name>' or a datasets.Dataset, "
                            f"got {type(source).__name__}")
        text = os.fspath(source)
        path = Path(text).expanduser()
        if text.startswith("hf:"):
            entry = _hf_entry(None, text[3:], split, image_size, channels, cache)
        elif path.exists():
            if path.is_dir():
                entry = _folder_entry(path, split, image_size, channels, cache)
            elif _is_tarball(path):
                entry = _tar_entry(path, split, image_size, channels, cache)
            else:
                raise ValueError(f"source {text!r} is a file but not a .tar/.tar.gz/.tgz archive of an image folder")
        elif any(sep in text for sep in ("/", "\\")) and (text.startswith((".", "/", "~")) or path.suffix):
            raise FileNotFoundError(f"source {text!r} does not exist (expected a folder, a tarball, 'digits' or "
                                    f"'hf:<name>')")
        else:
            entry = _hf_entry(None, text, split, image_size, channels, cache)
    data = entry if isinstance(entry, ImageData) else _open_mapped(entry, reader)
    return _subset(data, limit, in_memory)


def open_image_cache(path: str | os.PathLike, *, in_memory: bool | None = None, reader: str | None = None
                     ) -> ImageData:
    """Open a finished cache entry (its ``.json``, or the path without suffix) as :class:`ImageData`.

    Raises ``ValueError`` if the entry is missing, incomplete or damaged (it is not rebuilt: there is no
    source to rebuild it from)."""
    base = Path(path)
    if base.name.endswith(".json"):
        base = base.with_name(base.name[: -len(".json")])
    problem = _check_entry(base)
    if problem:
        raise ValueError(f"image cache {base}: {problem}")
    return _subset(_open_mapped(base, resolve_reader(reader)), None, in_memory)


def build_image_cache(
    path: str | os.PathLike,
    chunks: Callable[[int], Iterator[np.ndarray]],
    num_images: int,
    shape: tuple[int, int, int],
    labels: np.ndarray | None = None,
    classes: Sequence[str] = (),
    name: str | None = None,
    *,
    key: str | None = None,
) -> Path:
    """Write a cache entry at ``path`` (no suffix) from ``chunks(start)``, an iterator of uint8
    ``(n, C, H, W)`` blocks in row order from row ``start`` (resumable); open it with
    :func:`open_image_cache`. For synthetic sets (``benchmarks/data_scale.py``) and custom decoders.

    ``key`` names the content ``chunks`` produces (e.g. a hash of the generator's version, seed and
    parameters). A finished entry, or an interrupted build, at ``path`` is reused only when its key, size,
    shape, labels and classes all match; anything else is rebuilt from row 0. Without a ``key`` the content
    cannot be known before it is produced, so the entry is always rebuilt (never an old array for new data,
    never two data sets in one file)."""
    base = Path(path)
    labels = np.full(num_images, -1, np.int64) if labels is None else np.asarray(labels, np.int64)
    if labels.shape != (num_images,):
        raise ValueError(f"labels must have shape ({num_images},), got {labels.shape}")
    if key is not None and (not isinstance(key, str) or not key):
        raise ValueError(f"key must be a non-empty string naming the content (or None: always rebuild), got {key!r}")

    def produce(writer: ResumableArray | _RamArray) -> None:
        row = writer.done
        for block in chunks(writer.done):
            block = np.asarray(block)
            if block.dtype != np.uint8 or block.shape[1:] != tuple(shape):
                raise ValueError(f"chunks must yield uint8 (n, {', '.join(map(str, shape))}) blocks, got "
                                 f"{block.dtype} {block.shape}")
            if row + len(block) > num_images:
                raise ValueError(f"chunks yielded more than the {num_images} images expected")
            writer.write(np.arange(row, row + len(block)), block)
            row += len(block)
            writer.commit(row)
        if row != num_images:
            raise ValueError(f"chunks yielded {row} images, expected {num_images}")

    classes = [str(c) for c in classes]
    content = key if key is not None else f"unkeyed:{os.getpid()}:{time.time_ns()}:{os.urandom(8).hex()}"
    identity = short_hash(_CACHE_VERSION, "custom", content, num_images, tuple(shape), _labels_digest(labels),
                          json.dumps(classes))
    plan = _Plan(num_images, tuple(shape), labels, classes, name or base.name, produce)
    base.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(base.with_name(base.name + ".lock")):
        problem = _check_entry(base, identity)
        if problem:
            if key is None:
                log.info("image cache %s: no key= names its content, so it is (re)built", base.name)
            _write_entry(base, identity, plan)
    return base.with_name(base.name + ".json")


# ------------------------------------------------------------------------------------- cache entries
class _Plan:
    """What a build writes: ``n`` rows of ``chw``, the labels and class names, and ``produce(writer)``, which
    decodes from item ``writer.done`` on, writing rows and committing progress after each chunk."""

    def __init__(self, n: int, chw: tuple[int, ...], labels: np.ndarray, classes: list[str], name: str,
                 produce: Callable[[Any], None]) -> None:
        self.n, self.chw, self.labels, self.classes, self.name, self.produce = n, chw, labels, classes, name, produce


def _files(base: Path) -> dict[str, Path]:
    return {k: base.with_name(base.name + suffix) for k, suffix in
            (("meta", ".json"), ("images", ".images.npy"), ("labels", ".labels.npy"), ("lock", ".lock"))}


def _labels_digest(labels: np.ndarray) -> str:
    import hashlib

    return hashlib.blake2b(np.ascontiguousarray(labels, np.int64).tobytes(), digest_size=16).hexdigest()


def _check_entry(base: Path, key: str | None = None) -> str | None:
    """``None`` when ``base`` is a complete, intact cache entry (of content ``key``, when given); else what is
    wrong with it. Verified on every open: format, key, headers, exact lengths, the labels' digest and a
    digest of the first and last MiB of pixels."""
    f = _files(base)
    if not f["meta"].is_file():
        return "no completion record (never built, or interrupted)"
    try:
        meta = json.loads(f["meta"].read_text())
        if meta.get("format") != _CACHE_VERSION:
            return f"cache format {meta.get('format')}, expected {_CACHE_VERSION}"
        if key is not None and meta.get("key") != key:
            return "it holds other content (its key differs)"
        shape = tuple(int(s) for s in meta["shape"])
        offset = check_npy(f["images"], shape)
        check_npy(f["labels"], (shape[0],), np.int64)
        if _labels_digest(np.load(f["labels"], allow_pickle=False)) != meta["labels"]:
            return "labels do not match the digest in its completion record"
        total = int(np.prod(shape))
        span = int(meta["check"]["span"])
        if not 0 < span <= total:
            return f"bad spot-check span {span} in its completion record"
        if span_digest(f["images"], offset, span) != meta["check"]["head"] or \
                span_digest(f["images"], offset + total - span, span) != meta["check"]["tail"]:
            return "pixel data does not match the digest in its completion record"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return str(err)
    return None


def _open_mapped(base: Path, reader: str) -> ImageData:
    f = _files(base)
    meta = json.loads(f["meta"].read_text())
    store = MappedImages(f["images"], tuple(meta["shape"]), reader)
    labels = torch.from_numpy(np.load(f["labels"], allow_pickle=False))
    return ImageData._mapped(store, labels, meta["classes"], meta["name"])


def _cached(base: Path, key: str, make_plan: Callable[[], _Plan]) -> Path | ImageData:
    """The path of a valid entry at ``base``: the existing one, or one built now (under a file lock). If the
    cache folder is not writable, the set is decoded into RAM instead (slower next time, not wrong)."""
    problem = _check_entry(base, key)
    if problem is None:
        return base
    f = _files(base)
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(f["lock"]):
            problem = _check_entry(base, key)  # another process may have built it while we waited
            if problem is None:
                return base
            if f["meta"].exists():
                log.warning("image cache %s is not usable (%s): rebuilding it", base, problem)
            _write_entry(base, key, make_plan())
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
            if isinstance(err, CacheWriteError):
                raise
            raise CacheWriteError.from_error(err, err.filename if isinstance(err.filename, str) else base,
                                             "image cache file") from err
        log.warning("the image cache folder %s is not writable (%s): decoding into RAM", base.parent, err.strerror)
        plan = make_plan()
        ram = _RamArray(plan.n, plan.chw)
        plan.produce(ram)
        return ImageData(torch.from_numpy(ram.array), torch.from_numpy(plan.labels), plan.classes, plan.name)
    return base


def _write_entry(base: Path, key: str, plan: _Plan) -> None:
    f = _files(base)
    f["meta"].unlink(missing_ok=True)  # from here on the entry is not complete until the record is rewritten
    writer = ResumableArray(f["images"], plan.n, plan.chw, key)
    if writer.done:
        log.info("resuming the image cache %s at %d of %d items", base.name, writer.done, plan.n)
    try:
        plan.produce(writer)
        writer.finish()
    finally:
        writer.close()
    tmp = f["labels"].with_name(f".{f['labels'].name}.tmp{os.getpid()}.npy")
    with writing(f["labels"], "image cache file"):
        with open(tmp, "wb") as fh:
            np.save(fh, plan.labels.astype(np.int64))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, f["labels"])
    shape = (plan.n, *plan.chw)
    total = int(np.prod(shape))
    span = min(_CHECK_SPAN, total)
    offset = check_npy(f["images"], shape)
    meta = {"format": _CACHE_VERSION, "key": key, "name": plan.name, "shape": list(shape), "classes": plan.classes,
            "labels": _labels_digest(plan.labels),
            "check": {"span": span, "head": span_digest(f["images"], offset, span),
                      "tail": span_digest(f["images"], offset + total - span, span)}}
    with writing(f["meta"], "image cache completion record"):
        atomic_write_text(f["meta"], json.dumps(meta))


class _RamArray:
    """Stand-in for :class:`ResumableArray` (same write/commit interface) when decoding into RAM."""

    def __init__(self, n: int, chw: tuple[int, ...]) -> None:
        self.array = np.empty((n, *chw), np.uint8)
        self.done = 0

    def write(self, rows: np.ndarray, values: np.ndarray) -> None:
        self.array[rows] = values

    def commit(self, done: int) -> None:
        self.done = done


def _subset(data: ImageData, limit: int | None, in_memory: bool | None) -> ImageData:
    """Apply ``limit`` (a fixed seeded subset, sorted) and choose RAM or memory-mapped by size."""
    if limit is not None and limit < len(data):
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:limit].sort().values
        return data.subset(idx, f"{data.name}[:{limit}]", in_memory)
    if data.in_memory or not (in_memory if in_memory is not None else data.nbytes <= in_memory_max_bytes()):
        return data
    if data._rows is not None:
        return data.subset(torch.arange(len(data)), data.name, True)
    return ImageData(data._store.load(), data.labels, data.classes, data.name)


# -------------------------------------------------------------------------------------------- decoding
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "F", *_SIXTEEN_BIT})
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})


def image_channels(im: Any) -> int:
    """1 for a grayscale image (any bit depth, with or without alpha, or a palette of grays), else 3.

    Reads only what ``Image.open`` already parsed (mode and palette), so a folder can be surveyed cheaply."""
    mode = getattr(im, "mode", None)
    if mode is None:  # an array (Hugging Face cells)
        arr = np.asarray(im)
        return 1 if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 2)) else 3
    if mode in ("P", "PA"):
        palette = im.getpalette() or []
        rgb = np.asarray(palette[: len(palette) // 3 * 3], np.int32).reshape(-1, 3)
        return 1 if len(rgb) and (rgb == rgb[:, :1]).all() else 3
    return 1 if mode in _GRAY_MODES else 3


def to_8bit(im: Any, channels: int, where: str) -> tuple[Any, str | None]:
    """``im`` as an 8-bit PIL image with ``channels`` (1: ``"L"``, 3: ``"RGB"``), and what was converted
    (``None`` when the file already was 8-bit with that many channels).

    Why not ``im.convert``: PIL clips 16-bit and float pixels to 0..255 (a 0..65535 ramp comes out white).
    Here 16-bit levels (``I;16*``, and ``I`` within 0..65535) are rescaled by 255/65535; float (``F``) pixels
    in [0, 1] are scaled by 255, in [0, 255] rounded (anything else is an error); alpha (``LA``, ``RGBA``,
    transparent palettes) is composited over black (a transparent pixel is 0, whatever colour it stored);
    palette, ``1``, ``CMYK``, ``YCbCr``, ... go through PIL's conversion to RGB; gray <-> RGB last (gray
    copied to 3 channels, or ITU-R 601 luma)."""
    from PIL import Image

    if not isinstance(im, Image.Image):
        im = Image.fromarray(np.asarray(im))
    mode, target = im.mode, ("L" if channels == 1 else "RGB")
    notes: list[str] = []
    try:
        if mode in _SIXTEEN_BIT:
            a = np.asarray(im).astype(np.int64)
            if a.size and (a.min() < 0 or a.max() > 65535):
                raise ValueError(f"{mode} pixels in [{a.min()}, {a.max()}], expected 16-bit levels 0..65535")
            im = Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L")
            notes.append("16-bit levels rescaled to 8 bits")
        elif mode == "F":
            a = np.asarray(im, np.float64)
            lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
            if not np.isfinite(a).all() or lo < 0 or hi > 255:
                raise ValueError(f"float pixels in [{lo:g}, {hi:g}], expected [0, 1] or [0, 255]")
            scale = 255.0 if hi <= 1 else 1.0
            im = Image.fromarray(np.rint(a * scale).astype(np.uint8), "L")
            notes.append("float [0, 1] scaled to 0..255" if scale > 1 else "float 0..255 rounded")
        elif mode in _ALPHA_MODES or "transparency" in im.info:
            gray = image_channels(im) == 1
            a = np.asarray(im.convert("RGBA"), np.uint16)
            color = ((a[..., :1] if gray else a[..., :3]) * a[..., 3:] + 127) // 255
            im = Image.fromarray(color.astype(np.uint8).squeeze(-1) if gray else color.astype(np.uint8))
            notes.append("alpha composited over black")
        elif mode == "1":
            im = im.convert("L")
            notes.append("1-bit scaled to 0/255")
        elif mode not in ("L", "RGB"):
            im = im.convert("RGB")
            notes.append("converted to RGB")
        if im.mode != target:
            im = im.convert(target)
            notes.append("gray copied to 3 channels" if target == "RGB" else "RGB to gray (ITU-R 601 luma)")
    except (ValueError, OSError) as err:
        raise ValueError(f"cannot decode image {where}: {err}") from err
    return im, (f"{mode} -> {target} ({', '.join(notes)})" if notes else None)


def _decode_one(im: Any, channels: int, size: tuple[int, int], where: str) -> tuple[np.ndarray, str | None]:
    from PIL import Image

    im, note = to_8bit(im, channels, where)
    if im.size != size:
        im = im.resize(size, Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8).reshape(size[1], size[0], channels), note


def _open_image(src: Path | bytes, where: str) -> Any:
    """Open and fully decode one image; any failure is a ``ValueError`` naming the file."""
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(src) if isinstance(src, bytes) else src)
        im.load()
        return im
    except Exception as err:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, DecompressionBomb...
        raise ValueError(
            f"cannot decode image {where}: {err}. Fix or remove the file and load again "
            f"(a corrupt image stops the build rather than silently shrinking the dataset)"
        ) from err


def _probe(src: Path | bytes, where: str) -> tuple[int, tuple[int, int]]:
    """``(channels, (width, height))`` of one image from its header (no pixel decode)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            return image_channels(im), tuple(im.size)
    except Exception as err:  # noqa: BLE001 - as _open_image
        raise ValueError(f"cannot decode image {where}: its header is unreadable ({err}). Fix or remove the file and "
                         f"load again") from err


def _vote_channels(votes: Sequence[int], channels: int | None, name: str) -> int:
    """``channels`` if given, else the majority of the files' own channel counts (a tie is colour: no
    information is dropped). A mixed set is logged, so the conversion is never silent."""
    if channels is not None:
        return channels
    gray = sum(1 for v in votes if v == 1)
    colour = len(votes) - gray
    chosen = 1 if gray > colour else 3
    if gray and colour:
        log.warning("%s: %d grayscale and %d colour images: loading all with %d channel(s), the majority "
                    "(pass channels=1 or channels=3 to choose)", name, gray, colour, chosen)
    return chosen


def _vote_size(sizes: Sequence[tuple[int, int]], image_size: int | None, name: str) -> tuple[int, int]:
    """``(image_size, image_size)`` if given, else the most common ``(width, height)`` (a tie: the first
    file's). Files of another size are resized to it (bilinear), and that is logged, never silent."""
    if image_size is not None:
        return (image_size, image_size)
    counts: dict[tuple[int, int], int] = {}
    for size in sizes:
        counts[tuple(size)] = counts.get(tuple(size), 0) + 1
    chosen = max(counts, key=lambda k: counts[k])  # dicts keep first-seen order: a tie is the first file's
    other = len(sizes) - counts[chosen]
    if other:
        log.warning("%s: %d of %d images are not %dx%d (the most common size): resized to it (bilinear); pass "
                    "image_size= to choose", name, other, len(sizes), chosen[0], chosen[1])
    return chosen


class _Decoder:
    """Decodes chunks of images in a thread pool (PIL releases the GIL) into ``(n, C, H, W)`` uint8, and
    counts every file that needed a conversion (logged once by :meth:`close`)."""

    def __init__(self, channels: int, size: tuple[int, int], name: str) -> None:
        self.c, self.size, self.name = channels, size, name
        self.row_bytes = self.c * size[0] * size[1]
        self.chunk = max(1, CHUNK_BYTES // self.row_bytes)
        self.pool = ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 2))
        self.decoded = 0
        self.converted: dict[str, list[Any]] = {}  # note -> [count, first file]

    def decode(self, items: Sequence[Any], load: Callable[[Any], Any], where: Callable[[Any], str]) -> np.ndarray:
        out = np.empty((len(items), self.size[1], self.size[0], self.c), np.uint8)
        notes: list[str | None] = [None] * len(items)

        def one(k: int) -> None:
            out[k], notes[k] = _decode_one(load(items[k]), self.c, self.size, where(items[k]))

        list(self.pool.map(one, range(len(items))))
        self.decoded += len(items)
        for item, note in zip(items, notes):
            if note is not None:
                entry = self.converted.setdefault(note, [0, where(item)])
                entry[0] += 1
        return out.transpose(0, 3, 1, 2)

    def bar(self, total: int, initial: int, desc: str) -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit="img", leave=False, disable=total < 2000)

    def close(self) -> None:
        self.pool.shutdown()
        if self.converted:
            total = sum(n for n, _ in self.converted.values())
            log.warning("%s: converted %d of %d images to %d-channel 8-bit: %s", self.name, total, self.decoded,
                        self.c, "; ".join(f"{n} {note} (e.g. {first})" for note, (n, first) in
                                          sorted(self.converted.items())))


# ---------------------------------------------------------------------------------------------- digits
def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Batched bilinear resize of uint8 images (antialiased when shrinking)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False,
                        antialias=size < max(images.shape[-2:]))
    return out.round().clamp(0, 255).to(torch.uint8)


def _set_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:  # ITU-R 601-2 luma, as PIL's convert("L")
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {c}-channel images to {channels} channels")


def _load_digits(split: str, image_size: int, channels: int) -> ImageData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32))  # (1797, 8, 8), 0..16
    images = (images * (255.0 / 16.0)).round().clamp(0, 255).to(torch.uint8)[:, None]
    labels = torch.from_numpy(digits.target.astype(np.int64))
    n = images.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(_DIGITS_SPLIT_SEED))
    n_test = int(round(n * _DIGITS_TEST_FRACTION))
    if split == "train":
        idx = perm[n_test:].sort().values
    elif split == "test":
        idx = perm[:n_test].sort().values
    elif split == "all":
        idx = torch.arange(n)
    else:
        raise ValueError(f"split must be 'train', 'test' or 'all' for the digits dataset, got {split!r}")
    images = _set_channels(_resize(images[idx], image_size), channels)
    return ImageData(images.contiguous(), labels[idx], [str(d) for d in range(10)], f"digits/{split}")


# ---------------------------------------------------------------------------------- folder layouts
def _is_tarball(path: Path) -> bool:
    return path.name.lower().endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz"))


def is_image_name(name: str) -> bool:
    """An image file name (by extension) that is not hidden (macOS ``._x.jpg`` resource files are not images)."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


class _FsTree:
    """Directory listing of a real folder, with paths relative to it (``""`` is the folder itself)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _entries(self, rel: str) -> list[os.DirEntry]:
        with os.scandir(self.root / rel if rel else self.root) as it:
            return list(it)

    def subdirs(self, rel: str) -> list[str]:
        return sorted(e.name for e in self._entries(rel) if e.is_dir() and not e.name.startswith("."))

    def images(self, rel: str) -> list[str]:
        found = []
        for e in self._entries(rel):
            if not is_image_name(e.name):
                continue
            if e.is_file():
                found.append(e.name)
            elif e.is_symlink() and not os.path.exists(e.path):  # never silently one image fewer
                raise ValueError(f"image {e.path} is a broken link (to {os.readlink(e.path)!r}): fix or remove it")
        return sorted(found)


class _TarTree:
    """The same listing over the member names of an archive (directories implied by file paths count too)."""

    def __init__(self, files: Sequence[str], dirs: Sequence[str]) -> None:
        self._dirs: dict[str, set[str]] = {"": set()}
        self._files: dict[str, list[str]] = {}
        for d in dirs:
            self._add_dir(d)
        for f in files:
            parent, name = posixpath.split(f)
            self._add_dir(parent)
            if is_image_name(name):
                self._files.setdefault(parent, []).append(name)

    def _add_dir(self, d: str) -> None:
        while d:  # link every level up to the root (members arrive in any order)
            self._dirs.setdefault(d, set())
            parent, name = posixpath.split(d)
            self._dirs.setdefault(parent, set()).add(name)
            d = parent

    def subdirs(self, rel: str) -> list[str]:
        return sorted(n for n in self._dirs.get(rel, ()) if not n.startswith("."))

    def images(self, rel: str) -> list[str]:
        return sorted(self._files.get(rel, ()))


def _join(*parts: str) -> str:
    return posixpath.join(*[p for p in parts if p])


def _layout(tree: _FsTree | _TarTree, split: str, shown: str) -> tuple[str, list[str], list[str], np.ndarray]:
    """``(split_dir, classes, files, labels)`` of an ImageFolder-style tree: files relative to the tree root,
    in class order then name order; unlabelled (-1) for a flat folder of images."""
    root = ""
    while True:  # descend through single wrapper folders (``cifar10/`` inside a tarball)
        subdirs = tree.subdirs(root)
        if len(subdirs) == 1 and not tree.images(root) and tree.subdirs(_join(root, subdirs[0])):
            root = _join(root, subdirs[0])
        else:
            break
    where = _join(shown, root)
    subdirs = tree.subdirs(root)
    if not subdirs:
        if tree.images(root) and split in ("train", "all"):  # a flat folder of unlabelled images (e.g. samples)
            split_dir = root
        else:
            raise ValueError(
                f"image folder {where} has no sub-folders: expected <root>/<split>/<class>/*, <root>/<class>/*, or "
                f"image files directly in it (unlabelled, split 'train' or 'all')"
            )
    else:
        # <root>/<split>/<class>/*: the sub-folders hold folders, not images
        nested = [d for d in subdirs if tree.subdirs(_join(root, d)) and not tree.images(_join(root, d))]
        if nested:
            if split not in subdirs:
                raise ValueError(f"split {split!r} not found in {where}; available splits: {sorted(nested)}")
            split_dir = _join(root, split)
        elif split not in ("train", "all"):
            raise ValueError(
                f"image folder {where} has no split sub-folders (it is <root>/<class>/*); use split='train' or "
                f"'all', got {split!r}"
            )
        else:
            split_dir = root
    classes = tree.subdirs(split_dir)
    files: list[str] = []
    labels: list[int] = []
    if classes:
        for label, cls in enumerate(classes):
            found = tree.images(_join(split_dir, cls))
            files.extend(_join(split_dir, cls, name) for name in found)
            labels.extend([label] * len(found))
    else:
        files = [_join(split_dir, name) for name in tree.images(split_dir)]
        labels = [-1] * len(files)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {_join(shown, split_dir)}")
    return split_dir, classes, files, np.asarray(labels, np.int64)


def _entry_base(cache: Path, stem: str, split: str, key: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:60] or "data"
    return cache / "arrays" / f"{safe}-{split}-{key}"


# ---------------------------------------------------------------------------------------------- folder
def _folder_entry(folder: Path, split: str, image_size: int | None, channels: int | None, cache: Path
                  ) -> Path | ImageData:
    split_dir, classes, files, labels = _layout(_FsTree(folder), split, str(folder))
    digests = DigestMemo(cache, folder, split_dir).digests(files, desc=f"hashing {folder.name}/{split}")
    h = _content_digest(files, digests)
    key = short_hash(_CACHE_VERSION, "folder", h, split_dir, split, image_size, channels)
    name = f"{folder.name}/{split}"

    def plan() -> _Plan:
        where = lambda rel: str(folder / rel)  # noqa: E731
        with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 2)) as pool:
            probes = list(pool.map(lambda rel: _probe(folder / rel, where(rel)), files))
        c = _vote_channels([p[0] for p in probes], channels, name)
        size = _vote_size([p[1] for p in probes], image_size, name)
        dec = _Decoder(c, size, name)

        def produce(writer: ResumableArray | _RamArray) -> None:
            with dec.bar(len(files), writer.done, f"decoding {name}") as bar:
                for a in range(writer.done, len(files), dec.chunk):
                    b = min(len(files), a + dec.chunk)
                    chunk = dec.decode(files[a:b], lambda rel: _open_image(folder / rel, where(rel)), where)
                    writer.write(np.arange(a, b), chunk)
                    writer.commit(b)
                    bar.update(b - a)
            dec.close()

        return _Plan(len(files), (dec.c, size[1], size[0]), labels, classes, name, produce)

    return _cached(_entry_base(cache, folder.name, split, key), key, plan)


def _content_digest(files: Sequence[str], digests: np.ndarray) -> str:
    """One digest over ``(relative path, content digest)`` of every file (order matters: it is row order)."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for rel, d in zip(files, digests):
        h.update(rel.encode("utf-8", "surrogateescape"))
        h.update(b"\x00")
        h.update(d.tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- tarball
def _member_name(name: str) -> str:
    name = posixpath.normpath(name.replace("\\", "/")).lstrip("/")
    return "" if name == "." else name


def _iter_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Members of a stream-mode archive without keeping them all (``TarFile.next`` appends to ``members``)."""
    while True:
        member = tar.next()
        if member is None:
            return
        yield member
        tar.members.clear()


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r|*")
    except tarfile.TarError as err:
        raise ValueError(f"cannot read the archive {path}: {err}") from err


def _tar_entry(path: Path, split: str, image_size: int | None, channels: int | None, cache: Path
               ) -> Path | ImageData:
    digest = DigestMemo(cache, path.parent, f"tar:{path.name}").digests([path.name], desc=f"hashing {path.name}")[0]
    key = short_hash(_CACHE_VERSION, "tar", digest.tobytes().hex(), split, image_size, channels)
    stem = path.name.split(".")[0]
    name = f"{path.name}/{split}"

    def plan() -> _Plan:
        listing = _TarListing(path)
        _, classes, files, labels = _layout(_TarTree(listing.files, listing.dirs), split, str(path))
        source = [listing.target(f) for f in files]  # the regular member that holds each row's bytes
        rows_of: dict[str, list[int]] = {}
        for row, member in enumerate(source):
            rows_of.setdefault(member, []).append(row)
        probes = [listing.probes.get(m) or _probe(_read_member(path, m), f"{path}:{m}") for m in source[:1]] + \
            [listing.probes[m] for m in source[1:] if m in listing.probes]
        c = _vote_channels([p[0] for p in probes], channels, name)
        size = _vote_size([p[1] for p in probes], image_size, name)
        dec = _Decoder(c, size, name)
        total = len(rows_of)  # regular members to read, in stream order (each may fill several rows: links)

        def produce(writer: ResumableArray | _RamArray) -> None:
            seen = 0
            rows: list[int] = []
            blobs: list[tuple[bytes, str]] = []

            def flush() -> None:
                if rows:
                    chunk = dec.decode(blobs, lambda blob: _open_image(blob[0], blob[1]), lambda blob: blob[1])
                    writer.write(np.asarray(rows), chunk)
                    writer.commit(seen)
                    bar.update(len(rows))
                    rows.clear()
                    blobs.clear()

            with dec.bar(len(files), writer.done, f"decoding {name}") as bar, _open_tar(path) as tar:
                try:
                    for m in _iter_members(tar):
                        if not m.isreg():
                            continue
                        member = _member_name(m.name)
                        targets = rows_of.get(member)
                        if targets is None:
                            continue
                        seen += 1
                        if seen <= writer.done:  # decoded before an interruption: skip (no read, no decode)
                            continue
                        data = tar.extractfile(m).read()
                        for row in targets:
                            rows.append(row)
                            shown = files[row] if files[row] == member else f"{files[row]} (link to {member})"
                            blobs.append((data, f"{path}:{shown}"))
                        if len(rows) >= dec.chunk:
                            flush()
                    flush()
                except (tarfile.TarError, EOFError) as err:
                    raise ValueError(f"cannot read the archive {path}: {err}") from err
            dec.close()
            if seen != total:
                raise ValueError(f"the archive {path} changed while it was read ({seen} of {total} images found)")

        return _Plan(len(files), (dec.c, size[1], size[0]), labels, classes, name, produce)

    return _cached(_entry_base(cache, stem, split, key), key, plan)


class _TarListing:
    """One streamed pass over an archive: its regular files, folders and links (hard and symbolic), and the
    header (channels, size) of every regular image.

    Links are resolved inside the archive (a link to an image loads that image's bytes, like the folder it
    came from); a link that leaves the archive (absolute, or ``..`` above its root), dangles, loops or points
    at a folder is refused with an error naming it, never dropped. Two members with one name are refused too:
    ``tar -x`` would keep the last, a reader could take either."""

    _MAX_HOPS = 40

    def __init__(self, path: Path) -> None:
        self.path = path
        self.regular: set[str] = set()
        self.dirs: list[str] = []
        self.links: dict[str, tuple[str, str]] = {}  # name -> ("hard" | "sym", link target as stored)
        self.probes: dict[str, tuple[int, tuple[int, int]]] = {}
        seen: set[str] = set()
        try:
            with _open_tar(path) as tar:
                for m in _iter_members(tar):
                    name = _member_name(m.name)
                    if m.isdir():
                        self.dirs.append(name)
                        continue
                    if name in seen:
                        raise ValueError(f"the archive {path} has two members named {name!r}; which one is meant "
                                         f"is ambiguous (tar -x keeps the last): rebuild the archive without the "
                                         f"duplicate")
                    seen.add(name)
                    if m.isreg():
                        self.regular.add(name)
                        if is_image_name(posixpath.basename(name)):
                            self.probes[name] = _probe(tar.extractfile(m).read(), f"{path}:{name}")
                    elif m.islnk() or m.issym():
                        self.links[name] = ("hard" if m.islnk() else "sym", m.linkname)
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ValueError(f"cannot read the archive {path}: {err}") from err
        folders = set(self.dirs) | {posixpath.dirname(f) for f in self.regular | self.links.keys()}
        self.resolved: dict[str, str] = {}
        for name in self.links:
            wanted = is_image_name(posixpath.basename(name))
            try:
                self.resolved[name] = self._resolve(name, folders)
            except ValueError:
                if wanted:
                    raise
            except IsADirectoryError as err:
                raise ValueError(str(err)) from None
        self.files = sorted(self.regular | {n for n in self.resolved if is_image_name(posixpath.basename(n))})

    def _resolve(self, name: str, folders: set[str]) -> str:
        where, current = f"the archive {self.path}: {name!r}", name
        for _ in range(self._MAX_HOPS):
            kind, stored = self.links[current]
            if kind == "sym" and stored.startswith("/"):
                raise ValueError(f"{where} is a link to the absolute path {stored!r}; links must stay inside the "
                                 f"archive")
            joined = stored if kind == "hard" else posixpath.join(posixpath.dirname(current), stored)
            target = posixpath.normpath(joined.replace("\\", "/"))
            if target == ".." or target.startswith("../"):
                raise ValueError(f"{where} links to {stored!r}, outside the archive; links must stay inside it")
            target = _member_name(target)
            if target in self.regular:
                return target
            if target in self.links:
                current = target
                continue
            if target in folders or any(f.startswith(target + "/") for f in folders):
                raise IsADirectoryError(f"{where} links to the folder {target!r}; links to folders are not supported "
                                        f"in archives (store the files, or unpack and load the folder)")
            raise ValueError(f"{where} links to {target!r}, which is not a file in the archive")
        raise ValueError(f"{where}: a chain of more than {self._MAX_HOPS} links (a loop?)")

    def target(self, name: str) -> str:
        """The regular member whose bytes ``name`` (a file or a link) holds."""
        return self.resolved.get(name, name)


def _read_member(path: Path, member: str) -> bytes:
    with _open_tar(path) as tar:
        for m in _iter_members(tar):
            if m.isreg() and _member_name(m.name) == member:
                return tar.extractfile(m).read()
    raise ValueError(f"the archive {path} changed while it was read ({member} is gone)")


# ----------------------------------------------------------------------------------------- Hugging Face
def _is_hf_dataset(obj: Any) -> bool:
    return hasattr(obj, "features") and hasattr(obj, "_fingerprint") and hasattr(obj, "column_names")


def _hf_entry(ds: Any, name: str | None, split: str, image_size: int | None, channels: int | None, cache: Path
              ) -> Path | ImageData:
    if ds is None and not name:
        raise ValueError("a Hugging Face source needs a dataset name: 'hf:<name>'")
    params = short_hash("hf", name, split, image_size, channels)
    pointer = cache / "arrays" / f"hf-{(name or 'dataset').replace('/', '_')}-{split}-{params}.latest"
    if ds is None:
        try:
            import datasets
        except ImportError as err:
            raise ImportError(f"loading the Hugging Face dataset {name!r} needs the 'datasets' package") from err
        try:
            ds = datasets.load_dataset(name, split=split)
        except Exception as err:  # noqa: BLE001 - offline, unknown name, ...: fall back to the last decoded cache
            base = cache / "arrays" / pointer.read_text().strip() if pointer.is_file() else None
            if base is not None and _check_entry(base) is None:
                log.warning("could not load %r (%s); using its last decoded cache %s", name, err, base)
                return base
            raise ValueError(
                f"could not load {name!r} (split {split!r}) as a Hugging Face dataset, and it is not an existing path: {err}"
            ) from err
    label = name or getattr(getattr(ds, "info", None), "dataset_name", None) or "dataset"
    key = short_hash(_CACHE_VERSION, "hf", ds._fingerprint, split, image_size, channels)
    shown = f"hf:{label}/{split}"
    image_col, label_col, classes = _detect_columns(ds)

    def plan() -> _Plan:
        n = len(ds)
        if n == 0:
            raise ValueError(f"the dataset {shown} has no rows")
        first = _hf_image(ds[0][image_col], f"{shown}[0]")
        probes = _hf_probes(ds, image_col, shown, first)
        c = _vote_channels([p[0] for p in probes], channels, shown)
        size = _vote_size([p[1] for p in probes], image_size, shown)
        dec = _Decoder(c, size, shown)
        labels = _hf_column(ds, label_col) if label_col else np.full(n, -1, np.int64)

        def produce(writer: ResumableArray | _RamArray) -> None:
            with dec.bar(n, writer.done, f"decoding {shown}") as bar:
                for a in range(writer.done, n, dec.chunk):
                    b = min(n, a + dec.chunk)
                    column = ds[a:b][image_col]
                    chunk = dec.decode(list(range(a, b)), lambda i: _hf_image(column[i - a], f"{shown}[{i}]"),
                                       lambda i: f"{shown}[{i}]")
                    writer.write(np.arange(a, b), chunk)
                    writer.commit(b)
                    bar.update(b - a)
            dec.close()

        return _Plan(n, (dec.c, size[1], size[0]), labels, classes, shown, produce)

    base = _cached(_entry_base(cache, f"hf-{label.replace('/', '_')}", split, key), key, plan)
    if isinstance(base, ImageData):
        return base
    try:
        atomic_write_text(pointer, base.name)
    except OSError:
        pass
    return base


def _hf_probes(ds: Any, image_col: str, shown: str, first: Any) -> list[tuple[int, tuple[int, int]]]:
    """Each row's own ``(channels, size)``, read from the encoded image headers (``Image(decode=False)``: no
    pixel decode); a column of arrays (no encoded headers) is represented by its first row."""
    feature = ds.features[image_col]
    if type(feature).__name__ != "Image":
        size = getattr(first, "size", None) or np.asarray(first).shape[1::-1]
        return [(image_channels(first), tuple(size))]
    cells = ds.select_columns([image_col]).cast_column(image_col, type(feature)(decode=False))
    probes: list[tuple[int, tuple[int, int]]] = []
    for a in range(0, len(cells), 4096):
        for i, cell in enumerate(cells[a:a + 4096][image_col], start=a):
            src = cell.get("bytes") or (Path(cell["path"]) if cell.get("path") else None)
            if src is None:
                raise ValueError(f"image cell {shown}[{i}] has neither bytes nor a path")
            probes.append(_probe(src, f"{shown}[{i}]"))
    return probes


def _hf_image(value: Any, where: str) -> Any:
    """A PIL image (or array) from an HF image cell: a decoded image, an array, or ``{"bytes", "path"}``."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return _open_image(value["bytes"], where)
        if value.get("path"):
            return _open_image(Path(value["path"]), where)
        raise ValueError(f"image cell {where} has neither bytes nor a path")
    if value is None:
        raise ValueError(f"image cell {where} is empty")
    return value


def _hf_column(ds: Any, column: str) -> np.ndarray:
    """One integer column as an int64 array, through Arrow (no per-row Python objects; honours ``select``)."""
    if len(ds) == 0:
        return np.zeros(0, np.int64)
    return np.asarray(ds.select_columns([column]).with_format("numpy")[0:len(ds)][column], np.int64)


def _detect_columns(ds: Any) -> tuple[str, str | None, list[str]]:
    """The image column (an ``Image`` feature, else 'img'/'image'), the label column (a ``ClassLabel``,
    else 'label'/'labels') and class names."""
    features = ds.features
    image_col = next((k for k, f in features.items() if type(f).__name__ == "Image"), None)
    if image_col is None:
        image_col = next((k for k in ("img", "image", "images", "pixel_values") if k in features), None)
    if image_col is None:
        raise ValueError(f"no image column found in the dataset (columns: {list(features)})")
    label_col = next((k for k, f in features.items() if type(f).__name__ == "ClassLabel"), None)
    if label_col is None:
        label_col = next((k for k in ("label", "labels", "fine_label", "coarse_label") if k in features), None)
    classes: list[str] = []
    if label_col is not None and type(features[label_col]).__name__ == "ClassLabel":
        classes = list(features[label_col].names)
    elif label_col is not None:
        values = _hf_column(ds, label_col)
        classes = [str(i) for i in range(int(values.max()) + 1)] if len(values) else []
    return image_col, label_col, classes

