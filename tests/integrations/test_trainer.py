"""``NDATrainer``: the collator's negatives reach the loss of a ``transformers.Trainer``, or fail loudly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nda.integrations import NDATrainer
from nda.integrations.collator import NegativeDataCollator
from nda.models.sentence import tiny_random_tokenizer
from nda.objectives import ContrastiveNegativeLoss

TEXTS = ["the movie was good", "the food was bad", "a good day", "a bad year", "two dogs run", "one cat sits"]
LABELS = [1, 0, 1, 0, 1, 0]


@pytest.fixture(scope="module")
def tok():
    return tiny_random_tokenizer()


@pytest.fixture()
def ds():
    from datasets import Dataset

    return Dataset.from_dict({"text": TEXTS, "label": LABELS})


def _config(tok, **kw):
    from transformers import BertConfig

    return BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=32, **kw)


def _classifier(tok):
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(_config(tok, num_labels=2))


def _args(tmp_path, **kw):
    from transformers import TrainingArguments

    return TrainingArguments(str(tmp_path), per_device_train_batch_size=6, per_device_eval_batch_size=6, report_to=[],
                             use_cpu=True, save_strategy="no", seed=0, **kw)


def test_default_arguments_train_and_keep_the_text_column(tok, ds, tmp_path):
    """Before: the collator's KeyError (remove_unused_columns dropped ``text``); with it off, negatives ignored."""
    trainer = NDATrainer(model=_classifier(tok), args=_args(tmp_path, max_steps=2), train_dataset=ds,
                         data_collator=NegativeDataCollator(tok, "counterfactual", seed=0))
    out = trainer.train()
    assert torch.isfinite(torch.tensor(out.training_loss))
    metrics = trainer.evaluate(ds)
    assert torch.isfinite(torch.tensor(metrics["eval_loss"]))


def test_counterfactual_loss_adds_the_flipped_rows(tok, ds, tmp_path):
    model = _classifier(tok).eval()
    collator = NegativeDataCollator(tok, "counterfactual", seed=0)
    batch = collator([ds[i] for i in range(len(ds))])
    usable = batch["negative_valid"] & batch["negative_flipped"]
    assert 0 < int(usable.sum()) < len(ds)  # some flip ("good" <-> "bad"), some cannot ("two dogs run")
    trainer = NDATrainer(model=model, args=_args(tmp_path), data_collator=collator)
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
        plain = {k: v for k, v in batch.items() if not k.startswith("negative_") and k != "labels"}
        orig = F.cross_entropy(model(**plain).logits, batch["labels"], reduction="sum")
        neg = {k[len("negative_"):]: batch[k][usable] for k in ("negative_input_ids", "negative_attention_mask",
                                                                "negative_token_type_ids")}
        cf = F.cross_entropy(model(**neg).logits, batch["negative_labels"][usable], reduction="sum")
        expected = (orig + cf) / (len(ds) + int(usable.sum()))
        torch.testing.assert_close(loss, expected)
        # the flipped labels are the other class of the rows that flipped
        assert torch.equal(batch["negative_labels"][usable], 1 - batch["labels"][usable])
        # weight 0: exactly the model's own cross-entropy on the originals
        trainer.counterfactual_weight = 0.0
        torch.testing.assert_close(trainer.compute_loss(model, dict(batch)), model(**plain, labels=batch["labels"]).loss)


def test_unlabelled_negatives_reaching_a_classifier_are_an_error(tok, ds, tmp_path):
    trainer = NDATrainer(model=_classifier(tok), args=_args(tmp_path, max_steps=1), train_dataset=ds,
                         data_collator=NegativeDataCollator(tok, "token_shuffle", seed=0))
    with pytest.raises(ValueError, match="carry no labels"):
        trainer.train()


def test_missing_negatives_are_an_error(tok, ds, tmp_path):
    from transformers import DataCollatorWithPadding

    with pytest.raises(ValueError, match="data_collator=NegativeDataCollator"):
        NDATrainer(model=_classifier(tok), args=_args(tmp_path), train_dataset=ds)
    ids = ds.map(lambda row: tok(row["text"]), remove_columns=["text"])
    trainer = NDATrainer(model=_classifier(tok), args=_args(tmp_path, max_steps=1), train_dataset=ids,
                         data_collator=DataCollatorWithPadding(tok))
    with pytest.raises(ValueError, match="without negative_input_ids"):
        trainer.train()


def test_embedding_model_gets_the_contrastive_loss(tok, ds, tmp_path):
    from transformers import BertModel

    torch.manual_seed(0)
    model = BertModel(_config(tok)).eval()
    collator = NegativeDataCollator(tok, "token_shuffle", k=2, seed=0)
    texts = ds.remove_columns("label")
    batch = collator([texts[i] for i in range(len(texts))])
    trainer = NDATrainer(model=model, args=_args(tmp_path), data_collator=collator, temperature=0.1)
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))

        def embed(ids, mask):
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).float()
            return (hidden * m).sum(1) / m.sum(1)

        q = embed(batch["input_ids"], batch["attention_mask"])
        negs = embed(batch["negative_input_ids"], batch["negative_attention_mask"]).view(len(ds), 2, -1)
        expected = ContrastiveNegativeLoss(temperature=0.1, in_batch=True)(
            q, q, negs, negative_mask=batch["negative_valid"].view(len(ds), 2)).loss
    torch.testing.assert_close(loss, expected)
    trainer = NDATrainer(model=model.train(), args=_args(tmp_path, max_steps=1), train_dataset=texts,
                         data_collator=collator)
    assert torch.isfinite(torch.tensor(trainer.train().training_loss))


def test_bad_arguments(tok, tmp_path):
    collator = NegativeDataCollator(tok, "counterfactual")
    with pytest.raises(ValueError, match="counterfactual_weight"):
        NDATrainer(model=_classifier(tok), args=_args(tmp_path), data_collator=collator, counterfactual_weight=-1)
    with pytest.raises(ValueError, match="compute_loss_func"):
        NDATrainer(model=_classifier(tok), args=_args(tmp_path), data_collator=collator,
                   compute_loss_func=lambda *a, **k: 0)
