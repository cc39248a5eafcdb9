"""nda.files: the one home of atomic writes, the file lock and content hashes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from nda.files import (
    FileLock,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    file_lock,
    hash_file,
    sha256_bytes,
    sha256_file,
    temp_path,
)


# ------------------------------------------------------------------------------------------- atomic writes
def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "old")
    atomic_write_json(target, {"x": [1, 2]}, indent=1)
    assert json.loads(target.read_text()) == {"x": [1, 2]}
    atomic_write_bytes(target, b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_an_error_keeps_the_old_content_and_removes_the_temp_file(tmp_path):
    target = tmp_path / "state.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_path(target) as tmp, open(tmp, "wb") as fh:
            fh.write(b"half of the new")
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old"
    with pytest.raises(TypeError):
        atomic_write_json(target, {"x": object()})  # not JSON: nothing written
    with pytest.raises(KeyboardInterrupt):  # an interrupt is an error too
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"new")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]


def test_a_folder_is_written_whole_or_not_at_all(tmp_path):
    target = tmp_path / "step_1"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("1")
    with pytest.raises(OSError):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "a").write_text("2")
            raise OSError(28, "No space left on device")
    assert (target / "a").read_text() == "1"
    with atomic_path(target) as tmp:  # a finished folder replaces the old one
        tmp.mkdir()
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_1"]


def test_the_temp_file_is_synced_before_the_rename(tmp_path, monkeypatch):
    import nda.files as files

    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(files.os, "fsync", lambda fd: calls.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(files.os, "replace", lambda a, b: calls.append("replace") or real_replace(a, b))
    atomic_write_text(tmp_path / "a.txt", "x")
    assert calls == ["fsync", "replace"]  # a crash after the rename never leaves an empty file


def test_one_temp_naming_scheme_beside_the_target(tmp_path):
    tmp = temp_path(tmp_path / "metrics.csv")
    assert tmp.parent == tmp_path and tmp.name == f".metrics.csv.tmp{os.getpid()}"
    tmp.write_text("a leftover of a dead process with this pid")
    atomic_write_text(tmp_path / "metrics.csv", "step\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


# ------------------------------------------------------------------------------------------------ the lock
def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    path = tmp_path / "sub" / ".lock"
    first = FileLock(path)
    assert first.acquire(blocking=False, holder={"pid": 123, "host": "h"})
    second = FileLock(path)
    assert not second.acquire(blocking=False) and not second.held
    assert second.holder() == {"pid": 123, "host": "h"}
    first.release()
    assert path.read_bytes() == b""  # released: the holder record is gone, the file stays
    assert second.acquire(blocking=False)
    second.release()


def test_lock_is_released_when_the_holders_descriptor_closes(tmp_path):
    path = tmp_path / ".lock"
    holder = FileLock(path)
    assert holder.acquire(blocking=False)
    os.close(holder.fd)  # what the kernel does when the holder dies (even by kill -9)
    holder.fd = None
    other = FileLock(path)
    assert other.acquire(blocking=False)
    other.release()


@pytest.mark.slow  # multi-process
def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    path = tmp_path / ".lock"
    code = ("import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        assert not FileLock(path).acquire(blocking=False)
        child.kill()
        child.wait(timeout=10)
        lock = FileLock(path)
        assert lock.acquire(blocking=False)
        lock.release()
    finally:
        child.kill()
        child.wait(timeout=10)
        child.stdout.close()


def test_blocking_lock_waits_for_the_holder(tmp_path):
    path = tmp_path / ".lock"
    order: list[str] = []
    first = FileLock(path)
    assert first.acquire()

    def wait_for_it() -> None:
        with file_lock(path):
            order.append("second")

    thread = threading.Thread(target=wait_for_it)
    thread.start()
    time.sleep(0.2)
    order.append("first releases")
    first.release()
    thread.join(timeout=10)
    assert order == ["first releases", "second"]


# ----------------------------------------------------------------------------------------------- hashes
def test_hashes_match_hashlib(tmp_path):
    data = os.urandom(3 << 20 | 5)  # more than one 1 MiB read block
    path = tmp_path / "w.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest() == sha256_bytes(data)
    assert sha256_bytes(data, 16) == hashlib.sha256(data).hexdigest()[:16]
    assert hash_file(path) == hashlib.blake2b(data, digest_size=16).digest()


def test_the_data_cache_reexports_the_core_primitives():
    import nda.data.cache as cache
    import nda.files as files

    for name in ("atomic_write_text", "file_lock", "hash_file", "sha256_file", "short_hash", "default_cache_dir"):
        assert getattr(cache, name) is getattr(files, name), name
