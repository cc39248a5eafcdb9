"""Flips compose by parity per target (issue 19 item 3): two label-flipping edits of the same predicate keep the
label, so the result is a paraphrase (a positive), not a negative; flips of different words -- even in one
clause -- are neither.

Hand-checked: "The man is fat." -> antonym -> "The man is thin." -> negation -> "The man is not thin." says what
the source says (a thin man is not fat) -- its label is kept, and training on it as a label-flipped negative
would teach the opposite of the truth. "A tall woman is walking." -> "A short woman is walking." -> "A short woman
is not walking." says something else twice over: the negation does not scope over "short".
"""

from __future__ import annotations

import pickle

import pytest
import torch

import nda
from nda.base import NegativeResult
from nda.compose import Compose, RandomChoice
from nda.text import Counterfactual, TokenShuffle
from nda.text._targets import flip_targets

SPEC = "counterfactual:negation=False>counterfactual:antonyms=False"  # antonym, then negation
REVERSED = "counterfactual:antonyms=False>counterfactual:negation=False"  # negation, then antonym
ANTONYM = Counterfactual(negation=False)
NEGATION = Counterfactual(antonyms=False)


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_spec_string_builds_antonym_then_negation():
    comp = nda.build(SPEC)
    assert isinstance(comp, Compose) and comp.flips_labels
    first, second = comp.negatives
    assert (first.negation, first.antonyms, second.negation, second.antonyms) == (False, True, True, False)
    assert first.resolve_strategy() == second.resolve_strategy() == "rules"
    assert nda.build(comp.config()).config() == comp.config()


@pytest.mark.parametrize("labels", [[1], None, ["positive"], torch.tensor([1])], ids=str)
def test_a_double_flip_of_one_clause_is_a_paraphrase_not_a_negative(labels):
    r = nda.build(SPEC)(["The man is fat."], labels=labels)
    assert r.texts == ["The man is not thin."]
    assert r.flipped == [False] and r.valid == [False] and r.paraphrase == [True]
    if labels is not None:  # the label is kept, in its kind
        assert r.labels == labels if not isinstance(labels, torch.Tensor) else torch.equal(r.labels, labels)


def test_one_or_three_flips_stay_a_negative():
    once = Compose([ANTONYM])(["The man is fat."], labels=[1])
    assert (once.texts, once.flipped, once.valid, once.paraphrase, once.labels) == (
        ["The man is thin."], [True], [True], [False], [0])
    thrice = nda.build(SPEC + ">counterfactual:antonyms=False")(["The man is fat."], labels=[1])
    assert (thrice.texts, thrice.flipped, thrice.valid, thrice.paraphrase, thrice.labels) == (
        ["The man is thin."], [True], [True], [False], [0])  # "not thin" -> "thin": the same clause a third time


def test_flips_of_different_clauses_are_neither_a_negative_nor_a_paraphrase():
    # antonym in clause 1 ("fat" -> "thin"), negation in clause 2 ("is" -> "is not"): two flips, but each
    # clause changed meaning once -- the label parity ("kept") does not describe the text
    r = nda.build(SPEC)(["The man looks fat and the room is blue."], labels=[1])
    assert r.texts == ["The man looks thin and the room is not blue."]
    assert (r.flipped, r.valid, r.paraphrase, r.labels) == ([False], [False], [False], [1])
    # both clauses swapped, then clause 1 negated: clause 1 flipped twice, clause 2 once
    r = nda.build(SPEC)(["The man is fat and the room is cold."], labels=[1])
    assert r.texts == ["The man is not thin and the room is hot."]
    assert (r.flipped, r.valid, r.paraphrase, r.labels) == ([False], [False], [False], [1])


def test_a_batch_mixes_paraphrases_negatives_and_unusable_samples():
    texts = ["The man is fat.", "The man looks fat and the room is blue.", "Hmm.", "He walks to work."]
    r = nda.build(SPEC)(texts, labels=[1, 0, 1, 0])
    assert r.texts == ["The man is not thin.", "The man looks thin and the room is not blue.", "Hmm.",
                       "He does not walk to work."]
    assert r.paraphrase == [True, False, False, False]
    # "walks" has no antonym: only the negation flipped it (label flipped), but a member failed -> not valid
    assert r.flipped == [False, False, False, True] and r.labels == [1, 0, 1, 1]
    assert r.valid == [False, False, False, False]


def test_a_shuffle_after_a_double_flip_is_a_plain_negative_with_the_kept_label():
    r = Compose([ANTONYM, NEGATION, TokenShuffle()])(["The man is fat."], labels=[1], generator=g())
    assert sorted(r[0].rstrip(".").split()) == sorted("The man is not thin".split())
    assert (r.flipped, r.valid, r.paraphrase, r.labels) == ([False], [True], [False], [1])


