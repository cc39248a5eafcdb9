"""tasks/classify.py: probe and finetune modes on tiny offline data, augmentation contract, subsets, resume."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nda.data.labeled_text import load_counterfactual_pairs, load_labeled_texts, parse_label, subset_per_class
from tasks import classify  # the repo root is on sys.path (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
TASK = ROOT / "tasks" / "classify.py"
POS = ["a good film", "the acting is great", "i love this movie", "a wonderful story", "the plot is good"]
NEG = ["a bad film", "the acting is terrible", "i hate this movie", "a boring story", "the plot is bad"]


def _write(path: Path, rows: list[tuple[str, str]], header=("Sentiment", "Text")) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture()
def data(tmp_path):
    train = [("Positive", f"{t} {i}") for i in range(4) for t in POS] + [("Negative", f"{t} {i}") for i in range(4) for t in NEG]
    dev = [("Positive", t) for t in POS] + [("Negative", t) for t in NEG]
    return {"train": _write(tmp_path / "train.tsv", train), "dev": _write(tmp_path / "dev.tsv", dev), "dir": tmp_path}


def test_probe_compares_augmentations_offline(data, tmp_path):
    out = tmp_path / "run"
    res = classify.main(["--train", str(data["train"]), "--eval", f"dev={data['dev']}", "--model", "tiny-random",
                         "--augment", "none,counterfactual", "--train-size", "4,all", "--repeats", "2",
                         "--out-dir", str(out), "--cache-dir", str(tmp_path / "cache"), "--progress", "false"])
    assert len(res["rows"]) == 2 * 2 * 2
    summary = {(r["train_size"], r["augment"]): r for r in res["summary"]}
    assert summary[("4", "none")]["n_original"] == 4 and summary[("4", "none")]["n_added"] == 0
    assert summary[("all", "counterfactual")]["n_added"] > 0
    assert all(0 <= r["acc_dev"] <= 100 for r in res["rows"])
    assert "| 4 | counterfactual |" in (out / "results.md").read_text()
    assert json.loads((out / "results.json").read_text())["run"]["processes"] == 1


def test_counterfactual_augmentation_adds_only_flipped_examples_with_flipped_labels(data):
    train = load_labeled_texts(data["train"])
    cfg = classify.validate(classify.parse_config(classify.ClassifyConfig, ["--train", str(data["train"])]))
    negative = classify.build_counterfactual("counterfactual")
    chosen = list(range(len(train)))
    added = classify.augmentation("counterfactual", train, chosen, cfg, {"counterfactual": negative}, seed=0)
    assert 0 < len(added) <= len(train)
    originals = dict(zip(train.texts, train.labels))
    out = negative(train.texts, labels=train.labels, label_map="sentiment", generator=torch.Generator().manual_seed(0))
    flipped = {t: y for t, y, ok in zip(out.texts, out.labels, out.flipped) if ok}
    for text, label in zip(added.texts, added.labels):
        assert flipped[text] == label
    for src, text, label, ok in zip(train.texts, out.texts, out.labels, out.flipped):
        if ok:
            assert label == 1 - originals[src] and text != src  # a real edit, its label flipped
    assert added.meta["flipped"] == len(added)


def test_non_flipping_counterfactual_spec_is_refused():
    with pytest.raises(ValueError, match="must flip labels"):
        classify.build_counterfactual("token_shuffle")
    with pytest.raises(ValueError, match="text negatives are needed"):
        classify.build_counterfactual("jigsaw")


def test_train_size_subsets_are_seeded_and_class_balanced(data):
    train = load_labeled_texts(data["train"])
    a, b, c = (subset_per_class(train, 6, s) for s in (0, 0, 1))
    assert a == b and a != c
    assert sorted(train.labels[i] for i in a) == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="needs 22 examples"):
        subset_per_class(train, 44, 0)


def test_human_paired_counterfactuals_match_the_chosen_originals(data, tmp_path):
    pairs = [("Positive", "a good film 0", "1"), ("Negative", "a bad film 0 but no", "1"),
             ("Negative", "a bad film 1", "2"), ("Positive", "a fine film 1", "2")]
    paired = _write(tmp_path / "paired.tsv", pairs, header=("Sentiment", "Text", "batch_id"))
    assert load_counterfactual_pairs(paired)["a good film 0"] == [("a bad film 0 but no", 0)]
    train = load_labeled_texts(data["train"])
    cfg = classify.validate(classify.parse_config(classify.ClassifyConfig, ["--train", str(data["train"])]))
    chosen = [train.texts.index("a good film 0"), train.texts.index("the plot is bad 3")]
    added = classify.augmentation(f"human:{paired}", train, chosen, cfg, {}, 0)
    assert added.texts == ["a bad film 0 but no"] and added.labels == [0]
    assert added.meta["originals_without_partner"] == 1


def test_bad_labels_and_label_maps_are_clear_errors(data, tmp_path):
    bad = _write(tmp_path / "bad.tsv", [("Positive", "fine"), ("Mixed", "meh")])
    with pytest.raises(ValueError, match=r"bad.tsv:3: unknown sentiment label 'Mixed'"):
        load_labeled_texts(bad)
    with pytest.raises(ValueError, match="label_map must be one of"):
        load_labeled_texts(data["train"], label_map="stars")
    assert parse_label("contradiction", "nli") == 2
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("Sentiment\tText\nPositive\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        load_labeled_texts(latin)
    with pytest.raises(ValueError, match="--label-map must be one of"):
        classify.main(["--train", str(data["train"]), "--label-map", "stars", "--out-dir", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def _launch(args, env=None):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--main_process_port", "0", str(TASK), "--cpu", "true", *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=600)


@pytest.mark.slow
def test_two_process_finetune_interrupted_and_resumed_is_exact(data, tmp_path):
    args = ["--mode", "finetune", "--train", str(data["train"]), "--eval", f"dev={data['dev']}", "--model", "tiny-random",
            "--augment", "counterfactual", "--steps", "8", "--batch-size", "4", "--log-every", "2",
            "--checkpoint-every", "4", "--lr", "1e-3", "--progress", "false"]
    full = _launch(args + ["--out-dir", str(tmp_path / "full")])
    assert full.returncode == 0, full.stderr[-3000:]
    cut = _launch(args + ["--out-dir", str(tmp_path / "cut")], env={"NDA_FAULT_AT_STEP": "6"})
    assert cut.returncode != 0 and "NDA_FAULT_AT_STEP=6" in cut.stdout + cut.stderr
    resumed = _launch(args + ["--out-dir", str(tmp_path / "cut"), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    res = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert res["run"]["processes"] == 2 and res["run"]["resumed_from"].endswith("step_00000004")
    assert (tmp_path / "full" / "metrics.csv").read_text() == (tmp_path / "cut" / "metrics.csv").read_text()
    assert (tmp_path / "full" / "loss_plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # finetune plots its losses


def test_review_regressions_pairs_identical_partners_and_missing_model(data, tmp_path):
    nli = _write(tmp_path / "nli.tsv", [("A man sleeps.", "A man is awake.", "contradiction")],
                 header=("sentence1", "sentence2", "gold_label"))
    with pytest.raises(ValueError, match="sentence-pair file"):
        load_labeled_texts(nli, label_map="nli")
    paired = _write(tmp_path / "paired.tsv", [("Positive", "same text", "7"), ("Negative", "same text", "7")],
                    header=("Sentiment", "Text", "batch_id"))
    assert load_counterfactual_pairs(paired) == {"same text": []}  # not a counterfactual: no contradiction added
    good = tmp_path / "good"
    classify.main(["--train", str(data["train"]), "--eval", f"dev={data['dev']}", "--model", "tiny-random",
                   "--out-dir", str(good), "--cache-dir", str(tmp_path / "cache"), "--progress", "false"])
    before = sorted(p.name for p in good.iterdir())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        classify.main(["--train", str(data["train"]), "--model", str(tmp_path / "nope"), "--overwrite",
                       "--out-dir", str(good)])
    assert sorted(p.name for p in good.iterdir()) == before  # the good run is untouched


def test_probe_groups_keep_an_original_and_its_counterfactual_in_one_fold():
    import numpy as np

    from nda.metrics.probe import logistic_probe

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4))
    y = np.array([0, 1] * 20)
    res = logistic_probe(x, y, {}, seed=0, groups=[i // 2 for i in range(40)])
    assert res.cv_accuracy and res.C in res.cv_accuracy
    with pytest.raises(ValueError, match="groups has 3 entries"):
        logistic_probe(x, y, {}, groups=[0, 1, 2])


def test_probe_mode_checks_everything_before_loading_and_refuses_resume(data, tmp_path, monkeypatch):
    """Issue 20 item 4: probe mode has nothing to resume (it used to load the data, then fail with 'no complete
    checkpoint'); a missing human file and a non-text --augment spec fail in validate, naming --augment."""
    def never(*args, **kwargs):
        raise AssertionError("data was loaded before the flags were checked")

    monkeypatch.setattr(classify, "load_labeled_texts", never)
    base = ["--train", str(data["train"]), "--model", "tiny-random", "--out-dir", str(tmp_path / "x")]
    with pytest.raises(ValueError, match="--resume: --mode probe trains nothing"):
        classify.main(base + ["--resume"])
    with pytest.raises(FileNotFoundError, match="--augment human:.*missing.tsv: file not found"):
        classify.main(base + ["--augment", f"human:{tmp_path / 'missing.tsv'}"])
    with pytest.raises(ValueError, match="^--augment 'jigsaw' contains the image negative"):
        classify.main(base + ["--augment", "none,jigsaw"])
    assert not (tmp_path / "x").exists()
