"""Text corpora larger than RAM: a file of one sentence (or one TSV pair) per line, or a Hugging Face dataset
column, indexed once and read on demand.

API the jobs use::

    corpus = load_sentences("wiki1m.txt")                  # or a datasets.Dataset + column="text"
    pairs = load_pairs("nli.tsv")                          # anchor<TAB>positive[<TAB>negative] per line
    idx = batch_indices(step, len(corpus), batch_size, seed, rank, world_size)   # nda.run
    texts = corpus[idx]                                    # list[str]; pairs[idx] -> list[tuple[str, ...]]
    len(corpus), corpus.width, corpus.name, corpus.stats

Why an index: the sentence job used to read the whole file into a Python list (~100 bytes of objects per
sentence on top of the text). Here one pass over the file writes ``<cache>/text/<name>-<key>.offsets.npy``, the
``(start, end)`` byte offsets (uint64) of the kept lines (16 bytes per sentence, memory-mapped), and
``corpus[i]`` slices those bytes back: from the file's bytes held in RAM when the file is at most
:data:`TEXT_IN_MEMORY_MAX_BYTES` (1 GiB; ``NDA_TEXT_IN_MEMORY_MAX_BYTES``; ``in_memory=`` overrides) -- one
``bytes`` object, no per-sentence Python objects -- or else with one ``pread`` per sentence, so resident
memory stays flat whatever the corpus size.

- Kept lines: a sentence is the line with surrounding whitespace stripped (``str.strip``); blank lines are
  dropped; lines end at ``\\n`` (a trailing ``\\r`` is dropped). Pairs keep their fields as written and need
  the same number (2 or 3) of tab-separated fields on every non-blank line.
- Deduplication (default on for sentences, off for pairs) keeps the first occurrence of each text and holds
  no strings: each kept line's 64-bit BLAKE2b hash goes into an array, a stable sort brings equal hashes
  together, and only lines whose hash repeats are read back and compared byte for byte. A collision between
  different texts therefore costs one comparison and never drops a line: dedup is exact. (The chance that
  any two of n distinct lines share a hash is about n^2 / 2^65: 3e-8 for a million lines.) Build memory is
  ~24 bytes per line (offsets and hashes), never the text.
- The index is a pure function of the file's bytes (and of the options), keyed on the file's content
  digest (:class:`nda.data.cache.DigestMemo`): ``batch_indices`` + the index give the same batches after a
  restart, on any machine, and a changed file gets a new index. A truncated or damaged index is rebuilt.
- A line that is not UTF-8 is a ``ValueError`` naming the file and the line number.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nda.data.cache import DigestMemo, check_npy
from nda.files import atomic_path, atomic_write_text, default_cache_dir, file_lock, short_hash

__all__ = ["TEXT_IN_MEMORY_MAX_BYTES", "TextCorpus", "load_pairs", "load_sentences", "text_in_memory_max_bytes"]

log = logging.getLogger("nda.data")
TEXT_IN_MEMORY_MAX_BYTES = 1 << 30
"""Text files up to this size are held in RAM as bytes (override: ``NDA_TEXT_IN_MEMORY_MAX_BYTES``)."""
_INDEX_VERSION = 1
_BLOCK = 16 << 20  # bytes read per block while indexing
_HF_BATCH = 10_000


def text_in_memory_max_bytes() -> int:
    """``NDA_TEXT_IN_MEMORY_MAX_BYTES`` or :data:`TEXT_IN_MEMORY_MAX_BYTES`."""
    raw = os.environ.get("NDA_TEXT_IN_MEMORY_MAX_BYTES")
    if raw is None:
        return TEXT_IN_MEMORY_MAX_BYTES
    if not raw.isdigit():
        raise ValueError(f"NDA_TEXT_IN_MEMORY_MAX_BYTES must be a non-negative integer (bytes), got {raw!r}")
    return int(raw)


# ---------------------------------------------------------------------------------------------- corpus
def sentence_text(line: str) -> str:
    """The sentence of one line of a sentence corpus: its first tab field, stripped (SentEval's
    ``text<TAB>label`` files) -- what training reads, and so what the overlap guard must check."""
    return line.split("\t", 1)[0].strip()


class TextCorpus:
    """Indexed rows of text: ``len(corpus)``; ``corpus[i] -> str`` (or a tuple for pairs);
    ``corpus[indices] -> list``. ``width`` is 1 for sentences, 2 or 3 for (anchor, positive[, negative])."""

    def __init__(self, source: Any, index: np.ndarray, width: int, name: str, stats: dict[str, int] | None = None
                 ) -> None:
        # a plain ndarray view of a memmap: np.memmap's own __getitem__ costs more than the gather
        index = index.view(np.ndarray) if isinstance(index, np.memmap) else index
        self._source, self._index, self.width, self.name = source, index, int(width), name
        self.stats = dict(stats or {})

    @classmethod
    def from_rows(cls, rows: Sequence[str | Sequence[str]], name: str = "rows") -> TextCorpus:
        """A small in-RAM corpus with the same interface (e.g. the sentences of an STS csv)."""
        rows = list(rows)
        if not rows:
            raise ValueError("rows must not be empty")
        widths = {1 if isinstance(r, str) else len(r) for r in rows}
        if len(widths) != 1 or not widths <= {1, 2, 3}:
            raise ValueError(f"rows must all be strings, or all tuples of 2 or 3 strings; got widths {sorted(widths)}")
        width = widths.pop()
        stored = [r if isinstance(r, str) else tuple(r) for r in rows]
        return cls(_ListSource(stored), np.arange(len(rows), dtype=np.uint64), width, name, {"kept": len(rows)})

    def __len__(self) -> int:
        return int(self._index.shape[0])

    def __repr__(self) -> str:
        kind = "sentences" if self.width == 1 else f"{self.width}-column pairs"
        return f"TextCorpus({self.name!r}, {len(self)} {kind})"

    def __getitem__(self, indices: Any) -> Any:
        if isinstance(indices, (int, np.integer)) and not isinstance(indices, bool):
            i = int(indices)
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} out of range for a corpus of {len(self)} rows")
            return self._fetch(np.array([i % len(self)]))[0]
        if isinstance(indices, slice):
            return self._fetch(np.arange(len(self))[indices])
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.dtype.kind not in "iu" and idx.size):
            raise TypeError(f"indices must be an int, a slice or a 1-D sequence of ints, got {idx.dtype} {idx.shape}")
        if idx.size and (idx.astype(np.uint64, copy=False) >= len(self)).any():  # negatives wrap to huge values
            raise IndexError(f"indices must lie in [0, {len(self)}), got values in [{idx.min()}, {idx.max()}]")
        return self._fetch(idx.astype(np.int64, copy=False))

    def _fetch(self, idx: np.ndarray) -> list:
        return self._source.read(self._index[idx], self.width)

    def select(self, keep: np.ndarray) -> TextCorpus:
        """The rows where the boolean mask ``keep`` (one entry per row) is true, still read from the same source
        (e.g. the rows the train/eval overlap guard lets through)."""
        keep = np.asarray(keep)
        if keep.dtype != np.bool_ or keep.shape != (len(self),):
            raise ValueError(f"keep must be a boolean mask of shape ({len(self)},), got {keep.dtype} {keep.shape}")
        return TextCorpus(self._source, self._index[keep], self.width, self.name, self.stats)

    def head(self, n: int) -> TextCorpus:
        """The first ``n`` rows (all if fewer), e.g. for ``--max-train-samples``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        return TextCorpus(self._source, self._index[:n], self.width, f"{self.name}[:{n}]" if n < len(self) else self.name,
                          self.stats)


