"""Clauses: where a sentence splits into parts that each carry their own meaning, and which of them an edit touched.

Why here: the ``polarity`` strategy flips every sentiment-bearing clause on its own, and the flip targets a
composition of label-flipping edits counts (:mod:`nda.text._targets`) end a negation's scope at its clause
("The man is not thin, the room is ..."). Both need the same notion of a clause, so it lives in one place.

A clause boundary is a comma, semicolon, colon, dash or bracket, a contrast/subordinating word ("but",
"although", "because", ...), or "and"/"or" when a new subject follows ("... fat and the room is cold").
Sentences (``.``/``!``/``?``, line breaks, ``<br />``) are boundaries too.
"""

from __future__ import annotations

import functools
import re

from nda.text._negation import _SENTENCE
from nda.text._words import split_words

__all__ = ["clause_ids", "clause_map"]

CLAUSE_GAP = re.compile(r"[,;:()\[\]\"“”—–]|\s-\s|\.\.")
CLAUSE_WORDS = frozenset({"but", "although", "though", "however", "yet", "whereas", "while", "because", "unless",
                          "except", "despite", "otherwise"})
SUBJECTS = frozenset({"the", "this", "that", "it", "i", "he", "she", "they", "we", "you", "there", "his", "her",
                      "their", "its", "a", "an", "my", "our", "your", "these", "those", "it's", "i'm", "there's",
                      "that's", "he's", "she's", "they're", "we're", "you're"})


def clause_ids(pieces: list[str], low: list[str]) -> list[int]:
    """The clause index (0, 1, ...) of every word of one sentence (``pieces`` of :func:`split_words`, ``low`` its
    lower-cased words)."""
    ids, k, n = [], 0, len(low)
    for i, w in enumerate(low):
        if i and (
            CLAUSE_GAP.search(pieces[2 * i])
            or w in CLAUSE_WORDS
            or (w in ("and", "or") and i + 1 < n and low[i + 1] in SUBJECTS)
        ):
            k += 1
        ids.append(k)
    return ids


@functools.lru_cache(maxsize=8192)
def clause_map(text: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The words of ``text`` (sentence by sentence, as the counterfactual rules see them: lower case, straight
    apostrophes) and the text-wide clause index of every word (clauses numbered on across sentences).

    Word positions here are the coordinates :mod:`nda.text._targets` records flip targets in. Cached: in a
    composition one edit's output is the next edit's input, so each text is split once."""
    low: list[str] = []
    ids: list[int] = []
    offset = 0
    for sentence in _SENTENCE.split(text)[0::2]:
        pieces = split_words(sentence)
        words = [w.lower().replace("’", "'") for w in pieces[1::2]]
        if not words:
            continue
        local = clause_ids(pieces, words)
        low += words
        ids += [offset + k for k in local]
        offset += local[-1] + 1
    return tuple(low), tuple(ids)
