"""Flip targets: *which words* a label-flipping edit flipped, so a composition can tell whether two flips cancel.

Why targets and not clauses: two flips cancel only when the second one flips the *same* predicate back.
"The man is fat." -> antonym "The man is thin." -> negation "The man is not thin." keeps the meaning (the
negation scopes over "thin", the word the antonym changed), but "A tall woman is walking." -> "A short woman is
walking." -> "A short woman is not walking." flips two different things in one clause ("tall" and "walking"):
counting flips per clause called it a paraphrase, and it is none. So every edit is read as a list of *spans*
(sets of word positions, in the coordinates of :func:`~nda.text._clauses.clause_map`):

- an **antonym swap** is one span per replaced word ("tall" -> "short": ``{1}``); article fixes (a/an) and
  "but" <-> "and" are follow-on repairs, not flips;
- a **negation** insertion or removal is one span per cue: the cue (or, for an inserted "not", the auxiliary it
  attaches to), the degree words after it ("very", "really", "been", ...) and the *head* of the predicate it
  attaches to -- the first other word after it in its clause ("is not thin": ``{is, thin}``; "is not holding
  a small box": ``{is, holding}``; "does not ride": the verb in the edit itself). Not the rest of the clause: with
  the whole clause as scope, "A man is not holding a small box." would count as a paraphrase of "A man is
  holding a big box.". Negative-polarity repairs of a removal ("any" -> "some", "at all" deleted) belong to it.

:class:`~nda.compose.Compose` then counts, per span, how many flips hit it (its own plus every span of another
flip that overlaps it): all even -> the flips cancel on every target (a paraphrase); all odd with an odd number
of flips -> a negative; anything else -> neither. No parser: a word alignment (``difflib`` on the words, one
per edit) and the clause split of :mod:`nda.text._clauses`, microseconds per sentence.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from nda.text._clauses import clause_map
from nda.text._negation import _INSERT, _NPI, _PERFECT, _REMOVE

__all__ = ["flip_targets", "predicate_head", "Span"]

Span = frozenset  # a set of word positions (frozenset[int])

# negation cues an edit can remove or insert (insertion writes "not", "cannot", "never" or "don't")
_CUES = frozenset(_REMOVE) | {"no", "not", "never", "cannot", "don't", "n't"}
# words that carry no predicate of their own: auxiliaries (and what removing a cue leaves of one)
_AUX = frozenset(_INSERT) | frozenset(_PERFECT) | {"do", "does", "did", "be", "been", "being", "need", "can"}
# words between a negation and the head it scopes over ("is not *very* fat", "has not *been* happy")
_DEGREE = frozenset({
    "very", "really", "so", "too", "quite", "rather", "just", "even", "ever", "always", "never", "still", "also",
    "yet", "all", "that", "as", "extremely", "particularly", "especially", "entirely", "completely", "totally",
    "fully", "necessarily", "exactly", "actually", "truly", "been", "be", "being", "getting", "becoming",
})
_NPI_WORDS = frozenset(_NPI) | {"at", "all", "either"}
_NPI_REPAIRS = frozenset(_NPI.values()) | {"too"}
_REPAIRS = (frozenset({"a", "an"}), frozenset({"but", "and"}))  # swapped within a pair: a repair, not a flip


def flip_targets(
    before: str, after: str, earlier: Sequence[Span] = ()
) -> tuple[list[Span], list[Span]] | None:
    """``(earlier spans carried into after's word positions, this edit's spans in after's positions)``.

    ``earlier`` are the spans of the flips made before this edit, in ``before``'s word positions. ``None`` when
    the edit cannot be read (nothing changed, or no span could be found): the caller then counts it as a flip of
    the whole sample.

    >>> flip_targets("The man is thin.", "The man is not thin.", [frozenset({3})])
    ([frozenset({4})], [frozenset({2, 4})])
    """
    old, old_clause = clause_map(before)
    new, _ = clause_map(after)
    if old == new:
        return None
    carry: list[frozenset[int]] = [frozenset()] * len(old)  # before position -> after positions
    sites: list[tuple[int, int, int, int]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag == "equal" or i2 - i1 == j2 - j1:
            for k in range(i2 - i1):
                carry[i1 + k] = frozenset({j1 + k})
        elif tag == "replace":  # unequal lengths ("rides" -> "does not ride"): each word may be any of them
            for k in range(i1, i2):
                carry[k] = frozenset(range(j1, j2))
        if tag != "equal":
            sites.append((i1, i2, j1, j2))
    negations = [s for s in sites if _is_negation(old[s[0]:s[1]], new[s[2]:s[3]])]
    spans = [_negation_span(old, old_clause, *s, new) for s in negations]
    for i1, i2, j1, j2 in sites:
        if (i1, i2, j1, j2) in negations:
            continue
        removed, added = old[i1:i2], new[j1:j2]
        if negations and set(removed) <= _NPI_WORDS and set(added) <= _NPI_REPAIRS:
            continue  # "didn't see any" -> "did see some": part of the negation removal
        if i2 - i1 == j2 - j1:
            spans += [frozenset({i1 + k}) for k in range(i2 - i1)
                      if not any({removed[k], added[k]} <= pair for pair in _REPAIRS)]
        elif i2 > i1:
            spans.append(frozenset(range(i1, i2)))
        else:  # a word inserted without any cue: it attaches to the word before it
            spans.append(frozenset({max(i1 - 1, 0)}))
    if not spans:
        return None

    def move(span: Span) -> Span:
        return frozenset(j for i in span if i < len(carry) for j in carry[i])

    return [move(s) for s in earlier], [move(s) for s in spans]


_LINKING = frozenset({"been", "be", "being", "getting", "becoming"})  # degree words that carry no degree


def predicate_head(low: Sequence[str], site: int) -> int | None:
    """The word a negation inserted at ``site`` scopes over and that an antonym may replace so the two flips
    cancel: the first word after it past linking words ("is *getting* dirty" -> "dirty"); ``None`` at the end of
    the sentence or behind an intensifier ("is very fat": "not very thin" is no paraphrase of "very fat")."""
    j = site + 1
    while j < len(low) and low[j] in _DEGREE:
        if low[j] not in _LINKING:
            return None
        j += 1
    return j if j < len(low) else None


def _is_negation(removed: Sequence[str], added: Sequence[str]) -> bool:
    return any(w in _CUES or w.endswith("n't") for w in (*removed, *added))


def _negation_span(
    old: Sequence[str], clause: Sequence[int], i1: int, i2: int, j1: int, j2: int, new: Sequence[str]
) -> Span:
    """The cue (or the auxiliary an inserted cue attaches to), the degree words after it and the head of the
    predicate in its clause, in ``old``'s positions."""
    span = set(range(i1, i2)) if i2 > i1 else {i1 - 1} if i1 > 0 else set()
    if any(w not in _CUES and w not in _AUX and w not in _DEGREE for w in new[j1:j2]):
        return frozenset(span)  # the head is in the edit: "rides" -> "does not ride", "nothing" -> "something"
    home = clause[i2 - 1] if i2 > i1 else clause[i1 - 1] if i1 > 0 else clause[0] if clause else 0
    k = i2
    while k < len(old) and clause[k] == home:
        span.add(k)
        last = k + 1 >= len(old) or clause[k + 1] != home
        if old[k] not in _DEGREE or last:  # the head; a degree word with nothing after it is the head itself
            break
        k += 1
    return frozenset(span)
