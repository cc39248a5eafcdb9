"""One run per folder: the rules that stop two runs from silently mixing in one ``--out-dir``.

- a folder that already holds a run is refused unless ``--resume`` (continue it) or ``--overwrite`` (delete
  it and start clean); nothing is deleted before the new run has validated its flags and built its models;
- ``--overwrite`` deletes only what an nda run wrote: a run keeps a manifest, ``.nda-run.json``, naming the
  top-level entries it wrote (and its data fingerprint, :meth:`RunFolder.bind`). A folder without one (a
  source tree, a Hugging Face model folder with its ``config.json``, a run of an older nda) is refused, and a
  file a user put into a run folder is kept;
- while a run is live it holds an OS lock on ``<out-dir>/.nda.lock`` (``fcntl.flock``): a second run in the
  same folder fails at once, naming the holder's pid and host; the kernel drops the lock when the holder
  dies (even by ``kill -9``), so a dead run's lock file is simply taken over. The manifest also names the
  live holder (pid, host, process start time), so a deleted lock file does not let a second run in: a
  holder that is still alive on this host is refused, and a run re-checks that its lock file is still the
  one it holds before it deletes anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from nda.files import FileLock, atomic_write_text, temp_path

__all__ = ["RunFolder", "RunFolderError", "LOCK_NAME", "MANIFEST_NAME"]

LOCK_NAME = ".nda.lock"
MANIFEST_NAME = ".nda-run.json"
MANIFEST_FORMAT = "nda-run/1"
_MANIFEST_TEMP = temp_path(MANIFEST_NAME).name.removesuffix(str(os.getpid()))  # of any process: not an entry
# what runs of nda before the manifest wrote: adopted (and only these) when such a run is continued with --resume
LEGACY_OUTPUTS = ("config.json", "checkpoints", "metrics.csv", "results.json", "results.md", "tensorboard",
                  "trackers", "samples", "models", "final", "model", "loss_plot.png")


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked (holds another run, locked by a live run, not writable)."""


