"""Text corpora past RAM: a line index built once, exact deduplication, content keys, sharded reads."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import nda.data.text as text_mod
from nda.data.text import TextCorpus, load_pairs, load_sentences
from nda.run import batch_indices


def _write(path, lines, newline="\n", final_newline=True):
    path.write_bytes((newline.join(lines) + (newline if final_newline else "")).encode("utf-8"))
    return path


def test_sentences_are_indexed_stripped_and_blank_lines_dropped(tmp_path):
    path = _write(tmp_path / "s.txt", ["  first one ", "", "second\t", "   ", "trois é ✓", "last no newline"],
                  newline="\r\n", final_newline=False)
    corpus = load_sentences(path, cache_dir=tmp_path / "c")
    assert len(corpus) == 4 and corpus.width == 1 and corpus.name == "s.txt"
    assert corpus[0] == "first one" and corpus[-1] == "last no newline"
    assert corpus[[3, 1, 1]] == ["last no newline", "second", "second"]
    assert corpus[torch.tensor([2])] == ["trois é ✓"] and corpus[1:3] == ["second", "trois é ✓"]
    assert corpus.stats == {"width": 1, "lines": 6, "blank": 2, "duplicates": 0, "kept": 4, "dedup": True}
    index = next((tmp_path / "c" / "text").glob("*.offsets.npy"))
    assert np.load(index, mmap_mode="r").dtype == np.uint64
    with pytest.raises(IndexError):
        corpus[[0, 4]]
    with pytest.raises(IndexError):
        corpus[4]
    with pytest.raises(TypeError):
        corpus[[0.5]]
    assert len(load_sentences(path, cache_dir=tmp_path / "c", limit=2)) == 2


def test_dedup_keeps_first_occurrences_and_is_exact_under_hash_collisions(tmp_path, monkeypatch):
    lines = ["b", "a", " b ", "c", "a", "d", "b", "e"]
    path = _write(tmp_path / "s.txt", lines)
    corpus = load_sentences(path, cache_dir=tmp_path / "c")
    assert corpus[range(len(corpus))] == ["b", "a", "c", "d", "e"] and corpus.stats["duplicates"] == 3
    assert load_sentences(path, cache_dir=tmp_path / "c", dedup=False)[range(8)] == [s.strip() for s in lines]
    # every text hashes alike: only the byte comparison can tell them apart, and it must
    monkeypatch.setattr(text_mod, "_hash64", lambda text: 42)
    forced = load_sentences(path, cache_dir=tmp_path / "collide")
    assert forced[range(len(forced))] == ["b", "a", "c", "d", "e"]


def test_dedup_reads_back_only_lines_whose_hash_repeats(tmp_path, monkeypatch):
    path = _write(tmp_path / "s.txt", [f"sentence {i % 700}" for i in range(1000)])
    read_back = {"n": 0}
    real = text_mod._FileSource.raw

    def counting(self, spans):
        read_back["n"] += len(spans)
        return real(self, spans)

    monkeypatch.setattr(text_mod._FileSource, "raw", counting)
    corpus = load_sentences(path, cache_dir=tmp_path / "c")
    assert len(corpus) == 700 and read_back["n"] == 600  # 300 duplicates and their 300 first occurrences


def test_index_is_built_once_and_is_a_function_of_content(tmp_path, monkeypatch):
    path = _write(tmp_path / "s.txt", ["alpha", "beta", "gamma", "beta"])
    first = load_sentences(path, cache_dir=tmp_path / "c")
    built = {"n": 0}
    real = text_mod._index_file

    def counting(*args):
        built["n"] += 1
        return real(*args)

    monkeypatch.setattr(text_mod, "_index_file", counting)
    again = load_sentences(path, cache_dir=tmp_path / "c")
    assert built["n"] == 0 and again[range(3)] == first[range(3)]
    # the same bytes elsewhere: the same index (and the same batches after a restart on another machine)
    copy = tmp_path / "elsewhere" / "s.txt"
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    moved = load_sentences(copy, cache_dir=tmp_path / "c2")
    assert np.array_equal(np.asarray(moved._index), np.asarray(first._index))
    # a same-size rewrite with a restored mtime: a new index
    st = path.stat()
    _write(path, ["alpha", "betA", "gamma", "beta"])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = load_sentences(path, cache_dir=tmp_path / "c")
    assert built["n"] == 2 and changed[range(len(changed))] == ["alpha", "betA", "gamma", "beta"]


@pytest.mark.parametrize("damage", ["truncate", "record"])
def test_damaged_index_is_rebuilt(tmp_path, damage):
    path = _write(tmp_path / "s.txt", [f"line {i}" for i in range(50)])
    load_sentences(path, cache_dir=tmp_path / "c")
    index = next((tmp_path / "c" / "text").glob("*.offsets.npy"))
    if damage == "truncate":
        os.truncate(index, index.stat().st_size - 16)
    else:
        index.with_name(index.name.replace(".offsets.npy", ".json")).write_text('{"kept": 99}')
    corpus = load_sentences(path, cache_dir=tmp_path / "c")
    assert len(corpus) == 50 and corpus[49] == "line 49"


def test_bad_text_files_are_clear_errors(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("fine\nalso fine\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt: line 3 is not valid UTF-8"):
        load_sentences(bad, cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="no non-blank lines"):
        load_sentences(_write(tmp_path / "blank.txt", ["", "  "]), cache_dir=tmp_path / "c")
    with pytest.raises(FileNotFoundError):
        load_sentences(tmp_path / "missing.txt", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="limit"):
        load_sentences(bad, cache_dir=tmp_path / "c", limit=0)


def test_pairs_from_tsv(tmp_path):
    path = _write(tmp_path / "p.tsv", ["a1\tp1\tn1", "", "a2\tp2\tn2", "a1\tp1\tn1"])
    pairs = load_pairs(path, cache_dir=tmp_path / "c")
    assert pairs.width == 3 and len(pairs) == 3 and pairs[[2, 1]] == [("a1", "p1", "n1"), ("a2", "p2", "n2")]
    assert len(load_pairs(path, cache_dir=tmp_path / "c", dedup=True)) == 2
    mixed = _write(tmp_path / "m.tsv", ["a\tb", "a\tb\tc"])
    with pytest.raises(ValueError, match=r"line 2 has 3 tab-separated fields, expected 2"):
        load_pairs(mixed, cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match=r"line 1 has 1 tab-separated fields"):
        load_pairs(_write(tmp_path / "one.tsv", ["just one"]), cache_dir=tmp_path / "c")


def test_hf_dataset_columns(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": ["x ", "", "y", None, "x", "z"], "pos": ["1", "2", "3", "4", "5", "6"]})
    corpus = load_sentences(ds, cache_dir=tmp_path / "c")
    assert corpus[range(len(corpus))] == ["x", "y", "z"] and corpus.stats["duplicates"] == 1
    assert list((tmp_path / "c" / "text").glob("*.rows.npy"))
    pairs = load_pairs(ds, columns=("text", "pos"), cache_dir=tmp_path / "c")
    assert pairs[[0, 3]] == [("x ", "1"), ("z", "6")] and len(pairs) == 4
    with pytest.raises(ValueError, match="not in the dataset"):
        load_sentences(ds, column="sentence", cache_dir=tmp_path / "c")


@pytest.mark.parametrize("in_memory", [True, False])
def test_sharded_batches_are_disjoint_and_resume_exactly(tmp_path, in_memory):
    path = _write(tmp_path / "s.txt", [f"sentence number {i}" for i in range(103)])
    corpus = load_sentences(path, cache_dir=tmp_path / "c", in_memory=in_memory)
    assert corpus._source.in_memory is in_memory
    batch, world = 8, 2
    per_epoch = len(corpus) // (batch * world)
    seen = []
    for step in range(per_epoch):
        shards = [corpus[batch_indices(step, len(corpus), batch, 3, rank, world)] for rank in range(world)]
        assert not set(shards[0]) & set(shards[1])
        seen += shards[0] + shards[1]
    assert len(set(seen)) == per_epoch * batch * world
    reopened = load_sentences(path, cache_dir=tmp_path / "c", in_memory=not in_memory)  # a restarted process
    for step in (2, per_epoch + 1):
        idx = batch_indices(step, len(corpus), batch, 3, 1, world)
        assert reopened[idx] == corpus[idx]


def test_size_decides_whether_the_text_is_held_in_ram(tmp_path, monkeypatch):
    path = _write(tmp_path / "s.txt", ["a", "b"])  # 4 bytes
    assert load_sentences(path, cache_dir=tmp_path / "c")._source.in_memory
    monkeypatch.setenv("NDA_TEXT_IN_MEMORY_MAX_BYTES", "3")
    corpus = load_sentences(path, cache_dir=tmp_path / "c")
    assert not corpus._source.in_memory and corpus[[1, 0]] == ["b", "a"]
    monkeypatch.setenv("NDA_TEXT_IN_MEMORY_MAX_BYTES", "-1")
    with pytest.raises(ValueError, match="NDA_TEXT_IN_MEMORY_MAX_BYTES"):
        load_sentences(path, cache_dir=tmp_path / "c")


def test_from_rows_is_the_same_interface_in_ram():
    corpus = TextCorpus.from_rows(["a", "b", "c"], name="sts")
    assert len(corpus) == 3 and corpus[[2, 0]] == ["c", "a"] and corpus[1] == "b"
    pairs = TextCorpus.from_rows([("a", "b"), ("c", "d")])
    assert pairs.width == 2 and pairs[[1]] == [("c", "d")]
    with pytest.raises(ValueError, match="widths"):
        TextCorpus.from_rows(["a", ("b", "c")])
