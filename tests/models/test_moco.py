"""MoCo model, queue, momentum rule, NDA logits, config validation, kNN / linear probe, positive views."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import nda
from nda.metrics.representation import extract_features, knn_accuracy, linear_probe
from nda.models.moco import MoCo, SplitBatchNorm, build_backbone, check_queue_config
from nda.models.moco_step import enqueue_keys, moco_step, step_stats
from nda.objectives.contrastive import ContrastiveNegativeLoss
from nda.vision.augment import MoCoV2Augment, _adjust_hue, normalize_images, random_resized_crop_boxes
from tasks import eval_repr
from tasks import moco as moco_task


def tiny(queue_size: int = 10, dim: int = 4, **kw) -> MoCo:
    torch.manual_seed(0)
    return MoCo("tiny", in_channels=3, dim=dim, queue_size=queue_size, **kw)


# ---------------------------------------------------------------------------------------------- queue
def test_queue_wraps_around_and_keeps_the_newest_keys():
    model = tiny(queue_size=10, dim=4)
    model.queue.zero_()
    batches = [torch.full((4, 4), float(i + 1)) for i in range(3)]  # 12 keys into a queue of 10
    for keys in batches:
        model.dequeue_and_enqueue(keys)
    # slots 0..3 <- 1, 4..7 <- 2, then 8, 9, 0, 1 <- 3 (wrap-around); pointer at 2
    expected = torch.tensor([3, 3, 1, 1, 2, 2, 2, 2, 3, 3], dtype=torch.float)
    assert torch.equal(model.queue[:, 0], expected)
    assert int(model.queue_ptr) == 2
    model.dequeue_and_enqueue(torch.full((8, 4), 9.0))  # overwrites the 8 oldest: slots 2..9
    assert torch.equal(model.queue[:, 0], torch.tensor([3, 3, 9, 9, 9, 9, 9, 9, 9, 9], dtype=torch.float))
    assert int(model.queue_ptr) == 0


def test_enqueue_rejects_bad_keys():
    model = tiny(queue_size=8, dim=4)
    with pytest.raises(ValueError, match="cannot enqueue 9 keys"):
        model.dequeue_and_enqueue(torch.zeros(9, 4))
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        model.dequeue_and_enqueue(torch.zeros(2, 5))


def test_queue_and_pointer_are_saved_buffers():
    model = tiny(queue_size=8, dim=4)
    model.dequeue_and_enqueue(torch.ones(3, 4))
    state = model.state_dict()
    assert "queue" in state and "queue_ptr" in state and int(state["queue_ptr"]) == 3
    other = tiny(queue_size=8, dim=4)
    other.load_state_dict(state)
    assert torch.equal(other.queue, model.queue) and int(other.queue_ptr) == 3


# ------------------------------------------------------------------------------------- key encoder
def test_key_encoder_gets_no_gradients_and_follows_the_momentum_rule():
    model = tiny(queue_size=8, dim=4, momentum=0.9)
    x = torch.randn(4, 3, 8, 8)
    q = model(x)
    k = model.encode_keys(x)
    loss = (q * k).sum() + model.key_encoder(x).sum() * 0  # the key path must not build a graph
    assert not k.requires_grad
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.key_encoder.parameters())
    assert any(p.grad is not None for p in model.query_encoder.parameters())
    # change the query encoder, then check k' = m k + (1 - m) q exactly (hand-computed)
    with torch.no_grad():
        for p in model.query_encoder.parameters():
            p.add_(torch.randn_like(p))
    before_k = [p.clone() for p in model.key_encoder.parameters()]
    q_params = [p.clone() for p in model.query_encoder.parameters()]
    model.momentum_update()
    for kb, qp, ka in zip(before_k, q_params, model.key_encoder.parameters()):
        torch.testing.assert_close(ka, 0.9 * kb + 0.1 * qp, rtol=0, atol=1e-6)
    # at init the two encoders are equal, so the update is a no-op there (up to float rounding)
    fresh = tiny(queue_size=8, dim=4, momentum=0.9)
    fresh.momentum_update()
    for a, b in zip(fresh.key_encoder.parameters(), fresh.query_encoder.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_nda_negatives_enter_the_logits():
    model = tiny(queue_size=16, dim=8)
    crit = ContrastiveNegativeLoss(temperature=0.2)
    B, K = 4, 3
    x = torch.randn(B, 3, 8, 8)
    negs = torch.randn(B * K, 3, 8, 8)
    q = model(x)
    keys = model.encode_keys(torch.cat([x, negs]))
    k_nda = keys[B:].view(K, B, -1).transpose(0, 1)  # row j*B + i = negative j of anchor i
    out = crit(q, keys[:B], k_nda, queue=model.queue)
    assert out.logits.shape == (B, 1 + K + 16)
    assert out.labels.tolist() == [0] * B
    qn = F.normalize(q, dim=1)
    neg_1_of_anchor_2 = keys[B + 1 * B + 2]  # NDA keys follow the B positive keys, negative-major
    torch.testing.assert_close(out.logits[2, 1 + 1], (qn[2] @ F.normalize(neg_1_of_anchor_2, dim=0)) / 0.2)
    without = crit(q, keys[:B], None, queue=model.queue)
    assert without.logits.shape == (B, 1 + 16)


def test_shuffle_bn_with_splits_matches_plain_encoding_in_eval_mode():
    model = tiny(queue_size=8, dim=4, bn_splits=2)
    assert any(isinstance(m, SplitBatchNorm) for m in model.key_encoder.modules())
    x = torch.randn(8, 3, 8, 8)
    model.eval()  # no batch statistics: the permutation must be undone exactly
    plain = F.normalize(model.key_encoder(x), dim=1)
    shuffled = model.encode_keys(x, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(shuffled, plain)


# ---------------------------------------------------------------------------------------- configs
def test_bad_configs_are_clear_errors():
    cfg = moco_task.MoCoConfig(arch="tiny", queue_size=4096, batch_size=256)
    assert moco_task.validate(cfg) is cfg
    cpu = torch.device("cpu")
    assert moco_task.check_world(cfg, 2, cpu, nda_k=0) == 512
    with pytest.raises(ValueError, match="queue_size=1000 is not divisible.*256 per process x 2 processes"):
        moco_task.check_world(dataclasses.replace(cfg, queue_size=1000), 2, cpu, nda_k=0)
    with pytest.raises(ValueError, match="not divisible"):  # 4096 / (3 x 512): divisible per process, not globally
        moco_task.check_world(dataclasses.replace(cfg, batch_size=512), 3, cpu, nda_k=0)
    with pytest.raises(ValueError, match="--bn sync needs GPUs"):
        moco_task.check_world(dataclasses.replace(cfg, bn="sync"), 2, cpu, nda_k=0)
    # NDA keys in the queue: the chunk is B x world x (1 + K)
    with pytest.raises(ValueError, match=r"1 \+ nda_k=2"):
        moco_task.check_world(dataclasses.replace(cfg, nda="jigsaw", nda_k=2, nda_to_queue=True), 1, cpu, nda_k=2)
    bad = {"nda_k": -1, "arch": "resnet7", "bn": "group", "temperature": 0.0, "momentum": 1.0, "lr": -0.1,
           "bn_splits": 3, "channels": 2, "train_limit": 0, "nda_source": "raw", "steps": 0, "max_minutes": -1.0}
    messages = {"nda_k": "--nda-k must be a finite number >= 0", "arch": "--arch must be one of tiny, .*'resnet7'",
                "bn": "--bn must be one of", "temperature": "--temperature must be > 0",
                "momentum": r"--momentum must be in \[0, 1\)", "lr": "--lr must be > 0",
                "bn_splits": "--bn-splits 3 needs .* divisible", "channels": "--channels must be one of",
                "train_limit": "--train-limit must be an int >= 1", "nda_source": "--nda-source must be one of",
                "steps": "--steps must be an int >= 1", "max_minutes": "--max-minutes must be > 0"}
    for name, message in messages.items():
        with pytest.raises(ValueError, match=message):
            moco_task.validate(dataclasses.replace(cfg, **{name: bad[name]}))
    with pytest.raises(ValueError, match="--temperature must be a finite number"):
        moco_task.validate(dataclasses.replace(cfg, temperature=float("nan")))
    with pytest.raises(ValueError, match="nda-k must be >= 1"):
        moco_task.validate(dataclasses.replace(cfg, nda="jigsaw", nda_k=0))
    assert check_queue_config(4096, 256, 1, 3, True) == 1024
    with pytest.raises(ValueError, match="unknown arch"):
        build_backbone("vgg16")
    with pytest.raises(ValueError, match="bn must be one of"):
        MoCo("tiny", bn="batch")


def test_text_negatives_are_refused_for_moco():
    assert moco_task.build_negative("none") is None
    assert moco_task.build_negative("jigsaw:grid=2|stitch") is not None
    for spec in ("token_shuffle", "jigsaw|token_shuffle", "cutout>token_shuffle"):
        with pytest.raises(ValueError, match="contains the text negative 'token_shuffle'.*image negatives"):
            moco_task.build_negative(spec)
    with pytest.raises(ValueError, match="--nda 'jigsw' is not a valid negative spec"):
        moco_task.build_negative("jigsw")


def test_lr_schedule_is_a_pure_function_of_the_step():
    cfg = moco_task.MoCoConfig(lr=0.1, steps=100, warmup_steps=10)
    lrs = [moco_task.lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.1)
    assert lrs[55] == pytest.approx(0.05) and lrs[99] < 1e-3 and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    # the cosine ends at --steps, so --steps may not change on --resume (unlike the skeleton's default)
    assert "steps" not in moco_task.MoCoConfig.resume_may_change
    assert {"knn_every", "final_eval", "max_minutes"} <= moco_task.MoCoConfig.resume_may_change


def test_config_round_trips_the_constructor():
    model = tiny(queue_size=8, dim=4, hidden_dim=16, momentum=0.9, bn_splits=2)
    other = MoCo(**model.config())
    other.load_state_dict(model.state_dict())
    assert other.config() == model.config() and other.config()["hidden_dim"] == 16


# ------------------------------------------------------------------------------------------- step
class _Identity:
    """A 'negative' that returns its input: such negatives must be masked out of the loss."""

    def __call__(self, x, generator=None):
        return x.clone()


def test_moco_step_layout_masking_and_enqueue():
    model = tiny(queue_size=24, dim=8)
    crit = ContrastiveNegativeLoss(temperature=0.2)
    aug = MoCoV2Augment(8)
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    gens = {name: torch.Generator().manual_seed(i) for i, name in
            enumerate(("augment_generator", "nda_generator", "shuffle_generator"))}
    out = moco_step(model, model, crit, aug, nda.build("jigsaw:grid=2"), x, 2, **gens)
    assert out.keys.shape == (4 * 3, 8) and out.logits.shape == (4, 1 + 2 + 24) and out.nda_k == 2
    assert torch.isfinite(out.logits).all() and out.loss.requires_grad
    again = moco_step(model, model, crit, aug, nda.build("jigsaw:grid=2"), x, 2,
                      **{k: torch.Generator().manual_seed(i) for i, k in enumerate(gens)})
    torch.testing.assert_close(again.logits, out.logits)  # seeded: the same draws
    # a negative equal to its input is masked (-inf), not pushed away from its own anchor
    same = moco_step(model, model, crit, aug, _Identity(), x, 1, nda_source="image")
    assert torch.isinf(same.logits[:, 1]).all() and torch.isfinite(same.logits[:, 2:]).all()
    stats = step_stats(out, 0.2)
    assert stats.shape == (5,) and stats[0] == out.loss.detach()
    assert step_stats(same, 0.2)[3] == 0  # masked NDA logits do not enter the mean
    plain = moco_step(model, model, crit, aug, None, x, 3)  # no negative: K is 0 whatever nda_k says
    assert plain.logits.shape == (4, 1 + 24) and plain.nda_k == 0
    enqueue_keys(model, out)
    assert int(model.queue_ptr) == 4 and torch.equal(model.queue[:4], out.keys[:4].float())
    enqueue_keys(model, out, nda_to_queue=True)
    assert int(model.queue_ptr) == 16 and torch.equal(model.queue[4:16], out.keys.float())
    with pytest.raises(ValueError, match="nda_source"):
        moco_step(model, model, crit, aug, None, x, 0, nda_source="raw")


def test_resnet_backbone_cifar_stem_keeps_resolution():
    net, dim = build_backbone("resnet18", cifar_stem=True, in_channels=1)
    assert dim == 512 and net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, 512)


# ----------------------------------------------------------------------------------------- metrics
def _clusters(n_per: int, classes: int, dim: int, seed: int, noise: float = 0.1):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 3
    labels = torch.arange(classes).repeat_interleave(n_per)
    feats = centers[labels] + noise * torch.randn(len(labels), dim, generator=g)
    return feats, labels


def test_knn_accuracy_separable_and_random():
    xtr, ytr = _clusters(50, 10, 32, seed=0)
    xte, yte = _clusters(20, 10, 32, seed=1)
    assert knn_accuracy(xtr, ytr, xte, yte, k=20, chunk_size=7) == 1.0
    rand_tr = torch.randint(0, 10, ytr.shape, generator=torch.Generator().manual_seed(2))
    rand_te = torch.randint(0, 10, (1000,), generator=torch.Generator().manual_seed(3))
    xte2 = torch.randn(1000, 32, generator=torch.Generator().manual_seed(4))
    acc = knn_accuracy(xtr, rand_tr, xte2, rand_te, k=20, num_classes=10)
    assert 0.05 < acc < 0.16
    # hand-computed: 1 test point, neighbours with labels 0 (sim 1) and 1 (sims 0.6, 0.6): weights e^10 vs 2e^6
    bank = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8]])
    assert knn_accuracy(bank, torch.tensor([0, 1, 1]), torch.tensor([[1.0, 0.0]]), torch.tensor([0]), k=3) == 1.0
    assert knn_accuracy(bank, torch.tensor([0, 1, 1]), torch.tensor([[1.0, 0.0]]), torch.tensor([0]), k=3,
                        temperature=100.0) == 0.0  # flat weights: two votes for 1 beat one for 0
    with pytest.raises(ValueError, match="k must be"):
        knn_accuracy(xtr, ytr, xte, yte, k=0)
    with pytest.raises(ValueError, match="train_labels"):
        knn_accuracy(xtr, ytr[:-1], xte, yte)


def test_linear_probe_separable_random_and_deterministic():
    g = torch.Generator().manual_seed(0)
    xtr = torch.randn(400, 16, generator=g)
    w = torch.randn(16, 4, generator=g)
    ytr = (xtr @ w).argmax(dim=1)
    xte = torch.randn(300, 16, generator=g)
    yte = (xte @ w).argmax(dim=1)
    acc = linear_probe(xtr, ytr, xte, yte, epochs=50)
    assert acc > 0.9  # a linear rule learnt from 400 samples
    ctr, cytr = _clusters(30, 10, 32, seed=0)
    cte, cyte = _clusters(20, 10, 32, seed=1)
    assert linear_probe(ctr, cytr, cte, cyte, epochs=50) == 1.0
    assert linear_probe(xtr, ytr, xte, yte, epochs=50) == acc
    assert linear_probe(ctr, cytr, cte, cyte, epochs=20, batch_size=64, lr=1e-2) == 1.0  # mini-batch AdamW path
    rtr = torch.randint(0, 4, (400,), generator=g)
    rte = torch.randint(0, 4, (2000,), generator=g)
    chance = linear_probe(xtr, rtr, torch.randn(2000, 16, generator=g), rte, epochs=50)
    assert 0.18 < chance < 0.32


def test_extract_features_restores_mode_and_normalises():
    model = tiny(queue_size=8, dim=4)
    model.train()
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    feats = extract_features(model.backbone, images, batch_size=3)
    assert feats.shape == (10, 64) and feats.dtype == torch.float32 and model.training
    model.eval()
    torch.testing.assert_close(feats, model.backbone(normalize_images(images)))


# ----------------------------------------------------------------------------------------- augment
def test_augment_shapes_dtype_and_seeding():
    aug = MoCoV2Augment(16, p_blur=0.5)
    x = torch.randint(0, 256, (6, 3, 24, 24), dtype=torch.uint8)
    a = aug(x, generator=torch.Generator().manual_seed(0))
    b = aug(x, generator=torch.Generator().manual_seed(0))
    c = aug(x, generator=torch.Generator().manual_seed(1))
    assert a.shape == (6, 3, 16, 16) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    gray = MoCoV2Augment(8)(torch.rand(3, 1, 12, 12), generator=torch.Generator().manual_seed(0))
    assert gray.shape == (3, 1, 8, 8)
    with pytest.raises(TypeError, match="generator"):
        aug(x, generator=0)
    with pytest.raises(ValueError, match="C in"):
        aug(torch.rand(2, 4, 8, 8))
    with pytest.raises(ValueError, match="scale"):
        MoCoV2Augment(8, scale=(0.5, 0.2))


def test_augment_parameters_are_drawn_per_sample():
    aug = MoCoV2Augment(16)
    one = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    out = aug(one.expand(32, -1, -1, -1), generator=torch.Generator().manual_seed(0))
    flat = out.flatten(1)
    distinct = torch.cdist(flat, flat) > 1e-3
    assert distinct.sum() >= 32 * 31 - 2  # (almost) every pair of views of the same image differs
    boxes = random_resized_crop_boxes(500, 32, 32, generator=torch.Generator().manual_seed(0))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / 1024
    assert area.min() >= 0.15 and area.max() <= 1.0 and area.std() > 0.1
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 32).all() and (boxes[:, 3] <= 32).all()


def test_augment_pieces_match_torchvision():
    from torchvision.transforms.v2 import functional as TF

    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    hue = torch.tensor([0.1, -0.05, 0.0, 0.3])
    ref = torch.stack([TF.adjust_hue(x[i], float(hue[i])) for i in range(4)])
    torch.testing.assert_close(_adjust_hue(x, hue), ref, atol=1e-5, rtol=0)
    # whole-image crop, no jitter/flip: the view is the normalised image; p_flip=1 flips every sample
    ident = MoCoV2Augment(8, scale=(1, 1), ratio=(1, 1), p_jitter=0, p_gray=0, p_flip=0)
    torch.testing.assert_close(ident(x), normalize_images(x))
    flip = MoCoV2Augment(8, scale=(1, 1), ratio=(1, 1), p_jitter=0, p_gray=0, p_flip=1)
    torch.testing.assert_close(flip(x), normalize_images(x).flip(-1))
    gray = MoCoV2Augment(8, scale=(1, 1), ratio=(1, 1), p_jitter=0, p_gray=1, p_flip=0, mean=(0, 0, 0), std=(1, 1, 1))
    g = gray(x)
    torch.testing.assert_close(g, TF.rgb_to_grayscale(x, num_output_channels=3))
    # brightness-only jitter with p=1: each sample is scaled by its own factor in [0.6, 1.4]
    bright = MoCoV2Augment(8, scale=(1, 1), ratio=(1, 1), contrast=0, saturation=0, hue=0, p_jitter=1, p_gray=0,
                           p_flip=0, mean=(0, 0, 0), std=(1, 1, 1))
    y = bright(x * 0.5, generator=torch.Generator().manual_seed(0))
    factors = (y / (x * 0.5)).flatten(1)
    assert torch.allclose(factors, factors[:, :1], atol=1e-4)
    assert ((factors[:, 0] >= 0.6) & (factors[:, 0] <= 1.4)).all() and factors[:, 0].unique().numel() == 4


# ------------------------------------------------------------------------------------------ eval_repr
def test_eval_repr_loads_moco_weights_files_and_torchvision_names(tmp_path):
    model = tiny(queue_size=8, dim=4)
    torch.save(model.state_dict(), tmp_path / "moco.pt")
    enc, desc = eval_repr.load_encoder(str(tmp_path / "moco.pt"), arch="tiny")
    x = torch.randn(3, 3, 8, 8)
    model.eval(), enc.eval()
    torch.testing.assert_close(enc(x), model.backbone(x))
    net, _ = eval_repr.load_encoder("torchvision:resnet18")
    assert isinstance(net.fc, torch.nn.Identity)
    with pytest.raises(ValueError, match="--arch is needed"):
        eval_repr.load_encoder(str(tmp_path / "moco.pt"))
    with pytest.raises(FileNotFoundError):
        eval_repr.load_encoder(str(tmp_path / "missing.pt"))


def test_split_batchnorm_matches_per_group_batchnorm():
    torch.manual_seed(0)
    bn = SplitBatchNorm(3, num_splits=2)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    x = torch.randn(8, 3, 4, 4)
    out = bn(x)
    ref = torch.empty_like(x)
    for j in range(2):  # reference: plain BN on each group n % 2 == j
        ref[j::2] = F.batch_norm(x[j::2], None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    g0, g1 = x[0::2], x[1::2]
    mean = (g0.mean(dim=(0, 2, 3)) + g1.mean(dim=(0, 2, 3))) / 2
    var = (g0.var(dim=(0, 2, 3)) + g1.var(dim=(0, 2, 3))) / 2  # unbiased, as BatchNorm's running_var
    torch.testing.assert_close(bn.running_mean, 0.1 * mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * var, atol=1e-6, rtol=1e-5)
    out.sum().backward()
    assert bn.weight.grad is not None
    bn_cl = SplitBatchNorm(3, num_splits=2)  # channels-last input takes the explicit-statistics path
    bn_cl.load_state_dict({**bn.state_dict(), "running_mean": torch.zeros(3), "running_var": torch.ones(3)})
    cl = bn_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bn_cl.running_mean, bn.running_mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(bn_cl.running_var, bn.running_var, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="not divisible"):
        bn(torch.randn(5, 3, 2, 2))
