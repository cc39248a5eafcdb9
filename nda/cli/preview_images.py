"""``nda preview`` of images: a grid with the originals in the first row and one row per ``--nda`` spec.

Real images (a folder, or crops of scikit-learn's two bundled photos, offline) so a glance shows a negative
that is too easy (a flat black square) or not negative at all (a 2 px shift)."""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import nda
import nda.data.images as _data_images
from nda.cli.common import IMAGE_EXTENSIONS, CLIError, build_negative, check_out

__all__ = ["image_grid", "load_image_folder", "preview_grid", "sample_photo_crops"]


def _square_resize(image: Any, size: int) -> torch.Tensor:
    """Centre-crop a PIL image to a square, resize to ``size``, return a ``(3, size, size)`` uint8 tensor."""
    from PIL import Image

    image = image.convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.view(size, size, 3).permute(2, 0, 1).contiguous()


def load_image_folder(directory: str | Path, n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Up to ``n`` images found recursively under ``directory`` (seeded pick when there are more), centre-cropped
    and resized to ``size`` x ``size``: a ``(n, 3, size, size)`` uint8 batch.

    Files are read as :mod:`nda.data.images` reads them (one home for pixel formats): 16-bit and float images
    rescaled to 8 bits, alpha composited over black, gray copied to RGB; each converted file is counted in a
    note on stderr. Hidden files (``._x.jpg``) are skipped; an unreadable image is skipped with a warning."""
    from PIL import Image, UnidentifiedImageError

    root = Path(directory)
    if not root.exists():
        raise CLIError(f"--images: directory {str(root)!r} does not exist")
    if not root.is_dir():
        raise CLIError(f"--images: {str(root)!r} is not a directory")
    files = sorted(p for p in root.rglob("*") if p.is_file() and _data_images.is_image_name(p.name))
    if not files:
        raise CLIError(
            f"--images: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) found under {str(root)!r} (searched recursively)"
        )
    if len(files) > n:
        files = sorted(random.Random(seed).sample(files, n))
    out = []
    converted: dict[str, int] = {}
    for path in files:
        try:
            with Image.open(path) as image:
                image.load()
                rgb, note = _data_images.to_8bit(image, 3, str(path))
                out.append(_square_resize(rgb, size))
        except (UnidentifiedImageError, OSError, ValueError) as err:
            print(f"nda: warning: skipping unreadable image {path}: {err}", file=sys.stderr)
            continue
        if note is not None:
            converted[note] = converted.get(note, 0) + 1
    if converted:
        print(f"nda: note: converted {sum(converted.values())} of {len(out)} images to 8-bit RGB: "
              + "; ".join(f"{count} {note}" for note, count in sorted(converted.items())), file=sys.stderr)
    if not out:
        raise CLIError(f"--images: none of the {len(files)} image files under {str(root)!r} could be read")
    return torch.stack(out)


def sample_photo_crops(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` random square crops of scikit-learn's two bundled photos (``load_sample_images``), resized to
    ``size``: real images that are on every machine with scikit-learn, offline."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two (427, 640, 3) uint8 arrays
    rng = random.Random(seed)
    crops = []
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = rng.randint(min(h, w) // 3, min(h, w))
        top, left = rng.randint(0, h - side), rng.randint(0, w - side)
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        crops.append(_square_resize(crop, size))
    return torch.stack(crops)


def image_grid(rows: Sequence[torch.Tensor], labels: Sequence[str] | None = None, padding: int = 2) -> Any:
    """A PIL image: one row per ``(n, 3, S, S)`` uint8 batch, ``padding`` px white gaps, optional row labels
    in a left margin."""
    from PIL import Image, ImageDraw, ImageFont
    from torchvision.utils import make_grid

    n = rows[0].shape[0]
    batch = torch.cat([r.cpu() for r in rows]).float().div(255)
    grid = make_grid(batch, nrow=n, padding=padding, pad_value=1.0)
    array = grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    picture = Image.fromarray(array)
    if not labels:
        return picture
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(picture)
    margin = max(int(draw.textlength(text, font=font)) for text in labels) + 2 * padding + 6
    canvas = Image.new("RGB", (picture.width + margin, picture.height), "white")
    canvas.paste(picture, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    size = rows[0].shape[-1]
    for r, text in enumerate(labels):
        draw.text((padding + 2, padding + r * (size + padding) + size // 2 - 5), text, fill="black", font=font)
    return canvas


def preview_grid(args: argparse.Namespace) -> int:
    out = check_out(args.out or "nda_preview.png", IMAGE_EXTENSIONS, "an image grid")
    specs = args.nda or nda.available("image")
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise CLIError(f"--device {args.device!r}: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda: CUDA is not available on this machine")
    if args.images:
        x = load_image_folder(args.images, args.n, args.size, args.seed)
        source = args.images
    else:
        x = sample_photo_crops(args.n, args.size, args.seed)
        source = "scikit-learn sample photos (random crops)"
    if x.shape[0] < args.n:
        print(f"nda: note: only {x.shape[0]} images found, showing {x.shape[0]} columns", file=sys.stderr)
    rows = [x]
    for spec in specs:
        negative = build_negative(spec, "image")
        generator = torch.Generator(device=device).manual_seed(args.seed)
        try:
            rows.append(negative(x.to(device), generator=generator).cpu())
        except ValueError as err:
            raise CLIError(f"--nda {spec!r} failed on {x.shape[0]} images of {args.size}x{args.size}: {err}") from err
    picture = image_grid(rows, None if args.no_labels else ["original", *specs])
    try:
        picture.save(out)
    except OSError as err:
        raise CLIError(f"--out {str(out)!r}: cannot write the image: {err}") from err
    print(f"wrote {out} ({picture.width}x{picture.height} px): {len(rows)} rows x {x.shape[0]} images from {source}")
    for r, name in enumerate(["original", *specs]):
        print(f"  row {r}: {name}")
    return 0
