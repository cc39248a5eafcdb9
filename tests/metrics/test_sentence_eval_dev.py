"""The dev suite of nda.metrics.sentence_eval / tasks/eval_sentence.py (``--split dev``): STS-B dev and SICK TRIAL
rows only, names checked against the split, and the default (test) suite unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from nda.metrics.sentence_eval import DEFAULT_PATHS, DEV_TASKS, TASKS, load_suite

SICK_HEADER = "pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\tSemEval_set"
WORDS = ("guitar", "onion", "beach", "piano", "horse", "street", "apple", "market")


def _pairs(tag: str) -> list[tuple[str, str, float]]:
    """Six pairs whose sentences carry ``tag``: a sentence says which split it came from."""
    return [(f"a {tag} man plays the {w} .", f"the {tag} {w} is {'played' if k % 2 else 'gone'} .", float(k % 5))
            for k, w in enumerate(WORDS[:6])]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dev_suite")
    stsb = root / "stsbenchmark"
    stsb.mkdir()
    for split in ("train", "dev", "test"):
        rows = [f"main-forums\tf\t2012\t{i}\t{s}\t{a}\t{b}" for i, (a, b, s) in enumerate(_pairs(f"sts{split}"))]
        (stsb / f"sts-{split}.csv").write_text("\n".join(rows) + "\n")
    labels = ("ENTAILMENT", "CONTRADICTION", "NEUTRAL")
    sick = [SICK_HEADER]
    for part in ("TRAIN", "TRIAL", "TEST"):
        sick += [f"{len(sick)}\t{a}\t{b}\t{labels[k % 3]}\t{1 + s * 0.8:.1f}\t{part}"
                 for k, (a, b, s) in enumerate(_pairs(f"sick{part.lower()}"))]
    (root / "SICK.txt").write_text("\r\n".join(sick) + "\r\n")
    return root


def _run(data: Path, tmp_path: Path, *extra: str) -> dict:
    from tasks.eval_sentence import main

    return main(["--models", "tiny-random", "--out", str(tmp_path / "report"), "--cache-dir", "none",
                 "--progress", "false", "--sick", str(data / "SICK.txt"), *extra])


def test_dev_suite_reads_dev_and_trial_rows_only(data):
    paths = {"stsb": data / "stsbenchmark", "sick": data / "SICK.txt"}
    dev = load_suite(paths, split="dev")
    assert dev.split == "dev" and list(dev.tasks) == list(DEV_TASKS) and not dev.skipped
    texts = " ".join(dev.texts())
    assert "stsdev" in texts and "sicktrial" in texts  # the folder gave sts-dev.csv
    assert not [tag for tag in ("ststest", "ststrain", "sicktest", "sicktrain") if tag in texts]
    assert dev.tasks["SICK-EC-trial"].targets == [1.0, 0.0, 1.0, 0.0]  # TRIAL rows 0, 1, 3, 4 (2, 5 neutral)
    assert dev.tasks["SICK-R-trial"].size == 6 and dev.tasks["SICK-R-trial"].source.endswith(":TRIAL")
    test = load_suite({**paths, "stsb": data / "stsbenchmark" / "sts-test.csv"}, ["STS-B", "SICK-R", "SICK-EC"])
    assert test.split == "test"
    texts = " ".join(test.texts())
    assert "ststest" in texts and "sicktest" in texts and "stsdev" not in texts and "sicktrial" not in texts


def test_task_names_belong_to_their_split(data, tmp_path):
    with pytest.raises(ValueError, match=r"\['STS-B'\] are test tasks, not dev ones"):
        load_suite({"stsb": data / "stsbenchmark"}, ["STS-B"], split="dev")
    with pytest.raises(ValueError, match=r"\['SICK-R-trial'\] are dev tasks, not test ones"):
        load_suite({"sick": data / "SICK.txt"}, ["SICK-R-trial"])
    with pytest.raises(ValueError, match="split must be one of"):
        load_suite(None, split="validation")
    with pytest.raises(ValueError, match="STS-B-dev reads the STS-B dev split, but .*sts-test.csv is the test file"):
        load_suite({"stsb": data / "stsbenchmark" / "sts-test.csv"}, ["STS-B-dev"], split="dev")  # not a skip
    for split, task, wrong in (("dev", "STS-B-dev", "sts-train.csv"), ("test", "STS-B", "sts-dev.csv")):
        with pytest.raises(ValueError, match=f"{task} reads the STS-B .* is the (train|dev) file"):
            load_suite({"stsb": data / "stsbenchmark" / wrong}, [task], split=split)
    from tasks.eval_sentence import main

    out = ["--out", str(tmp_path / "r")]
    with pytest.raises(ValueError, match="--tasks .* under --split dev.*STS-B,SICK-R: --split test tasks"):
        main(["--split", "dev", "--tasks", "STS-B,SICK-R", *out])
    with pytest.raises(ValueError, match="--tasks .* under --split test.*STS-B-dev: --split dev tasks"):
        main(["--tasks", "STS-B-dev", *out])
    with pytest.raises(ValueError, match="--split must be one of"):
        main(["--split", "trial", *out])
    with pytest.raises(ValueError, match="--stsb: STS-B-dev reads the STS-B dev split, but .*sts-test.csv is the test"):
        main(["--split", "dev", "--stsb", str(data / "stsbenchmark" / "sts-test.csv"), *out])


def test_dev_run_scores_the_dev_tasks_and_says_so(data, tmp_path):
    results = _run(data, tmp_path, "--split", "dev", "--stsb", str(data / "stsbenchmark" / "sts-dev.csv"))
    assert results["config"]["split"] == "dev" and results["config"]["tasks"] == list(DEV_TASKS)
    m = results["rows"][0]["metrics"]
    assert set(m) == {*DEV_TASKS, "dev avg"}
    assert m["dev avg"] == pytest.approx((m["STS-B-dev"]["spearman"] + m["SICK-R-trial"]["spearman"]) / 2)
    assert m["STS-B-dev"]["pairs"] == 6 and m["SICK-EC-trial"]["pairs"] == 4 and 0 <= m["SICK-EC-trial"]["auroc"] <= 100
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("| model | STS-B-dev | SICK-R-trial | dev avg | Ent-vs-contra AUROC (SICK-EC-trial) |\n")
    assert "DEV SPLITS ONLY" in md and "STS12" not in md.splitlines()[0]
    assert f"- SICK-R-trial: {data / 'SICK.txt'}:TRIAL;" in md and "sts-dev.csv; 6 pairs (STS Benchmark dev split)" in md
    assert "| SICK-EC-trial contradiction | SICK-EC-trial entailment |" in md

    sick_off = _run(data, tmp_path, "--split", "dev", "--stsb", str(data / "stsbenchmark"), "--sick", "none")
    assert sick_off["config"]["stsb"] == str(data / "stsbenchmark")
    assert set(sick_off["rows"][0]["metrics"]) == {"STS-B-dev"}  # no dev avg from one Spearman column
    assert sick_off["tasks"]["STS-B-dev"]["source"].endswith("sts-dev.csv")


def test_default_split_is_the_test_suite_unchanged(data, tmp_path):
    results = _run(data, tmp_path, "--stsb", str(data / "stsbenchmark" / "sts-test.csv"), "--tasks", "STS-B,SICK-EC")
    assert results["config"]["split"] == "test" and set(results["rows"][0]["metrics"]) == {"STS-B", "SICK-EC"}
    assert results["tasks"]["SICK-EC"]["source"].endswith(":TEST")
    md = (tmp_path / "report.md").read_text()
    assert md.splitlines()[0] == (
        "| model | STS12 | STS13* | STS14 | STS15 | STS16 | STS-B | SICK-R | STS avg | Negation AUROC (CANNOT) | "
        "Ent-vs-contra AUROC (SICK) | Word-order AUROC (PAWS) | CAD orig dev acc | CAD new dev acc |")
    assert "DEV SPLITS ONLY" not in md and "STS13 has no SMT subset" in md
    from nda.jobs.eval_sentence import EvalSentenceConfig, resolve_split

    cfg = resolve_split(EvalSentenceConfig())  # the defaults resolve to what they were before --split existed
    assert cfg.tasks == list(TASKS) and cfg.stsb == DEFAULT_PATHS["stsb"] == "../shared/data/text/stsbenchmark/sts-test.csv"
    dev = resolve_split(EvalSentenceConfig(split="dev"))
    assert dev.tasks == list(DEV_TASKS) and dev.stsb.endswith("stsbenchmark/sts-dev.csv") and dev.sick == cfg.sick


def test_dev_reports_do_not_carry_lines_of_earlier_reports(data):
    """The dev notes were one module-level list appended to: each later report repeated the earlier ones' lines."""
    from nda.metrics.sentence_eval import results_markdown

    suite = load_suite({"stsb": data / "stsbenchmark", "sick": "none"}, ["STS-B-dev"], split="dev")
    rows = [{"model": "m", "metrics": {"STS-B-dev": {"spearman": 50.0}}}]
    first = results_markdown(rows, suite)
    assert results_markdown(rows, suite) == first and first.count("\n- STS-B-dev: ") == 1
