"""Text negatives: token shuffle, span stitch, counterfactuals (string and token level)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import torch

import nda
from nda.text import Counterfactual, CounterfactualResult, SpanStitch, TokenShuffle, load_antonyms
from nda.text._words import split_words

WORD = re.compile(r"\w+(?:['’\-]\w+)*")
VOCAB = "[PAD] [UNK] [CLS] [SEP] [MASK] the cat sat on mat a dog barked at night good bad movie is not ! , . was".split()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def words(text: str) -> list[str]:
    return WORD.findall(text)


def skeleton(text: str) -> list[str]:
    return split_words(text)[0::2]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from transformers import BertTokenizerFast

    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB))
    return BertTokenizerFast(str(path))


SENTS = [
    "The cat sat on the mat.",
    "A dog barked at night, loudly!",
    "good movie",
    "Ça coûte 10€ — très cher, 東京 です.",
    "no no no",
    "one",
    "",
    "It's a well-made film; isn't it?",
]


# ----------------------------------------------------------------------------- token shuffle, strings
def test_shuffle_is_a_permutation_of_words_and_keeps_punctuation():
    out = TokenShuffle()(SENTS, generator=gen())
    assert len(out) == len(SENTS)
    for src, neg in zip(SENTS, out):
        assert Counter(words(neg)) == Counter(words(src))
        assert skeleton(neg) == skeleton(src)  # whitespace/punctuation stay in place


def test_shuffle_never_identity_when_it_can_change():
    shuffle = TokenShuffle()
    batch = ["good movie", "a b c", "a a b", "x y"] * 50
    for seed in range(5):
        out = shuffle(batch, generator=gen(seed))
        assert all(o != s for o, s in zip(out, batch))


def test_shuffle_unchangeable_inputs_come_back_unchanged():
    shuffle = TokenShuffle()
    batch = ["", "one", "no no no", "   ", "!!!"]
    assert shuffle(batch, generator=gen()) == batch
    assert shuffle.can_change(batch) == [False] * 5
    assert shuffle.can_change(["a b"]) == [True]


def test_shuffle_window_keeps_words_in_their_window():
    text = " ".join(f"w{i}" for i in range(23))
    for seed in range(5):
        out = TokenShuffle(window=4)([text], generator=gen(seed))[0]
        src, neg = words(text), words(out)
        assert neg != src
        for s in range(0, 23, 4):
            assert sorted(neg[s : s + 4]) == sorted(src[s : s + 4])


def test_shuffle_window_identity_fallback_changes_two_word_windows():
    # window=2 on 2 words: a plain draw is the identity half of the time; the result must always differ.
    outs = [TokenShuffle(window=2)(["good movie"], generator=gen(s))[0] for s in range(20)]
    assert set(outs) == {"movie good"}


def test_shuffle_seeded_reproducible_and_seed_dependent():
    batch = [" ".join(f"w{i}" for i in range(30))] * 4
    a = TokenShuffle()(batch, generator=gen(1))
    b = TokenShuffle()(batch, generator=gen(1))
    c = TokenShuffle()(batch, generator=gen(2))
    assert a == b and a != c
    assert len(set(a)) == 4  # each sample its own permutation


def test_shuffle_very_long_input():
    text = " ".join(f"w{i}" for i in range(20000))
    out = TokenShuffle()([text], generator=gen())[0]
    assert Counter(out.split()) == Counter(text.split()) and out != text


def test_shuffle_bad_input():
    with pytest.raises(TypeError, match="single str"):
        TokenShuffle()("a b c")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        TokenShuffle()(["a b", 3])
    with pytest.raises(ValueError, match="window"):
        TokenShuffle(window=1)
    with pytest.raises(TypeError, match="generator"):
        TokenShuffle()(["a b"], generator=0)


# ----------------------------------------------------------------------------- token shuffle, tokens
def _content(ids, mask, special):
    return mask.bool() & ~torch.isin(ids, torch.tensor(special))


def test_token_shuffle_moves_only_content_tokens(tok):
    texts = ["the cat sat on the mat", "a dog barked", "good movie !", "the", ""]
    batch = tok(texts, padding=True, return_tensors="pt")
    out = TokenShuffle(tokenizer=tok)(batch, generator=gen())
    ids, new = batch["input_ids"], out["input_ids"]
    assert set(out) == set(batch) and new.shape == ids.shape
    assert torch.equal(out["attention_mask"], batch["attention_mask"])
    content = _content(ids, batch["attention_mask"], tok.all_special_ids)
    assert torch.equal(new[~content], ids[~content])  # CLS, SEP, PAD never move
    for r in range(len(texts)):
        assert sorted(new[r][content[r]].tolist()) == sorted(ids[r][content[r]].tolist())
    changeable = [len(set(ids[r][content[r]].tolist())) > 1 for r in range(len(texts))]
    for r, can in enumerate(changeable):
        assert (not torch.equal(new[r], ids[r])) == can


def test_token_shuffle_never_identity_many_seeds(tok):
    batch = tok(["good movie", "a dog", "the cat sat"] * 30, padding=True, return_tensors="pt")
    for seed in range(5):
        out = TokenShuffle(tokenizer=tok)(batch, generator=gen(seed))
        assert (out["input_ids"] != batch["input_ids"]).any(dim=1).all()
    out = TokenShuffle(window=2, tokenizer=tok)(batch, generator=gen(0))
    assert (out["input_ids"] != batch["input_ids"]).any(dim=1).all()


def test_token_shuffle_window_and_special_ids_without_tokenizer():
    # CLS=101 SEP=102 PAD=0; content 10..17 in windows of 3 (by content rank)
    ids = torch.tensor([[101, 10, 11, 12, 13, 14, 15, 16, 17, 102, 0, 0]])
    mask = (ids != 0).long()
    for seed in range(10):
        out = TokenShuffle(window=3, special_ids=[101, 102], pad_token_id=0)(
            {"input_ids": ids, "attention_mask": mask}, generator=gen(seed)
        )["input_ids"][0].tolist()
        assert out[0] == 101 and out[9] == 102 and out[10:] == [0, 0]
        assert sorted(out[1:4]) == [10, 11, 12] and sorted(out[4:7]) == [13, 14, 15] and sorted(out[7:9]) == [16, 17]
        assert out != ids[0].tolist()


def test_token_level_needs_special_ids():
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="special_ids"):
        TokenShuffle()({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    with pytest.raises(TypeError, match="input_ids"):
        TokenShuffle(special_ids=())({"input_ids": ids.float()})
    with pytest.raises(ValueError, match="attention_mask"):
        TokenShuffle(special_ids=())({"input_ids": ids, "attention_mask": torch.ones(1, 2)})
    out = TokenShuffle(special_ids=())({"input_ids": ids}, generator=gen())  # no mask: all tokens real
    assert sorted(out["input_ids"][0].tolist()) == [1, 2, 3] and out["input_ids"][0].tolist() != [1, 2, 3]


def test_token_shuffle_reproducible(tok):
    batch = tok(["the cat sat on the mat at night"] * 8, padding=True, return_tensors="pt")
    s = TokenShuffle(tokenizer=tok)
    assert torch.equal(s(batch, generator=gen(3))["input_ids"], s(batch, generator=gen(3))["input_ids"])


# ----------------------------------------------------------------------------- span stitch, strings
def _unique_sentences(n: int, length: int) -> list[str]:
    return [" ".join(f"s{i}w{j}" for j in range(length + i % 3)) for i in range(n)]


def test_stitch_takes_head_and_tail_from_different_sentences():
    texts = _unique_sentences(12, 6)
    out = SpanStitch()(texts, generator=gen())
    partners = []
    for i, neg in enumerate(out):
        w = neg.split()
        head = [x for x in w if x.startswith(f"s{i}w")]
        tail = [x for x in w if not x.startswith(f"s{i}w")]
        src = texts[i].split()
        assert 1 <= len(head) <= len(src) - 1 and head == src[: len(head)]  # a strict prefix of sentence i
        owner = {x.split("w")[0] for x in tail}
        assert len(owner) == 1  # the tail comes from exactly one other sentence
        j = int(owner.pop()[1:])
        assert j != i
        other = texts[j].split()
        assert 1 <= len(tail) <= len(other) - 1 and tail == other[-len(tail) :]  # a strict suffix of it
        partners.append(j)
    assert sorted(partners) == list(range(12))  # every sentence gives its tail exactly once


def test_stitch_fractions_and_punctuation():
    texts = ["One two three four five six seven eight.", "Alpha beta gamma delta epsilon zeta eta theta!"]
    out = SpanStitch(min_fraction=0.5, max_fraction=0.5)(texts, generator=gen())
    assert out == ["One two three four epsilon zeta eta theta!", "Alpha beta gamma delta five six seven eight."]


def test_stitch_edge_cases():
    with pytest.raises(ValueError, match="at least 2"):
        SpanStitch()(["only one sentence"], generator=gen())
    out = SpanStitch()(["", "one", "two words"], generator=gen())
    assert len(out) == 3 and all(isinstance(o, str) for o in out)
    with pytest.raises(ValueError, match="min_fraction"):
        SpanStitch(min_fraction=0.8, max_fraction=0.2)
    with pytest.raises(ValueError, match="max_fraction"):
        SpanStitch(max_fraction=1.5)


def test_stitch_reproducible():
    texts = _unique_sentences(8, 10)
    assert SpanStitch()(texts, generator=gen(5)) == SpanStitch()(texts, generator=gen(5))
    assert SpanStitch()(texts, generator=gen(5)) != SpanStitch()(texts, generator=gen(6))


# ----------------------------------------------------------------------------- span stitch, tokens
def _check_stitched_tokens(tok, batch, out, left=False):
    ids, mask = out["input_ids"], out["attention_mask"]
    pad, cls, sep = tok.pad_token_id, tok.cls_token_id, tok.sep_token_id
    src_content = [
        r[m.bool() & ~torch.isin(r, torch.tensor(tok.all_special_ids))].tolist()
        for r, m in zip(batch["input_ids"], batch["attention_mask"])
    ]
    assert torch.equal(mask.bool(), ids != pad)
    for i in range(ids.shape[0]):
        real = ids[i][mask[i].bool()].tolist()
        n = len(real)
        pads = ids[i][~mask[i].bool()].tolist()
        assert pads == [pad] * len(pads)
        # padding contiguous on one side
        m = mask[i].tolist()
        assert m == ([0] * (len(m) - n) + [1] * n if left else [1] * n + [0] * (len(m) - n))
        assert real[0] == cls and real[-1] == sep and cls not in real[1:-1] and sep not in real[1:-1]
        content = real[1:-1]
        own = src_content[i]
        h = next(k for k in range(len(content) + 1) if k == len(content) or k >= len(own) or content[k] != own[k])
        assert h >= 1 and (h <= len(own) - 1 or len(own) <= 1)
        tail = content[h:]
        assert any(
            j != i and len(tail) >= 1 and src_content[j][-len(tail) :] == tail for j in range(len(src_content))
        )
    assert "token_type_ids" in out and out["token_type_ids"].shape == ids.shape


@pytest.mark.parametrize("left", [False, True])
def test_token_stitch_respects_specials_and_repads(tok, left):
    tok.padding_side = "left" if left else "right"
    try:
        texts = ["the cat sat on the mat at night", "a dog barked", "good movie !", "bad", "the mat was bad"]
        batch = tok(texts, padding=True, return_tensors="pt")
        for seed in range(5):
            out = SpanStitch(tokenizer=tok)(batch, generator=gen(seed))
            _check_stitched_tokens(tok, batch, out, left=left)
    finally:
        tok.padding_side = "right"


def test_token_stitch_exact_small_case():
    # rows: [CLS a b c d SEP], [CLS e f SEP PAD PAD]; fractions fixed at 0.5
    ids = torch.tensor([[9, 1, 2, 3, 4, 8], [9, 5, 6, 8, 0, 0]])
    mask = (ids != 0).long()
    out = SpanStitch(0.5, 0.5, special_ids=[9, 8], pad_token_id=0)({"input_ids": ids, "attention_mask": mask}, generator=gen())
    # re-padded to the longest result (5): head "a b" + tail "f"; head "e" + tail "c d"
    assert out["input_ids"].tolist() == [[9, 1, 2, 6, 8], [9, 5, 3, 4, 8]]
    assert out["attention_mask"].tolist() == [[1] * 5, [1] * 5]
    ids = torch.tensor([[9, 1, 2, 3, 4, 5, 6, 8], [9, 7, 8, 0, 0, 0, 0, 0]])
    out = SpanStitch(0.5, 0.5, special_ids=[9, 8], pad_token_id=0)(
        {"input_ids": ids, "attention_mask": (ids != 0).long()}, generator=gen()
    )
    # row 0: head "1 2 3" + tail of row 1 "7" (a one-token sentence gives its token); row 1: "7" + "4 5 6"
    assert out["input_ids"].tolist() == [[9, 1, 2, 3, 7, 8], [9, 7, 4, 5, 6, 8]]
    assert out["attention_mask"].tolist() == [[1] * 6, [1] * 6]


def test_token_stitch_batch_of_one(tok):
    with pytest.raises(ValueError, match="at least 2"):
        SpanStitch(tokenizer=tok)(tok(["the cat"], return_tensors="pt"), generator=gen())


# ----------------------------------------------------------------------------- counterfactual
@pytest.mark.parametrize(
    "src, expected",
    [
        ("Good movie!", "Bad movie!"),
        ("GOOD movie!", "BAD movie!"),
        ("The movie is not good, really!", "The movie is good, really!"),
        ("I don't like it.", "I like it."),
        ("Don't see this movie.", "See this movie."),
        ("He doesn't like cats", "He likes cats"),
        ("They didn't win.", "They did win."),
        ("They can't win.", "They can win."),
        ("It isn’t fun", "It is fun"),
        ("A man is playing a guitar.", "A man is not playing a guitar."),
        ("She has finished the race.", "She has not finished the race."),
        ("I never cry.", "I always cry."),
        ("He always sings.", "He never sings."),
        ("There is no hope and nothing works.", "There is some hope and something works."),
        ("I loved it. It was a waste of time.", "I hated it. It was not a waste of time."),
        ("The acting was good but the plot was bad.", "The acting was bad but the plot was good."),
        ("He sings well.", "He sings badly."),
        ("I like it.", "I dislike it."),
        ("x (not good)", "x (good)"),
        ("It is not, however, bad.", "It is, however, bad."),
        ("It is not", "It is"),
        ("It was not funny at all.", "It was funny."),
        ("I didn't see anything good.", "I did see something good."),
        ("It isn't any better.", "It is better."),
        ("He hasn't arrived yet", "He has arrived already"),
        ("There is no longer hope.", "There is still hope."),
        ("A man rides his bike.", "A man does not ride his bike."),
        ("A child watches a movie.", "A child does not watch a movie."),
        ("The dog carries a stick", "The dog does not carry a stick"),
    ],
)
def test_counterfactual_rules(src, expected):
    r = Counterfactual(label_map=None)([src])
    assert r.texts == [expected] and r.flipped == [True] and r.labels is None


def test_counterfactual_unflippable_are_flagged_and_unchanged():
    texts = ["", "Hmm.", "Tables and chairs", "Is it?", "It looks like a dog.", "He sings as well.", "Not at all!",
             "The woman rides horses.", "A man on stilts in a parade.", "The dogs run home."]
    r = Counterfactual()(texts, labels=[1, 0] * 5)
    assert r.texts == texts and r.flipped == [False] * 10 and r.labels == [1, 0] * 5


def test_counterfactual_sentiment_labels():
    cf = Counterfactual("sentiment")
    texts = ["Good movie!", "It was not funny.", "A chair."]
    assert cf(texts, labels=[1, 0, 1]).labels == [0, 1, 1]
    r = cf(texts, labels=["Positive", "negative", "POSITIVE"])
    assert r.labels == ["Negative", "positive", "POSITIVE"] and r.flipped == [True, True, False]
    assert cf(texts, labels=["pos", "neg", "pos"]).labels == ["neg", "pos", "pos"]
    t = cf(texts, labels=torch.tensor([1, 0, 1]))
    assert torch.equal(t.labels, torch.tensor([0, 1, 1]))
    # a label outside the map is not flippable: the edit is dropped
    r = cf(["Good movie!"], labels=["mixed"])
    assert r.texts == ["Good movie!"] and r.flipped == [False] and r.labels == ["mixed"]


def test_counterfactual_nli_labels():
    hyp = ["A man is sleeping.", "A man is sleeping.", "A man is sleeping."]
    r = Counterfactual("nli")(hyp, labels=["entailment", "neutral", "contradiction"])
    assert r.texts == ["A man is not sleeping.", "A man is sleeping.", "A man is sleeping."]
    assert r.labels == ["contradiction", "neutral", "contradiction"] and r.flipped == [True, False, False]
    assert Counterfactual("nli")(hyp, labels=[0, 1, 2]).labels == [2, 1, 2]
    r = Counterfactual("nli_symmetric")(hyp, labels=[0, 1, 2])
    assert r.labels == [2, 1, 0] and r.flipped == [True, False, True]
    # per-call override and a user dict
    r = Counterfactual()(["It is good."], labels=["yes"], label_map={"yes": "no"})
    assert r.labels == ["no"] and r.texts == ["It is bad."]


def test_counterfactual_result_is_a_list_and_composes():
    r = Counterfactual(label_map=None)(["the movie was good", "I like the cat"])
    assert isinstance(r, list) and isinstance(r, CounterfactualResult) and list(r) == r.texts
    both = nda.Compose([Counterfactual(label_map=None), TokenShuffle()])(["the movie was good"], generator=gen())
    assert sorted(both[0].split()) == sorted("the movie was bad".split())


def test_counterfactual_errors():
    cf = Counterfactual()
    with pytest.raises(TypeError, match="decode"):
        cf({"input_ids": torch.ones(1, 3, dtype=torch.long)})
    with pytest.raises(ValueError, match="one label per text"):
        cf(["a", "b"], labels=[1])
    with pytest.raises(ValueError, match="label_map is None"):
        Counterfactual(label_map=None)(["good"], labels=[1])
    with pytest.raises(ValueError, match="label_map"):
        Counterfactual(label_map="topic")
    with pytest.raises(ValueError, match="negation"):
        Counterfactual(negation=False, antonyms=False)


def test_counterfactual_options():
    assert Counterfactual(antonyms=False, label_map=None)(["Good movie."]).flipped == [False]
    assert Counterfactual(negation=False, label_map=None)(["It is here."]).flipped == [False]
    r = Counterfactual(label_map=None, max_edits=1)(["It was good. It was bad."])
    assert r.texts == ["It was bad. It was bad."]
    r = Counterfactual(label_map=None, lexicon={"cat": "dog"}, negation=False)(["My Cat."])
    assert r.texts == ["My Dog."]


def test_antonym_lexicon_shipped():
    import nda.text

    data = Path(nda.text.__file__).parent / "data"
    assert (data / "antonyms.tsv").stat().st_size < 1_000_000
    assert "WordNet" in (data / "WORDNET_LICENSE").read_text()
    lex = load_antonyms()
    assert lex["good"] == "bad" and lex["love"] == "hate" and lex["happy"] == "unhappy"
    assert 500 < len(lex) < 20000
    assert sum(lex.get(b) == a for a, b in lex.items()) > 0.9 * len(lex)  # (almost) symmetric
    assert all(" " not in a and a.isalpha() for a in lex)


# ----------------------------------------------------------------------------- registry
def test_registry_and_config_round_trip(tok):
    s = nda.build("token_shuffle:window=3")
    assert isinstance(s, TokenShuffle) and s.window == 3 and s.modality == "text"
    st = nda.build("span_stitch", tokenizer=tok)
    assert isinstance(st, SpanStitch) and st.tokenizer is tok and st.pad_token_id == tok.pad_token_id
    assert st.pairwise
    cf = nda.build({"name": "counterfactual", "label_map": "nli"})
    assert isinstance(cf, Counterfactual) and cf.label_map == "nli"
    again = nda.build(cf.config())
    assert isinstance(again, Counterfactual) and again.config() == cf.config()
    assert {"token_shuffle", "span_stitch", "counterfactual"} <= set(nda.available("text"))
    mixed = nda.build("token_shuffle|span_stitch", tokenizer=tok)
    batch = tok(["the cat sat", "a dog barked at night"], padding=True, return_tensors="pt")
    out = mixed(batch, generator=gen())
    assert out["input_ids"].shape[0] == 2


def test_long_inputs_and_batch_of_one():
    long = " ".join(["The film is good and I loved it."] * 2000)
    r = Counterfactual()([long], labels=[1])
    assert r.flipped == [True] and r.labels == [0] and r.texts[0].count("bad") == 2000
    assert Counterfactual(max_edits=3, label_map=None)([long]).texts[0].count("bad") == 3
    out = SpanStitch()([long, "short sentence here"], generator=gen())
    assert len(out[0]) < len(long) + 40 and out[0].startswith("The film")
    assert TokenShuffle()(["just two"], generator=gen()) == ["two just"]


def test_wordnet_option_works_with_or_without_the_corpus():
    # The shipped lexicon answers first; WordNet (when NLTK finds it) only adds words, and its absence is not an error.
    r = Counterfactual(label_map=None, wordnet=True)(["Good movie!", "Tables and chairs"])
    assert r.texts[0] == "Bad movie!" and r.flipped[0]


def test_token_stitch_of_zero_width_ids_returns_the_empty_batch():
    """Regression: (B, 0) input_ids (a batch of empty strings, no special tokens) raised an IndexError."""
    batch = {"input_ids": torch.zeros(3, 0, dtype=torch.long), "attention_mask": torch.zeros(3, 0, dtype=torch.long)}
    out = SpanStitch(special_ids=(), pad_token_id=0)(batch, generator=gen())
    assert out["input_ids"].shape == (3, 0) and out["attention_mask"].shape == (3, 0)
    with pytest.raises(ValueError, match="at least 2"):
        SpanStitch(special_ids=(), pad_token_id=0)({k: v[:1] for k, v in batch.items()})
