"""What the ``nda`` subcommands share: the user-error type, reading input files, checking and writing ``--out``,
building ``--nda`` specs. One place, so every subcommand words the same mistake the same way."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nda
import nda.data.images as _data_images

IMAGE_EXTENSIONS = frozenset(_data_images.IMAGE_EXTENSIONS)
"""Image file types read by ``--images`` and written by ``--out`` (one list, :mod:`nda.data.images`'s)."""
TEXT_OUT_EXTENSIONS = frozenset({".md", ".markdown", ".txt"})


class CLIError(Exception):
    """A user error: printed as ``nda: error: ...`` with exit status 2, no traceback."""


def read_utf8(path: str, flag: str) -> str:
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


def check_out(path: str | os.PathLike, extensions: frozenset[str], what: str) -> Path:
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


def write_text(out: Path, report: str) -> None:
    try:
        out.write_text(report + "\n", encoding="utf-8")
    except OSError as err:
        raise CLIError(f"--out {str(out)!r}: cannot write: {err.strerror or err}") from err
    print(f"wrote {out}")


def cell(value: Any, width: int) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def build_negative(spec: str, modality: str) -> Any:
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