class _ListSource:
    def __init__(self, rows: list) -> None:
        self.rows = rows

    def read(self, index: np.ndarray, width: int) -> list:
        return [self.rows[int(i)] for i in index]


class _FileSource:
    """Lines of a file read back by byte span: sliced from the file's bytes held in RAM (``in_memory``), or
    one ``pread`` each (no mapping: resident memory stays flat whatever the file size)."""

    def __init__(self, path: Path, in_memory: bool = False) -> None:
        self.path, self.in_memory = Path(path), in_memory
        self._fd = os.open(self.path, os.O_RDONLY)
        self._bytes = self.path.read_bytes() if in_memory else None

    def raw(self, spans: np.ndarray) -> list[bytes]:
        starts, ends = spans[:, 0].tolist(), spans[:, 1].tolist()
        if self._bytes is not None:
            data = self._bytes
            return [data[s:e] for s, e in zip(starts, ends)]
        return list(map(os.pread, repeat(self._fd, len(starts)), [e - s for s, e in zip(starts, ends)], starts))

    def read(self, spans: np.ndarray, width: int) -> list:
        spans = spans.reshape(-1, 2)
        if self._bytes is not None and width == 1:  # the hot path: one pass, no intermediate lists
            data = self._bytes
            return [data[s:e].decode("utf-8").strip() for s, e in zip(spans[:, 0].tolist(), spans[:, 1].tolist())]
        if width == 1:
            return [b.decode("utf-8").strip() for b in self.raw(spans)]
        return [tuple(b.decode("utf-8").split("\t")) for b in self.raw(spans)]

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "in_memory": self.in_memory}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["in_memory"])

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            os.close(self._fd)
        except Exception:  # noqa: BLE001
            pass


