"""``nda`` command line: look at negatives before training with them.

    python -m nda list
    python -m nda preview --nda jigsaw stitch cutout --out grid.png          # bundled photos, offline
    python -m nda preview --images DIR --nda jigsaw --nda "cutout>rotate" --n 8 --size 64 --out grid.png
    python -m nda preview --texts reviews.tsv --labels-column --label-map sentiment --nda counterfactual
    python -m nda preview --cad-pairs ../shared/data/text/cad/sentiment/combined/paired --n 5   # auto vs human

Why: a negative that is too easy (a flat black square) or not negative at all (a 2 px shift) silently
ruins an NDA run; one glance at a grid of real images and their negatives catches both.
The image grid has the originals in the first row and one row per ``--nda`` spec (any ``nda.build``
spec: ``"jigsaw:grid=3"``, ``"jigsaw|stitch"``, ``"cutout>rotate"``). ``--cad-pairs`` reads the paired files of
Counterfactually-Augmented Data (Kaushik et al., 2020: ``Sentiment<TAB>Text<TAB>batch_id``, the original review
first in each batch, then its human counterfactual) and shows, per review, the automatic counterfactual's edits
next to the human ones.

``--out`` is checked before any work: an existing folder, a missing parent folder, a parent that cannot be
written or an extension that does not match the output (images: .png/.jpg/...; texts: .md/.markdown/.txt) is
a clear error (exit status 2), never a traceback after the negatives ran.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import nda
import nda.data.images as _data_images
from nda.base import apply_text

__all__ = ["main", "build_parser", "load_image_folder", "sample_photo_crops", "image_grid"]

IMAGE_EXTENSIONS = frozenset(_data_images.IMAGE_EXTENSIONS)
"""Image file types read by ``--images`` and written by ``--out`` (one list, :mod:`nda.data.images`'s)."""
TEXT_OUT_EXTENSIONS = frozenset({".md", ".markdown", ".txt"})


class CLIError(Exception):
    """A user error: printed as ``nda: error: ...`` with exit status 2, no traceback."""


# ------------------------------------------------------------------------------------------- images
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


def _preview_images(args: argparse.Namespace) -> int:
    out = _check_out(args.out or "nda_preview.png", IMAGE_EXTENSIONS, "an image grid")
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
        negative = _build(spec, "image")
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


# ------------------------------------------------------------------------------------------- text
def _read_texts(path: str, labels_column: bool, n: int | None) -> tuple[list[str], list[Any] | None]:
    texts: list[str] = []
    labels: list[Any] = []
    for number, line in enumerate(_read_utf8(path, "--texts").splitlines(), start=1):
        if not line.strip():
            continue
        if labels_column:
            label, tab, text = line.partition("\t")
            if not tab:
                raise CLIError(f"--texts {path}:{number}: --labels-column expects 'label<TAB>text' lines, got {line[:60]!r}")
            label = label.strip()
            labels.append(int(label) if label.lstrip("-").isdigit() else label)
            texts.append(text.strip())
        else:
            texts.append(line.strip())
        if n is not None and len(texts) >= n:
            break
    if not texts:
        raise CLIError(f"--texts: {path!r} has no non-empty lines")
    return texts, (labels if labels_column else None)


def _read_utf8(path: str, flag: str) -> str:
    """The text of ``path``, or a :class:`CLIError` saying what is wrong with it (missing, a folder, not UTF-8)."""
    file = Path(path)
    if not file.exists():
        raise CLIError(f"{flag}: file {path!r} does not exist")
    if not file.is_file():
        raise CLIError(f"{flag}: {path!r} is not a file")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = file.read_bytes()[: err.start].count(b"\n") + 1
        raise CLIError(
            f"{flag}: {path!r} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}, line {line}); "
            f"convert it first, e.g. iconv -f latin1 -t utf-8 {path} > {file.stem}.utf8{file.suffix}"
        ) from None
    except OSError as err:
        raise CLIError(f"{flag}: cannot read {path!r}: {err.strerror or err}") from None


def _check_out(path: str | os.PathLike, extensions: frozenset[str], what: str) -> Path:
    """``--out`` as a path that can be written, checked before any work is done."""
    out = Path(path)
    if out.is_dir():
        example = out / ("preview.png" if ".png" in extensions else "preview.md")
        raise CLIError(f"--out {str(out)!r} is a folder; give a file name, e.g. {str(example)!r}")
    if out.suffix.lower() not in extensions:
        raise CLIError(f"--out {str(out)!r}: {what} is written as {', '.join(sorted(extensions))}; got {out.suffix or 'no extension'!r}")
    parent = out.parent
    if not parent.exists():
        raise CLIError(f"--out {str(out)!r}: folder {str(parent)!r} does not exist; create it first (mkdir -p {parent})")
    if not parent.is_dir():
        raise CLIError(f"--out {str(out)!r}: {str(parent)!r} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise CLIError(f"--out {str(out)!r}: no permission to write there")
    return out


def _write_text(out: Path, report: str) -> None:
    try:
        out.write_text(report + "\n", encoding="utf-8")
    except OSError as err:
        raise CLIError(f"--out {str(out)!r}: cannot write: {err.strerror or err}") from err
    print(f"wrote {out}")


def _cell(value: Any, width: int) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _preview_texts(args: argparse.Namespace) -> int:
    texts, labels = _read_texts(args.texts, args.labels_column, args.n)  # the input first: the more basic error
    out = _check_out(args.out, TEXT_OUT_EXTENSIONS, "a text preview") if args.out else None
    specs = args.nda or nda.available("text")
    lines: list[str] = []
    for spec in specs:
        negative = _build(spec, "text")
        generator = torch.Generator().manual_seed(args.seed)
        flips = bool(getattr(negative, "flips_labels", False))
        try:
            result = apply_text(negative, texts, generator=generator, labels=labels, label_map=args.label_map)
        except ValueError as err:
            raise CLIError(f"--nda {spec!r} failed: {err}") from err
        new_labels = result.labels if flips and labels is not None else None
        flipped = result.flipped if flips else None
        header = ["#", "original", "negative"]
        if labels is not None:
            header.append("label")
        if new_labels is not None:
            header.append("new label")
        if flipped is not None:
            header.append("flipped")
        lines += [f"### {spec}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for i, (orig, neg) in enumerate(zip(texts, list(result))):
            row = [str(i), _cell(orig, args.max_chars), _cell(neg, args.max_chars)]
            if labels is not None:
                row.append(_cell(labels[i], 20))
            if new_labels is not None:
                row.append(_cell(new_labels[i].item() if isinstance(new_labels, torch.Tensor) else new_labels[i], 20))
            if flipped is not None:
                row.append("yes" if flipped[i] else "no")
            lines.append("| " + " | ".join(row) + " |")
        if flipped is not None:
            lines.append(f"\nflipped {sum(map(bool, flipped))}/{len(texts)}")
        if not all(result.valid):
            lines.append(f"\nusable as negatives (changed{', flipped' if flips else ''}) {sum(result.valid)}/{len(texts)}")
        lines.append("")
    report = "\n".join(lines)
    print(report)
    if out is not None:
        _write_text(out, report)
    return 0


# ------------------------------------------------------------------------------------------- CAD pairs
def _cad_file(path: str) -> Path:
    """A CAD paired TSV: the file itself, or in a folder its ``dev_paired.tsv`` (else the first ``*_paired.tsv``)."""
    p = Path(path)
    if not p.exists():
        raise CLIError(f"--cad-pairs: {path!r} does not exist")
    if p.is_file():
        return p
    found = sorted(p.glob("*_paired.tsv"))
    if not found:
        raise CLIError(f"--cad-pairs: no *_paired.tsv file in folder {path!r} (CAD: sentiment/combined/paired)")
    return next((f for f in found if f.name == "dev_paired.tsv"), found[0])


def read_cad_pairs(path: str) -> list[tuple[str, str, str, str]]:
    """``(batch_id, label, original, human counterfactual)`` from a CAD paired TSV (``Sentiment``, ``Text``,
    ``batch_id`` columns; the original first in each batch). Batches without exactly two rows are skipped."""
    file = _cad_file(path)
    text = _read_utf8(str(file), "--cad-pairs")
    csv.field_size_limit(sys.maxsize)
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
    missing = {"Sentiment", "Text", "batch_id"} - set(rows[0] if rows else {})
    if missing:
        raise CLIError(f"--cad-pairs {str(file)!r}: expected the columns Sentiment, Text, batch_id; missing {sorted(missing)}")
    groups: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault(row["batch_id"], []).append(row)
    pairs = [(b, g[0]["Sentiment"], g[0]["Text"], g[1]["Text"]) for b, g in groups.items() if len(g) == 2]
    if not pairs:
        raise CLIError(f"--cad-pairs {str(file)!r}: no batch with exactly two rows (original, counterfactual)")
    return pairs


def word_edits(before: str, after: str, context: int = 3) -> tuple[str, int, set[int]]:
    """A compact word diff: ``"… how {bad -> good} this movie …"``, the number of changed words, and the
    positions of the changed words of ``before`` (to compare two edits of the same text)."""
    from nda.text._words import split_words

    a, b = split_words(before)[1::2], split_words(after)[1::2]
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    shown: set[int] = set()
    changed, positions = 0, set()
    for tag, i1, i2, j1, j2 in ops:
        if tag != "equal":
            changed += max(i2 - i1, j2 - j1)
            positions.update(range(i1, max(i2, i1 + 1)))
            shown.update(range(i1 - context, i2 + context))
    parts: list[str] = []
    gap = False
    for tag, i1, i2, j1, j2 in ops:
        if tag != "equal":
            parts += ["…"] if gap else []
            parts.append("{" + " ".join(a[i1:i2]) + " -> " + " ".join(b[j1:j2]) + "}")
            gap = False
            continue
        for i in range(i1, i2):
            if i in shown:
                parts += ["…"] if gap else []
                parts.append(a[i])
                gap = False
            else:
                gap = True
    if gap and parts:
        parts.append("…")
    return (" ".join(parts) if parts else "(no edit)"), changed, positions


def _preview_cad(args: argparse.Namespace) -> int:
    out = _check_out(args.out, TEXT_OUT_EXTENSIONS, "a text preview") if args.out else None
    specs = args.nda or ["counterfactual"]
    negatives = [(spec, _build(spec, "text")) for spec in specs]
    pairs = read_cad_pairs(args.cad_pairs)
    if len(pairs) > args.n:
        pairs = sorted(random.Random(args.seed).sample(pairs, args.n), key=lambda p: pairs.index(p))
    originals, labels = [p[2] for p in pairs], [p[1] for p in pairs]
    results = []
    for spec, negative in negatives:
        try:
            results.append(apply_text(negative, originals, generator=torch.Generator().manual_seed(args.seed),
                                      labels=labels, label_map=args.label_map))
        except ValueError as err:
            raise CLIError(f"--nda {spec!r} failed: {err}") from err
    lines = [f"# {len(pairs)} CAD reviews: human counterfactual vs automatic ({', '.join(specs)})", "",
             "Edits as `{original words -> new words}` with 3 words of context.", ""]
    stats = {spec: [0, 0, 0, 0] for spec in specs}  # flipped, words changed, shared positions, human positions
    human_words = 0
    for i, (batch_id, label, original, human) in enumerate(pairs):
        h_diff, h_n, h_pos = word_edits(original, human)
        human_words += h_n
        lines += [f"## {i + 1}. batch {batch_id} ({label})", "", f"**original**: {original}", "",
                  f"- **human** ({h_n} words): {h_diff}"]
        for (spec, negative), res in zip(negatives, results):
            flips = bool(getattr(negative, "flips_labels", False))
            if res.valid[i]:
                a_diff, a_n, a_pos = word_edits(original, res[i])
                new_label = f" -> {res.labels[i]}" if flips and res.labels is not None else ""
                lines.append(f"- **{spec}** ({a_n} words{new_label}): {a_diff}")
                st = stats[spec]
                st[0] += bool(res.flipped[i]) if flips else 1
                st[1] += a_n
                st[2] += len(a_pos & h_pos)
                st[3] += len(h_pos)
            else:
                lines.append(f"- **{spec}**: no counterfactual (no rule applies; not flipped)")
        lines.append("")
    lines += ["| edits | flipped | words changed (mean) | human-edited words also edited |", "|---|---:|---:|---:|",
              f"| human (CAD) | {len(pairs)}/{len(pairs)} | {human_words / len(pairs):.1f} | 100% |"]
    for spec, st in stats.items():
        share = f"{st[2] / st[3]:.0%}" if st[3] else "-"
        lines.append(f"| {spec} | {st[0]}/{len(pairs)} | {st[1] / max(st[0], 1):.1f} | {share} |")
    report = "\n".join(lines)
    print(report)
    if out is not None:
        _write_text(out, report)
    return 0


# ------------------------------------------------------------------------------------------- shared
def _build(spec: str, modality: str) -> Any:
    try:
        negative = nda.build(spec)
    except (ValueError, TypeError) as err:
        raise CLIError(f"--nda {spec!r}: {err}") from err
    except ImportError as err:
        raise CLIError(f"--nda {spec!r}: its module could not be imported: {err}") from err
    if negative is None:
        raise CLIError(f"--nda {spec!r} builds no negative")
    found = getattr(negative, "modality", "")
    if found and found != modality:
        other = "--images" if found == "image" else "--texts FILE"
        raise CLIError(f"--nda {spec!r} is a {found} negative; preview it with {other}")
    return negative


def _list(args: argparse.Namespace) -> int:
    rows = []
    for name in nda.available():
        try:
            target = nda.get(name)
            modality = getattr(target, "modality", "") or "?"
            pairwise = "yes" if getattr(target, "pairwise", False) else "no"
            where = f"{target.__module__}:{target.__qualname__}"
        except Exception as err:  # a module another engineer has not written yet, a missing extra, ...
            modality, pairwise, where = "unavailable", "?", f"{type(err).__name__}: {err}"
        if args.modality and modality != args.modality:
            continue
        rows.append((name, modality, pairwise, where))
    width = max([len(r[0]) for r in rows] + [4])
    print(f"{'name':<{width}}  {'modality':<11}  pairwise  class")
    for name, modality, pairwise, where in rows:
        print(f"{name:<{width}}  {modality:<11}  {pairwise:<8}  {where}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nda", description="Negative data augmentation: list and preview negatives.")
    sub = parser.add_subparsers(dest="command", required=True)

    listing = sub.add_parser("list", help="list the registered negatives with their modality")
    listing.add_argument("--modality", choices=["image", "text"], help="only this modality")
    listing.set_defaults(func=_list)

    preview = sub.add_parser(
        "preview",
        help="grid of images and their negatives (PNG), or a table of texts and their negatives",
        description="Without --images or --texts: random crops of scikit-learn's two bundled photos (offline).",
    )
    source = preview.add_mutually_exclusive_group()
    source.add_argument("--images", metavar="DIR", help="folder of images, searched recursively")
    source.add_argument("--texts", metavar="FILE", help="text file, one text per line (or label<TAB>text lines)")
    source.add_argument(
        "--cad-pairs", metavar="PATH",
        help="CAD paired TSV (or its folder, e.g. cad/sentiment/combined/paired): show the automatic counterfactual "
        "of --n reviews next to the human one (default --nda counterfactual)",
    )
    preview.add_argument(
        "--nda", nargs="+", action="extend", metavar="SPEC",
        help="negative specs (nda.build syntax), repeatable: --nda jigsaw stitch --nda 'cutout>rotate'; "
        "default: every registered negative of the modality",
    )
    preview.add_argument("--n", type=_positive_int, default=8, help="number of images / text lines (default 8)")
    preview.add_argument("--size", type=_positive_int, default=64, help="image side in pixels after resizing (default 64)")
    preview.add_argument("--seed", type=int, default=0, help="seed of the image pick and of the negatives (default 0)")
    preview.add_argument("--out", help="output image (images: .png/.jpg/...; default nda_preview.png) or markdown file (texts: .md/.txt; optional); "
        "its folder must exist")
    preview.add_argument("--device", default="cpu", help="device to run image negatives on (default cpu)")
    preview.add_argument("--no-labels", action="store_true", help="no row-label margin in the image grid")
    preview.add_argument("--labels-column", action="store_true", help="text lines are 'label<TAB>text'")
    preview.add_argument(
        "--label-map", default="sentiment",
        help="label map for label-flipping negatives: sentiment, nli, nli_symmetric (default sentiment)",
    )
    preview.add_argument("--max-chars", type=_positive_int, default=70, help="truncate table cells (default 70)")
    preview.set_defaults(func=lambda a: _preview_cad(a) if a.cad_pairs else _preview_texts(a) if a.texts else _preview_images(a))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nda`` console script; returns the exit status (0 ok, 2 user error)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CLIError as err:
        print(f"nda: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
