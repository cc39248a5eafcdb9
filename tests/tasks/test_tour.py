"""tasks/tour.py: the quick tour writes both tables with both arms; the embedded CAD slice; folder rules; honest
verdicts whichever way the numbers go."""

from __future__ import annotations

import json
import math

import pytest

from nda.data.embedded import cad_imdb_slice
from nda.data.labeled_text import load_counterfactual_pairs, load_labeled_texts
from nda.run import RunFolderError
from tasks import tour  # the repo root is on sys.path (tests/conftest.py)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NDA_CACHE", str(tmp_path / "cache"))  # sub-runs inherit it: nothing lands in ~/.cache


@pytest.mark.slow
def test_quick_tour_writes_both_tables_with_both_arms(tmp_path):
    out = tmp_path / "tour"
    argv = ["--quick", "--model", "tiny-random", "--control", "false", "--out-dir", str(out),
            "--threads", "1"]
    report = tour.main(argv)
    assert [a["augment"] for a in report["text"]["arms"]] == ["none", "counterfactual", "human"]
    assert [a["flags"] for a in report["image"]["arms"]] == ["--nda none", "--nda jigsaw"]
    assert report["text"]["n_eval"] == {"orig_dev": 245, "cad_dev": 245}
    for a in report["text"]["arms"]:
        assert a["originals"] == 40 and 0 <= a["acc_orig_dev"] <= 100 and 0 <= a["acc_cad_dev"] <= 100
    assert report["text"]["arms"][0]["added"] == 0 < report["text"]["arms"][1]["added"]
    for a in report["image"]["arms"]:
        assert a["steps"] == 5 and math.isfinite(a["fid"]) and all(0 <= v <= 1 for v in a["anomaly_auroc"].values())
    md = (out / "tour.md").read_text()
    for row in ("| originals only |", "| + nda counterfactuals (automatic) |", "| + human counterfactuals (CAD) |",
                "| no NDA (baseline) |", "| NDA: jigsaw as negatives |"):
        assert row in md
    assert json.loads((out / "tour.json").read_text())["image"]["arms"][1]["fid"] == report["image"]["arms"][1]["fid"]
    assert (out / "tour.png").stat().st_size > 0
    assert {p.name for p in out.iterdir()} >= {"text", "gan_none", "gan_nda", "config.json"}

    with pytest.raises(RunFolderError, match="--overwrite"):  # one tour per folder
        tour.main(argv)
    with pytest.raises(ValueError, match="--seed"):  # --resume continues this tour, not another
        tour.main(argv + ["--resume", "--seed", "1"])
    stamp = (out / "gan_nda" / "results.json").stat().st_mtime_ns
    again = tour.main(argv + ["--resume"])  # everything finished: kept, nothing re-run
    assert (out / "gan_nda" / "results.json").stat().st_mtime_ns == stamp
    assert again["image"]["arms"][1]["fid"] == report["image"]["arms"][1]["fid"]


def test_a_folder_holding_something_else_is_refused_before_any_work(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="already holds"):
        tour.main(["--quick", "--model", "tiny-random", "--out-dir", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("argv, match", [
    (["--resume", "--overwrite"], "give one of them"),
    (["--nda", "none"], "--nda must name an image negative"),
    (["--nda", "token_shuffle"], "--nda"),
    (["--train-size", "1"], "--train-size"),
    (["--train-size", "401"], "--train-size 401 is more than the 400"),
    (["--eval-samples", "1"], "--eval-samples"),
    (["--gan-steps", "-3"], "--gan-steps"),
])
def test_bad_flags_are_one_line_errors_naming_the_flag(argv, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        tour.main(argv + ["--model", "tiny-random", "--out-dir", str(tmp_path / "t")])
    assert not (tmp_path / "t").exists()


def test_embedded_cad_slice_is_balanced_paired_and_disjoint_from_its_evaluation_split():
    cad = cad_imdb_slice()
    train = load_labeled_texts(cad.train)
    assert len(train) == 400 and train.counts() == {"negative": 200, "positive": 200}
    partners = load_counterfactual_pairs(cad.train_paired)
    for text, label in zip(train.texts, train.labels):
        assert [y for _, y in partners[text]] == [1 - label]  # one human counterfactual, label flipped
    dev, dev_cf = load_labeled_texts(cad.dev), load_labeled_texts(cad.dev_counterfactual)
    assert len(dev) == len(dev_cf) == 245
    trained_on = set(train.texts) | {t for text in train.texts for t, _ in partners[text]}
    assert not trained_on & (set(dev.texts) | set(dev_cf.texts))
    assert "Apache License" in (cad.root / "LICENSE").read_text()


def _image(fids: list[float]) -> dict:
    auroc = {"gaussian_noise (severity 3)": 0.9}
    return {"arms": [{"arm": f"arm{i}", "flags": "--nda x", "steps": 700, "fid": f, "kid": 0.01, "extractor": "e",
                      "reference": "r", "anomaly_auroc": auroc} for i, f in enumerate(fids)]}


def test_verdicts_follow_the_numbers_either_way():
    cfg = tour.TourConfig()
    assert "3.00 -> 5.00, worse than the baseline in this run" in tour.image_markdown(_image([3.0, 5.0]), cfg)
    assert "5.00 -> 3.00, better than the baseline in this run" in tour.image_markdown(_image([5.0, 3.0]), cfg)
    text = {"model": "m", "n_eval": {"orig_dev": 100, "cad_dev": 100},
            "arms": [{"arm": "originals only", "augment": "none", "originals": 10, "added": 0, "acc_orig_dev": 80.0, "acc_cad_dev": 60.0},
                     {"arm": "+ cf", "augment": "counterfactual", "originals": 10, "added": 9, "acc_orig_dev": 77.0, "acc_cad_dev": 70.0}]}
    md = tour.text_markdown(text)
    assert "+10.0 points on held-out human counterfactuals" in md and "-3.0 points on held-out originals" in md
    assert "80.0 ± 7.8" in md  # 95% binomial interval of 80% on 100 reviews: 1.96 * sqrt(.8 * .2 / 100)
