"""Tests for anomaly scores (nda.objectives.anomaly) and AUROC metrics (nda.metrics.anomaly)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from nda.metrics.anomaly import anomaly_auroc, auroc_table, fpr_at_tpr
from nda.objectives import contrastive_anomaly_score, discriminator_anomaly_score

# --------------------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------------------


def test_discriminator_score_is_negated_realness():
    logits = torch.tensor([[3.0], [-1.0], [0.5]], dtype=torch.float16, requires_grad=True)
    score = discriminator_anomaly_score(logits)
    assert score.shape == (3,) and score.dtype == torch.float32 and not score.requires_grad
    torch.testing.assert_close(score, torch.tensor([-3.0, 1.0, -0.5]))
    with pytest.raises(ValueError, match="logits"):
        discriminator_anomaly_score(torch.zeros(3, 2))


def test_contrastive_score_hand_computed():
    bank = torch.eye(3)
    x = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    # cos to nearest basis vector: 1, 1/sqrt 2, 1/sqrt 3
    torch.testing.assert_close(contrastive_anomaly_score(x, bank), -torch.tensor([1.0, 2**-0.5, 3**-0.5]))
    # k=2: mean of the two largest: (1 + 0)/2, (1/sqrt2 + 1/sqrt2)/2, 1/sqrt3
    torch.testing.assert_close(
        contrastive_anomaly_score(x, bank, k=2), -torch.tensor([0.5, 2**-0.5, 3**-0.5])
    )
    # normalize=False: raw dot products
    torch.testing.assert_close(contrastive_anomaly_score(x, bank, normalize=False), -torch.tensor([2.0, 1.0, 1.0]))


def test_contrastive_score_chunks_agree_and_bad_inputs_raise():
    g = torch.Generator().manual_seed(0)
    x, bank = torch.randn(37, 8, generator=g), torch.randn(50, 8, generator=g)
    torch.testing.assert_close(
        contrastive_anomaly_score(x, bank, k=3, chunk_size=5), contrastive_anomaly_score(x, bank, k=3)
    )
    with pytest.raises(ValueError, match="k must"):
        contrastive_anomaly_score(x, bank, k=51)
    with pytest.raises(ValueError, match="bank"):
        contrastive_anomaly_score(x, torch.randn(5, 7))
    with pytest.raises(ValueError, match="embeddings"):
        contrastive_anomaly_score(torch.randn(8), bank)


def test_scores_separate_in_and_out_of_distribution_end_to_end():
    # in-distribution embeddings cluster around 4 directions; OOD ones are random directions
    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(4, 32, generator=g), dim=1)
    bank = centres.repeat(50, 1) + 0.1 * torch.randn(200, 32, generator=g)
    test_in = centres.repeat(25, 1) + 0.1 * torch.randn(100, 32, generator=g)
    test_out = torch.randn(100, 32, generator=g)
    auroc = anomaly_auroc(contrastive_anomaly_score(test_in, bank), contrastive_anomaly_score(test_out, bank))
    assert auroc > 0.99


# --------------------------------------------------------------------------------------------------
# AUROC
# --------------------------------------------------------------------------------------------------


def test_auroc_perfect_reversed_and_tied():
    assert anomaly_auroc([0.1, 0.2, 0.3], [0.9, 0.8]) == 1.0
    assert anomaly_auroc([0.9, 0.8], [0.1, 0.2, 0.3]) == 0.0
    assert anomaly_auroc([1.0, 1.0, 1.0], [1.0, 1.0]) == 0.5  # all ties count half
    # hand count: pairs (out > in) = out 0.5 beats in 0.2: 1 of 4 pairs, out 2.0 beats both: 2 -> 3/4
    assert anomaly_auroc([0.2, 1.0], [0.5, 2.0]) == pytest.approx(0.75)


def test_auroc_is_one_half_for_identical_distributions():
    rng = np.random.default_rng(0)
    assert abs(anomaly_auroc(rng.normal(size=20000), rng.normal(size=20000)) - 0.5) < 0.01


def test_auroc_matches_sklearn_and_pairwise_count_on_random_data():
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, size=300)
    b = rng.normal(0.7, 1.3, size=200)
    b[:10] = a[:10]  # some exact ties
    expected = roc_auc_score(np.r_[np.zeros(300), np.ones(200)], np.r_[a, b])
    got = anomaly_auroc(torch.from_numpy(a), b.tolist())  # float64 tensor vs list
    assert got == pytest.approx(expected, abs=1e-12)
    # Mann-Whitney: P(out > in) + 0.5 P(out == in), all pairs
    pairwise = ((b[None, :] > a[:, None]).mean() + 0.5 * (b[None, :] == a[:, None]).mean())
    assert anomaly_auroc(a, b) == pytest.approx(pairwise, abs=1e-12)
    assert isinstance(got, float)


def test_auroc_accepts_tensors_arrays_lists_and_column_vectors():
    ins, outs = [0.0, 1.0, 2.0], [1.5, 3.0]
    ref = anomaly_auroc(ins, outs)
    assert anomaly_auroc(torch.tensor(ins)[:, None], np.array(outs)[:, None]) == ref
    assert anomaly_auroc(torch.tensor(ins, requires_grad=True), tuple(outs)) == ref
    assert anomaly_auroc(torch.tensor(ins, dtype=torch.bfloat16), torch.tensor(outs)) == ref


def test_auroc_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="out_scores is empty"):
        anomaly_auroc([0.1], [])
    with pytest.raises(ValueError, match="in_scores is empty"):
        anomaly_auroc(torch.zeros(0), [1.0])
    with pytest.raises(ValueError, match="in_scores.*non-finite"):
        anomaly_auroc([0.1, math.nan], [1.0])
    with pytest.raises(ValueError, match="out_scores.*non-finite"):
        anomaly_auroc([0.1], [math.inf])
    with pytest.raises(ValueError, match="out_scores must be 1-D"):
        anomaly_auroc([0.1], np.zeros((2, 2)))
    with pytest.raises(TypeError, match="in_scores"):
        anomaly_auroc("0.1 0.2", [1.0])
    with pytest.raises(TypeError, match="out_scores"):
        anomaly_auroc([0.1], ["a", "b"])


def test_auroc_table_and_errors():
    table = auroc_table(torch.tensor([0.0, 0.1]), {"svhn": [1.0, 2.0], "jigsaw": np.array([0.05, 0.5])})
    assert table == {"svhn": 1.0, "jigsaw": 0.75}
    with pytest.raises(ValueError, match="'bad'"):
        auroc_table([0.0], {"ok": [1.0], "bad": [math.nan]})
    with pytest.raises(ValueError, match="empty"):
        auroc_table([0.0], {})
    with pytest.raises(TypeError, match="mapping"):
        auroc_table([0.0], [[1.0]])


def test_fpr_at_tpr_hand_computed():
    ins = [0.0, 1.0, 2.0, 3.0]
    assert fpr_at_tpr(ins, [2.5, 3.5]) == 0.25  # threshold 2.5 catches both OOD, flags in 3.0
    assert fpr_at_tpr(ins, [2.5, 3.5], tpr=0.5) == 0.0  # threshold 3.5 catches one, flags none
    assert fpr_at_tpr(ins, [10.0]) == 0.0
    assert fpr_at_tpr(ins, [-1.0]) == 1.0
    with pytest.raises(ValueError, match="tpr"):
        fpr_at_tpr(ins, [1.0], tpr=0.0)


def test_lazy_metrics_name_resolves():
    import nda.metrics

    assert nda.metrics.anomaly_auroc is anomaly_auroc
