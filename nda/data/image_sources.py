"""Image sources that need no archive reader: scikit-learn's bundled digits, and ``ImageFolder``-style
folders (``<root>/<split>/<class>/*``, ``<root>/<class>/*`` or a flat folder of unlabelled images).

:func:`layout` reads a tree through two small listings, :class:`FsTree` (a real folder) and :class:`TarTree`
(an archive's member names, used by :mod:`nda.data.image_tar`), so a folder and its tarball load the same.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nda.data.cache import DigestMemo, ResumableArray, short_hash
from nda.data.image_cache import CACHE_VERSION, Plan, RamArray, cached, entry_base
from nda.data.image_decode import IMAGE_EXTENSIONS, Decoder, is_image_name, open_image, probe, vote_channels, vote_size
from nda.data.image_store import ImageData

__all__ = ["load_digits", "folder_entry", "layout", "FsTree", "TarTree"]

_DIGITS_SPLIT_SEED = 1234
_DIGITS_TEST_FRACTION = 0.2


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


def load_digits(split: str, image_size: int, channels: int) -> ImageData:
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
class FsTree:
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


class TarTree:
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


def layout(tree: FsTree | TarTree, split: str, shown: str) -> tuple[str, list[str], list[str], np.ndarray]:
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


# ---------------------------------------------------------------------------------------------- folder
def folder_entry(folder: Path, split: str, image_size: int | None, channels: int | None, cache: Path
                  ) -> Path | ImageData:
    split_dir, classes, files, labels = layout(FsTree(folder), split, str(folder))
    digests = DigestMemo(cache, folder, split_dir).digests(files, desc=f"hashing {folder.name}/{split}")
    h = _content_digest(files, digests)
    key = short_hash(CACHE_VERSION, "folder", h, split_dir, split, image_size, channels)
    name = f"{folder.name}/{split}"

    def plan() -> Plan:
        where = lambda rel: str(folder / rel)  # noqa: E731
        with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 2)) as pool:
            probes = list(pool.map(lambda rel: probe(folder / rel, where(rel)), files))
        c = vote_channels([p[0] for p in probes], channels, name)
        size = vote_size([p[1] for p in probes], image_size, name)
        dec = Decoder(c, size, name)

        def produce(writer: ResumableArray | RamArray) -> None:
            dec.fill(writer, len(files), f"decoding {name}",
                     lambda a, b: dec.decode(files[a:b], lambda rel: open_image(folder / rel, where(rel)), where))

        return Plan(len(files), (dec.c, size[1], size[0]), labels, classes, name, produce)

    return cached(entry_base(cache, folder.name, split, key), key, plan)


def _content_digest(files: Sequence[str], digests: np.ndarray) -> str:
    """One digest over ``(relative path, content digest)`` of every file (order matters: it is row order)."""
    h = hashlib.blake2b(digest_size=16)
    for rel, d in zip(files, digests):
        h.update(rel.encode("utf-8", "surrogateescape"))
        h.update(b"\x00")
        h.update(d.tobytes())
    return h.hexdigest()
