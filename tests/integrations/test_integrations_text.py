"""Hugging Face glue for text negatives: ``Dataset.map`` columns and the negative data collator."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from nda.integrations.collator import NegativeDataCollator
from nda.integrations.datasets import add_negatives
from nda.text import Counterfactual, TokenShuffle

VOCAB = "[PAD] [UNK] [CLS] [SEP] [MASK] the cat sat on mat a dog barked at night good bad movie is not ! , . was".split()
TEXTS = ["the cat sat on the mat", "a dog barked at night", "good movie !", "the movie is not bad", "was", "bad dog"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from transformers import BertTokenizerFast

    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB))
    return BertTokenizerFast(str(path))


@pytest.fixture()
def ds():
    from datasets import Dataset

    return Dataset.from_dict({"text": TEXTS, "label": [1, 0, 1, 0, 1, 0]})


def test_map_adds_one_negative_column(ds):
    out = ds.map(add_negatives("token_shuffle"), batched=True, with_indices=True)
    assert out.column_names == ["text", "label", "negative"]
    for src, neg in zip(out["text"], out["negative"]):
        assert Counter(src.split()) == Counter(neg.split())
        assert (neg != src) == (len(set(src.split())) > 1)


def test_map_k_columns_and_batch_size_independence(ds):
    fn = add_negatives(TokenShuffle(), k=3, seed=7)
    a = ds.map(fn, batched=True, with_indices=True, batch_size=2)
    b = ds.map(fn, batched=True, with_indices=True, batch_size=4)
    assert a.column_names == ["text", "label", "negative_1", "negative_2", "negative_3"]
    for c in ("negative_1", "negative_2", "negative_3"):
        assert a[c] == b[c]
    assert a["negative_1"] != a["negative_2"] or a["negative_1"] != a["negative_3"]
    # without indices: seeded by the text itself, still batch-size independent
    c = ds.map(fn, batched=True, batch_size=1)
    d = ds.map(fn, batched=True, batch_size=6)
    assert c["negative_2"] == d["negative_2"]
    other = ds.map(add_negatives(TokenShuffle(), k=3, seed=8), batched=True, with_indices=True)
    assert other["negative_1"] != a["negative_1"]


def test_map_pairwise_stitch(ds):
    out = ds.map(add_negatives("span_stitch", seed=1), batched=True, with_indices=True, batch_size=3)
    again = ds.map(add_negatives("span_stitch", seed=1), batched=True, with_indices=True, batch_size=3)
    assert out["negative"] == again["negative"]
    assert all(n != t for n, t in zip(out["negative"], out["text"]))


def test_map_counterfactual_columns(ds):
    out = ds.map(add_negatives(Counterfactual("sentiment", strategy="rules")), batched=True)
    assert out.column_names == ["text", "label", "negative", "negative_label", "negative_flipped", "negative_valid",
                                "negative_paraphrase"]
    assert out["negative_valid"] == out["negative_flipped"]  # alone, a counterfactual is usable iff it flipped
    by_text = {t: (n, lab, f) for t, n, lab, f in zip(out["text"], out["negative"], out["negative_label"], out["negative_flipped"])}
    assert by_text["good movie !"] == ("bad movie !", 0, True)
    assert by_text["the movie is not bad"] == ("the movie is bad", 1, True)
    assert by_text["the cat sat on the mat"] == ("the cat sat on the mat", 1, False)
    with pytest.raises(ValueError, match="k=1"):
        add_negatives("counterfactual", k=2)


def test_map_composite_with_counterfactual_keeps_the_flip_contract():
    """Regression (issue 9 item 5): "counterfactual|token_shuffle" returned unchanged originals as negatives
    ("Hmm." -> "Hmm.") with no ``_flipped`` column, because the flip was detected by class."""
    from datasets import Dataset

    texts = ["Hmm.", "Good movie!", "It was not funny.", "the cat sat on the mat", "Bad acting.", "Wow."] * 4
    labels = [1, 1, 0, 1, 0, 0] * 4
    out = Dataset.from_dict({"text": texts, "label": labels}).map(
        add_negatives("counterfactual|token_shuffle", k=2, seed=3), batched=True, with_indices=True
    )
    for c in ("negative_1", "negative_2"):
        assert {f"{c}_label", f"{c}_flipped", f"{c}_valid"} <= set(out.column_names)
        for text, lab, neg, new_lab, flipped, valid in zip(
            out["text"], out["label"], out[c], out[f"{c}_label"], out[f"{c}_flipped"], out[f"{c}_valid"]
        ):
            if neg == text:
                assert not valid and not flipped  # "Hmm." / "Wow.": nothing could change them
            assert new_lab == (1 - lab if flipped else lab)
            if flipped:
                assert valid
    assert any(out["negative_1_flipped"]) and not all(out["negative_1_flipped"])
    hmm = [v for t, v in zip(out["text"], out["negative_1_valid"]) if t == "Hmm."]
    assert hmm and not any(hmm)


def test_map_errors(ds):
    with pytest.raises(ValueError, match="k must"):
        add_negatives("token_shuffle", k=0)
    fn = add_negatives("token_shuffle", column="sentence")
    with pytest.raises(KeyError, match="sentence"):
        ds.map(fn, batched=True)


def _check_token_negatives(tok, batch, k):
    b = batch["input_ids"].shape[0]
    ids, mask = batch["negative_input_ids"], batch["negative_attention_mask"]
    assert ids.shape[0] == b * k and mask.shape == ids.shape
    assert torch.equal(mask.bool(), ids != tok.pad_token_id)
    for row in range(b * k):
        real = ids[row][mask[row].bool()].tolist()
        assert real[0] == tok.cls_token_id and real[-1] == tok.sep_token_id
        assert mask[row].tolist() == sorted(mask[row].tolist(), reverse=True)  # right padding, contiguous


def test_collator_token_shuffle_shapes_and_layout(tok):
    features = [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS)]
    collator = NegativeDataCollator(tok, "token_shuffle", k=3, seed=0)
    batch = collator(features)
    assert batch["input_ids"].shape[0] == 6 and "text" not in batch
    assert batch["labels"].tolist() == [0, 1, 0, 1, 0, 1]
    _check_token_negatives(tok, batch, 3)
    # sample-major: rows b*k .. b*k+k-1 are permutations of sample b's tokens
    neg = batch["negative_input_ids"].view(6, 3, -1)
    for bi in range(6):
        src = sorted(t for t in batch["input_ids"][bi].tolist() if t != tok.pad_token_id)
        for r in range(3):
            assert sorted(t for t in neg[bi, r].tolist() if t != tok.pad_token_id) == src
    again = NegativeDataCollator(tok, "token_shuffle", k=3, seed=0)(features)
    assert torch.equal(again["negative_input_ids"], batch["negative_input_ids"])


def test_collator_span_stitch_and_pretokenised_features(tok):
    enc = tok(TEXTS)
    features = [{"text": t, "input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i]} for i, t in enumerate(TEXTS)]
    batch = NegativeDataCollator(tok, "span_stitch", k=2, seed=1)(features)
    _check_token_negatives(tok, batch, 2)
    assert batch["negative_input_ids"].shape[0] == 12


def test_collator_string_level_counterfactual(tok):
    features = [{"text": t, "label": lab} for t, lab in zip(TEXTS, [1, 0, 1, 0, 1, 0])]
    batch = NegativeDataCollator(tok, Counterfactual("sentiment", strategy="rules"))(features)
    assert batch["negative_flipped"].tolist() == [False, False, True, True, False, True]
    assert batch["negative_labels"].tolist() == [1, 0, 0, 1, 1, 1]
    decoded = tok.batch_decode(batch["negative_input_ids"], skip_special_tokens=True)
    assert decoded[2].replace(" ", "") == "badmovie!" and decoded[3] == "the movie is bad" and decoded[5] == "good dog"
    assert torch.equal(batch["negative_attention_mask"].bool(), batch["negative_input_ids"] != tok.pad_token_id)


def test_collator_composite_counterfactual_reads_flipped_and_valid(tok):
    """Regression (issue 9 item 5): the collator checked ``isinstance(neg, Counterfactual)``, so a composite spec
    lost ``negative_flipped`` and its unflippable rows (original text) looked like real negatives."""
    texts = ["was", "good movie !", "the movie is not bad", "the cat sat on the mat"] * 3
    features = [{"text": t, "label": i % 2} for i, t in enumerate(texts)]
    batch = NegativeDataCollator(tok, "counterfactual|token_shuffle", k=2, seed=0)(features)
    n = len(texts) * 2
    assert batch["negative_flipped"].shape == (n,) and batch["negative_valid"].shape == (n,)
    assert batch["negative_labels"].shape == (n,)
    decoded = tok.batch_decode(batch["negative_input_ids"], skip_special_tokens=True)
    for row in range(n):
        src = texts[row // 2]
        same = decoded[row].replace(" ", "") == src.replace(" ", "")
        assert bool(batch["negative_valid"][row]) == (not same)
        label = row // 2 % 2
        assert int(batch["negative_labels"][row]) == (1 - label if batch["negative_flipped"][row] else label)
    assert not batch["negative_valid"].view(-1, 2)[0].any()  # "was": neither rule can change one word
    assert batch["negative_flipped"].any()


def test_collator_token_level_marks_unchanged_rows_invalid(tok):
    batch = NegativeDataCollator(tok, "token_shuffle", k=2, seed=0)([{"text": t} for t in TEXTS])
    valid = batch["negative_valid"].view(len(TEXTS), 2)
    assert valid.dtype == torch.bool
    assert not valid[TEXTS.index("was")].any() and valid[TEXTS.index("the cat sat on the mat")].all()


def test_collator_string_level_shuffle_and_errors(tok):
    features = [{"text": t} for t in TEXTS]
    batch = NegativeDataCollator(tok, "token_shuffle", k=2, level="string", seed=0)(features)
    _check_token_negatives(tok, batch, 2)
    with pytest.raises(KeyError, match="text"):
        NegativeDataCollator(tok, "token_shuffle")([{"sentence": "a"}])
    with pytest.raises(ValueError, match="level='token'"):
        NegativeDataCollator(tok, "counterfactual", level="token")
    with pytest.raises(ValueError, match="k must"):
        NegativeDataCollator(tok, "token_shuffle", k=0)


def test_collator_random_choice_of_token_negatives(tok):
    collator = NegativeDataCollator(tok, "token_shuffle|span_stitch", k=2, seed=3)
    assert collator.level == "token"
    batch = collator([{"text": t} for t in TEXTS])
    _check_token_negatives(tok, batch, 2)


def test_collator_left_padding_tokenizer_keeps_negatives_left_padded(tok):
    """Regression: the k negatives were re-padded on the right even when the tokenizer pads on the left."""
    left_tok = __import__("copy").deepcopy(tok)
    left_tok.padding_side = "left"
    batch = NegativeDataCollator(left_tok, "span_stitch", k=3, seed=0)([{"text": t} for t in TEXTS])
    ids, mask = batch["negative_input_ids"], batch["negative_attention_mask"]
    assert bool((mask == 0).any())  # some rows are padded, so the layout is actually exercised
    for row in range(ids.shape[0]):
        assert mask[row].tolist() == sorted(mask[row].tolist())  # left padding: zeros first, contiguous
        real = ids[row][mask[row].bool()].tolist()
        assert real[0] == left_tok.cls_token_id and real[-1] == left_tok.sep_token_id