def test_paraphrase_survives_nesting_random_choice_and_pickling():
    inner = nda.build(SPEC)
    for outer in (Compose([inner]), RandomChoice([inner])):
        r = outer(["The man is fat."], labels=[1], generator=g())
        assert (r.flipped, r.valid, r.paraphrase, r.labels) == ([False], [False], [True], [1])
    back = pickle.loads(pickle.dumps(inner(["The man is fat."])))
    assert back.paraphrase == [True] and "paraphrase=[True]" in repr(back)
    assert NegativeResult(["a"]).paraphrase == [False]


class FlipEven(nda.Negative):
    """A label-flipping negative that does not say which clauses it touched (whole-sample flips)."""

    name, modality, flips_labels, stochastic = "flip_even_parity", "text", True, False

    def __call__(self, batch, *, labels=None, label_map=None, generator=None):
        flipped = [i % 2 == 0 for i in range(len(batch))]
        texts = [t + "~" if f else t for t, f in zip(batch, flipped)]
        new = None if labels is None else [1 - lab if f else lab for lab, f in zip(labels, flipped)]
        return NegativeResult(texts, flipped=flipped, valid=flipped, labels=new)


def test_whole_sample_flips_count_by_sample_and_do_not_mix_with_clause_flips():
    r = Compose([FlipEven(), FlipEven()])(["a", "b"], labels=[1, 0])
    assert (r.texts, r.flipped, r.valid, r.paraphrase, r.labels) == (["a~~", "b"], [False] * 2, [False] * 2, [True, False], [1, 0])
    r = Compose([ANTONYM, FlipEven()])(["The man is fat."], labels=[1])
    assert (r.flipped, r.valid, r.paraphrase, r.labels) == ([False], [False], [False], [1])


def test_antonym_only_and_negation_only_keep_to_their_edit_kind_with_sentiment_labels():
    """``auto`` used to pick the polarity editor for sentiment labels, which ignores negation= / antonyms=."""
    assert ANTONYM(["The movie is not good."], labels=[0]).texts == ["The movie is not bad."]
    assert NEGATION(["The movie is good."], labels=[1]).texts == ["The movie is not good."]
    with pytest.raises(ValueError, match="strategy='polarity'"):
        Counterfactual(negation=False, strategy="polarity")


def _flags(r):
    return list(zip(r.texts, r.flipped, r.valid, r.paraphrase))


NEITHER, PARAPHRASE = (False, False, False), (False, False, True)  # (flipped, valid, paraphrase)


def test_a_double_flip_of_two_words_in_one_clause_is_not_a_paraphrase():
    """The bug: the negation scopes over "walking", the antonym changed "tall" -- one clause, two targets."""
    r = nda.build(SPEC)(["A tall woman is walking.", "The man is fat."], labels=[1, 1])
    assert _flags(r) == [("A short woman is not walking.", *NEITHER), ("The man is not thin.", *PARAPHRASE)]
    assert r.labels == [1, 1]


def test_negation_then_antonym_counts_the_same_way():
    r = nda.build(REVERSED)(["A tall woman is walking.", "The man is fat.", "The man is very fat."])
    assert _flags(r) == [("A short woman is not walking.", *NEITHER), ("The man is not thin.", *PARAPHRASE),
                         ("The man is not very thin.", *PARAPHRASE)]  # a degree word between cue and head


def test_a_removed_negation_cancels_an_antonym_only_in_its_scope():
    # "not hot" -> "not cold" -> "cold": the removed "not" scoped over the swapped word (either order)
    texts = ["The soup is not hot.", "The tall man is not walking."]
    for spec in (SPEC, REVERSED):
        r = nda.build(spec)(texts, labels=[0, 0])
        assert _flags(r) == [("The soup is cold.", *PARAPHRASE), ("The short man is walking.", *NEITHER)]


def test_an_attributive_and_a_predicate_adjective_are_different_targets():
    negation = Counterfactual(antonyms=False)
    on_old = Compose([Counterfactual(negation=False, lexicon={"old": "young"}), negation])
    on_happy = Compose([Counterfactual(negation=False, lexicon={"happy": "sad"}), negation])
    assert _flags(on_old(["The old man is happy."])) == [("The young man is not happy.", *NEITHER)]
    assert _flags(on_happy(["The old man is happy."])) == [("The old man is not sad.", *PARAPHRASE)]
    # the shipped lexicon swaps both ("old" -> "new", "happy" -> "unhappy"): "new" is flipped once
    assert _flags(nda.build(SPEC)(["The old man is happy."])) == [("The new man is not unhappy.", *NEITHER)]


