"""tasks/sentence.py end to end on a tiny random BERT (CPU, one process): objectives, --nda-every, resume,
folder rules and clear errors. The two-process resume test is tests/tasks/test_sentence_run.py."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

TRAIN = [
    "A man is playing a guitar.", "The dog is running in the park.", "Two women are eating food.",
    "A boy is riding a red bike.", "The police said two men were killed.", "She is not walking home.",
    "A cat sits on the old car.", "The government said prices will rise.", "A girl is cutting an onion.",
    "People are walking down the street.", "The market fell by two percent.", "A horse runs in a field.",
    "A woman is playing the piano.", "Three men are playing chess.", "A plane is taking off.",
    "The child is sleeping.",
]
STS_ROWS = [
    (4.8, "A man is playing a guitar.", "A man plays the guitar."),
    (0.2, "A man is playing a guitar.", "A woman is cutting an onion."),
    (4.2, "Two dogs run on the beach.", "Two dogs are running on the sand."),
    (0.8, "A cat is sleeping.", "A dog is barking loudly."),
    (4.0, "The market fell by two percent.", "Stocks dropped two percent."),
    (3.6, "A girl is riding a horse.", "A girl rides a horse in a field."),
    (0.0, "The president spoke on Monday.", "A boy is eating an apple."),
    (3.8, "People are walking down the street.", "A crowd walks along the road."),
]


@pytest.fixture(autouse=True)
def _text_cache(tmp_path_factory, monkeypatch):
    """nda.data.text indexes corpora under $NDA_CACHE: keep the tests' indexes out of the user's cache; the
    overlap guard's evaluation sets point at nothing (the same rows with or without ../shared on the machine)."""
    import nda.metrics.sentence_eval as suite

    monkeypatch.setenv("NDA_CACHE", str(tmp_path_factory.getbasetemp() / "nda_cache"))
    for paths in (suite.DEFAULT_PATHS, suite.DEV_DEFAULT_PATHS):
        for key in paths:
            monkeypatch.setitem(paths, key, str(tmp_path_factory.getbasetemp() / "no_eval" / key))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sentence_data")
    (root / "train.txt").write_text("\n".join(TRAIN) + "\n")
    lines = [f"main-captions\tMSRvid\t2012\t{i:04d}\t{s}\t{a}\t{b}" for i, (s, a, b) in enumerate(STS_ROWS)]
    for split in ("dev", "test"):
        (root / f"sts-{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--model", "tiny-random", "--train-file", str(data / "train.txt"), "--sts-data", str(data),
            "--batch-size", "4", "--out-dir", str(out), "--log-every", "1", "--progress", "false", "--cpu", "true", *extra]


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def _main(argv):
    from tasks.sentence import main

    return main(argv)


