"""Image archives (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz`` of an image folder), decoded
straight from the stream: listed once (:class:`_TarListing`: files, folders, links, headers), decoded once,
never unpacked to disk.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nda.data.cache import DigestMemo, ResumableArray, short_hash
from nda.data.image_cache import CACHE_VERSION, Plan, RamArray, cached, entry_base
from nda.data.image_decode import Decoder, is_image_name, open_image, probe, vote_channels, vote_size
from nda.data.image_sources import TarTree, layout
from nda.data.image_store import ImageData

__all__ = ["is_tarball", "tar_entry"]


def is_tarball(path: Path) -> bool:
    """A tar archive by its name (what :func:`nda.data.images.load_images` accepts as a source file)."""
    return path.name.lower().endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz"))


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


def tar_entry(path: Path, split: str, image_size: int | None, channels: int | None, cache: Path
               ) -> Path | ImageData:
    digest = DigestMemo(cache, path.parent, f"tar:{path.name}").digests([path.name], desc=f"hashing {path.name}")[0]
    key = short_hash(CACHE_VERSION, "tar", digest.tobytes().hex(), split, image_size, channels)
    stem = path.name.split(".")[0]
    name = f"{path.name}/{split}"

    def plan() -> Plan:
        listing = _TarListing(path)
        _, classes, files, labels = layout(TarTree(listing.files, listing.dirs), split, str(path))
        source = [listing.target(f) for f in files]  # the regular member that holds each row's bytes
        rows_of: dict[str, list[int]] = {}
        for row, member in enumerate(source):
            rows_of.setdefault(member, []).append(row)
        probes = [listing.probes.get(m) or probe(_read_member(path, m), f"{path}:{m}") for m in source[:1]] + \
            [listing.probes[m] for m in source[1:] if m in listing.probes]
        c = vote_channels([p[0] for p in probes], channels, name)
        size = vote_size([p[1] for p in probes], image_size, name)
        dec = Decoder(c, size, name)
        total = len(rows_of)  # regular members to read, in stream order (each may fill several rows: links)

        def produce(writer: ResumableArray | RamArray) -> None:
            seen = 0
            rows: list[int] = []
            blobs: list[tuple[bytes, str]] = []

            def flush() -> None:
                if rows:
                    chunk = dec.decode(blobs, lambda blob: open_image(blob[0], blob[1]), lambda blob: blob[1])
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

        return Plan(len(files), (dec.c, size[1], size[0]), labels, classes, name, produce)

    return cached(entry_base(cache, stem, split, key), key, plan)


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
                            self.probes[name] = probe(tar.extractfile(m).read(), f"{path}:{name}")
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
