"""On-disk cache logic shared by the image and text data layers: a memo of content digests, cache write
errors that name the file, and a resumable, chunk-written ``.npy`` array. The file primitives it builds on
(atomic writes, the lock, content hashes) live in :mod:`nda.files`; their names are re-exported here.

Why content digests: a cache keyed on (path, size, whole-second mtime) serves stale data after a same-size
rewrite, or after any tool that preserves mtimes (``cp -p``, ``rsync -t``, ``tar -x``). Here a source is keyed
on the bytes of its files (BLAKE2b-128). Re-reading a large folder at every start would be slow, so a
:class:`DigestMemo` remembers each file's digest together with its ``(size, mtime_ns, ctime_ns, inode)``
and re-reads only files whose stat changed. ``ctime`` is set by the kernel on every write, rename or
``utime`` call and cannot be set back from user space, so a rewrite with a restored mtime is still seen.
``NDA_CACHE_REHASH=1`` ignores the memo (every file is read again).

Why a resumable array writer: decoding a folder of a million images takes an hour; an interrupted run must
not start over, and a half-written file must never be read as data. :class:`ResumableArray` writes rows
into ``<path>.part`` (pre-sized to its final length), syncs, then records how many items are done in
``<path>.progress.json``; only :meth:`ResumableArray.finish` renames it to ``<path>``. Readers open
finished files only, and :func:`check_npy` verifies the header and the exact file length.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from nda.files import (  # the core's file primitives; the names stay importable from here
    atomic_path,
    atomic_write_text,
    default_cache_dir,
    file_lock,
    hash_file,
    sha256_file,
    short_hash,
)

__all__ = [
    "CacheWriteError",
    "DigestMemo",
    "ResumableArray",
    "atomic_write_text",
    "check_npy",
    "default_cache_dir",
    "file_lock",
    "hash_file",
    "npy_header",
    "sha256_file",
    "short_hash",
]

log = logging.getLogger("nda.data")
_DIGEST_BYTES = 16  # hash_file's BLAKE2b-128
_READ_BLOCK = 1 << 20


class CacheWriteError(OSError):
    """Writing a cache file failed (disk full, quota, I/O error, permissions): an ``OSError`` with the same
    ``errno`` and ``filename`` set, whose message is one line naming the file, the reason and what to do.

    Why: a bare ``[Errno 28] No space left on device`` from a ``pwrite`` deep in a build names no file and
    no remedy; the caller (or ``cli()``) can print this one as it is."""

    def __init__(self, code: int | None, message: str, filename: str) -> None:
        super().__init__(code, message, filename)
        self.message = message

    @classmethod
    def from_error(cls, err: OSError, path: str | os.PathLike, what: str = "cache file") -> CacheWriteError:
        """The one-line error for ``err`` raised while writing ``path`` (a ``what``)."""
        where = os.fspath(path)
        if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            full = "no space left on the device" if err.errno == errno.ENOSPC else "disk quota exceeded"
            message = (f"{full} while writing the {what} {where}: free space and load again (a content-keyed build "
                       f"resumes where it stopped), or pass cache_dir= / set NDA_CACHE to a larger disk")
        else:
            message = f"cannot write the {what} {where}: {err.strerror or err}"
        return cls(err.errno, message, where)

    def __str__(self) -> str:
        return self.message


@contextlib.contextmanager
def writing(path: str | os.PathLike, what: str = "cache file") -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into a :class:`CacheWriteError` naming ``path``."""
    try:
        yield
    except CacheWriteError:
        raise
    except OSError as err:
        raise CacheWriteError.from_error(err, err.filename if isinstance(err.filename, str) else path, what) from err


