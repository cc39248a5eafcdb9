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

Layout: this module is the parser; :mod:`nda.cli.preview_images` and :mod:`nda.cli.preview_text` do the
previews, :mod:`nda.cli.common` holds what they share (errors, ``--out`` checks, ``--nda`` specs).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import nda
from nda.cli.common import CLIError
from nda.cli.preview_images import (
    image_grid,
    load_image_folder,
    preview_grid,
    sample_photo_crops,
)
from nda.cli.preview_text import preview_cad, preview_texts

__all__ = ["CLIError", "build_parser", "image_grid", "load_image_folder", "main", "sample_photo_crops"]


# ------------------------------------------------------------------------------------------- commands
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
    preview.set_defaults(func=lambda a: preview_cad(a) if a.cad_pairs else preview_texts(a) if a.texts else preview_grid(a))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nda`` console script; returns the exit status (0 ok, 2 user error)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CLIError as err:
        print(f"nda: error: {err}", file=sys.stderr)
        return 2
