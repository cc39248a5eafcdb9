"""Negation rules shared by the counterfactual strategies: which words are negation cues and what removing
them gives, where "not" can be inserted, do-support, and the gap/word bookkeeping that keeps the text's
spacing and case intact. Pure functions on the pieces of :func:`~nda.text._words.split_words`.
"""

from __future__ import annotations

import re

from nda.text._words import match_case

# --------------------------------------------------------------------------- negation rules
# negation cue (lower case, straight apostrophe) -> replacement ("" deletes the word)
_REMOVE: dict[str, str] = {
    "not": "", "never": "always", "nothing": "something", "nobody": "somebody", "nowhere": "somewhere",
    "noone": "someone", "neither": "either", "nor": "or", "cannot": "can", "without": "with",
}
_REMOVE.update({
    "isn't": "is", "aren't": "are", "wasn't": "was", "weren't": "were", "ain't": "is", "can't": "can",
    "couldn't": "could", "won't": "will", "wouldn't": "would", "shouldn't": "should", "mustn't": "must",
    "mightn't": "might", "needn't": "need", "shan't": "shall", "haven't": "have", "hasn't": "has",
    "hadn't": "had", "didn't": "did", "doesn't": "does", "don't": "",
    # apostrophe-less spellings common in reviews
    "isnt": "is", "arent": "are", "wasnt": "was", "werent": "were", "cant": "can", "couldnt": "could",
    "wont": "will", "wouldnt": "would", "shouldnt": "should", "didnt": "did", "doesnt": "does", "dont": "",
    "havent": "have", "hasnt": "has", "hadnt": "had",
})
# phrases (two words) removed as a whole
_REMOVE_PHRASE: dict[tuple[str, str], str] = {("no", "longer"): "still", ("no", "one"): "someone"}
# negative-polarity items after a removed negation: "not funny at all" -> "funny", "didn't see any" ->
# "did see some", "hasn't come yet" -> "has come already"
_NPI: dict[str, str] = {"any": "some", "anything": "something", "anyone": "someone", "anybody": "somebody",
                        "anywhere": "somewhere", "yet": "already"}
_COMPARATIVE_FOLLOWERS = {"more", "less", "longer", "better", "worse"}
# (a bare "no" is handled in code: "no hope" -> "some hope"; "No, ..." / "no." -> "Yes")
# auxiliaries that take "not" after them
_INSERT: dict[str, str] = {
    "is": "is not", "are": "are not", "was": "was not", "were": "were not", "am": "am not", "will": "will not",
    "would": "would not", "can": "cannot", "could": "could not", "should": "should not", "must": "must not",
    "may": "may not", "might": "might not", "shall": "shall not",
    "it's": "it's not", "that's": "that's not", "he's": "he's not", "she's": "she's not", "there's": "there's not",
    "i'm": "i'm not", "you're": "you're not", "we're": "we're not", "they're": "they're not",
    "i'll": "i'll not", "you'll": "you'll not", "we'll": "we'll not", "they'll": "they'll not",
}
_PERFECT = {"has": "has not", "have": "have not", "had": "had not"}  # only before a participle
_SWAP_INSERT = {"always": "never"}
_BE_DO = {"be": "is", "have": "has", "do": "does", "go": "goes"}
_SENTENCE = re.compile(r"((?<=[.!?;:])\s+|(?:\s*<br\s*/?>\s*)+|\n+)")


# Do-support ("A man rides his bike" -> "A man does not ride his bike"): only in the safe pattern
# <subject opener> ... <verb-s> <function word | end>, within the first words of the sentence.
_SUBJECT_OPENERS = {"a", "an", "the", "one", "someone", "somebody", "everyone", "everybody", "he", "she", "it",
                    "this", "that", "each", "every", "man", "woman", "boy", "girl", "person", "child", "kid", "dog"}
_VERB_FOLLOWERS = {
    "a", "an", "the", "his", "her", "their", "its", "my", "our", "your", "some", "two", "three", "in", "on", "at",
    "to", "into", "onto", "with", "through", "across", "along", "down", "up", "away", "over", "under", "for", "from",
    "by", "around", "outside", "inside", "toward", "towards", "near", "behind", "past", "while", "and", "alone",
    "together", "home", "off", "out", "back", "him", "them", "it", "something", "nothing",
}
_NOT_VERBS = {"is", "was", "has", "does", "this", "his", "its", "yes", "us", "as", "plus", "thus", "always", "perhaps",
              "sometimes", "towards", "afterwards", "besides", "news", "series", "species", "glasses", "pants",
              "jeans", "shorts", "clothes", "sandals", "boots", "shoes", "people's", "indoors", "outdoors",
              "upstairs", "downstairs", "overseas"}  # adverbs in -s: "playing golf indoors" has no verb to negate


