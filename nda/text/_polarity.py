"""The ``polarity`` counterfactual strategy: flip the sentiment of *every* sentiment-bearing clause, by antonym.

Why not the generic rules: on CAD IMDb they cost 6.5 points on originals (issue 11) because many edits do not
flip the meaning -- a negation inserted into a neutral clause ("Operations Dames was not a favorite at the
drive-ins"), a WordNet antonym of a topic word ("young" -> "old", "set" -> "rise", "supernatural" ->
"natural"), or one clause flipped of many ("The acting is terrible and the plot is boring." -> "The acting is
not terrible and the plot is boring."). Here, per sentence:

1. **Which words carry sentiment**: the Hu & Liu opinion lexicon (shipped subset, ``opinion_words.tsv``),
   minus words that in reviews name topics ("plot", "murder") or work as intensifiers ("incredibly good":
   only "good" is the opinion), with context checks for the ambiguous ones ("like" as a verb, "well" not in
   "as well", "pretty" not in "pretty good", "love" not in "love story").
2. **Clauses**: split at commas, semicolons, dashes, brackets and "but / although / however / ...", and at
   "and" when a new subject follows -- so every clause is flipped on its own.
3. **Negated opinions**: a negation cue with an opinion word in its scope (same clause, <= 5 words) is
   removed ("was not funny" -> "was funny", "don't like" -> "like", "no redeeming qualities" -> "some
   redeeming qualities"); the opinion word is then left alone (no double flip). "never" + a swappable opinion
   keeps the "never" and swaps instead ("never seen a worse film" -> "never seen a better film").
4. **Antonym swaps** of every other opinion word, always to a word of the *other* polarity
   (``sentiment_antonyms.tsv``: hand-written pairs for frequent review words, then WordNet antonyms and
   un-/in-/-less affix pairs that are in the opposite list), part-of-speech checked in context (a verb pair
   only where a verb can stand, a noun pair only after a determiner), and the article fixed
   ("a great film" -> "a terrible film", "a beautiful day" -> "an ugly day").
5. **Fallback** for a sentiment-bearing clause none of that changed: negation at its auxiliary before the
   opinion word ("is worth seeing" -> "is not worth seeing"), or "don't" after I/we/you/they ("I recommend
   it" -> "I don't recommend it").
6. **Ratings** flip on their scale: "7/10" -> "4/10", "4 out of 5" -> "2 out of 5".

**Label-aware** (when the sentiment label is given, the default through ``Counterfactual.__call__``): only
the opinions of the label's polarity flip -- a negative review's concession "good acting but a boring plot"
becomes "good acting and an exciting plot", not "bad acting but an exciting plot" -- so the counterfactual
is uniformly of the new label, as human counterfactuals are (Kaushik et al. change "but" to "and" 300 times
in CAD's training reviews). "but" between two clauses that now agree becomes "and". Without labels every
opinion flips.

A clause without opinion words is left as it is, and a text without any is not flipped (``flipped=False``).
On CAD IMDb (frozen all-MiniLM-L6-v2 + logistic regression, ``scripts/cad_probe.py``) this strategy costs
2.5 points on originals in cross-validation where the generic rules cost 7.2 (human counterfactuals: 1.6),
with the same gain on human counterfactuals.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from nda.text._clauses import clause_ids
from nda.text._negation import _REMOVE, insert_negation, remove_negation
from nda.text._words import match_case, split_words

__all__ = ["PolarityEditor", "load_sentiment_lexicon"]

_SCOPE = 5  # words after a negation cue that it governs
_FLIP = {"+": "-", "-": "+"}
_QUANTIFIER_CUES = frozenset({"never", "no", "nothing", "nobody", "none", "noone"})
_COMPARATIVES = frozenset({"better", "worse", "best", "worst", "more", "less", "least", "most"})
_AUX_REACH = 3  # the fallback negates an auxiliary at most this many words before the opinion word
_NEG_CUES = frozenset(_REMOVE) | {"no"}
_DETERMINERS = frozenset({"a", "an", "the", "this", "that", "these", "those", "my", "his", "her", "its", "our",
                          "their", "your", "such", "what", "some", "any", "no", "another", "one"})
_NOUN_BEFORE = _DETERMINERS | frozenset({"real", "total", "complete", "absolute", "utter", "true", "pure",
                                         "genuine", "minor", "major", "little", "big", "huge", "small", "rare",
                                         "whole", "outright", "definite", "certain", "bit"})
_VERB_BEFORE = frozenset({
    "i", "you", "we", "they", "he", "she", "it", "who", "people", "everyone", "everybody", "anyone", "fans",
    "to", "will", "would", "could", "should", "might", "may", "can", "must", "do", "did", "does", "don't",
    "didn't", "doesn't", "dont", "didnt", "i'll", "you'll", "we'll", "they'll", "i'd", "you'd", "we'd",
    "really", "truly", "absolutely", "simply", "just", "also", "still", "always", "never", "totally", "completely",
    "genuinely", "actually", "definitely", "certainly", "utterly", "thoroughly", "immediately", "instantly",
    "and", "or", "not", "kids", "children", "viewers", "audiences",
})
_SKIP_AFTER = {"best": {"friend", "friends", "known", "seller", "sellers", "selling"}}
_NOT_AFTER = {"best": {"at"}, "well": {"as"}, "fun": {"for", "of", "the", "make", "making", "made", "poke"}}
_ADJECTIVE_ONLY = frozenset({"fun", "moving", "touching"})
_ADJ_BEFORE = frozenset({"so", "very", "too", "is", "was", "are", "were", "be", "been", "quite", "really", "a",
                         "such", "more", "most", "less", "pretty", "not", "it's", "that's", "deeply", "truly",
                         "genuinely", "surprisingly", "incredibly", "extremely", "great", "good"})
_DONT_SUBJECTS = frozenset({"i", "we", "you", "they"})
# Words whose antonym reads differently as a noun or in a phrase: (word, next word or None) -> replacement.
_PHRASE_SWAPS = {("waste", "of"): "good use", ("classic", None): "flop", ("classic", "of"): "flop"}
_INTENSIFIERS = frozenset({"complete", "total", "utter", "absolute", "huge", "big", "real", "massive", "colossal"})
_NOT_INTENSIFIERS = frozenset({"highly", "strongly", "definitely", "very", "thoroughly", "well", "really"})
_RATING = re.compile(r"(?<![\d.])(\d{1,2}(?:\.\d)?)(\s*(?:/|out of)\s*)(10|5|4)(?![\d.]*\d)")
_AN_EXCEPTIONS = ("use", "usu", "uti", "eu", "one", "once", "ubi", "ufo", "uto", "ura", "ure", "uro")
_AN_SILENT_H = ("hour", "honest", "honor", "honour", "heir")


@functools.lru_cache(maxsize=1)
def load_sentiment_lexicon() -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """``(swaps, signs)``: ``{word: (antonym, pos)}`` and ``{sentiment-bearing word: "+" | "-" | "?"}``, both
    shipped in ``nda/text/data`` (built by ``scripts/build_sentiment_lexicon.py``)."""
    data = resources.files("nda.text.data")
    swaps: dict[str, tuple[str, str]] = {}
    for line in data.joinpath("sentiment_antonyms.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            word, ant, pos = line.split("\t")[:3]
            swaps[word] = (ant, pos)
    signs: dict[str, str] = {}
    for line in data.joinpath("opinion_words.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            word, sign = line.split("\t")[:2]
            signs[word] = sign
    for word, (ant, _) in swaps.items():  # a swap partner's sign tells an unknown one
        if signs.get(word, "?") == "?":
            signs[word] = {"+": "-", "-": "+"}.get(signs.get(ant, "?"), "?")
    return swaps, signs


def _vowel_sound(word: str) -> bool:
    low = word.lower()
    if low.startswith(_AN_SILENT_H):
        return True
    if low.startswith("uni") and not low.startswith(("unin", "unim", "unid")):
        return False  # "a unique", "a universal"; but "an uninspired", "an unimpressive"
    return low[:1] in "aeiou" and not low.startswith(_AN_EXCEPTIONS)


def _flip_rating(match: re.Match[str], source: str | None = None) -> str:
    """"7/10" -> "4/10" (integers: ``scale + 1 - x``; decimals: ``scale - x``). With a known ``source`` polarity
    only a rating on its side of the middle flips (a positive review's "3/10" is not its verdict)."""
    value, scale = float(match.group(1)), int(match.group(3))
    if not 0 <= value <= scale or (source == "+" and value <= scale / 2) or (source == "-" and value > scale / 2):
        return match.group(0)
    new = scale + 1 - value if value >= 1 and value == int(value) else scale - value
    if new == value:
        return match.group(0)
    text = str(int(new)) if new == int(new) else f"{new:.1f}"
    return text + match.group(2) + match.group(3)


class PolarityEditor:
    """Sentence-level editor of the ``polarity`` strategy (see the module docstring); stateless after init."""

    def __init__(self, swaps: dict[str, tuple[str, str]] | None = None, signs: dict[str, str] | None = None) -> None:
        default_swaps, default_signs = load_sentiment_lexicon()
        self.swaps = default_swaps if swaps is None else swaps
        self.signs = default_signs if signs is None else signs
        self.opinion = frozenset(self.signs)

    # ------------------------------------------------------------------ context checks
    def _is_opinion(self, w: str, low: list[str], i: int, pieces: list[str], clause: list[int]) -> bool:
        n = len(low)
        prev = low[i - 1] if i > 0 else None
        nxt = low[i + 1] if i + 1 < n and clause[i + 1] == clause[i] else None
        if w.endswith("ly") and nxt is not None and nxt in self.opinion and w not in ("well",):
            return False  # "incredibly good", "terribly funny": an intensifier, the opinion is the next word
        if w == "like":
            return prev in _VERB_BEFORE
        if w == "well":
            return prev is not None and prev not in _NOT_AFTER["well"] and nxt != "as"
        if w == "pretty":
            return nxt is None
        if prev is not None and prev in _NOT_AFTER.get(w, ()):
            return False
        if nxt is not None and nxt in _SKIP_AFTER.get(w, ()):
            return False
        return True

    def _swap(self, w: str, low: list[str], i: int) -> str | None:
        entry = self.swaps.get(w)
        if entry is None:
            return None
        ant, pos = entry
        prev = low[i - 1] if i > 0 else None
        if w in _ADJECTIVE_ONLY:  # "a fun movie", "very moving"; not "had fun", "moving on"
            return ant if prev in _ADJ_BEFORE else None
        if pos == "v":
            if w.endswith(("ed", "s", "ing")) and w not in ("love", "like"):
                return ant if prev not in _DETERMINERS else None
            return ant if prev in _VERB_BEFORE else None
        if pos == "n":
            return ant if prev in _NOUN_BEFORE or prev in self.opinion else None
        return ant

    # ------------------------------------------------------------------ editing
    def edit_sentence(self, sentence: str, source: str | None = None) -> str | None:
        """The counterfactual of one sentence, or ``None`` when it has no sentiment to flip.

        ``source`` (``"+"`` / ``"-"``), the polarity of the text's label, makes the edit label-aware: only the
        opinions of that polarity flip, so the whole text ends up with the other one ("good acting but a
        boring plot", negative -> "good acting and an exciting plot"); ``None`` flips every opinion.
        """
        return self.edit_with_counts(sentence, source)[0]

    def edit_with_counts(self, sentence: str, source: str | None = None) -> tuple[str | None, int, int]:
        """``(edit_sentence(...), opinions that should flip, of those the ones no rule could flip)``."""
        pieces = split_words(sentence)
        words = pieces[1::2]
        low = [w.lower().replace("’", "'") for w in words]
        rating = _RATING.search(sentence) is not None
        if not rating and self.opinion.isdisjoint(low):
            return None, 0, 0
        n = len(low)
        clause = clause_ids(pieces, low)
        senti = [w in self.opinion and self._is_opinion(w, low, i, pieces, clause) for i, w in enumerate(low)]
        swap = [self._swap(w, low, i) if senti[i] else None for i, w in enumerate(low)]
        sign = [self.signs.get(w, "?") if senti[i] else "" for i, w in enumerate(low)]

        def wanted(effective: str) -> bool:  # does a unit of this polarity flip?
            return source is None or effective in (source, "?")

        handled: set[int] = set()  # opinion words decided (edited, or kept because they agree with the target)
        want = 0
        edited_clauses: set[int] = set()
        remove: set[int] = set()
        npi_end = 0
        for c, w in enumerate(low):
            if w not in _NEG_CUES or (w == "not" and c + 1 < n and low[c + 1] == "only"):
                continue
            # a cue's scope ends at the next cue: "not good and not funny" has two negated opinions
            stop = next((j for j in range(c + 1, n) if low[j] in _NEG_CUES
                         and not (low[j] == "not" and j + 1 < n and low[j + 1] == "only")), n)
            targets = [j for j in range(c + 1, min(stop, c + 1 + _SCOPE)) if clause[j] == clause[c] and senti[j]]
            targets = [j for j in targets if j not in handled]
            if not targets:
                continue
            t = targets[0]
            keeps = w in _QUANTIFIER_CUES and (low[t].endswith(("er", "est")) or low[t] in _COMPARATIVES)
            effective = sign[t] if keeps else _FLIP.get(sign[t], "?")  # "never seen a worse film" stays negative
            if not wanted(effective):
                handled.update(targets)
                continue
            want += 1
            if w == "never" and all(swap[j] for j in targets):
                continue  # swap instead: "never seen a worse film" -> "never seen a better film"
            remove.add(c)
            handled.update(targets)
            edited_clauses.add(clause[c])
            npi_end = max(npi_end, max(j for j in range(n) if clause[j] == clause[c]) + 1)
        if remove:
            remove_negation(pieces, words, low, only=remove, npi_end=npi_end)
        pending: list[int] = []
        for i in range(n):
            if not senti[i] or i in handled:
                continue
            if not wanted(sign[i]):
                continue
            want += 1
            if swap[i] is not None or self._phrase(low, i, clause):
                self._put(pieces, words, low, i, swap[i], clause)
                edited_clauses.add(clause[i])
            else:
                pending.append(i)
        missed = sum(1 for i in pending if clause[i] not in edited_clauses)
        for k in sorted({clause[i] for i in pending} - edited_clauses):
            first = next(i for i in pending if clause[i] == k)
            start = next(i for i in range(n) if clause[i] == k)
            near = max(start, first - _AUX_REACH, 1)  # "is worth", "was really a favorite"; not a far-away aux
            if insert_negation(pieces, words, low, start=near, end=first) or self._dont(pieces, words, low, first):
                edited_clauses.add(k)
                missed -= sum(1 for i in pending if clause[i] == k)
        if source is not None and edited_clauses:
            self._agreeing_but(pieces, low, clause, senti, edited_clauses)
        out = "".join(pieces)
        if rating:
            out = _RATING.sub(lambda m: _flip_rating(m, source), out)
        if (not edited_clauses and out == sentence) or not any(pieces[1::2]):  # "Not at all!" loses every word
            return None, want, want
        return out, want, missed

    @staticmethod
    def _phrase(low: list[str], i: int, clause: list[int]) -> bool:
        nxt = low[i + 1] if i + 1 < len(low) and clause[i + 1] == clause[i] else None
        return (low[i], nxt) in _PHRASE_SWAPS

    def _put(self, pieces: list[str], words: list[str], low: list[str], i: int, new: str | None, clause: list[int]) -> None:
        """Write the antonym of word ``i`` and keep the phrase around it grammatical: "a waste of time" -> "a
        good use of time" ("a complete waste" -> "a very good use"), "highly recommended" -> "not recommended",
        "a classic." -> "a flop.", and the article before it."""
        n = len(low)
        nxt = low[i + 1] if i + 1 < n and clause[i + 1] == clause[i] else None
        phrase = _PHRASE_SWAPS.get((low[i], nxt))
        if phrase is not None:
            new = phrase
            if low[i] == "waste" and i > 0 and low[i - 1] in _INTENSIFIERS:
                pieces[2 * i - 1] = match_case("very", words[i - 1])
        if new is None:
            return
        if new.startswith("not ") and i > 0 and low[i - 1] in _NOT_INTENSIFIERS and pieces[2 * i].isspace():
            pieces[2 * i - 1] = match_case("not", words[i - 1])  # "highly recommended" -> "not recommended"
            new = new[4:]
            pieces[2 * i + 1] = new if not words[i][:1].isupper() else match_case(new, words[i])
            return
        pieces[2 * i + 1] = match_case(new, words[i])
        self._fix_article(pieces, i)

    @staticmethod
    def _agreeing_but(pieces: list[str], low: list[str], clause: list[int], senti: list[bool], edited: set[int]) -> None:
        """"but" -> "and" between two sentiment-bearing clauses that now agree (one was edited to the target
        polarity, the other already had it): "good acting but an exciting plot" -> "good acting and ...". """
        for i, w in enumerate(low):
            if w != "but" or i == 0 or clause[i] == clause[i - 1]:
                continue
            before, after = clause[i - 1], clause[i]
            has = {k: any(senti[j] for j in range(len(low)) if clause[j] == k) for k in (before, after)}
            if has[before] and has[after] and (before in edited) != (after in edited):
                pieces[2 * i + 1] = match_case("and", pieces[2 * i + 1])

    @staticmethod
    def _fix_article(pieces: list[str], i: int) -> None:
        """"a" / "an" before word ``i`` agrees with its (new) first sound."""
        if i == 0 or not pieces[2 * i].isspace():
            return
        article = pieces[2 * i - 1]
        if article.lower() not in ("a", "an"):
            return
        pieces[2 * i - 1] = match_case("an" if _vowel_sound(pieces[2 * i + 1]) else "a", article)

    @staticmethod
    def _dont(pieces: list[str], words: list[str], low: list[str], i: int) -> bool:
        """"I recommend it" -> "I don't recommend it", "I highly recommend" -> "I don't highly recommend" (a
        base-form verb after I/we/you/they, at most one -ly adverb between)."""
        if low[i].endswith(("ed", "ing", "s")):
            return False
        at = i - 1 if i >= 2 and low[i - 1].endswith("ly") else i
        if at == 0 or low[at - 1] not in _DONT_SUBJECTS:
            return False
        pieces[2 * at + 1] = "don't " + words[at]
        return True
