"""``NDASuiteEvaluator``: nda's evaluation suite as a sentence-transformers evaluator, inside training."""

from __future__ import annotations

import pytest
import torch

from nda.integrations.sentence_transformers import NDASuiteEvaluator, flatten_suite_metrics
from nda.metrics.sentence_eval import Suite, SuiteTask, embed_suite, load_suite, score_suite
from nda.models.sentence import tiny_random_encoder

S1 = ["a man plays a guitar", "a dog runs on the beach", "the cat sleeps", "a woman cuts an onion",
      "the market fell", "a child rides a bike"]
S2 = ["a person plays the guitar", "a dog is running", "a cat naps on the sofa", "someone slices an onion",
      "shares dropped", "a kid is walking"]
GOLD = [4.8, 4.0, 3.5, 4.6, 3.9, 1.2]
NEGATED = ["the cat does not sleep", "a dog is not running", "the market did not fall"]


def _suite() -> Suite:
    sts = SuiteTask("STS-B", "sts", "tiny STS-B", list(S1), list(S2), list(GOLD))
    auroc = SuiteTask("CANNOT", "auroc", "tiny negation pairs", S1[:3] + S1[2:5], S2[:3] + NEGATED,
                      [0.0, 0.0, 0.0, 1.0, 1.0, 1.0], sign=-1.0)
    return Suite({"STS-B": sts, "CANNOT": auroc}, {"PAWS": "skipped: --paws none"})


@pytest.fixture()
def st_model(tmp_path):
    from sentence_transformers import SentenceTransformer

    tiny_random_encoder(seed=0).save_pretrained(tmp_path / "tiny")
    return SentenceTransformer(str(tmp_path / "tiny"), device="cpu")


def test_evaluator_scores_equal_the_suite(st_model, tmp_path):
    evaluator = NDASuiteEvaluator(suite=_suite(), batch_size=4)
    metrics = evaluator(st_model, output_path=str(tmp_path / "eval"), epoch=1, steps=2)
    emb = embed_suite(_suite(), lambda t: st_model.encode(t, convert_to_tensor=True), progress=False)
    expected = flatten_suite_metrics(score_suite(_suite(), emb)[0])
    assert sorted(metrics) == sorted(f"nda_{k}" for k in expected)
    for key, value in expected.items():
        assert metrics[f"nda_{key}"] == pytest.approx(value, abs=1e-3)
    assert evaluator.primary_metric == "nda_STS-B_spearman"  # STS avg needs all seven STS tasks
    assert evaluator.greater_is_better and evaluator.skipped == {"PAWS": "skipped: --paws none"}
    lines = (tmp_path / "eval" / "nda_suite_results.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,steps,STS-B_spearman") and lines[1].startswith("1,2,")


def test_evaluator_runs_during_sentence_transformer_training(st_model, tmp_path):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from nda.integrations.sentence_transformers import MultipleNegativesRankingLoss

    pairs = Dataset.from_dict({"anchor": S1, "positive": S2})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=3, eval_strategy="steps",
        eval_steps=1, report_to=[], save_strategy="no", use_cpu=True, seed=0, logging_steps=1)
    evaluator = NDASuiteEvaluator(suite=_suite(), primary_metric="CANNOT_auroc")
    trainer = SentenceTransformerTrainer(model=st_model, args=args, train_dataset=pairs,
                                         loss=MultipleNegativesRankingLoss(st_model), evaluator=evaluator)
    trainer.train()
    evals = [row for row in trainer.state.log_history if "eval_nda_STS-B_spearman" in row]
    assert [row["step"] for row in evals] == [1, 2]
    assert all(0.0 <= row["eval_nda_CANNOT_auroc"] <= 100.0 for row in evals)
    assert evaluator.primary_metric == "nda_CANNOT_auroc"


def test_bad_input_is_a_clear_error(st_model):
    with pytest.raises(ValueError, match="every dataset was skipped"):
        NDASuiteEvaluator(suite=load_suite({k: None for k in ("sts", "stsb", "sick", "cannot", "paws", "cad")}))
    with pytest.raises(ValueError, match="batch_size"):
        NDASuiteEvaluator(suite=_suite(), batch_size=0)
    with pytest.raises(ValueError, match="primary_metric 'nope'"):
        NDASuiteEvaluator(suite=_suite(), primary_metric="nope")(st_model)


def test_flatten_keeps_scores_only():
    flat = flatten_suite_metrics({"STS-B": {"spearman": 80.0, "pairs": 6}, "CAD": {"orig_dev_acc": 90.0, "C": 1.0,
                                  "cv_acc": {"1.0": 88.0}, "train_reviews": 10}, "STS avg": 75.0})
    assert flat == {"STS-B_spearman": 80.0, "CAD_orig_dev_acc": 90.0, "STS avg": 75.0}
    assert torch.tensor(list(flat.values())).isfinite().all()


def test_evaluator_on_the_dev_splits_selects_by_the_dev_average(st_model, tmp_path):
    """split='dev': checkpoints are chosen on STS-B dev / SICK TRIAL (before: only the test suite could load)."""
    stsb = tmp_path / "sts-dev.csv"
    stsb.write_text("".join(f"main-forums\tf\t2012\t{i}\t{g}\t{a}\t{b}\n" for i, (a, b, g) in enumerate(zip(S1, S2, GOLD))))
    sick = ["pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\tSemEval_set"]
    sick += [f"{i}\t{a}\t{b}\t{('ENTAILMENT', 'CONTRADICTION')[i % 2]}\t{1 + g * 0.8:.1f}\tTRIAL"
             for i, (a, b, g) in enumerate(zip(S1, S2, GOLD))]
    (tmp_path / "SICK.txt").write_text("\n".join(sick) + "\n")
    evaluator = NDASuiteEvaluator({"stsb": stsb, "sick": tmp_path / "SICK.txt"}, split="dev", batch_size=4)
    assert list(evaluator.suite.tasks) == ["STS-B-dev", "SICK-R-trial", "SICK-EC-trial"]
    metrics = evaluator(st_model)
    assert evaluator.primary_metric == "nda_dev avg" and "nda_SICK-EC-trial_auroc" in metrics
    with pytest.raises(ValueError, match="are test tasks, not dev ones"):
        NDASuiteEvaluator({"stsb": stsb}, tasks=["STS-B"], split="dev")