class RunFolder:
    """The ``--out-dir`` of one run: its contents rules, its manifest and its lock.

    >>> import tempfile
    >>> folder = RunFolder(tempfile.mkdtemp())
    >>> folder.acquire(); folder.check_mode(resume=False, overwrite=False)
    'fresh'
    >>> folder.release()
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = FileLock(self.path / LOCK_NAME)
        self._token = uuid.uuid4().hex  # this holder, among runs of one process
        self._foreign: set[str] = set()  # entries present at claim() that no run of nda wrote: never deleted
        self._claimed = False
        self._created_lock = False  # the lock file was made by this holder (removed again if the folder is refused)

    # ---------------------------------------------------------------------------------------- contents
    def entries(self) -> list[Path]:
        """What the folder holds, the lock file and the manifest excepted."""
        if not self.path.is_dir():
            return []
        own = (LOCK_NAME, MANIFEST_NAME)
        return sorted(p for p in self.path.iterdir()
                      if p.name not in own and not p.name.startswith(_MANIFEST_TEMP))

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME

    def manifest(self) -> dict[str, Any] | None:
        """The folder's run manifest, ``None`` when it has none, or a :class:`RunFolderError` when unreadable."""
        path = self.manifest_path
        if not path.is_file():
            return None
        try:
            info = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RunFolderError(f"--out-dir {self.path}: the run manifest {MANIFEST_NAME} is unreadable ({err}); "
                                 "refusing to touch the folder") from err
        if not isinstance(info, dict) or info.get("format") != MANIFEST_FORMAT:
            raise RunFolderError(f"--out-dir {self.path}: {MANIFEST_NAME} is not an {MANIFEST_FORMAT} manifest; "
                                 "refusing to touch the folder")
        return info

    def check_mode(self, *, resume: bool, overwrite: bool) -> str:
        """``"fresh"``, ``"resume"`` or ``"overwrite"``, or a :class:`RunFolderError` saying what to pass.

        Call it with the lock held: it also refuses a folder whose manifest names a live holder (a run whose
        lock file was deleted)."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"--out-dir {self.path} exists and is not a folder")
        manifest = self.manifest()
        self._check_not_live(manifest)
        held = self.entries()
        if resume:
            if not held:
                raise RunFolderError(f"--resume: {self.path} holds no run to continue (start one without --resume)")
            return "resume"
        if overwrite:
            if held and manifest is None:
                raise RunFolderError(
                    f"--overwrite: {self.path} holds {_shown(held)} but no run of nda (no {MANIFEST_NAME} manifest: "
                    "not a run folder, or a run of an older nda); refusing to delete anything -- delete it "
                    "yourself or choose another --out-dir"
                )
            return "overwrite"
        if held:
            raise RunFolderError(
                f"--out-dir {self.path} already holds a run ({_shown(held)}). Pass --resume to continue it, "
                "--overwrite to delete it and start again, or choose another --out-dir"
            )
        return "fresh"

    def _check_not_live(self, manifest: dict[str, Any] | None) -> None:
        live = (manifest or {}).get("live")
        if not live or live.get("token") == self._token:
            return
        if _alive(live):
            raise RunFolderError(
                f"--out-dir {self.path} is in use by a live run (pid {live.get('pid')} on {live.get('host')}, "
                f"started {live.get('started')}) although its lock file {LOCK_NAME} was removed; wait for it to "
                "finish, or use another --out-dir"
            )

    # ---------------------------------------------------------------------------------------- manifest
    def claim(self, job: str, adopt_legacy: bool = False) -> None:
        """Name this process as the folder's live holder in the manifest (main process, lock held).

        Entries present now that the manifest does not list are foreign (a user's) and are never deleted;
        ``adopt_legacy`` (resuming a run of an older nda) claims the names such runs wrote."""
        existing = self.manifest()
        info = existing or {"format": MANIFEST_FORMAT, "entries": [], "data": {}}
        listed = set(info.get("entries", []))
        present = {p.name for p in self.entries()}
        if adopt_legacy and existing is None:
            listed |= present & set(LEGACY_OUTPUTS)
        self._foreign = present - listed
        info.update(job=job, entries=sorted(listed), live={
            "pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "token": self._token})
        self._write_manifest(info)
        self._claimed = True

    def record(self, data: dict[str, Any] | None = None) -> None:
        """Add what the run has written since :meth:`claim` (every entry but the foreign ones) to the manifest,
        and ``data`` (name -> fingerprint record) if given."""
        if not self._claimed:
            return
        info = self.manifest() or {"format": MANIFEST_FORMAT, "entries": [], "data": {}}
        present = {p.name for p in self.entries()}
        info["entries"] = sorted((set(info.get("entries", [])) | present) - self._foreign)
        if data:
            info["data"] = {**info.get("data", {}), **data}
        self._write_manifest(info)

    def data_records(self) -> dict[str, Any]:
        """The data fingerprints the manifest holds (name -> ``{"fingerprint", "what"}``)."""
        return dict((self.manifest() or {}).get("data", {}))

    def _write_manifest(self, info: dict[str, Any]) -> None:
        try:
            atomic_write_text(self.manifest_path, json.dumps(info, indent=1))
        except OSError as err:
            raise RunFolderError(f"--out-dir {self.path}: cannot write {MANIFEST_NAME} "
                                 f"({err.strerror or err})") from err

    def clear(self) -> list[str]:
        """Delete what the manifest says a run wrote (``--overwrite``, once the new run is ready to start);
        returns the names kept (not written by a run). The lock must still be this folder's lock."""
        self.check_lock()
        info = self.manifest()
        if info is None:
            raise RunFolderError(f"--overwrite: {self.path} has no {MANIFEST_NAME}; refusing to delete anything")
        listed = set(info.get("entries", []))
        kept = []
        for p in self.entries():
            if p.name not in listed:
                kept.append(p.name)
            elif p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        info.update(entries=[], data={})
        self._write_manifest(info)
        self._foreign = set(kept)
        return kept

    # -------------------------------------------------------------------------------------------- lock
    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    def acquire(self) -> None:
        """Take the folder's lock or raise :class:`RunFolderError` naming the live holder."""
        if self._lock.held:
            return
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"--out-dir {self.path} exists and is not a folder")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "argv": sys.argv}
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            created = not self.lock_path.exists()
            taken = self._lock.acquire(blocking=False, holder=info)
        except OSError as err:
            raise RunFolderError(f"--out-dir {self.path} is not writable ({err.strerror or err})") from err
        if not taken:
            raise RunFolderError(
                f"--out-dir {self.path} is in use by a live run ({_shown_holder(self._lock.holder())}); wait for it "
                "to finish, or use another --out-dir"
            )
        self._created_lock = created

    def check_lock(self) -> None:
        """Raise :class:`RunFolderError` unless ``.nda.lock`` is still the file this run locked: a lock file that
        was deleted or replaced no longer keeps a second run out, so nothing may be deleted on its word."""
        if self._lock.fd is None:
            raise RunFolderError(f"--out-dir {self.path}: the run does not hold the folder's lock")
        held = os.fstat(self._lock.fd)
        try:
            now = os.stat(self.lock_path)
        except OSError:
            now = None
        if now is None or (now.st_ino, now.st_dev) != (held.st_ino, held.st_dev):
            raise RunFolderError(f"--out-dir {self.path}: this run's lock file {LOCK_NAME} was removed or replaced "
                                 "while it ran; another run may be using the folder, so nothing is deleted")

    def release(self) -> None:
        """Drop the lock and the manifest's live holder (the lock file stays: a later run takes it over)."""
        if not self._lock.held:
            return
        if self._claimed:
            with contextlib.suppress(RunFolderError, OSError):
                info = self.manifest()
                if info is not None and (info.get("live") or {}).get("token") == self._token:
                    info["live"] = None
                    self._write_manifest(info)
            self._claimed = False
        self._lock.release()  # empties the lock file of its holder and closes the descriptor: the flock is gone

    def discard(self) -> None:
        """Remove the lock file, this run's manifest and the folder if nothing else is in it (a fresh run that
        never started), then release the lock. A refused folder that holds other things loses only the lock file
        this holder created in it."""
        if self._lock.held and self.entries() and self._created_lock and not self._claimed:
            with contextlib.suppress(OSError):
                self.lock_path.unlink()
            self.release()
        elif self._lock.held and not self.entries():
            if self._claimed:
                with contextlib.suppress(OSError):
                    self.manifest_path.unlink()
                self._claimed = False
            with contextlib.suppress(OSError):
                self.lock_path.unlink()
            self.release()
            with contextlib.suppress(OSError):
                self.path.rmdir()
        else:
            self.release()

    @property
    def locked(self) -> bool:
        return self._lock.held


def _shown(held: list[Path]) -> str:
    return ", ".join(p.name for p in held[:5]) + (", ..." if len(held) > 5 else "")


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), to tell a live pid from a reused one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(live: dict[str, Any]) -> bool:
    """Whether the manifest's holder is a live process of this host (another host cannot be checked: False)."""
    pid = live.get("pid")
    if live.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    start = live.get("process_start")
    return start is None or _process_start(pid) in (None, start)


def _shown_holder(info: dict[str, Any]) -> str:
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
