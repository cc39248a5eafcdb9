"""sentence-transformers integration: NDAMultipleNegativesRankingLoss through SentenceTransformerTrainer."""

from __future__ import annotations

import pytest
import torch

from nda.models.sentence import tiny_random_encoder

PAIRS = [
    ("A man is playing a guitar.", "A person plays the guitar."),
    ("Two dogs are running on the beach.", "Two dogs run along the shore."),
    ("A child is riding a bicycle.", "A kid rides a bike."),
    ("The market fell sharply today.", "Shares dropped steeply."),
    ("A woman is playing the piano.", "A lady plays piano."),
    ("Police arrested two men.", "Two men were detained."),
    ("A boy is kicking a ball.", "A kid kicks a football."),
    ("The cat is sleeping on the sofa.", "A cat naps on the couch."),
]


@pytest.fixture()
def st_model(tmp_path):
    from sentence_transformers import SentenceTransformer

    tiny_random_encoder(seed=0).save_pretrained(tmp_path / "tiny")
    return SentenceTransformer(str(tmp_path / "tiny"), device="cpu")


def _tokenize(model, texts):
    """``preprocess`` (sentence-transformers >= 6) or ``tokenize`` (3-5): the tests run on both."""
    return (getattr(model, "preprocess", None) or model.tokenize)(list(texts))


def _pairs():
    from datasets import Dataset

    return Dataset.from_dict({"anchor": [a for a, _ in PAIRS], "positive": [p for _, p in PAIRS]})


@pytest.mark.parametrize("spec,level", [("token_shuffle|span_stitch", "token"), ("counterfactual", "string")])
def test_nda_mnrl_trains_through_the_trainer(st_model, tmp_path, spec, level):
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from nda.integrations.sentence_transformers import NDAMultipleNegativesRankingLoss

    loss = NDAMultipleNegativesRankingLoss(st_model, spec, k=1)
    assert loss.level == level
    before = [p.detach().clone() for p in st_model.parameters()]
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-3,
        report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, seed=0,
    )
    trainer = SentenceTransformerTrainer(model=st_model, args=args, train_dataset=_pairs(), loss=loss)
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, st_model.parameters()))


def test_negatives_are_extra_candidates_and_masked(st_model):
    from nda.integrations.sentence_transformers import NDAMultipleNegativesRankingLoss

    loss = NDAMultipleNegativesRankingLoss(st_model, "counterfactual", k=1)
    anchors = ["The movie was good.", "Hello.", "The food was great.", "Dogs!"]
    positives = ["The film was good.", "Hi.", "The meal was great.", "Two dogs."]
    feats = [_tokenize(st_model, anchors), _tokenize(st_model, positives)]
    negs, mask = loss.make_negatives(feats[0])
    assert mask[:, 0].tolist() == [True, False, True, False]  # one-word anchors cannot be flipped
    decoded = st_model.tokenizer.batch_decode(negs[0]["input_ids"].tolist(), skip_special_tokens=True)
    assert decoded[0].lower().rstrip(" .") != anchors[0].lower().rstrip(" .")
    # the loss equals MNRL's with the flipped negatives appended as one more candidate column
    emb = [st_model(f)["sentence_embedding"] for f in feats]
    nda_emb = st_model(negs[0])["sentence_embedding"]
    ours = loss.compute_loss_from_embeddings(emb, [nda_emb], mask)
    q = torch.nn.functional.normalize(emb[0], dim=-1)
    cand = torch.nn.functional.normalize(torch.cat([emb[1], nda_emb[mask[:, 0]]]), dim=-1)
    ref = torch.nn.functional.cross_entropy(20.0 * q @ cand.T, torch.arange(4))
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    # without usable NDA negatives it is exactly MultipleNegativesRankingLoss: cross-entropy of 20 x cos(anchor, positives)
    none_mask = torch.zeros_like(mask)
    mnrl = torch.nn.functional.cross_entropy(20.0 * q @ torch.nn.functional.normalize(emb[1], dim=-1).T, torch.arange(4))
    assert loss.compute_loss_from_embeddings(emb, [nda_emb], none_mask).item() == pytest.approx(mnrl.item(), rel=1e-5)
    assert loss.compute_loss_from_embeddings(emb, None).item() == pytest.approx(mnrl.item(), rel=1e-5)


def test_token_level_keeps_special_tokens(st_model):
    from nda.integrations.sentence_transformers import NDAMultipleNegativesRankingLoss

    loss = NDAMultipleNegativesRankingLoss(st_model, "token_shuffle", k=2)
    feats = _tokenize(st_model, [a for a, _ in PAIRS])
    negs, mask = loss.make_negatives(feats)
    assert len(negs) == 2 and mask.shape == (len(PAIRS), 2) and mask.all()
    ids = feats["input_ids"]
    for neg in negs:
        assert torch.equal(neg["input_ids"][:, 0], ids[:, 0])  # [CLS]
        assert torch.equal(neg["attention_mask"], feats["attention_mask"])
        assert torch.equal(neg["input_ids"].sort(dim=1).values, ids.sort(dim=1).values)
    with pytest.raises(ValueError, match="token ids"):
        NDAMultipleNegativesRankingLoss(st_model, "counterfactual", level="token")
    with pytest.raises(ValueError, match="none"):
        NDAMultipleNegativesRankingLoss(st_model, "none")