# ---------------------------------------------------------------------------------------------- digests
class DigestMemo:
    """Content digests of files under ``root``, remembered by stat so unchanged files are read only once.

    The memo lives in ``<cache>/digests/<key>.npz`` (plain arrays, loaded without pickle): sorted relative
    paths, their ``(size, mtime_ns, ctime_ns, inode)`` and 16-byte digests. Memory: ~100 bytes per file.
    """

    def __init__(self, cache_dir: str | os.PathLike, root: str | os.PathLike, scope: str = "") -> None:
        self.root = Path(root)
        self.file = Path(cache_dir) / "digests" / f"{short_hash(self.root.resolve(), scope)}.npz"

    def digests(self, relpaths: Sequence[str], desc: str = "hashing") -> np.ndarray:
        """``(len(relpaths), 16)`` uint8 digests of ``root/relpath``, in the given order."""
        n = len(relpaths)
        prefix, stat = os.path.join(os.fspath(self.root), ""), os.stat  # str concatenation: the loop is stat-bound
        rows = []
        for rel in relpaths:
            st = stat(prefix + rel)
            rows.append((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
        stats = np.array(rows, dtype=np.int64).reshape(n, 4)
        keys = np.array([p.encode("utf-8", "surrogateescape") for p in relpaths], dtype=np.bytes_) if n else \
            np.zeros(0, dtype="S1")
        out = np.zeros((n, _DIGEST_BYTES), dtype=np.uint8)
        known = np.zeros(n, dtype=bool)
        memo = None if os.environ.get("NDA_CACHE_REHASH") == "1" else self._load()
        if memo is not None and n:
            m_keys, m_stats, m_digests = memo
            pos = np.searchsorted(m_keys, keys).clip(0, max(len(m_keys) - 1, 0))
            if len(m_keys):
                known = (m_keys[pos] == keys) & (m_stats[pos] == stats).all(axis=1)
                out[known] = m_digests[pos[known]]
        missing = np.flatnonzero(~known)
        if len(missing):
            self._hash(relpaths, missing, out, desc)
            order = np.argsort(keys, kind="stable")
            self._save(keys[order], stats[order], out[order])
        return out

    def _hash(self, relpaths: Sequence[str], which: np.ndarray, out: np.ndarray, desc: str) -> None:
        from tqdm.auto import tqdm

        root = os.fspath(self.root)

        def one(i: int) -> None:
            out[i] = np.frombuffer(hash_file(os.path.join(root, relpaths[i])), dtype=np.uint8)

        workers = min(8, (os.cpu_count() or 1) * 2)
        with ThreadPoolExecutor(workers) as pool, tqdm(total=len(which), desc=desc, unit="file", leave=False,
                                                       disable=len(which) < 5000) as bar:
            for start in range(0, len(which), 4096):
                part = which[start:start + 4096].tolist()
                list(pool.map(one, part))
                bar.update(len(part))

    def _load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        try:
            with np.load(self.file, allow_pickle=False) as z:
                keys, stats, digests = z["keys"], z["stats"], z["digests"]
            if stats.shape != (len(keys), 4) or digests.shape != (len(keys), _DIGEST_BYTES):
                return None
            return keys, stats, digests
        except (OSError, ValueError, KeyError):
            return None  # no memo yet, or an unreadable one: re-read the files

    def _save(self, keys: np.ndarray, stats: np.ndarray, digests: np.ndarray) -> None:
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.file) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, keys=keys, stats=stats, digests=digests)
        except OSError:  # a read-only cache: hashing again next time is slower, not wrong
            pass


# ------------------------------------------------------------------------------------------------- .npy
def npy_header(shape: tuple[int, ...], dtype: np.dtype | str = np.uint8) -> bytes:
    """The ``.npy`` (format 1.0/2.0) header for a C-ordered array of ``shape`` and ``dtype``."""
    import io

    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    try:
        np.lib.format.write_array_header_1_0(buf, header)
    except ValueError:  # a header over 64 KiB (a very long shape) needs format 2.0
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


