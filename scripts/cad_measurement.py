"""How often can the rule-based counterfactual flip real data, and how far does it move a sentence encoder?

On the Counterfactually-Augmented Data of Kaushik et al. (ICLR 2020):

1. flip rate: share of the original IMDb reviews (``sentiment/orig``) that ``Counterfactual("sentiment")``
   can flip, and of SNLI hypotheses (``NLI/original``) under ``"nli"`` (only entailment is flippable) and
   ``"nli_symmetric"``;
2. embedding distance (all-MiniLM-L6-v2, cosine): for each review ``x`` whose counterfactual ``c`` exists,
   is ``c`` further from ``x`` than a paraphrase-level edit ``p`` of ``x``? Two paraphrase edits:
   - ``synonym swap (matched)``: as many random words replaced by a WordNet synonym as the counterfactual
     changed words (same edit budget, meaning kept) -- the fair reference;
   - ``delete 1 word``: one random word deleted (a minimal edit).
   The human counterfactuals of ``sentiment/new`` (paired by ``sentiment/combined/paired``) are measured
   the same way, as the reference of what a real label-flipping edit does.

    NLTK_DATA=/work/shared/data/nltk_data python scripts/cad_measurement.py \
        --data-dir /work/shared/data/text/cad --out benchmarks/results/cad_measurement.json

Note: all-MiniLM-L6-v2 reads the first 256 word pieces, so edits beyond that in long reviews are unseen
by the encoder (for every method alike).
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from pathlib import Path

import torch

from nda.data.labeled_text import read_counterfactual_pairs, word_diff
from nda.models.sentence import default_model_path
from nda.reporting import save_report
from nda.text import Counterfactual
from nda.text._words import split_words
from nda.text.counterfactual import _SENTENCE

csv.field_size_limit(sys.maxsize)


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


class Paraphraser:
    """Meaning-keeping edits: WordNet synonym swaps (needs NLTK_DATA) and one-word deletion."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        try:
            from nltk.corpus import wordnet as wn

            wn.ensure_loaded()
            self.wn = wn
        except LookupError:
            self.wn = None
        self._cache: dict[str, str | None] = {}

    def synonym(self, word: str) -> str | None:
        low = word.lower()
        if low not in self._cache:
            syn = None
            if self.wn is not None and low.isalpha() and len(low) > 2:
                for s in self.wn.synsets(low)[:2]:
                    for lemma in s.lemmas():
                        name = lemma.name()
                        if name.lower() != low and name.isalpha():
                            syn = name.lower()
                            break
                    if syn:
                        break
            self._cache[low] = syn
        syn = self._cache[low]
        if syn is None:
            return None
        return syn[:1].upper() + syn[1:] if word[:1].isupper() else syn

    def synonym_swap(self, text: str, k: int) -> tuple[str, int]:
        pieces = split_words(text)
        idx = list(range(len(pieces) // 2))
        self.rng.shuffle(idx)
        done = 0
        for i in idx:
            if done >= k:
                break
            syn = self.synonym(pieces[2 * i + 1])
            if syn is not None:
                pieces[2 * i + 1] = syn
                done += 1
        return "".join(pieces), done

    def delete_one(self, text: str) -> str:
        pieces = split_words(text)
        n = len(pieces) // 2
        if n == 0:
            return text
        i = self.rng.randrange(n)
        pieces[2 * i + 1] = ""
        if pieces[2 * i + 2].isspace():
            pieces[2 * i + 2] = ""
        return "".join(pieces)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="the CAD folder (sentiment/, NLI/)")
    parser.add_argument("--split", default="dev", choices=["dev", "train"])
    parser.add_argument("--encoder", default=default_model_path())
    parser.add_argument("--limit", type=int, default=None, help="at most this many reviews for the embedding part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cad_measurement.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.data_dir
    cf = Counterfactual("sentiment")
    result: dict[str, object] = {"split": args.split, "encoder": args.encoder}

    # 1. flip rates -------------------------------------------------------------------------------
    flip: dict[str, dict[str, float]] = {}
    for split in ("dev", "train"):
        rows = read_tsv(root / "sentiment" / "orig" / f"{split}.tsv")
        r = cf([x["Text"] for x in rows], labels=[x["Sentiment"] for x in rows])
        ok = all(lab != x["Sentiment"] for lab, x, f in zip(r.labels, rows, r.flipped) if f)
        flip[f"imdb_orig_{split}"] = {"n": len(rows), "flip_rate": r.flip_rate, "labels_flipped_correctly": ok}
        # finer: share of the sentences of a review that a rule edits (a review is "flipped" if any is)
        sent_shares = []
        edit_sentence = cf.sentence_editor()
        for x in rows:
            sents = [t for t in _SENTENCE.split(x["Text"])[0::2] if t.strip()]
            if sents:
                sent_shares.append(sum(edit_sentence(t) is not None for t in sents) / len(sents))
        flip[f"imdb_orig_{split}"]["sentences_edited_share"] = sum(sent_shares) / max(len(sent_shares), 1)
        one = Counterfactual("sentiment", max_edits=1)([x["Text"] for x in rows], labels=[x["Sentiment"] for x in rows])
        flip[f"imdb_orig_{split}"]["flip_rate_max_edits_1"] = one.flip_rate
    for split in ("dev", "train"):
        rows = read_tsv(root / "NLI" / "original" / f"{split}.tsv")
        hyps, labels = [x["sentence2"] for x in rows], [x["gold_label"] for x in rows]
        nli = Counterfactual("nli")(hyps, labels=labels)
        sym = Counterfactual("nli_symmetric")(hyps, labels=labels)
        edit = Counterfactual(label_map=None)(hyps)
        ent = [i for i, lab in enumerate(labels) if lab == "entailment"]
        flip[f"snli_orig_{split}"] = {
            "n": len(rows),
            "rule_applies": edit.flip_rate,
            "flip_rate_nli": nli.flip_rate,
            "flip_rate_nli_among_entailment": sum(nli.flipped[i] for i in ent) / max(len(ent), 1),
            "flip_rate_nli_symmetric": sym.flip_rate,
        }
    result["flip"] = flip

    # 2. embedding distances ----------------------------------------------------------------------
    paired = read_counterfactual_pairs(root / "sentiment" / "combined" / "paired" / f"{args.split}_paired.tsv")
    pairs = [(p.original, p.label, p.counterfactual) for p in paired if p.changed]  # (original, label, human cf)
    if args.limit:
        pairs = pairs[: args.limit]
    para = Paraphraser(args.seed)
    originals = [p[0] for p in pairs]
    methods = {
        "auto counterfactual": cf(originals, labels=[p[1] for p in pairs]),
        "auto counterfactual (max_edits=1)": Counterfactual("sentiment", max_edits=1)(originals, labels=[p[1] for p in pairs]),
    }
    edits: dict[str, list[tuple[int, str]]] = {}
    for name, res in methods.items():
        edits[name] = [(i, t) for i, (t, f) in enumerate(zip(res.texts, res.flipped)) if f]
    edits["human counterfactual (CAD)"] = [(i, p[2]) for i, p in enumerate(pairs)]
    texts: list[str] = list(originals)
    deleted = [para.delete_one(t) for t in originals]
    texts += deleted
    plan = []
    for name, items in edits.items():
        for i, new in items:
            k = max(word_diff(originals[i], new).changed, 1)
            syn, done = para.synonym_swap(originals[i], k)
            plan.append((name, i, len(texts), len(texts) + 1, k, done))
            texts += [new, syn]
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(args.encoder, device="cpu")
    print(f"encoding {len(texts)} texts with {args.encoder} ...", flush=True)
    emb = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=True)
    n = len(originals)

    def cos(a: int, b: int) -> float:
        return float(emb[a] @ emb[b])

    table = {}
    for name in edits:
        rows = [p for p in plan if p[0] == name]
        cf_cos = [cos(i, c) for _, i, c, _, _, _ in rows]
        syn_cos = [cos(i, s) for _, i, _, s, _, _ in rows]
        del_cos = [cos(i, n + i) for _, i, _, _, _, _ in rows]
        m = len(rows)
        table[name] = {
            "n": m,
            "coverage": m / n,
            "mean_words_changed": sum(r[4] for r in rows) / max(m, 1),
            "mean_synonyms_swapped": sum(r[5] for r in rows) / max(m, 1),
            "mean_cos_counterfactual": sum(cf_cos) / max(m, 1),
            "mean_cos_synonym_matched": sum(syn_cos) / max(m, 1),
            "mean_cos_delete1": sum(del_cos) / max(m, 1),
            "further_than_synonym_matched": sum(a < b for a, b in zip(cf_cos, syn_cos)) / max(m, 1),
            "further_than_delete1": sum(a < b for a, b in zip(cf_cos, del_cos)) / max(m, 1),
        }
    result["embedding"] = {"n_reviews": n, "methods": table,
                           "paraphrase_edits": "synonym swap of as many words as the edit changed (WordNet); delete 1 random word"}

    lines = ["## Flip rate", "", "| data | n | flippable | note |", "|---|---:|---:|---|"]
    for key, v in flip.items():
        if key.startswith("imdb"):
            lines.append(f"| {key} | {v['n']} | {v['flip_rate']:.1%} | sentences edited per review: {v['sentences_edited_share']:.1%}; max_edits=1: {v['flip_rate_max_edits_1']:.1%}; labels flipped correctly: {v['labels_flipped_correctly']} |")
        else:
            lines.append(f"| {key} (label_map='nli') | {v['n']} | {v['flip_rate_nli']:.1%} | a rule applies to {v['rule_applies']:.1%}; among entailment: {v['flip_rate_nli_among_entailment']:.1%}; nli_symmetric: {v['flip_rate_nli_symmetric']:.1%} |")
    lines += ["", f"## Cosine to the original review (all-MiniLM-L6-v2, IMDb {args.split}, {n} pairs)", "",
              "| edit | n | words changed (mean) | cos(x, edit) | cos(x, synonym-matched) | cos(x, delete-1) | further than synonym-matched | further than delete-1 |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, v in table.items():
        lines.append(f"| {name} | {v['n']} | {v['mean_words_changed']:.1f} | {v['mean_cos_counterfactual']:.4f} | {v['mean_cos_synonym_matched']:.4f} | {v['mean_cos_delete1']:.4f} | {v['further_than_synonym_matched']:.1%} | {v['further_than_delete1']:.1%} |")
    save_report(args.out, result, "\n".join(lines))


if __name__ == "__main__":
    main()