class _HFSource:
    """Rows of a Hugging Face dataset (Arrow, memory-mapped by ``datasets``), read by row number."""

    def __init__(self, ds: Any, columns: Sequence[str]) -> None:
        self.ds, self.columns = ds.select_columns(list(columns)), list(columns)

    def read(self, rows: np.ndarray, width: int) -> list:
        if len(rows) == 0:
            return []
        batch = self.ds[rows.astype(np.int64).tolist()]
        if width == 1:
            return [t.strip() for t in batch[self.columns[0]]]
        return list(zip(*[batch[c] for c in self.columns]))


# ----------------------------------------------------------------------------------------------- entry
def load_sentences(source: Any, *, column: str = "text", dedup: bool = True, limit: int | None = None,
                   cache_dir: str | os.PathLike | None = None, in_memory: bool | None = None) -> TextCorpus:
    """A sentence corpus: a text file (one sentence per line) or a ``datasets.Dataset`` and its ``column``.

    Blank lines are dropped, sentences are stripped, and with ``dedup`` only each text's first occurrence
    is kept. ``limit`` keeps the first ``limit`` sentences. ``in_memory``: hold the file's bytes in RAM
    (``None``: when the file is at most :data:`TEXT_IN_MEMORY_MAX_BYTES`). See the module docstring."""
    return _load(source, (column,), 1, dedup, limit, cache_dir, in_memory)


def load_pairs(source: Any, *, columns: Sequence[str] = ("anchor", "positive"), dedup: bool = False,
               limit: int | None = None, cache_dir: str | os.PathLike | None = None, in_memory: bool | None = None
               ) -> TextCorpus:
    """A pair corpus for supervised contrastive training: a TSV file of ``anchor<TAB>positive[<TAB>negative]``
    lines (every line the same width), or a ``datasets.Dataset`` and 2 or 3 ``columns``.
    ``corpus[i]`` is a tuple of 2 or 3 strings."""
    columns = list(columns)
    if len(columns) not in (2, 3):
        raise ValueError(f"columns must name 2 or 3 columns (anchor, positive[, negative]), got {columns}")
    return _load(source, columns, 0, dedup, limit, cache_dir, in_memory)