def test_precomputed_negative_column_trains_plain_mnrl(st_model, tmp_path):
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from nda.integrations.sentence_transformers import MultipleNegativesRankingLoss

    from nda.integrations.datasets import add_negatives

    ds = _pairs().map(add_negatives("token_shuffle", column="anchor", output_column="negative"), batched=True,
                      with_indices=True).select_columns(["anchor", "positive", "negative"])
    assert ds[0]["negative"] != ds[0]["anchor"]
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4, report_to=[],
        save_strategy="no", use_cpu=True, seed=0,
    )
    result = SentenceTransformerTrainer(model=st_model, args=args, train_dataset=ds,
                                        loss=MultipleNegativesRankingLoss(st_model)).train()
    assert torch.isfinite(torch.tensor(result.training_loss))


# ------------------------------------------------------------------ same maths as tasks/sentence.py
class _FixedEmbeddings(torch.nn.Module):
    """A 'model' whose forward returns given embeddings: the task's step sees exactly what the ST loss sees."""

    def __init__(self, emb):
        super().__init__()
        self.emb = emb

    def forward(self, **features):
        return self.emb


@pytest.mark.parametrize("flags,kwargs", [
    ([], {}),  # column, w = 1: today's behaviour
    (["--nda-weight", "0.3"], {"negative_weight": 0.3}),
    (["--nda-weight", "0"], {"negative_weight": 0.0}),
    (["--nda-loss", "margin", "--nda-lambda", "0.7", "--margin-alpha", "0.05", "--margin-beta", "0.2"],
     {"mode": "margin", "margin_weight": 0.7, "alpha": 0.05, "beta": 0.2}),
])
def test_st_loss_equals_the_task_loss_on_the_same_embeddings(st_model, flags, kwargs):
    from nda.integrations.sentence_transformers import NDAMultipleNegativesRankingLoss
    from nda.models.simcse import ContrastiveBatch, contrastive_step
    from nda.run import parse_config
    from tasks.sentence import SentenceConfig, make_criterion

    cfg = parse_config(SentenceConfig, ["--nda", "token_shuffle", "--nda-k", "2", *flags])
    b, k, d = 5, 2, 16
    g = torch.Generator().manual_seed(0)
    q, pos, negs = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g), torch.randn(k, b, d, generator=g)
    mask = torch.tensor([[True, True], [False, True], [True, False], [True, True], [False, False]])
    rows = torch.cat([q, pos, negs.reshape(k * b, d)])  # the task's layout: anchors, positives, k-major negatives
    batch = ContrastiveBatch({"input_ids": torch.zeros(rows.shape[0], 1, dtype=torch.long)}, b, 0, k, mask)
    task = contrastive_step(_FixedEmbeddings(rows), batch, make_criterion(cfg)).loss
    loss = NDAMultipleNegativesRankingLoss(st_model, "token_shuffle", k=k, scale=1 / cfg.temperature, **kwargs)
    st = loss.compute_loss_from_embeddings([q, pos], [negs[r] for r in range(k)], mask)
    torch.testing.assert_close(st, task, rtol=0, atol=0)
    # and it is not a constant: other negatives give another value (unless they count for nothing, w = 0)
    other = loss.compute_loss_from_embeddings([q, pos], [negs[r] * -1 for r in range(k)], mask)
    assert (other != st) == (kwargs.get("negative_weight", 1.0) != 0.0)


def test_every_nth_batch_makes_no_negatives_in_between(st_model):
    from nda.integrations.sentence_transformers import NDAMultipleNegativesRankingLoss

    loss = NDAMultipleNegativesRankingLoss(st_model, "token_shuffle", k=1, every=3)
    made = []
    real = loss.make_negatives
    loss.make_negatives = lambda anchor: made.append(loss.batches_seen) or real(anchor)
    feats = [_tokenize(st_model, [a for a, _ in PAIRS]), _tokenize(st_model, [p for _, p in PAIRS])]
    st_model.train()
    values = [loss(feats).item() for _ in range(6)]
    assert made == [1, 4]  # batches 0 and 3 (counted after the increment)
    assert all(torch.isfinite(torch.tensor(values)))
    st_model.eval()
    loss(feats)  # evaluation always uses negatives and does not advance the count
    assert loss.batches_seen == 6 and len(made) == 3


def test_bad_options_are_refused_before_training(st_model):
    from sentence_transformers import util

    from nda.integrations.sentence_transformers import NDAMultipleNegativesRankingLoss

    with pytest.raises(ValueError, match="image negative 'jigsaw'"):
        NDAMultipleNegativesRankingLoss(st_model, "jigsaw")
    with pytest.raises(ValueError, match="mode"):
        NDAMultipleNegativesRankingLoss(st_model, "token_shuffle", mode="both")
    with pytest.raises(ValueError, match="every"):
        NDAMultipleNegativesRankingLoss(st_model, "token_shuffle", every=0)
    with pytest.raises(ValueError, match="margin_weight"):
        NDAMultipleNegativesRankingLoss(st_model, "token_shuffle", mode="margin", margin_weight=-1.0)
    with pytest.raises(ValueError, match="similarity_fct"):
        NDAMultipleNegativesRankingLoss(st_model, "token_shuffle", similarity_fct=util.manhattan_sim)
    dot = NDAMultipleNegativesRankingLoss(st_model, "token_shuffle", similarity_fct=util.dot_score)
    assert dot.criterion.info_nce.normalize is False
    cfg = NDAMultipleNegativesRankingLoss(st_model, "token_shuffle", mode="margin", margin_weight=0.1).get_config_dict()
    assert cfg["mode"] == "margin" and cfg["margin_weight"] == 0.1 and cfg["every"] == 1
