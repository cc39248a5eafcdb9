"""The runtime side of an image set: :class:`ImageData` and its per-step :meth:`ImageData.take`.

Why its own module: :mod:`nda.data.images` (with its ``image_*`` parts) finds, decodes and caches a source;
this module is what a training step touches -- a uint8 ``(N, C, H, W)`` set held in RAM, or rows read on
demand from the finished ``.npy`` cache (:class:`MappedImages`) -- and must stay small and fast.

RAM or memory-mapped, chosen by size: up to :data:`IN_MEMORY_MAX_BYTES` (2 GiB of pixels; environment
``NDA_IN_MEMORY_MAX_BYTES``) a set is read into RAM, because a gather from a RAM (or device) tensor is the
fastest path and CIFAR-10 is 150 MB; a larger set is memory-mapped. Memory-mapped rows are read by one of
two readers (``reader=`` or ``NDA_IMAGE_READER``):

- ``"mmap"`` (default): a numpy gather through a read-only shared mapping. Fast (the page cache is read in
  place) and shared by every process of the machine; but touched pages of the mapping count in the process's
  resident size (on kernels with large page-cache folios one random row maps up to 2 MiB), so RSS grows
  towards the file size while anonymous memory stays flat. That memory is the kernel's page cache:
  reclaimable under pressure and shared between ranks, not owned by the process.
- ``"pread"``: one ``pread`` per row into the output buffer. Resident size stays flat by every measure;
  costs a system call per image (slower per batch; see ``benchmarks/data_scale.py``).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nda.data.cache import check_npy

__all__ = ["IN_MEMORY_MAX_BYTES", "READERS", "ImageData", "MappedImages", "as_index", "in_memory_max_bytes",
           "resolve_reader"]

IN_MEMORY_MAX_BYTES = 2 << 30
"""Sets up to this many bytes of decoded pixels are held in RAM (override: ``NDA_IN_MEMORY_MAX_BYTES``)."""
READERS = ("mmap", "pread")


def in_memory_max_bytes() -> int:
    """The RAM/memory-map threshold in bytes: ``NDA_IN_MEMORY_MAX_BYTES`` or :data:`IN_MEMORY_MAX_BYTES`."""
    raw = os.environ.get("NDA_IN_MEMORY_MAX_BYTES")
    if raw is None:
        return IN_MEMORY_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"NDA_IN_MEMORY_MAX_BYTES must be a non-negative integer (bytes), got {raw!r}")
    return value


def resolve_reader(reader: str | None) -> str:
    """``reader``, else ``NDA_IMAGE_READER``, else ``"mmap"``; anything but :data:`READERS` is a ValueError."""
    reader = reader if reader is not None else os.environ.get("NDA_IMAGE_READER", "mmap")
    if reader not in READERS:
        raise ValueError(f"reader must be one of {READERS} (or NDA_IMAGE_READER), got {reader!r}")
    return reader


class MappedImages:
    """Rows of a finished ``(N, C, H, W)`` uint8 ``.npy``, read on demand (never the whole file)."""

    def __init__(self, path: Path, shape: tuple[int, ...], reader: str) -> None:
        self.path, self.shape, self.reader = Path(path), tuple(int(s) for s in shape), reader
        self.row_bytes = int(np.prod(self.shape[1:]))
        self.offset = check_npy(self.path, self.shape)
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_RDONLY)
        self._array = None
        self._cow: torch.Tensor | None = None
        if self.reader == "mmap":
            self._map = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)
            self._array = np.frombuffer(self._map, np.uint8, count=self.shape[0] * self.row_bytes,
                                        offset=self.offset).reshape(self.shape)

    def read(self, rows: np.ndarray, out: np.ndarray) -> None:
        """``out[k] = row rows[k]`` for valid ``rows`` (int64) into a C-contiguous uint8 ``out``."""
        if self._array is not None:
            np.take(self._array, rows, axis=0, out=out, mode="clip")  # rows are validated; clip skips a buffer
            return
        rb = self.row_bytes
        flat = memoryview(out.reshape(-1)).cast("B")
        views = [[flat[k * rb:(k + 1) * rb]] for k in range(len(rows))]
        offsets = (rows * rb + self.offset).tolist()
        got = list(map(os.preadv, repeat(self._fd, len(rows)), views, offsets))
        if got and min(got) < rb:
            raise OSError(f"{self.path}: short read (the file shrank while in use)")

    def tensor(self) -> torch.Tensor:
        """The whole array as a zero-copy tensor over a private (copy-on-write) mapping of the file."""
        if self._cow is None:
            cow = mmap.mmap(self._fd, 0, access=mmap.ACCESS_COPY)
            arr = np.frombuffer(cow, np.uint8, count=self.shape[0] * self.row_bytes, offset=self.offset)
            self._cow = torch.from_numpy(arr.reshape(self.shape))
        return self._cow

    def load(self) -> torch.Tensor:
        """The whole array read into RAM (one sequential read)."""
        arr = np.fromfile(self.path, dtype=np.uint8, count=self.shape[0] * self.row_bytes, offset=self.offset)
        return torch.from_numpy(arr.reshape(self.shape))

    def __getstate__(self) -> dict[str, Any]:  # file handles do not pickle: reopen by path
        return {"path": self.path, "shape": self.shape, "reader": self.reader, "row_bytes": self.row_bytes,
                "offset": self.offset}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            os.close(self._fd)
        except Exception:  # noqa: BLE001
            pass


class ImageData:
    """A labelled uint8 image set, in RAM or memory-mapped; see the module docstring for the API.

    ``ImageData(images, labels, classes, name)`` wraps an in-RAM uint8 ``(N, C, H, W)`` tensor; memory-mapped
    sets come from :func:`load_images` / :func:`open_image_cache`. ``labels``: long ``(N,)`` (``-1`` when the
    source has no labels), always in RAM; ``classes``: class names (index = label).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str], name: str) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a uint8 (N, C, H, W) tensor, got {got}")
        self._ram: torch.Tensor | None = images
        self._store: MappedImages | None = None
        self._rows: np.ndarray | None = None
        self._shape = tuple(images.shape)
        self._init_common(labels, classes, name)

    @classmethod
    def _mapped(cls, store: MappedImages, labels: torch.Tensor, classes: list[str], name: str,
                rows: np.ndarray | None = None) -> ImageData:
        self = cls.__new__(cls)
        self._ram, self._store, self._rows = None, store, rows
        self._shape = (len(rows) if rows is not None else store.shape[0], *store.shape[1:])
        self._init_common(labels, classes, name)
        return self

    def _init_common(self, labels: torch.Tensor, classes: list[str], name: str) -> None:
        if labels.shape != (self._shape[0],):
            raise ValueError(f"labels must have shape ({self._shape[0]},), got {tuple(labels.shape)}")
        self.labels = labels.long()
        self.classes = list(classes)
        self.name = name
        self._on_device: dict[str, torch.Tensor] = {}
        self._pinned: list[torch.Tensor | None] = [None, None]
        self._events: list[Any] = [None, None]
        self._slot = 0

    # ------------------------------------------------------------------------------------- properties
    def __len__(self) -> int:
        return int(self._shape[0])

    def __repr__(self) -> str:
        where = "in RAM" if self.in_memory else f"memory-mapped ({self.reader}) from {self._store.path}"
        return f"ImageData({self.name!r}, {len(self)} x {tuple(self._shape[1:])} uint8, {where})"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self._shape[-1])

    @property
    def channels(self) -> int:
        return int(self._shape[1])

    @property
    def in_memory(self) -> bool:
        """True when the pixels are a RAM tensor; False when they are read from the memory-mapped cache."""
        return self._ram is not None

    @property
    def reader(self) -> str | None:
        """``"mmap"`` or ``"pread"`` for a memory-mapped set, ``None`` in RAM."""
        return self._store.reader if self._store is not None else None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self._shape))

    @property
    def images(self) -> torch.Tensor:
        """All pixels as one uint8 ``(N, C, H, W)`` tensor. In RAM: the tensor itself. Memory-mapped: a
        zero-copy, copy-on-write view of the file (a subset of one is gathered into RAM). Per-step batches
        should use :meth:`take`."""
        if self._ram is not None:
            return self._ram
        if self._rows is None:
            return self._store.tensor()
        out = torch.empty(self._shape, dtype=torch.uint8)
        self._store.read(self._rows, out.numpy())
        return out

    # ------------------------------------------------------------------------------------------ take
    def take(self, indices: torch.Tensor | Sequence[int] | np.ndarray, device: torch.device | str | None = None
             ) -> torch.Tensor:
        """The images at ``indices`` as uint8 ``(B, C, H, W)`` on ``device`` (default CPU).

        In RAM: gathered from a copy of the set on ``device`` (made on first use). Memory-mapped: the rows
        are read from the file into a host buffer (pinned, double-buffered for CUDA) and copied over
        asynchronously. Raises ``IndexError`` for out-of-range indices (checked when ``indices`` is on the CPU).
        """
        idx = as_index(indices, len(self))
        device = torch.device(device) if device is not None else torch.device("cpu")
        if device.type == "cuda" and device.index is None:  # one device copy for "cuda" and "cuda:0"
            device = torch.device("cuda", torch.cuda.current_device())
        if self._ram is not None:
            src = self._device_copy(device)
            return src.index_select(0, idx.to(src.device, non_blocking=True))
        rows = idx.cpu().numpy().astype(np.int64, copy=False)
        if self._rows is not None:
            rows = self._rows[rows]
        if device.type == "cuda":
            buf = self._pinned_buffer(len(rows))
            self._store.read(rows, buf.numpy())
            out = buf.to(device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(device))
            self._events[self._slot] = event
            return out
        out = torch.empty((len(rows), *self._shape[1:]), dtype=torch.uint8)
        self._store.read(rows, out.numpy())
        return out if device.type == "cpu" else out.to(device)

    def _device_copy(self, device: torch.device) -> torch.Tensor:
        if device.type == "cpu":
            return self._ram
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = self._ram.to(device)
        return self._on_device[key]

    def _pinned_buffer(self, b: int) -> torch.Tensor:
        """One of two pinned host buffers, alternating; waits until the copy that last used it is done."""
        self._slot ^= 1
        slot = self._slot
        if self._events[slot] is not None:
            self._events[slot].synchronize()
            self._events[slot] = None
        buf = self._pinned[slot]
        if buf is None or buf.shape[0] < b:
            buf = torch.empty((b, *self._shape[1:]), dtype=torch.uint8, pin_memory=True)
            self._pinned[slot] = buf
        return buf[:b]

    # ---------------------------------------------------------------------------------------- subsets
    def subset(self, indices: torch.Tensor | Sequence[int] | np.ndarray, name: str | None = None,
               in_memory: bool | None = None) -> ImageData:
        """A new ``ImageData`` of the rows at ``indices``: in RAM when small enough (or ``in_memory=True``),
        else a memory-mapped view through an index map (nothing is copied)."""
        idx = as_index(indices, len(self))
        name = name if name is not None else f"{self.name}[{len(idx)}]"
        labels = self.labels[idx].contiguous()
        if self._ram is not None:
            return ImageData(self._ram.index_select(0, idx), labels, self.classes, name)
        rows = idx.numpy().astype(np.int64)
        if self._rows is not None:
            rows = self._rows[rows]
        nbytes = len(rows) * self._store.row_bytes
        if in_memory if in_memory is not None else nbytes <= in_memory_max_bytes():
            out = torch.empty((len(rows), *self._shape[1:]), dtype=torch.uint8)
            self._store.read(rows, out.numpy())
            return ImageData(out, labels, self.classes, name)
        return ImageData._mapped(self._store, labels, self.classes, name, rows)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_on_device={}, _pinned=[None, None], _events=[None, None], _slot=0)
        return state


def as_index(indices: Any, n: int) -> torch.Tensor:
    """A 1-D int64 tensor of indices; out-of-range values are an ``IndexError`` (checked on the CPU only)."""
    if isinstance(indices, torch.Tensor):
        idx = indices
    else:
        try:
            idx = torch.as_tensor(np.asarray(indices))
        except (TypeError, ValueError) as err:
            raise TypeError(f"indices must be a 1-D integer tensor, array or sequence, "
                            f"got {type(indices).__name__}") from err
    if idx.numel() == 0 and idx.ndim == 1:
        idx = idx.long()  # [] arrives as float64
    if idx.dtype == torch.bool or idx.is_floating_point() or idx.is_complex():
        raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
    if idx.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {tuple(idx.shape)}")
    idx = idx.long()
    if idx.device.type == "cpu" and idx.numel():
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= n:
            raise IndexError(f"indices must lie in [0, {n}) for this dataset, got values in [{lo}, {hi}]")
    return idx
