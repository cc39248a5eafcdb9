"""One run per folder: the rules that stop two runs from silently mixing in one ``--out-dir``.

- a folder that already holds a run is refused unless ``--resume`` (continue it) or ``--overwrite`` (delete
  it and start clean); nothing is deleted before the new run has validated its flags and built its models;
- while a run is live it holds an OS lock on ``<out-dir>/.nda.lock`` (``fcntl.flock``): a second run in the
  same folder fails at once, naming the holder's pid and host; the kernel drops the lock when the holder
  dies (even by ``kill -9``), so a dead run's lock file is simply taken over.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["RunFolder", "RunFolderError", "LOCK_NAME"]

LOCK_NAME = ".nda.lock"
RUN_MARKERS = ("config.json", "checkpoints", "metrics.csv", "results.json")  # what a run writes: --overwrite may delete


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked (holds another run, locked by a live run, not writable)."""


class RunFolder:
    """The ``--out-dir`` of one run: its contents rules and its lock.

    >>> import tempfile
    >>> folder = RunFolder(tempfile.mkdtemp())
    >>> folder.check_mode(resume=False, overwrite=False)
    'fresh'
    >>> folder.acquire(); folder.release()
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    # ---------------------------------------------------------------------------------------- contents
    def entries(self) -> list[Path]:
        """What the folder holds, the lock file excepted."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if p.name != LOCK_NAME)

    def check_mode(self, *, resume: bool, overwrite: bool) -> str:
        """``"fresh"``, ``"resume"`` or ``"overwrite"``, or a :class:`RunFolderError` saying what to pass."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"--out-dir {self.path} exists and is not a folder")
        if resume:
            if not self.entries():
                raise RunFolderError(f"--resume: {self.path} holds no run to continue (start one without --resume)")
            return "resume"
        if overwrite:
            held = self.entries()
            if held and not any((self.path / name).exists() for name in RUN_MARKERS):
                raise RunFolderError(
                    f"--overwrite: {self.path} holds {', '.join(p.name for p in held[:5])}"
                    f"{', ...' if len(held) > 5 else ''} but no run (no {' / '.join(RUN_MARKERS)}); refusing to delete "
                    "it -- choose an empty or new --out-dir"
                )
            return "overwrite"
        held = self.entries()
        if held:
            shown = ", ".join(p.name for p in held[:5]) + (", ..." if len(held) > 5 else "")
            raise RunFolderError(
                f"--out-dir {self.path} already holds a run ({shown}). Pass --resume to continue it, "
                "--overwrite to delete it and start again, or choose another --out-dir"
            )
        return "fresh"

    def clear(self) -> None:
        """Delete everything but the lock (``--overwrite``, once the new run is ready to start)."""
        for p in self.entries():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()

    # -------------------------------------------------------------------------------------------- lock
    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    def acquire(self) -> None:
        """Take the folder's lock or raise :class:`RunFolderError` naming the live holder."""
        if self._fd is not None:
            return
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"--out-dir {self.path} exists and is not a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise RunFolderError(f"--out-dir {self.path} is not writable ({err.strerror or err})") from err
        if not _try_lock(fd):
            holder = _read_holder(fd)
            os.close(fd)
            raise RunFolderError(
                f"--out-dir {self.path} is in use by a live run ({holder}); wait for it to finish, or use "
                "another --out-dir"
            )
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "argv": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays: a later run takes it over)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None

    @property
    def locked(self) -> bool:
        return self._fd is not None


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows: no flock; fall back to "the file exists and is non-empty"
        return os.fstat(fd).st_size == 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _read_holder(fd: int) -> str:
    try:
        info: dict[str, Any] = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