def _base_verb(verb: str) -> str | None:
    """``rides`` -> ``ride``, ``watches`` -> ``watch``, ``carries`` -> ``carry``; None if not a plain -s form."""
    if len(verb) < 3 or not verb.isalpha() or verb.endswith(("ss", "us", "is")) or verb in _NOT_VERBS:
        return None
    if verb == "has":
        return "have"
    if verb.endswith("ies") and len(verb) > 4:
        return verb[:-3] + "y"
    if re.search(r"(sh|ch|x|z|o)es$", verb):
        return verb[:-2]
    if verb.endswith("s") and not verb.endswith("'s"):
        return verb[:-1]
    return None


def do_support(low: list[str]) -> tuple[int, str] | None:
    """Index and base form of a present-tense main verb that takes "does not", in the safe pattern only."""
    if not low or low[0] not in _SUBJECT_OPENERS:
        return None
    for i in range(1, min(len(low), 6)):
        word = low[i]
        base = _base_verb(word)
        if base is None and not (word.endswith("ed") and len(word) > 3) and word not in ("have", "are", "were"):
            continue
        # the first verb-like word decides: accept it only in the safe pattern, else give up
        nxt = low[i + 1] if i + 1 < len(low) else None
        ok = base is not None and (nxt is None or nxt in _VERB_FOLLOWERS)
        ok = ok and low[i - 1] not in _VERB_FOLLOWERS and low[i - 1] != "of"  # "on stilts" is a noun
        return (i, base) if ok else None
    return None


def _third_person(verb: str) -> str:
    if verb in _BE_DO:
        return _BE_DO[verb]
    if re.search(r"(s|sh|ch|x|z|o)$", verb):
        return verb + "es"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ies"
    return verb + "s"


# Words that are antonym-swappable only in some contexts: "like" as a verb (not "looks like a dog"),
# "well" as an adverb of quality (not "as well", not a sentence-initial "Well, ...").
_VERB_CONTEXT = {"i", "you", "we", "they", "to", "really", "would", "do", "did", "does", "also", "still", "just",
                 "not", "don't", "didn't", "dont", "didnt", "and", "who", "people", "will", "might", "may", "could"}


def antonym_context_ok(word: str, low: list[str], i: int) -> bool:
    prev = low[i - 1] if i > 0 else None
    if word == "like":
        return prev in _VERB_CONTEXT
    if word == "well":
        return prev is not None and prev != "as"
    return True


def _is_participle(word: str) -> bool:
    return word == "been" or (len(word) > 3 and (word.endswith("ed") or word.endswith("en")))


def remove_negation(
    pieces: list[str], words: list[str], low: list[str], only: set[int] | None = None, npi_end: int | None = None
) -> bool:
    """Remove the negation cues of a sentence (``only``: just the cues at these word indices) in place.

    ``pieces`` are the gap/word pieces of :func:`~nda.text._words.split_words`, ``words`` its words, ``low``
    their lower-case forms. Negative-polarity items after the first removed cue (up to word ``npi_end``) are
    rewritten ("any" -> "some", "at all" -> ""). Returns whether anything was removed.
    """
    n = len(low)
    hit = False
    first = -1
    i = 0
    while i < n:
        w = low[i]
        nxt = low[i + 1] if i + 1 < n else None
        if only is not None and i not in only:
            i += 1
            continue
        if w == "no":
            if nxt is not None and (w, nxt) in _REMOVE_PHRASE:
                pieces[2 * i + 1] = match_case(_REMOVE_PHRASE[(w, nxt)], words[i])
                pieces[2 * i + 2] = ""  # join "no longer" -> "still"
                pieces[2 * i + 3] = ""
                hit = True
                i += 2
                continue
            gap_after = pieces[2 * i + 2]
            if nxt is None or gap_after.strip():  # "No, ..." / "no." -> "Yes"
                pieces[2 * i + 1] = match_case("yes", words[i])
            else:  # "no hope" -> "some hope"
                pieces[2 * i + 1] = match_case("some", words[i])
            hit = True
        elif w in _REMOVE:
            if w == "not" and nxt == "only":  # "not only ... but also" is not a negation
                i += 1
                continue
            repl = _REMOVE[w]
            if w in ("doesn't", "doesnt") and nxt is not None and nxt.isalpha() and nxt not in _INSERT:
                # "doesn't like" -> "likes" (third person, regular or be/have/do/go)
                pieces[2 * i + 1 + 2] = match_case(_third_person(nxt), words[i + 1])
                repl = ""
            if repl:
                pieces[2 * i + 1] = _apostrophe(match_case(repl, words[i]), words[i])
            else:
                _delete(pieces, i)
                if i + 1 < n and words[i][:1].isupper() and not pieces[2 * i].strip():
                    # "Don't see it." -> "See it."
                    nxt_word = pieces[2 * i + 3]
                    pieces[2 * i + 3] = nxt_word[:1].upper() + nxt_word[1:]
            hit = True
        if hit and first < 0:
            first = i
        i += 1
    if hit:
        _fix_polarity_items(pieces, words, low, first + 1, n if npi_end is None else npi_end)
    return hit


