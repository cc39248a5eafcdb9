"""The sentence-embedding cache is verified on read: a truncated, garbage, pickled or mis-shaped file is a
warning and is encoded again, never unpickled and never trusted (issue 17 item 10)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from nda.metrics.sentence_eval import EmbeddingCache, embed_suite, load_suite

MARKER = Path(os.environ.get("TMPDIR", "/tmp")) / f"nda_cache_unpickled_{os.getpid()}"


class _Payload:
    """Unpickling this runs code (creates MARKER): what a malicious cache file would do."""

    def __reduce__(self):
        return (Path.touch, (MARKER,))


@pytest.fixture()
def setup(tmp_path):
    sts = tmp_path / "sts-test.csv"
    pairs = [("a man plays .", "a man is playing .", 4.0), ("a cat sleeps .", "a dog barks .", 1.0),
             ("it rains .", "the sun shines .", 0.5)]
    sts.write_text("".join(f"g\tf\t2012\t{i}\t{s}\t{a}\t{b}\n" for i, (a, b, s) in enumerate(pairs)))
    suite = load_suite({"stsb": sts}, ["STS-B"])
    table = {t: [float(len(t)), float(i), 1.0] for i, t in enumerate(suite.texts())}
    calls: list[str] = []

    def encode(texts):
        calls.extend(texts)
        return torch.tensor([table[t] for t in texts])

    cache = EmbeddingCache(tmp_path / "cache")
    first = embed_suite(suite, encode, "model", cache, progress=False)
    assert calls and not first.cached
    return suite, encode, calls, cache, first


def _damage(path: Path, how: str, good: torch.Tensor) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) - 7])
    elif how == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif how == "pickle":
        path.write_bytes(pickle.dumps(_Payload()))
    elif how == "object-npy":  # a valid .npy whose payload is a pickle (dtype object)
        with open(path, "wb") as fh:
            np.save(fh, np.array([_Payload()] * 6, dtype=object), allow_pickle=True)
    elif how == "wrong-rows":
        with open(path, "wb") as fh:
            np.save(fh, good.numpy()[:-1])
    elif how == "float64":
        with open(path, "wb") as fh:
            np.save(fh, good.numpy().astype(np.float64))


@pytest.mark.parametrize("how", ["truncated", "garbage", "pickle", "object-npy", "wrong-rows", "float64"])
def test_a_damaged_cache_file_is_encoded_again_with_a_warning(setup, how):
    suite, encode, calls, cache, first = setup
    path = cache.path("model", suite.texts())
    assert path.suffix == ".npy" and path.is_file()
    MARKER.unlink(missing_ok=True)
    _damage(path, how, first.embeddings)
    n = len(calls)
    with pytest.warns(UserWarning, match=f"embedding cache {path.name} is unusable"):
        again = embed_suite(suite, encode, "model", cache, progress=False)
    assert not MARKER.exists(), "the cache file was unpickled"
    assert not again.cached and len(calls) == 2 * n  # encoded again
    assert torch.equal(again.embeddings, first.embeddings)
    third = embed_suite(suite, encode, "model", cache, progress=False)  # the rewritten file is good again
    assert third.cached and torch.equal(third.embeddings, first.embeddings) and len(calls) == 2 * n


def test_a_good_cache_file_is_read_without_pickle(setup, monkeypatch):
    suite, encode, calls, cache, first = setup

    def refuse(*args, **kwargs):
        raise AssertionError("the embedding cache unpickled something")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    n = len(calls)
    again = embed_suite(suite, encode, "model", cache, progress=False)
    assert again.cached and len(calls) == n and torch.equal(again.embeddings, first.embeddings)
    assert again.embeddings.dtype == torch.float32


def test_model_fingerprint_reuses_the_digest_memo(tmp_path, monkeypatch):
    """``_fingerprint`` hashes through nda.data.cache.DigestMemo: contents count, an unchanged folder is not
    read again (the memo is on disk under $NDA_CACHE)."""
    from nda.data import cache as data_cache
    from nda.metrics.sentence_encoders import _fingerprint

    monkeypatch.setenv("NDA_CACHE", str(tmp_path / "nda_cache"))
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"a" * 64)
    (folder / "sub" / "config.json").write_text("{}")
    reads: list[str] = []
    real = data_cache.hash_file
    monkeypatch.setattr(data_cache, "hash_file", lambda p: reads.append(str(p)) or real(p))
    before = _fingerprint(folder)
    assert len(reads) == 2 and list((tmp_path / "nda_cache" / "digests").glob("*.npz"))
    assert _fingerprint(folder) == before and len(reads) == 2  # remembered: nothing read again
    (folder / "sub" / "config.json").write_text("{ }")
    assert _fingerprint(folder) != before and len(reads) == 3  # only the changed file is read
