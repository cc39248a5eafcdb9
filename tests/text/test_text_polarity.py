"""The ``polarity`` counterfactual strategy, its shipped lexicon, grapheme-safe word splitting, and the one
"k text negatives + validity mask" helper (``nda.text.text_negatives`` / ``token_negatives``)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
import torch

import nda
from nda.text import Counterfactual, NegativeResult, TokenShuffle, text_negatives, token_negatives
from nda.text._polarity import load_sentiment_lexicon
from nda.text._words import split_words


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- polarity strategy
@pytest.mark.parametrize(
    "src, expected",
    [
        # every sentiment-bearing clause flips, by antonym (the example)
        ("The acting is terrible and the plot is boring.", "The acting is great and the plot is exciting."),
        ("A great film with a beautiful score.", "A terrible film with an ugly score."),  # article agreement
        ("It was a ugly day.", "It was a beautiful day."),
        ("An excellent cast.", "An awful cast."),
        # negated opinions: the negation goes, the opinion word stays (no double flip)
        ("This movie was not funny at all.", "This movie was funny."),
        ("I didn't like the acting and the plot was boring.", "I did like the acting and the plot was exciting."),
        ("There is nothing good about it.", "There is something good about it."),
        ("I have never seen a worse film.", "I have never seen a better film."),
        # intensifiers stay, the opinion they modify flips
        ("The plot is incredibly stupid, but the acting is excellent.",
         "The plot is incredibly clever, but the acting is awful."),
        ("The film lacks humor and suffers from a weak script.", "The film has humor and benefits from a strong script."),
        ("I love this movie!", "I hate this movie!"),
        ("A masterpiece.", "A disaster."),
        ("GREAT movie!", "TERRIBLE movie!"),
        # fallback: negation at a nearby auxiliary, "don't" after a subject pronoun
        ("It is worth seeing.", "It is not worth seeing."),
        ("I highly recommend this movie.", "I don't highly recommend this movie."),
        # ratings flip on their scale
        ("7 out of 10.", "4 out of 10."),
        ("I give it 2/10.", "I give it 9/10."),
        ("Four stars: 4/5", "Four stars: 2/5"),
    ],
)
def test_polarity_edits(src, expected):
    r = Counterfactual("sentiment", strategy="polarity")([src])  # no labels: every opinion flips
    assert r.texts == [expected] and r.flipped == [True] and r.labels is None and r.valid == [True]


@pytest.mark.parametrize(
    "src, label, expected",
    [
        # label-aware: only the opinions of the label's polarity flip, so the text ends up with the other one;
        # "but" between two clauses that now agree becomes "and"
        ("Good acting but a boring plot.", "negative", "Good acting and an exciting plot."),
        ("Good acting but a boring plot.", "positive", "Bad acting and a boring plot."),
        ("It is not bad, but the plot is boring.", 0, "It is not bad, and the plot is exciting."),
        ("I have never seen a worse film.", 0, "I have never seen a better film."),
        ("I didn't like it, but the music is great.", 1, "I didn't like it, and the music is terrible."),
        ("7/10: a fine film.", "pos", "4/10: a poor film."),
        ("Great cast. 3/10.", 0, "Great cast. 8/10."),
    ],
)
def test_polarity_is_label_aware(src, label, expected):
    r = Counterfactual("sentiment")([src], labels=[label])
    assert r.texts == [expected] and r.flipped == [True]


def test_polarity_text_already_of_the_target_polarity_is_not_flipped():
    r = Counterfactual("sentiment")(["A boring, stupid film."], labels=["positive"])
    assert r.flipped == [False] and r.texts == ["A boring, stupid film."] and r.labels == ["positive"]


@pytest.mark.parametrize(
    "text",
    ["Hmm.", "He is a man.", "It's a love story.", "It looks like a dog.", "As well as the cast.",
     "The best friend of the hero dies.", "The plot follows a murder.", "We had fun.", "Tables."],
)
def test_polarity_leaves_text_without_opinion_alone(text):
    for label in ("positive", "negative"):
        r = Counterfactual("sentiment")([text], labels=[label])
        assert r.texts == [text] and r.flipped == [False] and r.valid == [False] and r.labels == [label]


def test_polarity_leaves_neutral_clauses_untouched_where_rules_did_not():
    """The old rules negate any clause ("He is not a man."); polarity edits only sentiment-bearing ones."""
    text = "The film is set in Korea. He is a soldier. The acting is terrible."
    new = Counterfactual("sentiment")([text], labels=[0])[0]
    old = Counterfactual("sentiment", strategy="rules")([text], labels=[0])[0]
    assert new == "The film is set in Korea. He is a soldier. The acting is great."
    assert old == "The film is rise in Korea. He is not a soldier. The acting is not terrible."  # (sic)


def test_polarity_does_not_double_negate():
    text = "He speaks in a normal voice that's not too far from the director who upsets everyone."
    out = Counterfactual("sentiment").edit(text)
    assert out is None or "not not" not in out


def test_strategy_auto_old_behaviour_reachable_and_config():
    assert Counterfactual().resolve_strategy() == "polarity"
    assert Counterfactual().resolve_strategy(labelled=False) == "rules"  # label-free negatives: negate anything
    assert Counterfactual("nli").resolve_strategy() == "rules"
    assert Counterfactual(label_map=None).resolve_strategy() == "rules"
    cf = Counterfactual()
    assert cf.resolve_strategy(cf._map) == "polarity"
    # a per-call label map decides "auto" too: NLI hypotheses get the generic rules
    r = cf(["A man is sleeping."], labels=["entailment"], label_map="nli")
    assert r.texts == ["A man is not sleeping."] and r.labels == ["contradiction"]
    old = Counterfactual(strategy="rules")(["The acting is terrible and the plot is boring."], labels=[0])
    assert old.texts == ["The acting is not terrible and the plot is boring."]  # issue 11's example, kept reachable
    built = nda.build("counterfactual:strategy=rules")
    assert built.strategy == "rules" and nda.build(built.config()).strategy == "rules"
    assert "strategy='rules'" in repr(built)
    with pytest.raises(ValueError, match="strategy"):
        Counterfactual(strategy="magic")


def test_polarity_is_deterministic_and_batched_over_sentences():
    review = "Good acting. Bad plot. The ending was not satisfying, but the music is wonderful."
    cf = Counterfactual(strategy="polarity")
    a, b = cf([review] * 3), cf([review])
    assert a.texts == [b.texts[0]] * 3
    assert b.texts == ["Bad acting. Good plot. The ending was satisfying, but the music is terrible."]
    assert Counterfactual(max_edits=1, strategy="polarity")([review]).texts == ["Bad acting. Bad plot. The ending was not "
                                                          "satisfying, but the music is wonderful."]
    assert cf([review], labels=[0]).texts == ["Good acting. Good plot. The ending was satisfying, and the music is "
                                             "wonderful."]


def test_sentiment_lexicon_shipped_with_licence():
    import nda.text

    data = Path(nda.text.__file__).parent / "data"
    licence = (data / "OPINION_LEXICON_LICENSE").read_text()
    assert "CC BY 4.0" in licence and "Bing Liu" in licence
    swaps, signs = load_sentiment_lexicon()
    opinion = set(signs)
    assert swaps["terrible"][0] == "great" and swaps["boring"][0] == "exciting" and swaps["like"] == ("dislike", "v")
    assert 3000 < len(opinion) < 10000 and 300 < len(swaps) < len(opinion)
    assert "plot" not in opinion and "murder" not in opinion  # topic words of reviews are not opinions
    signs = dict(line.split("\t")[:2] for line in (data / "opinion_words.tsv").read_text().splitlines()
                 if line and not line.startswith("#"))
    both = [(w, a) for w, (a, _) in swaps.items() if signs.get(w) in "+-" and signs.get(a, "?") in "+-"]
    assert len(both) > 0.8 * len(swaps)
    assert all(signs[w] != signs[a] for w, a in both)  # a swap always goes to the other polarity
    assert sum((data / f).stat().st_size for f in ("opinion_words.tsv", "sentiment_antonyms.tsv")) < 300_000


# ----------------------------------------------------------------------------- grapheme clusters
def test_split_words_keeps_combining_marks_with_their_word():
    assert split_words("cafe\u0301 is") == ["", "cafe\u0301", " ", "is", ""]
    assert split_words("हिन्दी भाषा")[1::2] == ["हिन्दी", "भाषा"]
    assert split_words("می\u200cخواهم")[1::2] == ["می\u200cخواهم"]
    text = "Zoe\u0308 and cafe\u0301, naïve e\u0301le\u0300ve!"
    assert "".join(split_words(text)) == text


def test_token_shuffle_moves_whole_grapheme_clusters():
    """Regression (issue 9 item 7): "cafe\u0301 is" -> "iś … cafe": the combining accent stayed in place."""
    text = "cafe\u0301 is nai\u0308ve and जाती है"
    words = sorted(split_words(text)[1::2])
    for seed in range(20):
        out = TokenShuffle()([text], generator=gen(seed))[0]
        assert sorted(split_words(out)[1::2]) == words
        for w in out.split():
            assert not unicodedata.category(w[0]).startswith("M")  # no word starts with a stray mark
        assert "e\u0301" in out and "i\u0308" in out


# ----------------------------------------------------------------------------- k negatives + mask
class _NoFlags(nda.Negative):
    """A plain callable negative: returns a list, knows no flags."""

    name, modality = "upper_first", "text"

    def __call__(self, batch, *, generator=None):
        return [t if i == 0 else t.upper() for i, t in enumerate(batch)]


def test_text_negatives_shapes_mask_and_same_draws_as_k_calls():
    anchors = ["the cat sat on the mat", "Hmm.", "a dog barked at night"]
    negs, valid = text_negatives(anchors, TokenShuffle(), k=3, generator=gen(4))
    assert len(negs) == 3 and all(isinstance(n, NegativeResult) and len(n) == 3 for n in negs)
    assert valid.shape == (3, 3) and valid.dtype == torch.bool
    assert valid[0].all() and not valid[1].any() and valid[2].all()  # "Hmm." cannot be shuffled
    g = gen(4)
    plain = [TokenShuffle()(anchors, generator=g) for _ in range(3)]  # the helper draws exactly like k calls
    assert [list(n) for n in negs] == [list(p) for p in plain]
    _, mask = text_negatives(anchors, _NoFlags(), k=2, device="cpu")
    assert mask.tolist() == [[False, False], [True, True], [True, True]]  # equal to the anchor -> masked


def test_text_negatives_masks_unflipped_counterfactuals_inside_composites():
    anchors = ["Hmm.", "Good movie!", "Tables and chairs.", "It was not funny."]
    negs, valid = text_negatives(anchors, nda.build("counterfactual"), k=1)
    assert valid[:, 0].tolist() == [False, True, False, True]
    assert negs[0].flipped == [False, True, False, True]
    negs, valid = text_negatives(anchors, nda.build("counterfactual|token_shuffle"), k=4, generator=gen(1),
                                 labels=[1, 1, 0, 0])
    assert not valid[0].any()  # "Hmm.": neither member can change it
    for r, res in enumerate(negs):
        for b, anchor in enumerate(anchors):
            assert bool(valid[b, r]) == (res.valid[b] and res[b] != anchor)
            assert res.labels[b] == ([1, 1, 0, 0][b] ^ int(res.flipped[b]))


def test_text_negatives_errors():
    with pytest.raises(ValueError, match="k must"):
        text_negatives(["a b"], TokenShuffle(), k=0)
    with pytest.raises(TypeError, match="single str"):
        text_negatives("a b", TokenShuffle())
    with pytest.raises(TypeError, match="callable"):
        text_negatives(["a b"], "token_shuffle")


def test_token_negatives_masks_unchanged_rows():
    ids = torch.tensor([[101, 5, 6, 7, 102], [101, 5, 102, 0, 0]])
    tokens = {"input_ids": ids, "attention_mask": (ids != 0).long()}
    shuffle = TokenShuffle(special_ids=(101, 102), pad_token_id=0)
    outs, valid = token_negatives(tokens, shuffle, k=2, generator=gen(0))
    assert len(outs) == 2 and set(outs[0]) == set(tokens) and valid.shape == (2, 2)
    assert valid[0].all() and not valid[1].any()  # one content token cannot move
    with pytest.raises(TypeError, match="input_ids"):
        token_negatives({"ids": ids}, shuffle)


def test_min_coverage_rejects_partial_flips():
    text = "The acting is terrible and the plot is bizarre. Bizarre and grotesque."  # 2 of 4 opinions have an antonym
    assert Counterfactual()([text], labels=[0]).flipped == [True]
    assert Counterfactual(min_coverage=0.5)([text], labels=[0]).flipped == [True]
    r = Counterfactual(min_coverage=0.9)([text], labels=[0])
    assert r.flipped == [False] and r.texts == [text] and r.labels == [0]
    full = "The acting is terrible and the plot is boring."
    assert Counterfactual(min_coverage=1.0)([full], labels=[0]).flipped == [True]
    assert nda.build("counterfactual:min_coverage=0.5").min_coverage == 0.5
    for bad in (-0.1, 1.5, "high", True):
        with pytest.raises(ValueError, match="min_coverage"):
            Counterfactual(min_coverage=bad)


def test_every_negated_opinion_of_a_clause_flips():
    # regression: the first cue's scope swallowed the second negated opinion ("... and not funny" stayed)
    r = Counterfactual()(["This film is not good and not funny."], labels=[0])
    assert r.texts == ["This film is good and funny."] and r.labels == [1]


def test_an_equal_copy_of_the_sentiment_map_selects_polarity_too():
    from nda.text.counterfactual import LABEL_MAPS

    text = ["The acting is terrible and the plot is boring."]
    by_name = Counterfactual()(text, labels=[0]).texts
    by_copy = Counterfactual()(text, labels=[0], label_map=dict(LABEL_MAPS["sentiment"])).texts
    assert by_name == by_copy == ["The acting is great and the plot is exciting."]
