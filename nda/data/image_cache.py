"""The decoded image cache: one entry is ``<cache_dir>/arrays/<name>-<split>-<key>.{images.npy,labels.npy,json}``.

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

A source module makes a :class:`Plan` (rows, shape, labels, ``produce(writer)``) and calls :func:`cached`;
:func:`open_image_cache` / :func:`build_image_cache` are the public doors for entries made elsewhere.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nda.data.cache import CacheWriteError, ResumableArray, check_npy, span_digest, writing
from nda.data.image_store import ImageData, MappedImages, in_memory_max_bytes, resolve_reader
from nda.files import atomic_path, atomic_write_text, file_lock, short_hash

__all__ = ["CACHE_VERSION", "Plan", "RamArray", "build_image_cache", "cached", "check_entry", "entry_base",
           "open_image_cache", "open_mapped", "subset"]

log = logging.getLogger("nda.data")

CACHE_VERSION = 3  # 3: 16-bit/float/alpha decoded as they are, channels by majority, tar links
_CHECK_SPAN = 1 << 20  # bytes spot-checked (digest) at each end of images.npy when a cache is opened


def open_image_cache(path: str | os.PathLike, *, in_memory: bool | None = None, reader: str | None = None
                     ) -> ImageData:
    """Open a finished cache entry (its ``.json``, or the path without suffix) as :class:`ImageData`.

    Raises ``ValueError`` if the entry is missing, incomplete or damaged (it is not rebuilt: there is no
    source to rebuild it from)."""
    base = Path(path)
    if base.name.endswith(".json"):
        base = base.with_name(base.name[: -len(".json")])
    problem = check_entry(base)
    if problem:
        raise ValueError(f"image cache {base}: {problem}")
    return subset(open_mapped(base, resolve_reader(reader)), None, in_memory)


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

    def produce(writer: ResumableArray | RamArray) -> None:
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
    identity = short_hash(CACHE_VERSION, "custom", content, num_images, tuple(shape), _labels_digest(labels),
                          json.dumps(classes))
    plan = Plan(num_images, tuple(shape), labels, classes, name or base.name, produce)
    base.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(base.with_name(base.name + ".lock")):
        problem = check_entry(base, identity)
        if problem:
            if key is None:
                log.info("image cache %s: no key= names its content, so it is (re)built", base.name)
            _write_entry(base, identity, plan)
    return base.with_name(base.name + ".json")


class Plan:
    """What a build writes: ``n`` rows of ``chw``, the labels and class names, and ``produce(writer)``, which
    decodes from item ``writer.done`` on, writing rows and committing progress after each chunk."""

    def __init__(self, n: int, chw: tuple[int, ...], labels: np.ndarray, classes: list[str], name: str,
                 produce: Callable[[Any], None]) -> None:
        self.n, self.chw, self.labels, self.classes, self.name, self.produce = n, chw, labels, classes, name, produce


def _files(base: Path) -> dict[str, Path]:
    return {k: base.with_name(base.name + suffix) for k, suffix in
            (("meta", ".json"), ("images", ".images.npy"), ("labels", ".labels.npy"), ("lock", ".lock"))}


def _labels_digest(labels: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(labels, np.int64).tobytes(), digest_size=16).hexdigest()


def check_entry(base: Path, key: str | None = None) -> str | None:
    """``None`` when ``base`` is a complete, intact cache entry (of content ``key``, when given); else what is
    wrong with it. Verified on every open: format, key, headers, exact lengths, the labels' digest and a
    digest of the first and last MiB of pixels."""
    f = _files(base)
    if not f["meta"].is_file():
        return "no completion record (never built, or interrupted)"
    try:
        meta = json.loads(f["meta"].read_text())
        if meta.get("format") != CACHE_VERSION:
            return f"cache format {meta.get('format')}, expected {CACHE_VERSION}"
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


def open_mapped(base: Path, reader: str) -> ImageData:
    f = _files(base)
    meta = json.loads(f["meta"].read_text())
    store = MappedImages(f["images"], tuple(meta["shape"]), reader)
    labels = torch.from_numpy(np.load(f["labels"], allow_pickle=False))
    return ImageData._mapped(store, labels, meta["classes"], meta["name"])


def cached(base: Path, key: str, make_plan: Callable[[], Plan]) -> Path | ImageData:
    """The path of a valid entry at ``base``: the existing one, or one built now (under a file lock). If the
    cache folder is not writable, the set is decoded into RAM instead (slower next time, not wrong)."""
    problem = check_entry(base, key)
    if problem is None:
        return base
    f = _files(base)
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(f["lock"]):
            problem = check_entry(base, key)  # another process may have built it while we waited
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
        ram = RamArray(plan.n, plan.chw)
        plan.produce(ram)
        return ImageData(torch.from_numpy(ram.array), torch.from_numpy(plan.labels), plan.classes, plan.name)
    return base


def _write_entry(base: Path, key: str, plan: Plan) -> None:
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
    with writing(f["labels"], "image cache file"), atomic_path(f["labels"]) as tmp, open(tmp, "wb") as fh:
        np.save(fh, plan.labels.astype(np.int64))
    shape = (plan.n, *plan.chw)
    total = int(np.prod(shape))
    span = min(_CHECK_SPAN, total)
    offset = check_npy(f["images"], shape)
    meta = {"format": CACHE_VERSION, "key": key, "name": plan.name, "shape": list(shape), "classes": plan.classes,
            "labels": _labels_digest(plan.labels),
            "check": {"span": span, "head": span_digest(f["images"], offset, span),
                      "tail": span_digest(f["images"], offset + total - span, span)}}
    with writing(f["meta"], "image cache completion record"):
        atomic_write_text(f["meta"], json.dumps(meta))


class RamArray:
    """Stand-in for :class:`ResumableArray` (same write/commit interface) when decoding into RAM."""

    def __init__(self, n: int, chw: tuple[int, ...]) -> None:
        self.array = np.empty((n, *chw), np.uint8)
        self.done = 0

    def write(self, rows: np.ndarray, values: np.ndarray) -> None:
        self.array[rows] = values

    def commit(self, done: int) -> None:
        self.done = done


def subset(data: ImageData, limit: int | None, in_memory: bool | None) -> ImageData:
    """Apply ``limit`` (a fixed seeded subset, sorted) and choose RAM or memory-mapped by size."""
    if limit is not None and limit < len(data):
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:limit].sort().values
        return data.subset(idx, f"{data.name}[:{limit}]", in_memory)
    if data.in_memory or not (in_memory if in_memory is not None else data.nbytes <= in_memory_max_bytes()):
        return data
    if data._rows is not None:
        return data.subset(torch.arange(len(data)), data.name, True)
    return ImageData(data._store.load(), data.labels, data.classes, data.name)


def entry_base(cache: Path, stem: str, split: str, key: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:60] or "data"
    return cache / "arrays" / f"{safe}-{split}-{key}"