def test_task_trains_evaluates_and_saves_a_sentence_transformers_model(data, tmp_path):
    run = tmp_path / "run"
    results = _main(_args(data, run, "--nda", "token_shuffle|counterfactual", "--nda-k", "2", "--steps", "3",
                          "--grad-accum", "2", "--eval-every", "2", "--lr", "1e-3"))
    assert set(results["final"]) == {"sts_dev_spearman", "sts_test_spearman"}
    assert all(-100 <= v <= 100 for v in results["final"].values())
    saved = json.loads((run / "results.json").read_text())
    assert saved["final"] == results["final"] and saved["run"]["processes"] == 1 and saved["run"]["steps"] == 3
    rows = _rows(run)
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert [float(r["logits_per_anchor"]) for r in rows] == [4 + 4 * 2] * 3  # B in-batch + B*K shared NDA columns
    assert rows[1]["sts_dev_spearman"] and rows[2]["sts_test_spearman"] and not rows[0]["sts_dev_spearman"]
    assert (run / "loss_plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # every job draws its losses
    from sentence_transformers import SentenceTransformer

    from nda.metrics.sts import load_sts, sts_spearman

    st = SentenceTransformer(str(run / "model"), device="cpu")  # the final model is a sentence-transformers folder
    assert sts_spearman(st, load_sts(data, "test")) == pytest.approx(results["final"]["sts_test_spearman"], abs=1e-6)
    card = (run / "model" / "README.md").read_text()  # the model card says what trained it
    assert "NDA negatives: token_shuffle|counterfactual (column, from the anchor)" in card


def test_resume_refuses_changed_training_data(data, tmp_path):
    train = tmp_path / "train.txt"
    train.write_text((data / "train.txt").read_text())
    args = [*_args(data, tmp_path / "run", "--steps", "2", "--checkpoint-every", "1"), "--train-file", str(train)]
    _main(args)
    train.write_text(train.read_text() + "A new sentence nobody trained on.\n")
    with pytest.raises(ValueError, match="other training data"):
        _main([*args, "--resume"])


@pytest.mark.parametrize("flags,expect_margin", [
    (["--nda-loss", "margin", "--nda-lambda", "0.5", "--margin-alpha", "0.05", "--margin-beta", "0.5"], True),
    (["--nda-loss", "column", "--nda-weight", "0.25"], False),
])
def test_margin_and_weighted_column_modes_train(data, tmp_path, flags, expect_margin):
    from nda.run import parse_config
    from tasks.sentence import SentenceConfig, make_criterion, validate

    run = tmp_path / "run"
    args = _args(data, run, "--nda", "token_shuffle", "--steps", "3", "--lr", "1e-3", "--sts-data", "none", *flags)
    criterion = make_criterion(validate(parse_config(SentenceConfig, args)))
    assert criterion.mode == ("margin" if expect_margin else "column")
    _main(args)
    rows = _rows(run)
    for r in rows:
        loss, info_nce, margin = float(r["loss"]), float(r["info_nce"]), float(r["margin"])
        assert torch.isfinite(torch.tensor([loss, info_nce, margin])).all()
        if expect_margin:  # InfoNCE without NDA columns + lambda * margin
            assert float(r["logits_per_anchor"]) == 4
            assert loss == pytest.approx(info_nce + 0.5 * margin, rel=1e-5)
        else:
            assert float(r["logits_per_anchor"]) == 8 and margin == 0.0
    if expect_margin:
        assert any(float(r["margin"]) > 0 for r in rows)  # the margin is live, not a constant 0


def test_nda_every_makes_no_negatives_on_the_other_steps(data, tmp_path, monkeypatch):
    import nda.text.negatives as negatives

    calls = []
    real = negatives.apply_text
    monkeypatch.setattr(negatives, "apply_text", lambda *a, **k: calls.append(1) or real(*a, **k))
    run = tmp_path / "run"
    _main(_args(data, run, "--nda", "token_shuffle", "--nda-every", "2", "--steps", "4", "--sts-data", "none"))
    rows = _rows(run)
    assert [float(r["logits_per_anchor"]) for r in rows] == [8, 4, 8, 4]  # steps 0 and 2 (rows 1 and 3) use NDA
    assert [bool(r["nda_valid_frac"]) for r in rows] == [True, False, True, False]
    assert len(calls) == 2  # negatives made on 2 of the 4 steps only


def test_resume_of_a_finished_run_adds_no_rows_and_refuses_changed_flags(data, tmp_path):
    run = tmp_path / "run"
    args = _args(data, run, "--nda", "span_stitch", "--steps", "3", "--checkpoint-every", "2")
    first = _main(args)
    before = (run / "metrics.csv").read_text()
    again = _main([*args, "--resume"])  # finished: nothing to train; the final evaluation fills the same row
    assert (run / "metrics.csv").read_text() == before
    assert again["final"] == first["final"] and again["run"]["resumed_from"].endswith("step_00000003")
    with pytest.raises(ValueError, match="--steps 3 -> 5"):  # the LR decays to 0 at --steps: a training flag
        _main([*args, "--resume", "--steps", "5"])
    with pytest.raises(ValueError, match="--nda-weight 1.0 -> 0.5"):
        _main([*args, "--resume", "--nda-weight", "0.5"])
    _main([*args, "--resume", "--eval-every", "1"])  # evaluation-only flags may change
    assert (run / "metrics.csv").read_text() == before


def test_interrupted_single_process_run_resumes_exactly(data, tmp_path, monkeypatch):
    """Dropout, NDA draws and data order replay after a resume (the 2-process version: tests/tasks)."""
    import nda.run.run as run_module

    full, cut = tmp_path / "full", tmp_path / "cut"
    common = ("--nda", "token_shuffle", "--steps", "4", "--checkpoint-every", "2", "--lr", "1e-3", "--sts-data", "none")
    _main(_args(data, full, *common))

    class Interrupted(Exception):
        pass

    def fault(code):
        raise Interrupted

    monkeypatch.setattr(run_module.os, "_exit", fault)
    monkeypatch.setenv("NDA_FAULT_AT_STEP", "3")
    with pytest.raises(Interrupted):
        _main(_args(data, cut, *common))
    monkeypatch.delenv("NDA_FAULT_AT_STEP")
    _main(_args(data, cut, *common, "--resume"))
    assert (cut / "metrics.csv").read_text() == (full / "metrics.csv").read_text()


def test_supervised_triples(data, tmp_path):
    triples = [f"{a}\t{a.lower()}\t{b}" for a, b in zip(TRAIN, TRAIN[1:] + TRAIN[:1])]
    (tmp_path / "nli.tsv").write_text("\n".join(triples) + "\n")
    args = _args(data, tmp_path / "sup", "--mode", "sup", "--nda", "counterfactual", "--steps", "2", "--sts-data", "none",
                 "--save-model", "false", "--overlap-guard", "none")  # hermetic: no shared data
    args[args.index("--train-file") + 1] = str(tmp_path / "nli.tsv")
    _main(args)
    assert float(_rows(tmp_path / "sup")[-1]["logits_per_anchor"]) == 4 + 4 + 4  # positives + hard negatives + NDA


def test_train_file_formats(tmp_path):
    """Plain lines (deduplicated), SentEval-style text<TAB>label lines (the text), STS-B csv with a header --
    files read through nda.data.text (indexed, read per batch: never one Python list of the whole file)."""
    from nda.data.text import TextCorpus
    from tasks.sentence import SentenceConfig, batch_columns, load_corpus

    def rows(path, **kw):
        corpus = load_corpus(SentenceConfig(train_file=str(path), **kw))
        assert isinstance(corpus, TextCorpus)
        return corpus, batch_columns(corpus, list(range(len(corpus))))

    (tmp_path / "plain.txt").write_text("one sentence.\nanother one.\n\none sentence.\n")
    corpus, cols = rows(tmp_path / "plain.txt")
    assert cols == [["one sentence.", "another one."]] and corpus.stats["duplicates"] == 1
    (tmp_path / "sentiment-train").write_text("a good film \t1\nbad acting \t0\n")
    assert rows(tmp_path / "sentiment-train")[1] == [["a good film", "bad acting"]]
    header = "genre\tfile\tyear\tid\tscore\tsentence1\tsentence2"
    lines = [f"main-captions\tMSRvid\t2012\t{i:04d}\t{s}\t{a}\t{b}" for i, (s, a, b) in enumerate(STS_ROWS[:3])]
    (tmp_path / "sts-train.csv").write_text("\n".join([header, *lines]) + "\n")
    assert rows(tmp_path / "sts-train.csv")[1] == [[
        "A man is playing a guitar.", "Two dogs run on the beach.", "A man plays the guitar.",
        "A woman is cutting an onion.", "Two dogs are running on the sand."]]  # both sides, deduplicated
    sup = rows(tmp_path / "sts-train.csv", mode="sup", sup_min_score=4.0)[1]
    assert sup == [[STS_ROWS[0][1], STS_ROWS[2][1]], [STS_ROWS[0][2], STS_ROWS[2][2]]]
    (tmp_path / "pairs.tsv").write_text("a\tb\nc\td\n")
    assert rows(tmp_path / "pairs.tsv", mode="sup", max_train_samples=1)[1] == [["a"], ["b"]]
    (tmp_path / "ragged.tsv").write_text("a\tb\nc\td\te\tf\n")
    with pytest.raises(ValueError, match="--train-file .*ragged.tsv.*tab-separated fields"):
        load_corpus(SentenceConfig(train_file=str(tmp_path / "ragged.tsv"), mode="sup"))


# --------------------------------------------------------------------------------------- clear errors
def test_errors_come_before_any_model_or_data_loading(data, tmp_path, monkeypatch):
    import nda.models.sentence as sentence
    import tasks.sentence as task

    def no_loading(*a, **k):
        raise AssertionError("the model was loaded before the flags were checked")

    monkeypatch.setattr(sentence.SentenceEncoder, "from_pretrained", no_loading)
    monkeypatch.setattr(task, "load_corpus", no_loading)
    out = tmp_path / "run"
    cases = [
        (["--nda", "jigsaw"], "image negative 'jigsaw'"),
        (["--nda", "token_shuffle|cutout"], "image negative 'cutout'"),
        (["--nda", "counterfactual", "--nda-level", "token"], "does not work on token ids"),
        (["--nda-loss", "both"], "--nda-loss"),
        (["--margin-alpha", "0.4"], "--margin-alpha must be <= --margin-beta"),
        (["--nda-every", "0"], "--nda-every"),
        (["--nda-weight", "-1"], "--nda-weight"),
        (["--mode", "weird"], "--mode"),
        (["--model", str(tmp_path / "missing")], "does not exist"),
        (["--train-file", str(data / "sts-test.csv")], "named as a test split"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError, match=message):
            _main(_args(data, out, *extra))
    with pytest.raises(ValueError, match="exactly one of --train-file"):
        _main(["--model", "tiny-random", "--out-dir", str(out)])
    assert not out.exists()  # nothing was written


def test_non_utf8_train_file_is_a_clear_error(data, tmp_path):
    args = _args(data, tmp_path / "run", "--steps", "1")
    (tmp_path / "latin1.txt").write_bytes("one line\nanother\nun caf\xe9 noir\n".encode("latin-1"))
    args[args.index("--train-file") + 1] = str(tmp_path / "latin1.txt")
    with pytest.raises(ValueError, match=r"--train-file .*latin1.txt: .*line 3 is not valid UTF-8"):
        _main(args)
    (tmp_path / "latin1-head.txt").write_bytes("caf\xe9\n".encode("latin-1"))  # caught while sniffing the format
    args[args.index("--train-file") + 1] = str(tmp_path / "latin1-head.txt")
    with pytest.raises(ValueError, match=r"--train-file .*latin1-head.txt is not UTF-8 text"):
        _main(args)
    assert not (tmp_path / "run").exists()


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("NDA_TRACEBACK", None)
    return subprocess.run([sys.executable, str(ROOT / "tasks" / "sentence.py"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_folder_rules_and_one_line_errors(data, tmp_path):
    run = tmp_path / "run"
    args = _args(data, run, "--steps", "1", "--sts-data", "none", "--save-model", "false")
    _main(args)
    config = (run / "config.json").read_text()
    refused = _cli(*args)  # a fresh run into a folder holding a run
    assert refused.returncode == 2 and "already holds a run" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    missing = _cli(*args, "--overwrite", "--model", str(tmp_path / "no_model"))  # failed: the old run stays
    assert missing.returncode == 2 and "does not exist" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    assert (run / "config.json").read_text() == config
    _main([*args, "--overwrite", "--seed", "3"])
    assert json.loads((run / "config.json").read_text())["seed"] == 3
    assert [r["step"] for r in _rows(run)] == ["1"]
