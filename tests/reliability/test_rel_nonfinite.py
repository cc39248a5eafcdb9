"""Non-finite values never become a score: correlations, STS and the sentence suite refuse NaN/inf embeddings
with a one-line error naming the model (and the task); a NaN cache file is encoded again (issue 17 item 5)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nda.metrics.sentence_eval import EmbeddingCache, embed_suite, encode_texts, load_suite, score_suite
from nda.metrics.sts import pearson, spearman, sts_spearman

PAIRS = [
    ("a man is playing a guitar .", "a man plays the guitar .", 4.8),
    ("a cat is sleeping .", "a dog is barking loudly .", 0.8),
    ("two dogs run on the beach .", "two dogs are running on the sand .", 4.2),
    ("the president spoke on monday .", "a boy is eating an apple .", 0.0),
    ("a girl is riding a horse .", "a girl rides a horse in a field .", 3.6),
]


@pytest.fixture(scope="module")
def stsb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nonfinite") / "sts-test.csv"
    path.write_text("".join(f"g\tf\t2012\t{i}\t{s}\t{a}\t{b}\n" for i, (a, b, s) in enumerate(PAIRS)))
    return path


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory) -> Path:
    """A tiny random BERT saved with one NaN LayerNorm weight: every embedding it gives is NaN."""
    from nda.models.sentence import tiny_random_encoder

    encoder = tiny_random_encoder(seed=1)
    norm = next(m for m in encoder.modules() if isinstance(m, torch.nn.LayerNorm))
    with torch.no_grad():
        norm.weight[0] = float("nan")
    folder = tmp_path_factory.mktemp("nan_model") / "model"
    encoder.save_pretrained(folder)
    return folder


def _lookup(table: dict[str, list[float]]):
    return lambda texts: torch.tensor([table[t] for t in texts])


@pytest.mark.parametrize("fn", [spearman, pearson])
def test_correlations_refuse_non_finite_input_naming_the_argument(fn):
    ok = [1.0, 2.0, 3.0, 4.0, 5.0]
    with pytest.raises(ValueError, match=rf"{fn.__name__}: x holds 5 non-finite value\(s\)"):
        fn([math.nan] * 5, ok)  # spearman returned 1.0 here before
    with pytest.raises(ValueError, match=r"y holds 1 non-finite value\(s\).*index 2"):
        fn(ok, [1.0, 2.0, math.inf, 4.0, 5.0])
    assert fn(ok, [2.0, 4.0, 6.0, 8.0, 10.0]) == pytest.approx(1.0)
    assert pearson([1.0, 2.0, 3.0], [1.0, 2.0, 4.0]) == pytest.approx(np.corrcoef([1, 2, 3], [1, 2, 4])[0, 1], abs=1e-12)


def test_eval_sentence_refuses_a_model_with_a_nan_layernorm_weight(nan_model, stsb, tmp_path):
    from tasks.eval_sentence import main

    with pytest.raises(ValueError) as err:  # STS-B 13.19 on the real data before
        main(["--models", str(nan_model), "--tasks", "STS-B", "--stsb", str(stsb), "--out", str(tmp_path / "r"),
              "--cache-dir", str(tmp_path / "cache"), "--progress", "false"])
    message = str(err.value)
    assert "\n" not in message and f"model '{nan_model}' on task STS-B" in message and "NaN/inf" in message
    assert not list((tmp_path / "cache").glob("*.npy"))  # nothing poisoned was cached
    assert not (tmp_path / "r.json").exists()


def test_sts_spearman_refuses_nan_embeddings_naming_the_model(nan_model, stsb):
    from nda.metrics.sts import load_sts
    from nda.models.sentence import SentenceEncoder

    encoder = SentenceEncoder.from_pretrained(str(nan_model))
    with pytest.raises(ValueError, match=r"model 'my-model' on task STS \(sentences1\): 5 of 5 embeddings hold NaN/inf"):
        sts_spearman(encoder, load_sts(stsb), name="my-model")


def test_score_suite_refuses_nan_embeddings_naming_model_and_task(stsb):
    suite = load_suite({"stsb": stsb}, ["STS-B"])
    table = {t: [1.0, float(i)] for i, t in enumerate(suite.texts())}
    emb = embed_suite(suite, _lookup(table), progress=False, model="m")
    emb.embeddings[3, 1] = float("nan")  # e.g. handed in from elsewhere
    with pytest.raises(ValueError, match=r"model 'm' on task STS-B: 1 of 10 embeddings hold NaN/inf"):
        score_suite(suite, emb, model="m")
    with pytest.raises(ValueError, match=r"model 'enc' on task X: 1 of 2 embeddings hold NaN/inf, e.g. for 'b'"):
        encode_texts(lambda b: torch.tensor([[1.0] if t == "a" else [math.inf] for t in b]), ["a", "b"],
                     progress=False, model="enc", task="X")


def test_a_cached_embedding_file_holding_nan_is_encoded_again(stsb, tmp_path):
    suite = load_suite({"stsb": stsb}, ["STS-B"])
    table = {t: [1.0, float(i), float(i % 3)] for i, t in enumerate(suite.texts())}
    cache = EmbeddingCache(tmp_path)
    first = embed_suite(suite, _lookup(table), "model-a", cache, progress=False)
    path = cache.path("model-a", suite.texts())
    poisoned = first.embeddings.numpy().copy()
    poisoned[2] = np.nan
    np.save(path, poisoned)  # a well-formed file of the right shape, but NaN inside
    with pytest.warns(UserWarning, match="unusable.*NaN/inf"):
        again = embed_suite(suite, _lookup(table), "model-a", cache, progress=False)
    assert not again.cached and torch.equal(again.embeddings, first.embeddings)
    assert np.isfinite(np.load(path)).all()  # rewritten with the good embeddings
    with pytest.raises(ValueError, match="NaN/inf"):
        cache.save("model-a", suite.texts(), torch.from_numpy(poisoned))
