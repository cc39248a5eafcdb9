"""Hugging Face image datasets (``"hf:<name>"`` or a ``datasets.Dataset``): columns auto-detected, keyed on
the dataset's content fingerprint, with the last complete cache as the offline fallback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from nda.data.cache import ResumableArray, atomic_write_text, short_hash
from nda.data.image_cache import CACHE_VERSION, Plan, RamArray, cached, check_entry, entry_base
from nda.data.image_decode import Decoder, image_channels, open_image, probe, vote_channels, vote_size
from nda.data.image_store import ImageData

__all__ = ["is_hf_dataset", "hf_entry"]

log = logging.getLogger("nda.data")


def is_hf_dataset(obj: Any) -> bool:
    return hasattr(obj, "features") and hasattr(obj, "_fingerprint") and hasattr(obj, "column_names")


def hf_entry(ds: Any, name: str | None, split: str, image_size: int | None, channels: int | None, cache: Path
              ) -> Path | ImageData:
    if ds is None and not name:
        raise ValueError("a Hugging Face source needs a dataset name: 'hf:<name>'")
    params = short_hash("hf", name, split, image_size, channels)
    pointer = cache / "arrays" / f"hf-{(name or 'dataset').replace('/', '_')}-{split}-{params}.latest"
    if ds is None:
        try:
            import datasets
        except ImportError as err:
            raise ImportError(f"loading the Hugging Face dataset {name!r} needs the 'datasets' package") from err
        try:
            ds = datasets.load_dataset(name, split=split)
        except Exception as err:  # noqa: BLE001 - offline, unknown name, ...: fall back to the last decoded cache
            base = cache / "arrays" / pointer.read_text().strip() if pointer.is_file() else None
            if base is not None and check_entry(base) is None:
                log.warning("could not load %r (%s); using its last decoded cache %s", name, err, base)
                return base
            raise ValueError(
                f"could not load {name!r} (split {split!r}) as a Hugging Face dataset, and it is not an existing path: {err}"
            ) from err
    label = name or getattr(getattr(ds, "info", None), "dataset_name", None) or "dataset"
    key = short_hash(CACHE_VERSION, "hf", ds._fingerprint, split, image_size, channels)
    shown = f"hf:{label}/{split}"
    image_col, label_col, classes = _detect_columns(ds)

    def plan() -> Plan:
        n = len(ds)
        if n == 0:
            raise ValueError(f"the dataset {shown} has no rows")
        first = _hf_image(ds[0][image_col], f"{shown}[0]")
        probes = _hf_probes(ds, image_col, shown, first)
        c = vote_channels([p[0] for p in probes], channels, shown)
        size = vote_size([p[1] for p in probes], image_size, shown)
        dec = Decoder(c, size, shown)
        labels = _hf_column(ds, label_col) if label_col else np.full(n, -1, np.int64)

        def rows(a: int, b: int) -> np.ndarray:
            column = ds[a:b][image_col]
            return dec.decode(list(range(a, b)), lambda i: _hf_image(column[i - a], f"{shown}[{i}]"),
                              lambda i: f"{shown}[{i}]")

        def produce(writer: ResumableArray | RamArray) -> None:
            dec.fill(writer, n, f"decoding {shown}", rows)

        return Plan(n, (dec.c, size[1], size[0]), labels, classes, shown, produce)

    base = cached(entry_base(cache, f"hf-{label.replace('/', '_')}", split, key), key, plan)
    if isinstance(base, ImageData):
        return base
    try:
        atomic_write_text(pointer, base.name)
    except OSError:
        pass
    return base


def _hf_probes(ds: Any, image_col: str, shown: str, first: Any) -> list[tuple[int, tuple[int, int]]]:
    """Each row's own ``(channels, size)``, read from the encoded image headers (``Image(decode=False)``: no
    pixel decode); a column of arrays (no encoded headers) is represented by its first row."""
    feature = ds.features[image_col]
    if type(feature).__name__ != "Image":
        size = getattr(first, "size", None) or np.asarray(first).shape[1::-1]
        return [(image_channels(first), tuple(size))]
    cells = ds.select_columns([image_col]).cast_column(image_col, type(feature)(decode=False))
    probes: list[tuple[int, tuple[int, int]]] = []
    for a in range(0, len(cells), 4096):
        for i, cell in enumerate(cells[a:a + 4096][image_col], start=a):
            src = cell.get("bytes") or (Path(cell["path"]) if cell.get("path") else None)
            if src is None:
                raise ValueError(f"image cell {shown}[{i}] has neither bytes nor a path")
            probes.append(probe(src, f"{shown}[{i}]"))
    return probes


def _hf_image(value: Any, where: str) -> Any:
    """A PIL image (or array) from an HF image cell: a decoded image, an array, or ``{"bytes", "path"}``."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return open_image(value["bytes"], where)
        if value.get("path"):
            return open_image(Path(value["path"]), where)
        raise ValueError(f"image cell {where} has neither bytes nor a path")
    if value is None:
        raise ValueError(f"image cell {where} is empty")
    return value


def _hf_column(ds: Any, column: str) -> np.ndarray:
    """One integer column as an int64 array, through Arrow (no per-row Python objects; honours ``select``)."""
    if len(ds) == 0:
        return np.zeros(0, np.int64)
    return np.asarray(ds.select_columns([column]).with_format("numpy")[0:len(ds)][column], np.int64)


def _detect_columns(ds: Any) -> tuple[str, str | None, list[str]]:
    """The image column (an ``Image`` feature, else 'img'/'image'), the label column (a ``ClassLabel``,
    else 'label'/'labels') and class names."""
    features = ds.features
    image_col = next((k for k, f in features.items() if type(f).__name__ == "Image"), None)
    if image_col is None:
        image_col = next((k for k in ("img", "image", "images", "pixel_values") if k in features), None)
    if image_col is None:
        raise ValueError(f"no image column found in the dataset (columns: {list(features)})")
    label_col = next((k for k, f in features.items() if type(f).__name__ == "ClassLabel"), None)
    if label_col is None:
        label_col = next((k for k in ("label", "labels", "fine_label", "coarse_label") if k in features), None)
    classes: list[str] = []
    if label_col is not None and type(features[label_col]).__name__ == "ClassLabel":
        classes = list(features[label_col].names)
    elif label_col is not None:
        values = _hf_column(ds, label_col)
        classes = [str(i) for i in range(int(values.max()) + 1)] if len(values) else []
    return image_col, label_col, classes