def test_the_negation_scope_is_the_predicate_head_not_the_rest_of_the_clause():
    # the object "small" -> "large" is not what "is not holding" negates: no paraphrase of a man holding a small box
    r = nda.build(SPEC)(["A man is holding a small box.", "A man is wearing a white shirt."])
    assert _flags(r) == [("A man is not holding a large box.", *NEITHER),
                         ("A man is not wearing a black shirt.", *NEITHER)]


def test_two_sentences_cancel_each_on_its_own_target():
    texts = ["The man is fat. The woman is thin.", "The tall man is fat. The woman is thin.",
             "The man is fat. The woman is walking."]
    r = nda.build(SPEC)(texts)
    assert _flags(r) == [("The man is not thin. The woman is not thick.", *PARAPHRASE),
                         ("The short man is not thin. The woman is not thick.", *NEITHER),  # "short": flipped once
                         ("The man is not thin. The woman is not walking.", *NEITHER)]


def test_flip_targets_names_the_flipped_words_and_carries_earlier_ones():
    assert flip_targets("The man is fat.", "The man is thin.") == ([], [{3}])  # the swapped word
    # the inserted "not" attaches to "is" and scopes over the head "thin"; the earlier {thin} moves one word on
    assert flip_targets("The man is thin.", "The man is not thin.", [frozenset({3})]) == ([{4}], [{2, 4}])
    assert flip_targets("A man is holding a big box.", "A man is not holding a big box.") == ([], [{2, 4}])
    assert flip_targets("A man rides his bike.", "A man does not ride his bike.") == ([], [{2, 3, 4}])
    assert flip_targets("He didn't see any dogs at all.", "He did see some dogs.") == ([], [{1, 2}])  # NPIs belong to it
    assert flip_targets("A good movie.", "A good movie.") is None


def test_an_adverb_in_s_is_not_negated_by_do_support():
    # "indoors" -> "outdoors" then do-support made "Man playing golf does not outdoor with coat on ." (a paraphrase!)
    r = nda.build(SPEC)(["Man playing golf indoors with coat on ."])
    # one flip (the antonym), the negation member found nothing to negate: not valid, not a paraphrase
    assert _flags(r) == [("Man playing golf outdoors with coat on .", True, False, False)]


SCOPED = "counterfactual:negation=False,antonym_scope=predicate>counterfactual:antonyms=False"


def test_a_predicate_scoped_antonym_lands_where_the_negation_will():
    """antonym_scope='predicate': only the head the first auxiliary's negation scopes over is swapped, so the
    double flip is a paraphrase where the unscoped one flipped two different words (hand-checked)."""
    texts = ["The tall woman is happy.", "The boy is getting dirty.", "A tall woman is walking.", "He is tall.",
             "The old man is very fat."]
    scoped = nda.build(SCOPED)(texts)
    assert _flags(scoped) == [("The tall woman is not unhappy.", *PARAPHRASE),
                              ("The boy is not getting clean.", *PARAPHRASE),
                              ("A tall woman is not walking.", True, False, False),  # no antonym step: unusable
                              ("He is not short.", *PARAPHRASE),
                              # "not very thin" is no paraphrase of "very fat": no antonym behind an intensifier
                              ("The old man is not very fat.", True, False, False)]
    # verbs are not complementary: "is not closing a door" says nothing of opening it ("open" is a verb entry)
    verbs = nda.build(SCOPED)(["A man is opening a door.", "The window is open.", "He is leading the band."])
    assert not any(verbs.paraphrase)
    unscoped = nda.build(SPEC)(texts[:1])
    assert [p for *_, p in _flags(unscoped)] == [False]  # "short woman ... not unhappy": two targets


def test_antonym_scope_alone_swaps_only_the_predicate_head():
    one = Counterfactual(negation=False, antonym_scope="predicate")
    r = one(["The tall woman is happy.", "A tall woman is walking.", "Is the tall woman happy?"])
    assert r.texts == ["The tall woman is unhappy.", "A tall woman is walking.", "Is the tall woman happy?"]
    assert r.flipped == [True, False, False]  # a sentence-initial auxiliary (a question) has no insertion site
    assert one.resolve_strategy("sentiment") == "rules"  # the scope is a rules option: never the polarity editor
    with pytest.raises(ValueError, match="antonym_scope must be one of all, predicate, got 'verb'"):
        Counterfactual(antonym_scope="verb")
    with pytest.raises(ValueError, match="antonym_scope='predicate' is a 'rules' option"):
        Counterfactual(antonym_scope="predicate", strategy="polarity")