def insertion_site(low: list[str], start: int = 1, end: int | None = None) -> tuple[int, str] | None:
    """``(position, replacement)`` of the auxiliary :func:`insert_negation` would negate among words
    ``start .. end-1`` (``None``: none). Shared with the predicate-scoped antonym edit, which must swap the
    word this negation will scope over."""
    end = len(low) if end is None else end
    for i in range(max(start, 0), end):
        w = low[i]
        repl = _INSERT.get(w) or _SWAP_INSERT.get(w)
        if repl is None and w in _PERFECT and i + 1 < len(low) and _is_participle(low[i + 1]):
            repl = _PERFECT[w]
        if repl is not None:
            if i + 1 < len(low) and low[i + 1] in ("not", "never", "n't"):  # already negated: no "is not not"
                continue
            return i, repl
    return None


def insert_negation(pieces: list[str], words: list[str], low: list[str], start: int = 1, end: int | None = None) -> bool:
    """Negate at the first auxiliary of words ``start .. end-1`` ("is" -> "is not", "has seen" -> "has not
    seen", "always" -> "never"), in place; True if it did. Not before ``start`` so a sentence-initial
    auxiliary (a question) is left alone."""
    site = insertion_site(low, start, end)
    if site is None:
        return False
    i, repl = site
    pieces[2 * i + 1] = _apostrophe(match_case(repl, words[i]), words[i])
    return True


def _fix_polarity_items(pieces: list[str], words: list[str], low: list[str], start: int, n: int) -> None:
    """Rewrite negative-polarity items after a removed negation (words ``start .. n-1``) so the sentence stays
    grammatical."""
    i = start
    while i < n:
        w = low[i]
        nxt = low[i + 1] if i + 1 < n else None
        if w == "at" and nxt == "all":
            _delete(pieces, i, 2)
            i += 2
            continue
        if w == "any" and (nxt is None or nxt in _COMPARATIVE_FOLLOWERS or nxt.endswith("er")):
            _delete(pieces, i)  # "isn't any better" -> "is better"
        elif w in _NPI:
            pieces[2 * i + 1] = match_case(_NPI[w], words[i])
        elif w == "either" and i == n - 1:
            pieces[2 * i + 1] = match_case("too", words[i])
        i += 1


def _delete(pieces: list[str], i: int, count: int = 1) -> None:
    """Delete words ``i .. i+count-1`` (and the gaps between them) from the gap/word pieces, without leaving
    a double space or a space before punctuation."""
    first, last = 2 * i + 1, 2 * (i + count - 1) + 1
    for k in range(first, last + 1):
        pieces[k] = ""
    after = pieces[last + 1]
    if after[:1].isspace():  # "I don't like" -> "I like"; "Don't see" -> "See"
        pieces[last + 1] = after.lstrip()
    else:  # "is not, however" -> "is, however"; "it is not" -> "it is"
        pieces[first - 1] = pieces[first - 1].rstrip()


def _apostrophe(new: str, old: str) -> str:
    """Keep the typographic apostrophe of the original word."""
    return new.replace("'", "’") if "’" in old else new