def check_npy(path: str | os.PathLike, shape: tuple[int, ...] | None = None, dtype: Any = np.uint8) -> int:
    """Validate a ``.npy`` file: header parses, C order, ``dtype`` (and ``shape`` if given) match, and the file
    is exactly header + data long (a truncated or over-long file fails). Returns the data offset.

    Raises ``ValueError`` saying what is wrong."""
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                raise ValueError(f"unsupported .npy format version {version}")
            hdr_shape, fortran, hdr_dtype = read[version](fh)
        except Exception as err:  # noqa: BLE001 - numpy raises several types for a damaged header
            raise ValueError(f"{path}: not a readable .npy header ({err})") from err
        offset = fh.tell()
    if fortran or hdr_dtype != np.dtype(dtype):
        raise ValueError(f"{path}: expected a C-ordered {np.dtype(dtype)} array, got {hdr_dtype} fortran={fortran}")
    if shape is not None and tuple(hdr_shape) != tuple(shape):
        raise ValueError(f"{path}: expected shape {tuple(shape)}, the header says {tuple(hdr_shape)}")
    expected = offset + int(np.prod(hdr_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    size = os.path.getsize(path)
    if size != expected:
        raise ValueError(f"{path}: {size} bytes on disk, expected {expected} (truncated or damaged)")
    return offset


def span_digest(path: str | os.PathLike, offset: int, length: int) -> str:
    """Hex BLAKE2b-128 of ``length`` bytes at ``offset`` (a cheap spot check of a large array file)."""
    h = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    with open(path, "rb") as fh:
        fh.seek(offset)
        remaining = length
        while remaining > 0:
            block = fh.read(min(_READ_BLOCK, remaining))
            if not block:
                break
            h.update(block)
            remaining -= len(block)
    return h.hexdigest()


class ResumableArray:
    """A ``(n, *row_shape)`` uint8 ``.npy`` written in chunks, resumable after an interruption.

    ``path.part`` is created at its final size (sparse) with the final header; :meth:`write` puts rows at
    their positions; :meth:`commit` syncs the data and then records ``done`` (items processed, in whatever
    order the producer uses) in ``path.progress.json`` together with ``key``. A later instance with the
    same ``path``, ``key`` and shape resumes from :attr:`done`; anything else (another key, a damaged or
    missing ``.part``) starts from zero. :meth:`finish` renames ``.part`` to ``path``.
    """

    def __init__(self, path: Path, n: int, row_shape: tuple[int, ...], key: str) -> None:
        self.path, self.n, self.row_shape, self.key = Path(path), int(n), tuple(row_shape), key
        self.shape = (self.n, *self.row_shape)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64))
        self.part = self.path.with_name(self.path.name + ".part")
        self.progress = self.path.with_name(self.path.name + ".progress.json")
        self.done = self._resume_point()
        with writing(self.part, "image cache file"):
            if self.done == 0:
                self._create()
            self._fd = os.open(self.part, os.O_RDWR)
        self.offset = check_npy(self.part, self.shape)

    def _resume_point(self) -> int:
        try:
            record = json.loads(self.progress.read_text())
            if record.get("key") != self.key or tuple(record.get("shape", ())) != self.shape:
                return 0
            check_npy(self.part, self.shape)
            done = int(record["done"])
            return done if 0 <= done <= self.n else 0
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.progress.unlink(missing_ok=True)
        header = npy_header(self.shape)
        with open(self.part, "wb") as fh:
            fh.write(header)
            fh.truncate(len(header) + self.n * self.row_bytes)

    def write(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Write ``values[k]`` to row ``rows[k]`` (runs of consecutive rows go out in one ``pwrite``)."""
        rows = np.asarray(rows, dtype=np.int64)
        values = np.ascontiguousarray(values, dtype=np.uint8).reshape(len(rows), self.row_bytes)
        if len(rows) == 0:
            return
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        with writing(self.part, "image cache file"):
            for a, b in zip(np.r_[0, breaks].tolist(), np.r_[breaks, len(rows)].tolist()):
                data = memoryview(values[a:b]).cast("B")
                pos = self.offset + int(rows[a]) * self.row_bytes
                while len(data):
                    written = os.pwrite(self._fd, data, pos)
                    data, pos = data[written:], pos + written

    def commit(self, done: int) -> None:
        """Make the rows written so far durable, then record that ``done`` items are finished."""
        with writing(self.part, "image cache file"):
            os.fsync(self._fd)
        self.done = int(done)
        with writing(self.progress, "image cache progress record"):
            atomic_write_text(self.progress, json.dumps({"key": self.key, "shape": list(self.shape),
                                                         "done": self.done}))

    def finish(self) -> None:
        """Sync, close and publish the array at ``path``; drop the progress record."""
        with writing(self.path, "image cache file"):
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            os.replace(self.part, self.path)
        self.progress.unlink(missing_ok=True)

    def close(self) -> None:
        """Close without publishing (an interrupted build keeps ``.part`` and its progress for a resume)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()
