"""Rule-based, label-flipping counterfactuals: negation insertion/removal and antonym swaps, offline.

A counterfactual keeps almost every word of a sentence but flips its meaning, and with it the label
(Kaushik et al., 2020 made such edits by hand). Two strategies (``strategy=``):

- ``"polarity"`` (the default when sentiment labels are given): flip every *sentiment-bearing* clause --
  negated opinions un-negated, opinion words swapped for antonyms of the other polarity (Hu & Liu opinion
  lexicon, shipped subset), articles fixed, neutral clauses left alone; see :mod:`nda.text._polarity`.
- ``"rules"`` (the default otherwise: NLI hypotheses, label-free contrastive negatives; the only strategy
  before): one
  generic edit per sentence, whatever it says:

1. **negation removal** (when the sentence has a negation cue): "is not" -> "is", "can't" -> "can",
   "don't like" -> "like", "doesn't like" -> "likes", "didn't" -> "did", "never" -> "always",
   "nothing" -> "something", "no longer" -> "still", ... (every cue of the sentence);
2. else **antonym swaps** (good -> bad, love -> hate, loved -> hated) from the compact lexicon shipped in
   ``nda/text/data/antonyms.tsv`` (built from WordNet by ``scripts/build_antonym_lexicon.py``; WordNet
   licence in ``nda/text/data/WORDNET_LICENSE``), every lexicon word of the sentence;
3. else **negation insertion** at the first auxiliary that is not sentence-initial (so questions are left
   alone): "is" -> "is not", "can" -> "cannot", "it's" -> "it's not", "has seen" -> "has not seen",
   or "always" -> "never"; else **do-support** for a present-tense main verb in a simple clause
   ("A man rides his bike." -> "A man does not ride his bike."; only in the safe pattern
   <subject opener> ... <verb-s> <function word or end>, otherwise no edit).

In ``"rules"``, removal comes first because the sentence then returns to its un-negated form (no double
negation); each sentence gets one kind of edit, so a sentence is never both negated and antonym-swapped. Case and
punctuation survive ("Good movie!" -> "Bad movie!"). The rules are deterministic: ``generator`` is
accepted for the common protocol and ignored.

Labels: ``label_map="sentiment"`` (positive<->negative, pos<->neg, 1<->0, any case), ``"nli"``
(entailment -> contradiction, 0 -> 2 in the SNLI/MNLI numbering, for an edited *hypothesis*; neutral and
contradiction are *not* flippable: negating a contradicting hypothesis often gives a neutral pair, not an
entailed one -- use ``"nli_symmetric"`` to also map contradiction -> entailment anyway), or any dict
``{label: new_label}``. A sample is ``flipped`` only if a rule edited it *and* its label (when given) is in
the map; otherwise its text and label come back unchanged with ``flipped=False`` -- never an unchanged
text presented as a counterfactual.

Label kinds: ``1``, ``1.0``, ``True``, ``np.int64(1)`` and ``tensor(1.)`` are the same label (one
normalisation, :func:`nda.base.label_list`, for the polarity check and the label map); ``1.5`` is an error naming
``labels``; flipped labels come back in the kind they came in (``1.0`` -> ``0.0``, ``True`` -> ``False``, a
tensor or array of the same dtype).

Composing edit kinds: ``negation=False`` is the antonym-only counterfactual and ``antonyms=False`` the
negation-only one (both use the ``"rules"`` strategy). Chained, they make a double flip, e.g. "antonym then
negation" -- recommended spec string
``"counterfactual:negation=False,antonym_scope=predicate>counterfactual:antonyms=False"`` (``nda.build`` gives a
:class:`~nda.compose.Compose`): "The man is fat." -> "The man is thin." -> "The man is not thin.", two flips of
one target (the negation scopes over the swapped word) that keep the label, so the result is marked
``paraphrase`` (an extra positive), not a negative. Two flips of different words -- "A tall woman is walking." ->
"A short woman is not walking." -- are neither (``valid=False``, ``paraphrase=False``); see
:meth:`Counterfactual.flip_targets`. ``antonym_scope="predicate"`` makes the antonym edit swap only the adjective the
negation will scope over: fewer but cleaner double flips (38 of 4,000 SNLI dev sentences against 50 unscoped, none
of them a verb like "is not closing a door"; 1.7% of the SNLI/MRPC/CAD-NLI training anchors). The antonym lexicon,
not the scope, limits the yield.

String level only: token ids must be decoded first (negation changes the number of tokens and needs words).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from nda.base import Negative, NegativeResult, canonical_label, label_list
from nda.sampling import check_generator
from nda.text._negation import (
    _REMOVE,
    _SENTENCE,
    antonym_context_ok,
    do_support,
    insert_negation,
    insertion_site,
    remove_negation,
)
from nda.text._polarity import PolarityEditor
from nda.text._targets import flip_targets, predicate_head
from nda.text._words import check_texts, is_token_batch, match_case, split_words

__all__ = ["Counterfactual", "CounterfactualResult", "LABEL_MAPS", "STRATEGIES", "load_antonyms"]

STRATEGIES = ("auto", "polarity", "rules")
ANTONYM_SCOPES = ("all", "predicate")

# --------------------------------------------------------------------------- label maps
LABEL_MAPS: dict[str, dict[Any, Any]] = {
    "sentiment": {"positive": "negative", "negative": "positive", "pos": "neg", "neg": "pos", 1: 0, 0: 1},
    "nli": {"entailment": "contradiction", 0: 2},
    "nli_symmetric": {"entailment": "contradiction", "contradiction": "entailment", 0: 2, 2: 0},
}

# --------------------------------------------------------------------------- lexicon
@functools.lru_cache(maxsize=4)
def _read_lexicon(path: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """``({word: antonym}, {word: part of speech})`` of a ``word<TAB>antonym[<TAB>pos...]`` TSV (the shipped
    one: WordNet's ``a``, ``r``, ``v``, ``v-infl``); a lexicon without the third column has no POS."""
    if path is None:
        text = resources.files("nda.text.data").joinpath("antonyms.tsv").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    lex: dict[str, str] = {}
    pos: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise ValueError(f"antonym lexicon {path or 'antonyms.tsv'}: expected 'word<TAB>antonym', got {line!r}")
        lex[parts[0].lower()] = parts[1].lower()
        if len(parts) > 2 and parts[2]:
            pos[parts[0].lower()] = parts[2]
    return lex, pos


def load_antonyms(path: str | None = None) -> dict[str, str]:
    """The antonym lexicon ``{word: antonym}`` (the shipped one unless ``path`` names another TSV)."""
    return _read_lexicon(path)[0]


@functools.lru_cache(maxsize=65536)
def _wordnet_antonym(word: str) -> str | None:
    """First single-word adjective/adverb/verb antonym in WordNet (only when the corpus is installed)."""
    try:
        from nltk.corpus import wordnet as wn

        for pos in ("a", "s", "r", "v"):
            for lemma in wn.lemmas(word, pos):
                for ant in lemma.antonyms():
                    name = ant.name().lower()
                    if name.isalpha():
                        return name
    except (LookupError, ImportError):  # corpus not installed, or nltk itself missing: the lexicon still answers
        return None
    return None


# --------------------------------------------------------------------------- result
CounterfactualResult = NegativeResult  # the one text result type (``texts``, ``labels``, ``flipped``, ``valid``)


# --------------------------------------------------------------------------- negative
class Counterfactual(Negative):
    """Label-flipping counterfactual edits (negation and antonyms), see the module docstring.

    >>> cf = Counterfactual()
    >>> r = cf(["Good movie!", "It was not funny.", "Hmm."], labels=["positive", "negative", "positive"])
    >>> r.texts, r.labels, r.flipped
    (['Bad movie!', 'It was funny.', 'Hmm.'], ['negative', 'positive', 'positive'], [True, True, False])

    Args:
        label_map: ``"sentiment"``, ``"nli"``, ``"nli_symmetric"``, a dict ``{label: flipped_label}``, or
            ``None`` (labels are not flipped; passing labels then is an error).
        negation: use negation removal/insertion rules.
        antonyms: use antonym swaps.
        lexicon: path of a ``word<TAB>antonym`` TSV replacing the shipped lexicon, or a dict.
        wordnet: also look up words missing from the lexicon in NLTK's WordNet when it is installed
            (slower; off by default so results do not depend on the machine).
        max_edits: edit at most this many sentences per text (``None``: every sentence it can).
        strategy: ``"polarity"`` (flip every sentiment-bearing clause: negated opinions un-negated, opinion
            words swapped for antonyms of the other polarity, neutral clauses untouched; see
            :mod:`nda.text._polarity`), ``"rules"`` (the generic rules of the module docstring: negation removal,
            else WordNet antonyms, else negation insertion, in every sentence), or ``"auto"`` (default):
            ``"polarity"`` when the label map in use is ``"sentiment"``, ``"rules"`` otherwise (NLI hypotheses,
            label-free negatives). ``negation`` / ``antonyms`` / ``lexicon`` / ``wordnet`` tune ``"rules"``.
        min_coverage: ``"polarity"`` only: a text counts as flipped only if at least this share of its opinions
            that should flip (those of its label's polarity; all of them without labels) were flipped -- a
            partial flip keeps sentiment of the old label under the new one (label noise). 0 accepts any edit.
        antonym_scope: ``"all"`` (default: every lexicon word of the sentence) or ``"predicate"``: only the
            word a negation inserted at the first auxiliary would scope over ("The man is *fat*", "is getting
            *dirty*"), and only an adjective there (the lexicon's POS ``a``; no ``-ing`` form): "is not closing a
            door" is no paraphrase of "is opening" one, nor "not very thin" of "very fat". Why: a double flip
            "antonym then negation" keeps the meaning only when both edits hit the same word, and only for
            complementary adjectives. ``"rules"`` only.
    """

    name = "counterfactual"
    modality = "text"
    pairwise = False
    flips_labels = True
    stochastic = False  # rules, no randomness: k copies would be identical

    def __init__(
        self,
        label_map: str | Mapping[Any, Any] | None = "sentiment",
        negation: bool = True,
        antonyms: bool = True,
        lexicon: str | Path | Mapping[str, str] | None = None,
        wordnet: bool = False,
        max_edits: int | None = None,
        strategy: str = "auto",
        min_coverage: float = 0.0,
        antonym_scope: str = "all",
    ) -> None:
        self._map = _resolve_label_map(label_map, "label_map")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if antonym_scope not in ANTONYM_SCOPES:
            raise ValueError(f"antonym_scope must be one of {', '.join(ANTONYM_SCOPES)}, got {antonym_scope!r}")
        if antonym_scope != "all" and strategy == "polarity":
            raise ValueError("antonym_scope='predicate' is a 'rules' option; strategy='polarity' swaps opinion words "
                             "wherever they are (use strategy='rules' or 'auto')")
        if not negation and not antonyms:
            raise ValueError("Counterfactual needs negation=True or antonyms=True (no rule would apply)")
        if strategy == "polarity" and not (negation and antonyms):
            raise ValueError(
                "strategy='polarity' uses both negation and antonym edits; negation=False / antonyms=False need "
                "strategy='rules' (or 'auto')"
            )
        if max_edits is not None and (not isinstance(max_edits, int) or isinstance(max_edits, bool) or max_edits < 1):
            raise ValueError(f"max_edits must be a positive int or None, got {max_edits!r}")
        self.label_map = label_map
        self.negation = bool(negation)
        self.antonyms = bool(antonyms)
        self.lexicon = lexicon
        self.wordnet = bool(wordnet)
        self.max_edits = max_edits
        self.strategy = strategy
        if isinstance(min_coverage, bool) or not isinstance(min_coverage, (int, float)) or not 0 <= min_coverage <= 1:
            raise ValueError(f"min_coverage must be a number in [0, 1], got {min_coverage!r}")
        self.min_coverage = float(min_coverage)
        self.antonym_scope = antonym_scope
        self._polarity: PolarityEditor | None = None
        if isinstance(lexicon, Mapping):
            self._lex = {str(k).lower(): str(v).lower() for k, v in lexicon.items()}
            self._pos: dict[str, str] = {}
        else:
            self._lex, self._pos = _read_lexicon(None if lexicon is None else str(lexicon))
        self._lex_keys = frozenset(self._lex)
        self._neg_keys = frozenset(_REMOVE) | {"no"}

    def __call__(
        self,
        texts: Any,
        *,
        labels: Any = None,
        label_map: str | Mapping[Any, Any] | None = None,
        generator: torch.Generator | None = None,
    ) -> CounterfactualResult:
        check_generator(generator)
        if is_token_batch(texts):
            raise TypeError(
                "Counterfactual works on strings only (negation changes the number of tokens): decode the ids "
                "first, e.g. tokenizer.batch_decode(batch['input_ids'], skip_special_tokens=True), then re-tokenize"
            )
        texts = check_texts(texts, "Counterfactual")
        mapping = self._map if label_map is None else _resolve_label_map(label_map, "label_map")
        label_values, restore = label_list(labels, len(texts)) if labels is not None else (None, None)
        if label_values is not None and mapping is None:
            raise ValueError("labels were given but label_map is None; pass label_map='sentiment', 'nli' or a dict")
        strategy = self.resolve_strategy(mapping, labelled=label_values is not None)
        if strategy == "polarity" and label_values is not None and _is_sentiment(mapping):
            sources = [_label_polarity(lab) for lab in label_values]  # label-aware: flip what disagrees with the target
        else:
            sources = [None] * len(texts)
        edited = [self.edit(t, strategy=strategy, source=src) for t, src in zip(texts, sources)]
        out_texts: list[str] = []
        out_labels: list[Any] | None = [] if label_values is not None else None
        flipped: list[bool] = []
        for i, (text, new) in enumerate(zip(texts, edited)):
            ok = new is not None and new != text
            new_label = None
            if ok and label_values is not None:
                new_label = _flip_label(label_values[i], mapping)
                ok = new_label is not None
            flipped.append(ok)
            out_texts.append(new if ok else text)
            if out_labels is not None:
                out_labels.append(new_label if ok else label_values[i])
        labels_out = restore(out_labels) if restore is not None and out_labels is not None else None
        return NegativeResult(out_texts, flipped=flipped, valid=flipped, labels=labels_out)

    @staticmethod
    def flip_targets(
        before: str, after: str, earlier: Sequence[frozenset[int]] = ()
    ) -> tuple[list[frozenset[int]], list[frozenset[int]]] | None:
        """The word spans the edit ``before -> after`` flipped, and the ``earlier`` flips' spans carried into
        ``after``'s word positions (``None``: the edit cannot be read).

        Read by :class:`~nda.compose.Compose` to count flips per *target*: "thin" -> "not thin" cancels (the
        negation scopes over the swapped word), "short ... walking" -> "short ... not walking" does not; see
        :mod:`nda.text._targets`."""
        return flip_targets(before, after, earlier)

    # ------------------------------------------------------------------ rules
    def resolve_strategy(self, mapping: Mapping[Any, Any] | None = None, labelled: bool = True) -> str:
        """The strategy used with label map ``mapping`` (the constructor's by default): ``"auto"`` resolved.

        ``"auto"`` is ``"polarity"`` for sentiment labels and ``"rules"`` otherwise -- NLI, and label-free calls
        (``labelled=False``: contrastive negatives of arbitrary sentences, where negating whatever the sentence
        says covers far more text than flipping its opinion words). With ``negation=False`` or ``antonyms=False``
        ``"auto"`` is always ``"rules"``: the ``polarity`` editor mixes both edit kinds, so only the rules can
        keep to the one kind asked for."""
        if self.strategy != "auto":
            return self.strategy
        if not (self.negation and self.antonyms) or self.antonym_scope != "all":  # only "rules" honours these
            return "rules"
        mapping = self._map if mapping is None else mapping
        return "polarity" if labelled and _is_sentiment(mapping) else "rules"

    def edit(self, text: str, strategy: str | None = None, source: str | None = None) -> str | None:
        """The counterfactual of one text, or ``None`` when no rule applies (``strategy``: this one's by default;
        ``source``: ``"+"``/``"-"``, the polarity of its sentiment label, for the label-aware ``polarity`` edit)."""
        strategy = self.resolve_strategy(labelled=source is not None) if strategy is None else strategy
        parts = _SENTENCE.split(text)
        changed = 0
        if strategy == "polarity" and self.min_coverage > 0:  # count the opinions no rule could flip
            editor = self._polarity_editor()
            wanted = missed = 0
            for k in range(0, len(parts), 2):
                new, want, miss = editor.edit_with_counts(parts[k], source)
                if new is not None and (self.max_edits is None or changed < self.max_edits):
                    parts[k] = new
                    changed += 1
                    wanted, missed = wanted + want, missed + miss
                else:
                    wanted, missed = wanted + want, missed + want
            if changed and wanted and 1 - missed / wanted < self.min_coverage:
                return None  # a partial flip: too many opinions of the old label left
            return "".join(parts) if changed else None
        edit_sentence = self.sentence_editor(strategy, source)
        for k in range(0, len(parts), 2):
            if self.max_edits is not None and changed >= self.max_edits:
                break
            new = edit_sentence(parts[k])
            if new is not None:
                parts[k] = new
                changed += 1
        return "".join(parts) if changed else None

    def sentence_editor(self, strategy: str | None = None, source: str | None = None) -> Callable[[str], str | None]:
        """The function that edits one sentence under ``strategy`` (this one's by default): returns the edited
        sentence or ``None``. Texts are split into sentences first (``edit``); measurement scripts use this to
        count edited sentences."""
        strategy = self.resolve_strategy(labelled=source is not None) if strategy is None else strategy
        if strategy == "polarity":
            return functools.partial(self._polarity_editor().edit_sentence, source=source)
        if strategy != "rules":
            raise ValueError(f"strategy must be 'polarity' or 'rules' here, got {strategy!r}")
        return self._edit_sentence

    def _polarity_editor(self) -> PolarityEditor:
        if self._polarity is None:  # built on first use: loads the shipped sentiment lexicon once
            self._polarity = PolarityEditor()
        return self._polarity

    def _antonym(self, low: str) -> str | None:
        ant = self._lex.get(low)
        if ant is None and self.wordnet and low.isalpha():
            ant = _wordnet_antonym(low)
        return ant

    def _edit_sentence(self, sentence: str) -> str | None:
        pieces = split_words(sentence)
        words = pieces[1::2]
        if not words:
            return None
        low = [w.lower().replace("’", "'") for w in words]
        present = set(low)
        if self.negation and not present.isdisjoint(self._neg_keys):
            if remove_negation(pieces, words, low):
                if any(pieces[1::2]):  # "Not at all!" would lose every word: no counterfactual
                    return "".join(pieces)
                return None
        if self.antonyms and (self.wordnet or not present.isdisjoint(self._lex_keys)):
            hit = False
            for i in self._antonym_positions(low):
                w = low[i]
                ant = self._antonym(w)
                if ant is not None and antonym_context_ok(w, low, i):
                    pieces[2 * i + 1] = match_case(ant, words[i])
                    hit = True
            if hit:
                return "".join(pieces)
        if self.negation:
            if insert_negation(pieces, words, low):
                return "".join(pieces)
            found = do_support(low)
            if found is not None:
                i, base = found
                pieces[2 * i + 1] = match_case("does not " + base, words[i])
                return "".join(pieces)
        return None

    def _antonym_positions(self, low: list[str]) -> list[int]:
        """Where antonym swaps may land: every word, or (``antonym_scope="predicate"``) the head of the predicate
        the negation rule would negate."""
        if self.antonym_scope == "all":
            return list(range(len(low)))
        site = insertion_site(low)
        head = None if site is None else predicate_head(low, site[0])
        if head is None or low[head].endswith("ing") or self._pos.get(low[head], "a") != "a":
            return []  # only adjectives: "is not closing a door" is no paraphrase of "is opening" one
        return [head]

    def __repr__(self) -> str:
        return (
            f"Counterfactual(label_map={self.label_map!r}, negation={self.negation}, antonyms={self.antonyms}, "
            f"lexicon={self.lexicon!r}, wordnet={self.wordnet}, max_edits={self.max_edits!r}, strategy={self.strategy!r}, "
            f"min_coverage={self.min_coverage!r}, antonym_scope={self.antonym_scope!r})"
        )


# --------------------------------------------------------------------------- labels
def _resolve_label_map(label_map: Any, arg: str) -> dict[Any, Any] | None:
    if label_map is None:
        return None
    if isinstance(label_map, str):
        if label_map not in LABEL_MAPS:
            raise ValueError(f"{arg} must be one of {sorted(LABEL_MAPS)}, a dict or None, got {label_map!r}")
        return LABEL_MAPS[label_map]
    if isinstance(label_map, Mapping):  # keys and values in the canonical form labels are looked up with
        return {canonical_label(k, arg): canonical_label(v, arg) for k, v in label_map.items()}
    raise TypeError(f"{arg} must be a name ({', '.join(sorted(LABEL_MAPS))}), a dict or None, got {type(label_map).__name__}")


_POSITIVE = {"positive", "pos"}
_NEGATIVE = {"negative", "neg"}


def _label_polarity(label: Any) -> str | None:
    """``"+"`` / ``"-"`` for a sentiment label of the ``"sentiment"`` map (1/0, positive/negative, pos/neg in any
    case), ``None`` when unknown."""
    if isinstance(label, str):
        low = label.lower()
        return "+" if low in _POSITIVE else "-" if low in _NEGATIVE else None
    if isinstance(label, bool) or not isinstance(label, int):
        return None
    return "+" if label == 1 else "-" if label == 0 else None


def _flip_label(label: Any, mapping: Mapping[Any, Any]) -> Any:
    """The flipped label, or ``None`` when ``label`` is not flippable under ``mapping``."""
    try:
        if label in mapping:
            return mapping[label]
    except TypeError:  # unhashable label
        return None
    if isinstance(label, str):
        low = label.lower()
        if low in mapping and isinstance(mapping[low], str):
            new = mapping[low]
            if label.isupper():
                return new.upper()
            if label[:1].isupper():
                return new[:1].upper() + new[1:]
            return new
    return None


def _is_sentiment(mapping: Mapping[Any, Any] | None) -> bool:
    """The sentiment label map, however it was passed (the name, the built-in dict or an equal copy)."""
    return mapping is not None and dict(mapping) == LABEL_MAPS["sentiment"]