def _load(source: Any, columns: Sequence[str], width: int, dedup: bool, limit: int | None,
          cache_dir: str | os.PathLike | None, in_memory: bool | None) -> TextCorpus:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    if not isinstance(dedup, bool):
        raise TypeError(f"dedup must be a bool, got {type(dedup).__name__}")
    if in_memory not in (None, True, False):
        raise ValueError(f"in_memory must be True, False or None (by size), got {in_memory!r}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if hasattr(source, "column_names") and hasattr(source, "_fingerprint"):
        corpus = _load_hf(source, columns, width, dedup, cache)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"text corpus {str(source)!r} is not a file")
        if in_memory is None:
            in_memory = path.stat().st_size <= text_in_memory_max_bytes()
        corpus = _load_file(path, width, dedup, cache, in_memory)
    else:
        raise TypeError(f"source must be a text file path or a datasets.Dataset, got {type(source).__name__}")
    return corpus.head(limit) if limit is not None else corpus


# ------------------------------------------------------------------------------------------------ files
def _load_file(path: Path, width: int, dedup: bool, cache: Path, in_memory: bool) -> TextCorpus:
    digest = DigestMemo(cache, path.parent, f"text:{path.name}").digests([path.name], desc=f"hashing {path.name}")[0]
    key = short_hash(_INDEX_VERSION, "file", digest.tobytes().hex(), width, dedup)
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in path.name)[:60]
    base = cache / "text" / f"{stem}-{key}"
    meta_path, index_path = _beside(base, ".json"), _beside(base, ".offsets.npy")
    size = path.stat().st_size
    loaded = _open_index(meta_path, index_path, (None, 2), size)
    if loaded is None:
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
            with file_lock(_beside(base, ".lock")):
                loaded = _open_index(meta_path, index_path, (None, 2), size)
                if loaded is None:
                    spans, stats = _index_file(path, width, dedup)
                    _save_index(meta_path, index_path, spans, stats)
                    loaded = _open_index(meta_path, index_path, (None, 2), size)
        except PermissionError:  # a read-only cache: index into RAM (slower next time, not wrong)
            spans, stats = _index_file(path, width, dedup)
            loaded = spans, stats
        if loaded is None:
            raise RuntimeError(f"the text index {index_path} could not be read back after writing it")
    spans, stats = loaded
    return TextCorpus(_FileSource(path, in_memory), spans, stats["width"], path.name, stats)


def _beside(base: Path, suffix: str) -> Path:
    return base.with_name(base.name + suffix)  # names hold dots ("wiki1m.txt-<key>"): never with_suffix


def _open_index(meta_path: Path, index_path: Path, shape: tuple[int | None, ...], source_size: int | None
                ) -> tuple[np.ndarray, dict] | None:
    """The memory-mapped index and its stats, or ``None`` (missing, damaged: logged, rebuilt by the caller)."""
    if not meta_path.is_file():
        return None
    try:
        stats = json.loads(meta_path.read_text())
        full = (int(stats["kept"]), *shape[1:])
        check_npy(index_path, full, np.uint64)
        index = np.load(index_path, mmap_mode="r", allow_pickle=False)
        if source_size is not None and len(index) and int(index[-1, 1]) > source_size:
            raise ValueError("offsets past the end of the file")
        return index, stats
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("text index %s is not usable (%s): rebuilding it", index_path, err)
        meta_path.unlink(missing_ok=True)
        return None


