"""File primitives every layer shares: atomic writes, one exclusive file lock, content hashes, the cache folder.

Why one home: a temp-file-and-rename written by hand in each module drifts (three temp-name schemes, some
synced, some not, some leaving temp files behind on an error), and two ``flock`` wrappers drift the same way.
Here, stdlib only:

- :func:`atomic_path` yields a temp path beside ``path`` (``.<name>.tmp<pid>``, the one naming scheme); when the
  block ends the temp file (or folder: every file in it) is fsynced and ``os.replace``'d onto ``path``, so a
  reader sees the old or the new content, never half of it; on an error the temp is removed and ``path`` is
  untouched. :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json` sit on it.
- :class:`FileLock` is an exclusive ``flock``: blocking (processes that build one cache entry wait for each
  other) or not (a second run in one folder fails at once), optionally recording its holder in the lock file
  so the refused one can say who holds it. The kernel drops the lock when the holder's descriptor closes
  (even on ``kill -9``). Where ``fcntl`` is missing a blocking lock is a no-op and a non-blocking one counts
  a non-empty lock file as held; network file systems may not honour ``flock``.
- :func:`sha256_file` (published identity of weights and checkpoint files), :func:`hash_file` (BLAKE2b-128
  content digests for cache keys), :func:`sha256_bytes`, :func:`short_hash` (a key over parts, for names).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "FileLock",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "default_cache_dir",
    "file_lock",
    "hash_file",
    "sha256_bytes",
    "sha256_file",
    "short_hash",
    "temp_path",
]

_DIGEST_BYTES = 16
_READ_BLOCK = 1 << 20


# ------------------------------------------------------------------------------------------- atomic writes
def temp_path(path: str | os.PathLike) -> Path:
    """The temp name :func:`atomic_path` writes ``path`` through: hidden, beside it (same file system, so the
    rename is atomic), and per process (concurrent writers of one file never share a temp file)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync(path: Path) -> None:
    """Flush a file, or every file of a folder and the folder itself, to the disk."""
    if path.is_dir():
        for sub in path.rglob("*"):
            if sub.is_file() and not sub.is_symlink():
                _fsync(sub)
    _fsync(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield :func:`temp_path` of ``path`` to write a file (or a folder) into; on a clean exit it is synced and
    renamed onto ``path``, on an error removed (``path`` keeps its old content).

    A folder replaces an existing folder at ``path`` by deleting it first (``os.replace`` cannot replace a
    non-empty folder): that one step is not atomic, so name folders so that each is written once (a step).

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "a.bin"
    >>> with atomic_path(target) as tmp, open(tmp, "wb") as fh:
    ...     _ = fh.write(b"done")
    >>> target.read_bytes()
    b'done'
    """
    path = Path(path)
    tmp = temp_path(path)
    _remove(tmp)  # a leftover of an earlier process with this pid
    try:
        yield tmp
        _sync(tmp)
        if tmp.is_dir() and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically and durably (see :func:`atomic_path`)."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, **dumps: Any) -> None:
    """Write ``json.dumps(obj, **dumps)`` to ``path`` atomically; nothing is written when ``obj`` is not JSON."""
    atomic_write_text(path, json.dumps(obj, **dumps))


# ---------------------------------------------------------------------------------------------- the lock
class FileLock:
    """An exclusive ``flock`` on ``path`` (created with its parent folders if missing).

    >>> import tempfile
    >>> lock = FileLock(Path(tempfile.mkdtemp()) / ".lock")
    >>> lock.acquire(blocking=False, holder={"pid": 1}), FileLock(lock.path).acquire(blocking=False)
    (True, False)
    >>> FileLock(lock.path).holder()
    {'pid': 1}
    >>> lock.release(); FileLock(lock.path).acquire(blocking=False)
    True
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.fd: int | None = None  # the locked descriptor while held
        self._wrote_holder = False

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self, *, blocking: bool = True, holder: Mapping[str, Any] | None = None) -> bool:
        """Take the lock: wait for it (``blocking``) or return ``False`` at once when another descriptor holds
        it. ``holder`` (JSON) is written into the lock file for :meth:`holder`. ``OSError`` when the lock file
        cannot be created."""
        if self.fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            taken = _flock(fd, blocking)
        except BaseException:
            os.close(fd)
            raise
        if not taken:
            os.close(fd)
            return False
        if holder is not None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(dict(holder)).encode(), 0)
            self._wrote_holder = True
        self.fd = fd
        return True

    def release(self) -> None:
        """Drop the lock (the lock file stays, emptied of its holder: a later holder takes it over)."""
        if self.fd is None:
            return
        if self._wrote_holder:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            self._wrote_holder = False
        os.close(self.fd)  # closing the descriptor releases the flock
        self.fd = None

    def holder(self) -> dict[str, Any]:
        """What the current holder recorded (``{}`` when nothing or nothing readable)."""
        try:
            with open(self.path, "rb") as fh:
                info = json.loads(fh.read(1 << 16).decode() or "{}")
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _flock(fd: int, blocking: bool) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no flock
        return blocking or os.fstat(fd).st_size == 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold :class:`FileLock` ``path`` (waiting for it) for the block."""
    with FileLock(path):
        yield


# ------------------------------------------------------------------------------------------------ hashes
def _digest(path: str | os.PathLike, h: Any) -> Any:
    with open(path, "rb") as fh:
        while block := fh.read(_READ_BLOCK):
            h.update(block)
    return h


def hash_file(path: str | os.PathLike) -> bytes:
    """BLAKE2b-128 of a file's bytes (read in 1 MiB blocks; hashlib releases the GIL, so threads scale)."""
    return _digest(path, hashlib.blake2b(digest_size=_DIGEST_BYTES)).digest()


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes: the published identity of weights and checkpoint files."""
    return _digest(path, hashlib.sha256()).hexdigest()


def sha256_bytes(data: bytes, length: int = 64) -> str:
    """SHA-256 hex digest of ``data``, cut to ``length`` hex digits (a cache key)."""
    return hashlib.sha256(data).hexdigest()[:length]


def short_hash(*parts: Any, length: int = 20) -> str:
    """A hex key over ``parts`` (their ``str``), for cache file names."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(str(part).encode())
        h.update(b"\x00")
    return h.hexdigest()[:length]


def default_cache_dir() -> Path:
    """``$NDA_CACHE`` or ``~/.cache/nda``: where every layer's caches live."""
    return Path(os.environ.get("NDA_CACHE", Path.home() / ".cache" / "nda"))
