"""Decoding image files to uint8 pixels: what a source hands over (a path, bytes, a PIL image or an array)
becomes ``(n, C, H, W)`` rows.

Pixels are loaded as they are (:func:`to_8bit`): 16-bit levels (``I;16``, ``I``) rescaled by 255/65535,
float (``F``) in [0, 1] scaled by 255 or in [0, 255] rounded, alpha composited over black, palette /
``CMYK`` / ``1`` converted to RGB / gray. The channel count is ``channels=`` or else the majority of the
files' own (a tie is 3), the size ``image_size=`` or else the most common one (others resized, logged);
both read from the headers, for Hugging Face ``Image`` columns too. Each converted file is counted in one
log warning per build.
Sources (:mod:`nda.data.image_sources`, :mod:`nda.data.image_tar`, :mod:`nda.data.image_hf`) list and
probe; this module decodes, in chunks of :data:`CHUNK_BYTES` on a thread pool.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "CHUNK_BYTES", "is_image_name", "image_channels", "to_8bit", "open_image", "probe",
           "vote_channels", "vote_size", "Decoder"]

log = logging.getLogger("nda.data")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
CHUNK_BYTES = 64 << 20
"""Decoded pixels per decode/write chunk: the build's memory bound and its resume granularity."""


def is_image_name(name: str) -> bool:
    """An image file name (by extension) that is not hidden (macOS ``._x.jpg`` resource files are not images)."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


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


def open_image(src: Path | bytes, where: str) -> Any:
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


def probe(src: Path | bytes, where: str) -> tuple[int, tuple[int, int]]:
    """``(channels, (width, height))`` of one image from its header (no pixel decode)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            return image_channels(im), tuple(im.size)
    except Exception as err:  # noqa: BLE001 - as open_image
        raise ValueError(f"cannot decode image {where}: its header is unreadable ({err}). Fix or remove the file and "
                         f"load again") from err


def vote_channels(votes: Sequence[int], channels: int | None, name: str) -> int:
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


def vote_size(sizes: Sequence[tuple[int, int]], image_size: int | None, name: str) -> tuple[int, int]:
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


class Decoder:
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

    def fill(self, writer: Any, n: int, desc: str, chunk: Callable[[int, int], np.ndarray]) -> None:
        """Rows ``writer.done .. n`` of a build, ``chunk(a, b)`` (decoded rows ``a:b``) at a time, each chunk
        written and committed (the resume point), then :meth:`close`: the one loop of every indexable source."""
        with self.bar(n, writer.done, desc) as bar:
            for a in range(writer.done, n, self.chunk):
                b = min(n, a + self.chunk)
                writer.write(np.arange(a, b), chunk(a, b))
                writer.commit(b)
                bar.update(b - a)
        self.close()

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