def _save_index(meta_path: Path, index_path: Path, index: np.ndarray, stats: dict) -> None:
    meta_path.unlink(missing_ok=True)
    with atomic_path(index_path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, index)
    atomic_write_text(meta_path, json.dumps(stats))


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def _index_file(path: Path, width: int, dedup: bool) -> tuple[np.ndarray, dict]:
    """One pass: ``(start, end)`` of every kept line (uint64 ``(M, 2)``) and counts. ``width`` 0 = pairs of any
    one width (2 or 3, checked), 1 = sentences."""
    from tqdm.auto import tqdm

    starts_all: list[np.ndarray] = []
    ends_all: list[np.ndarray] = []
    hashes_all: list[np.ndarray] = []
    lines = blank = 0
    found_width = width if width == 1 else 0
    size = path.stat().st_size
    with open(path, "rb") as fh, tqdm(total=size, desc=f"indexing {path.name}", unit="B", unit_scale=True,
                                      leave=False, disable=size < (64 << 20)) as bar:
        offset, carry = 0, b""
        while True:
            block = fh.read(_BLOCK)
            data = carry + block
            if not block:
                if not data:
                    break
                cut = len(data)  # the last line has no newline
            else:
                last = data.rfind(b"\n")
                if last < 0:
                    carry = data
                    continue
                cut = last + 1
            body, carry = data[:cut], data[cut:]
            nl = np.flatnonzero(np.frombuffer(body, np.uint8) == 10)
            rel_starts = np.r_[0, nl + 1][: len(nl) + (0 if body.endswith(b"\n") else 1)]
            rel_ends = np.r_[nl, len(body)][: len(rel_starts)]
            keep_s, keep_e, keep_h = [], [], []
            for k, (s, e) in enumerate(zip(rel_starts.tolist(), rel_ends.tolist())):
                if e > s and body[e - 1] == 13:  # \r\n
                    e -= 1
                raw = body[s:e]
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise ValueError(f"{path}: line {lines + k + 1} is not valid UTF-8 ({err.reason} at byte "
                                     f"{err.start}); re-encode the file as UTF-8") from err
                stripped = text.strip()
                if not stripped:
                    blank += 1
                    continue
                if width != 1:
                    w = text.count("\t") + 1
                    if w not in (2, 3) or (found_width and w != found_width):
                        want = f"{found_width}" if found_width else "2 or 3"
                        raise ValueError(f"{path}: line {lines + k + 1} has {w} tab-separated fields, expected {want} "
                                         f"(anchor<TAB>positive[<TAB>negative] on every line)")
                    found_width = w
                keep_s.append(offset + s)
                keep_e.append(offset + e)
                if dedup:
                    keep_h.append(_hash64(stripped if width == 1 else text))
            lines += len(rel_starts)
            starts_all.append(np.asarray(keep_s, np.uint64))
            ends_all.append(np.asarray(keep_e, np.uint64))
            if dedup:
                hashes_all.append(np.asarray(keep_h, np.uint64))
            offset += len(body)
            bar.update(len(block))
            if not block:
                break
    starts = np.concatenate(starts_all) if starts_all else np.zeros(0, np.uint64)
    ends = np.concatenate(ends_all) if ends_all else np.zeros(0, np.uint64)
    spans = np.stack([starts, ends], axis=1) if len(starts) else np.zeros((0, 2), np.uint64)
    duplicates = 0
    if dedup and len(spans):
        source = _FileSource(path)
        keep = _dedup(np.concatenate(hashes_all),
                      lambda rows: [t.strip() if width == 1 else t for t in
                                    (b.decode("utf-8") for b in source.raw(spans[rows]))])
        duplicates = int(len(spans) - keep.sum())
        spans = spans[keep]
    if not len(spans):
        raise ValueError(f"{path}: no non-blank lines")
    stats = {"width": found_width, "lines": lines, "blank": blank, "duplicates": duplicates, "kept": int(len(spans)),
             "dedup": dedup}
    return np.ascontiguousarray(spans), stats


def _dedup(hashes: np.ndarray, texts: Any) -> np.ndarray:
    """Boolean mask keeping the first occurrence of each text. ``hashes`` (uint64, one per row) find the
    candidates; ``texts(rows)`` reads the rows whose hash repeats, so only true duplicates are dropped."""
    keep = np.ones(len(hashes), dtype=bool)
    if len(hashes) < 2:
        return keep
    order = np.argsort(hashes, kind="stable")  # equal hashes together, each run in row order
    sorted_h = hashes[order]
    repeat_mask = np.r_[False, sorted_h[1:] == sorted_h[:-1]]
    if not repeat_mask.any():
        return keep
    in_run = repeat_mask | np.r_[repeat_mask[1:], False]  # every member of a run of equal hashes
    run_rows = order[in_run]
    run_ids = np.cumsum(~repeat_mask)[in_run]  # same id for the members of one run
    boundaries = np.flatnonzero(np.r_[True, run_ids[1:] != run_ids[:-1], True])
    for a, b in zip(boundaries[:-1].tolist(), boundaries[1:].tolist()):
        rows = run_rows[a:b]
        seen: set[str] = set()
        for row, text in zip(rows.tolist(), texts(rows)):
            if text in seen:
                keep[row] = False
            else:
                seen.add(text)
    return keep


# ------------------------------------------------------------------------------------------ Hugging Face
def _load_hf(ds: Any, columns: Sequence[str], width: int, dedup: bool, cache: Path) -> TextCorpus:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise ValueError(f"column(s) {missing} not in the dataset (columns: {ds.column_names})")
    key = short_hash(_INDEX_VERSION, "hf", ds._fingerprint, list(columns), width, dedup)
    label = getattr(getattr(ds, "info", None), "dataset_name", None) or "dataset"
    base = cache / "text" / f"hf-{label.replace('/', '_')}-{key}"
    meta_path, index_path = _beside(base, ".json"), _beside(base, ".rows.npy")
    loaded = _open_index(meta_path, index_path, (None,), None)
    if loaded is None:
        rows, stats = _index_hf(ds, columns, width, dedup)
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
            _save_index(meta_path, index_path, rows, stats)
            loaded = _open_index(meta_path, index_path, (None,), None)
        except PermissionError:
            loaded = None
        if loaded is None:
            loaded = rows, stats
    rows, stats = loaded
    name = f"hf:{label}/{','.join(columns)}"
    return TextCorpus(_HFSource(ds, columns), rows, stats["width"], name, stats)


def _index_hf(ds: Any, columns: Sequence[str], width: int, dedup: bool) -> tuple[np.ndarray, dict]:
    from tqdm.auto import tqdm

    view = ds.select_columns(list(columns))
    kept: list[np.ndarray] = []
    hashes: list[np.ndarray] = []
    n = len(view)
    blank = 0
    for a in tqdm(range(0, n, _HF_BATCH), desc="indexing dataset", leave=False, disable=n < 10 * _HF_BATCH):
        batch = view[a:a + _HF_BATCH]
        rows, hs = [], []
        for k, values in enumerate(zip(*[batch[c] for c in columns])):
            if not all(isinstance(v, str) for v in values) or not values[0].strip() or \
                    (width != 1 and not all(v.strip() for v in values[:2])):
                blank += 1
                continue
            rows.append(a + k)
            if dedup:
                hs.append(_hash64(values[0].strip() if width == 1 else "\t".join(values)))
        kept.append(np.asarray(rows, np.uint64))
        hashes.append(np.asarray(hs, np.uint64))
    rows = np.concatenate(kept) if kept else np.zeros(0, np.uint64)
    duplicates = 0
    if dedup and len(rows):
        source = _HFSource(ds, columns)
        keep = _dedup(np.concatenate(hashes),
                      lambda r: [t if width == 1 else "\t".join(t) for t in source.read(rows[r], width or 2)])
        duplicates = int(len(rows) - keep.sum())
        rows = rows[keep]
    if not len(rows):
        raise ValueError(f"no non-empty rows in the dataset column(s) {list(columns)}")
    stats = {"width": width or len(columns), "lines": n, "blank": blank, "duplicates": duplicates,
             "kept": int(len(rows)), "dedup": dedup}
    return rows, stats
