"""tasks/eval_sentence.py, nda.data.sentence_pairs and nda.metrics.{sentence_eval, probe} on tiny files and a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nda.metrics.probe import logistic_probe
from nda.data.labeled_text import load_labeled_texts
from nda.data.sentence_pairs import (
    load_labelled_pairs,
    load_senteval_sts_year,
    load_sick_entailment,
    load_sick_relatedness,
)
from nda.metrics.sentence_eval import (
    TASKS,
    EmbeddingCache,
    embed_suite,
    encode_texts,
    load_suite,
    results_markdown,
    score_suite,
)

SICK_LABELS = ("ENTAILMENT", "CONTRADICTION", "NEUTRAL")

PAIRS = [
    ("a man is playing a guitar .", "a man plays the guitar .", 4.8),
    ("a man is playing a guitar .", "a woman is cutting an onion .", 0.2),
    ("two dogs run on the beach .", "two dogs are running on the sand .", 4.2),
    ("a cat is sleeping .", "a dog is barking loudly .", 0.8),
    ("the market fell by two percent .", "stocks dropped two percent .", 4.0),
    ("a girl is riding a horse .", "a girl rides a horse in a field .", 3.6),
    ("the president spoke on monday .", "a boy is eating an apple .", 0.0),
    ("people are walking down the street .", "a crowd walks along the road .", 3.8),
    ("a woman is playing the piano .", "a man is playing the piano .", 2.5),
    ("the child is sleeping .", "the child is not sleeping .", 2.0),
]
REVIEWS = [
    ("Positive", "A good film, I loved the actors."), ("Negative", "A bad film, I hated the \"actors\"."),
    ("Positive", "Very good and new, the best of the year."), ("Negative", "Very bad and old, the worst of the year."),
    ("Positive", "The story was good."), ("Negative", "The story was bad."),
    ("Positive", "Good music, good people."), ("Negative", "Bad music, bad people."),
    ("Positive", "I would see it again, it is good."), ("Negative", "I would not see it again, it is bad."),
]


def _write_sts_year(folder: Path, subsets: list[str], empty_gold_at: int | None = None) -> None:
    folder.mkdir(parents=True)
    for k, name in enumerate(subsets):
        rows = PAIRS[k * 3 : k * 3 + 5] or PAIRS[:5]
        # extra spaces inside a sentence: SentEval splits on whitespace and joins with one space
        (folder / f"STS.input.{name}.txt").write_text("".join(f"{a.replace(' ', '  ', 1)}\t{b}\n" for a, b, _ in rows))
        gold = [f"{s:.3f}" for _, _, s in rows]
        if empty_gold_at is not None and k == 0:
            gold[empty_gold_at] = ""
        (folder / f"STS.gs.{name}.txt").write_text("\n".join(gold) + "\n")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sentence_eval_data")
    from nda.data.sentence_pairs import SENTEVAL_STS_SUBSETS

    for year, subsets in SENTEVAL_STS_SUBSETS.items():
        _write_sts_year(root / "STS" / f"STS{year % 100}-en-test", list(subsets)[:2], empty_gold_at=1 if year == 2015 else None)
    (root / "STS" / "STS13-en-test" / "STS.gs.SMT.txt").write_text("1.0\n")  # gold without input, as shipped
    lines = [f"main-captions\tMSRvid\t2012\t{i:04d}\t{s}\t{a}\t{b}" for i, (a, b, s) in enumerate(PAIRS)]
    (root / "sts-test.csv").write_text("\n".join(lines) + "\n")
    header = "pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\tSemEval_set"
    # TEST rows (i % 4 != 0): entailment 3, 6, 9; contradiction 1, 7; neutral 2, 5
    sick = [header] + [f"{i}\t{a}\t{b}\t{SICK_LABELS[i % 3]}\t{1 + s * 0.8:.1f}\t{'TEST' if i % 4 else 'TRAIN'}"
                       for i, (a, b, s) in enumerate(PAIRS)]
    (root / "SICK.txt").write_text("\r\n".join(sick) + "\r\n")  # the real file has CRLF line ends
    cannot = ["premise\thypothesis\tlabel", "The child is sleeping.\tThe child is not sleeping.\t1",
              "A man plays a guitar.\tA man is playing a guitar.\t0", "The film was good.\tThe film was bad.\t1",
              "Two dogs run.\tTwo dogs are running.\t0"]
    (root / "cannot.tsv").write_text("\n".join(cannot) + "\n")
    paws = ["id\tsentence1\tsentence2\tlabel", "1\tThe dog bit the man .\tThe man bit the dog .\t0",
            "2\tA man plays a guitar .\tA guitar is played by a man .\t1", "3\tShe left before him .\tHe left before her .\t0",
            "4\tThe market fell .\tThe market dropped .\t1"]
    (root / "paws.tsv").write_text("\n".join(paws) + "\n")
    for part, flip in (("orig", False), ("new", True)):
        (root / "cad" / "sentiment" / part).mkdir(parents=True)
        for split in ("train", "dev"):
            rows = REVIEWS if split == "train" else REVIEWS[:6]
            body = []
            for label, text in rows:
                if flip:  # the counterfactual review: the other label, an edited text
                    label = "Negative" if label == "Positive" else "Positive"
                    text = text.replace("good", "BAD").replace("bad", "good").replace("BAD", "bad")
                body.append(f'{label}\t"{text.replace(chr(34), chr(34) * 2)}"')
            (root / "cad" / "sentiment" / part / f"{split}.tsv").write_text("Sentiment\tText\n" + "\n".join(body) + "\n")
    return root


def _paths(data: Path) -> list[str]:
    return ["--sts", str(data / "STS"), "--stsb", str(data / "sts-test.csv"), "--sick", str(data / "SICK.txt"),
            "--cannot", str(data / "cannot.tsv"), "--paws", str(data / "paws.tsv"), "--cad", str(data / "cad")]


def _run(data: Path, tmp_path: Path, *extra: str) -> dict:
    from tasks.eval_sentence import main

    return main(["--out", str(tmp_path / "report"), "--cache-dir", str(tmp_path / "cache"), "--progress", "false",
                 "--probe-c", "1.0", *_paths(data), *extra])


# ------------------------------------------------------------------------------------------- the task
def test_eval_sentence_tiny_model_writes_every_column(data, tmp_path):
    results = _run(data, tmp_path, "--models", "tiny-random")
    (row,) = results["rows"]
    m = row["metrics"]
    assert set(TASKS) <= set(m) and "STS avg" in m and not results["skipped"]
    for task in ("STS12", "STS13", "STS14", "STS15", "STS16", "STS-B", "SICK-R"):
        assert -100 <= m[task]["spearman"] <= 100
    assert m["STS avg"] == pytest.approx(np.mean([m[t]["spearman"] for t in TASKS[:7]]))
    assert 0 <= m["CANNOT"]["auroc"] <= 100 and 0 <= m["PAWS"]["auroc"] <= 100 and 0 <= m["SICK-EC"]["auroc"] <= 100
    assert m["SICK-EC"]["pairs"] == 5 and m["SICK-EC"]["arms"] == {"label0": "contradiction", "label1": "entailment"}
    assert 0 <= m["CAD"]["orig_dev_acc"] <= 100 and 0 <= m["CAD"]["new_dev_acc"] <= 100
    assert m["STS15"]["pairs"] == 9  # one pair without a gold score skipped
    assert m["SICK-R"]["pairs"] == 7  # TEST rows only
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["rows"][0]["metrics"]["STS-B"] == m["STS-B"]
    md = (tmp_path / "report.md").read_text()
    assert "| tiny-random |" in md and "STS13 has no SMT subset" in md and "Negation AUROC" in md
    assert "Ent-vs-contra AUROC (SICK)" in md and "| CANNOT paraphrase | CANNOT negated/antonym |" in md
    assert row["timing"]["tasks"]["STS12"]["new_texts"] > 0 and not row["timing"]["embeddings_from_cache"]

    again = _run(data, tmp_path, "--models", "tiny-random")  # the second run reads the cached embeddings
    assert again["rows"][0]["timing"]["embeddings_from_cache"]
    assert again["rows"][0]["metrics"] == m


def test_sts_spearman_agrees_with_sentence_transformers_evaluator(data, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    from nda.models.sentence import tiny_random_encoder

    folder = tmp_path / "tiny"
    tiny_random_encoder(seed=3).save_pretrained(folder)
    results = _run(data, tmp_path, "--models", str(folder), "--tasks", "STS15,STS-B,SICK-R")
    (row,) = results["rows"]
    assert row["backend"] == "st"
    st = SentenceTransformer(str(folder), device="cpu")
    suite = load_suite({"sts": data / "STS", "stsb": data / "sts-test.csv", "sick": data / "SICK.txt"},
                       ["STS15", "STS-B", "SICK-R"])
    for name, task in suite.tasks.items():
        evaluator = EmbeddingSimilarityEvaluator(task.sentences1, task.sentences2, task.targets, name="x", batch_size=4,
                                                 write_csv=False)
        theirs = 100 * evaluator(st)["x_spearman_cosine"]
        assert row["metrics"][name]["spearman"] == pytest.approx(theirs, abs=1e-6), name


def test_missing_dataset_is_a_skipped_line_not_a_crash(data, tmp_path, capsys):
    results = _run(data, tmp_path, "--models", "tiny-random", "--paws", str(tmp_path / "absent.tsv"), "--sick", "none",
                   "--tasks", "STS-B,SICK-R,CANNOT,PAWS")
    out = capsys.readouterr().out
    assert "PAWS: skipped:" in out and "absent.tsv not found" in out and "SICK-R: skipped: --sick none" in out
    m = results["rows"][0]["metrics"]
    assert "PAWS" not in m and "SICK-R" not in m and "STS avg" not in m and "CANNOT" in m
    md = (tmp_path / "report.md").read_text()
    assert "- PAWS: skipped:" in md
    assert md.splitlines()[2].count("–") >= 8  # the skipped columns show a dash


def test_everything_missing_is_a_clear_error(tmp_path):
    from tasks.eval_sentence import main

    with pytest.raises(FileNotFoundError, match="skipped"):
        main(["--models", "tiny-random", "--out", str(tmp_path / "r"), "--cache-dir", "none", "--progress", "false",
              "--stsb", str(tmp_path / "nope.csv"), "--tasks", "STS-B"])
    with pytest.raises(ValueError, match="--tasks"):
        main(["--tasks", "STS-X", "--out", str(tmp_path / "r")])


def test_floor_row_is_the_runs_base_model(data, tmp_path):
    from nda.models.sentence import tiny_random_encoder

    run = tmp_path / "run"
    tiny_random_encoder(seed=5).save_pretrained(run / "model")
    (run / "config.json").write_text(json.dumps({"model": "tiny-random"}))
    results = _run(data, tmp_path, "--models", str(run), "--floor", "--tasks", "STS-B")
    labels = [r["model"] for r in results["rows"]]
    assert labels == ["floor: tiny-random", str(run)]
    a, b = (r["metrics"]["STS-B"]["spearman"] for r in results["rows"])
    assert a != b  # different weights, different rows


# -------------------------------------------------------------------------------------- the suite parts
def _lookup_encoder(table: dict[str, list[float]]):
    return lambda texts: torch.tensor([table[t] for t in texts])


def test_auroc_directions_higher_is_more_sensitive(data, tmp_path):
    suite = load_suite({"cannot": data / "cannot.tsv", "paws": data / "paws.tsv"}, ["CANNOT", "PAWS"])
    table = {}
    for task in suite.tasks.values():
        for i, (a, b, y) in enumerate(zip(task.sentences1, task.sentences2, task.targets)):
            same = (y == 0) if task.name == "CANNOT" else (y == 1)  # paraphrases identical, the others orthogonal
            va = [0.0] * 16
            va[i] = 1.0
            vb = list(va) if same else [0.0] * 16
            if not same:
                vb[8 + i] = 1.0
            table[a], table[b] = va, vb
    emb = embed_suite(suite, _lookup_encoder(table), progress=False)
    metrics, _ = score_suite(suite, emb)
    assert metrics["CANNOT"]["auroc"] == 100.0 and metrics["PAWS"]["auroc"] == 100.0
    assert metrics["CANNOT"]["mean_cos_label0"] == pytest.approx(1.0) and metrics["CANNOT"]["mean_cos_label1"] == pytest.approx(0.0)
    flipped = {t: ([-x for x in v] if t in {b for b, y in zip(suite.tasks["CANNOT"].sentences2, suite.tasks["CANNOT"].targets) if y == 1} else v)
               for t, v in table.items()}
    metrics2, _ = score_suite(suite, embed_suite(suite, _lookup_encoder(flipped), progress=False))
    assert metrics2["CANNOT"]["auroc"] == 100.0  # cos -1 < 1: still separated the right way


def test_sick_entailment_vs_contradiction_auroc_and_arm_means(data):
    """SICK-EC: entailment pairs (positive) should have the higher cosine; each arm's mean cosine is reported."""
    suite = load_suite({"sick": data / "SICK.txt", "cannot": data / "cannot.tsv"}, ["CANNOT", "SICK-EC"])
    task = suite.tasks["SICK-EC"]
    assert task.targets == [0.0, 1.0, 1.0, 0.0, 1.0]  # TEST rows 1, 3, 6, 7, 9 (neutral and TRAIN rows dropped)
    table = {}
    for t in suite.tasks.values():
        for i, (a, b, y) in enumerate(zip(t.sentences1, t.sentences2, t.targets)):
            close = (y == 1) if t.name == "SICK-EC" else (y == 0)  # entailments / paraphrases identical
            va = [0.0] * 16
            va[i] = 1.0
            vb = list(va)
            if not close:
                vb[i], vb[8 + i] = 0.0, 1.0
            table[a], table[b] = va, vb
    emb = embed_suite(suite, _lookup_encoder(table), progress=False)
    metrics, _ = score_suite(suite, emb)
    ec = metrics["SICK-EC"]
    assert ec["auroc"] == 100.0 and ec["pairs"] == 5
    assert ec["mean_cos_label1"] == pytest.approx(1.0) and ec["mean_cos_label0"] == pytest.approx(0.0)
    md = results_markdown([{"model": "lookup", "metrics": metrics}], suite)
    assert "| SICK-EC contradiction | SICK-EC entailment |" in md
    assert "| lookup | 1.000 | 0.000 | 0.000 | 1.000 |" in md  # CANNOT paraphrase, negated; SICK contra, entail
    swapped = {t: table[t] for t in table}
    for a, b, y in zip(task.sentences1, task.sentences2, task.targets):  # entailments apart, contradictions together
        swapped[b] = table[a] if y == 0 else [0.0] * 8 + table[a][:8]
    metrics2, _ = score_suite(suite, embed_suite(suite, _lookup_encoder(swapped), progress=False))
    assert metrics2["SICK-EC"]["auroc"] == 0.0


def test_sick_entailment_reader_counts_and_errors(data, tmp_path):
    pairs = load_sick_entailment(data / "SICK.txt")
    assert pairs.labels == [0, 1, 1, 0, 1] and pairs.sentences1[0] == PAIRS[1][0]
    assert load_sick_entailment(data / "SICK.txt", "TRAIN").labels == [1, 0]  # rows 0 and 4 (8 is neutral)
    bad = tmp_path / "sick.txt"
    header = "sentence_A\tsentence_B\tentailment_label\tSemEval_set"
    bad.write_text(f"{header}\na\tb\tMAYBE\tTEST\n")
    with pytest.raises(ValueError, match="entailment_label 'MAYBE'"):
        load_sick_entailment(bad)
    bad.write_text(f"{header}\na\tb\tENTAILMENT\tTEST\n")
    with pytest.raises(ValueError, match="both ENTAILMENT and CONTRADICTION"):
        load_sick_entailment(bad)
    bad.write_text("sentence_A\tsentence_B\tSemEval_set\na\tb\tTEST\n")
    with pytest.raises(ValueError, match="entailment_label"):
        load_sick_entailment(bad)


def test_encode_texts_is_longest_first_in_batches_and_keeps_order():
    seen = []

    def encode(batch):
        seen.append(list(batch))
        return torch.tensor([[float(len(t)), 1.0] for t in batch])

    texts = ["bb", "a", "dddd", "ccc", "eeeee"]
    emb = encode_texts(encode, texts, batch_size=2, progress=False)
    assert seen == [["eeeee", "dddd"], ["ccc", "bb"], ["a"]]
    assert emb[:, 0].tolist() == [2.0, 1.0, 4.0, 3.0, 5.0]
    with pytest.raises(ValueError, match="batch_size"):
        encode_texts(encode, texts, batch_size=0)


def test_each_unique_text_is_encoded_once_and_cached(data, tmp_path):
    suite = load_suite({"stsb": data / "sts-test.csv", "sick": data / "SICK.txt"}, ["STS-B", "SICK-R"])
    calls = []

    def encode(batch):
        calls.extend(batch)
        return torch.stack([torch.tensor([float(len(t)), float(sum(map(ord, t)) % 97), 1.0]) for t in batch])

    cache = EmbeddingCache(tmp_path / "c")
    first = embed_suite(suite, encode, "model-a", cache, batch_size=3, progress=False)
    assert sorted(calls) == suite.texts()  # SICK-R shares every sentence with STS-B here: nothing encoded twice
    assert first.new_texts["SICK-R"] == 0 and first.new_texts["STS-B"] == len(suite.texts())
    n = len(calls)
    second = embed_suite(suite, encode, "model-a", cache, progress=False)
    assert len(calls) == n and second.cached and torch.equal(second.embeddings, first.embeddings)
    embed_suite(suite, encode, "model-b", cache, progress=False)  # another model identity: encoded again
    assert len(calls) == 2 * n
    for t in suite.texts()[:3]:
        assert torch.equal(first.of([t])[0], encode([t])[0])


# --------------------------------------------------------------------------------------------- readers
def test_senteval_reader_skips_unscored_pairs_and_normalises_whitespace(data):
    year = load_senteval_sts_year(data / "STS" / "STS15-en-test", 2015)
    assert list(year.subsets) == ["answers-forums", "answers-students"] and year.subsets["answers-forums"] == 4
    assert year.missing == ["belief", "headlines", "images"] and any("missing subsets" in n for n in year.notes)
    assert "  " not in year.data.sentences1[0]
    sts13 = load_senteval_sts_year(data / "STS" / "STS13-en-test", 2013)
    assert "SMT" not in sts13.subsets and any("no SMT" in n for n in sts13.notes)
    with pytest.raises(ValueError, match="year"):
        load_senteval_sts_year(data / "STS", 2017)


def test_sick_pairs_and_labelled_files(data):
    sick = load_sick_relatedness(data / "SICK.txt")
    assert len(sick) == 7 and all(not s.endswith("\r") for s in sick.sentences2)
    assert len(load_sick_relatedness(data / "SICK.txt", "TRAIN")) == 3
    cannot = load_labelled_pairs(data / "cannot.tsv")
    assert cannot.labels == [1, 0, 1, 0] and cannot.sentences2[0] == "The child is not sleeping."
    paws = load_labelled_pairs(data / "paws.tsv", (1, 2, 3))
    assert paws.labels == [0, 1, 0, 1] and paws.sentences1[0] == "The dog bit the man ."
    cad = load_labeled_texts(data / "cad" / "sentiment" / "orig" / "train.tsv", label_map="sentiment")
    texts, labels = cad.texts, cad.labels
    assert texts[1] == 'A bad film, I hated the "actors".' and labels[:2] == [1, 0]


def test_bad_files_raise_clear_errors(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\t2\n")
    with pytest.raises(ValueError, match="label"):
        load_labelled_pairs(bad)
    bad.write_text("Sentiment\tText\nMaybe\tfoo\n")
    with pytest.raises(ValueError, match="unknown sentiment label 'Maybe'"):
        load_labeled_texts(bad, label_map="sentiment")


# ---------------------------------------------------------------------------------------------- probe
def test_logistic_probe_cross_validates_on_train_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8))
    y = (x[:, 0] + 0.3 * rng.normal(size=300) > 0).astype(int)
    res = logistic_probe(torch.tensor(x[:200]), y[:200], {"test": (x[200:], y[200:])}, Cs=(0.001, 1.0), seed=0)
    assert set(res.cv_accuracy) == {0.001, 1.0} and res.C == max(res.cv_accuracy, key=res.cv_accuracy.get)
    assert res.accuracy["test"] > 0.85
    again = logistic_probe(x[:200], y[:200], {"test": (x[200:], y[200:])}, Cs=(0.001, 1.0), seed=0)
    assert again.accuracy == res.accuracy and again.cv_accuracy == res.cv_accuracy
    # the eval split never influences C: scrambling its labels changes only its accuracy
    scrambled = logistic_probe(x[:200], y[:200], {"test": (x[200:], 1 - y[200:])}, Cs=(0.001, 1.0), seed=0)
    assert scrambled.C == res.C and scrambled.accuracy["test"] == pytest.approx(1 - res.accuracy["test"])
    with pytest.raises(ValueError, match="two classes"):
        logistic_probe(x[:10], np.zeros(10), {})
    with pytest.raises(ValueError, match="eval_sets"):
        logistic_probe(x[:10], y[:10], {"t": (x[:5, :3], y[:5])}, C=1.0)


def test_checkpoint_and_run_folders_load_with_their_weights(tmp_path):
    from nda.metrics.sentence_encoders import load_sentence_model
    from nda.models.sentence import tiny_random_encoder
    from nda.run.checkpoint import write_state

    trained = tiny_random_encoder(seed=7)  # stands in for the weights a run ended with (the base is seed 0)
    run = tmp_path / "run"
    (run / "config.json").parent.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": "tiny-random", "pooling": "auto", "max_length": 64}))
    ckpt = run / "checkpoints" / "step_00000002"
    ckpt.mkdir(parents=True)
    write_state(ckpt, {"model": trained.state_dict()}, step=2)
    texts = ["a man is playing a guitar", "the dog ran"]
    loaded = load_sentence_model(str(ckpt))
    assert loaded.backend == "nda" and loaded.kind == "checkpoint" and loaded.base_model == "tiny-random"
    torch.testing.assert_close(loaded.encode(texts), trained.encode(texts))
    trained.save_pretrained(run / "model")
    as_run = load_sentence_model(str(run))  # the run folder: its final model/, through sentence-transformers
    assert as_run.backend == "st" and as_run.base_model == "tiny-random"
    torch.testing.assert_close(as_run.encode(texts), trained.encode(texts), atol=1e-5, rtol=1e-5)
    assert loaded.identity != as_run.identity != load_sentence_model("tiny-random").identity
    with pytest.raises(ValueError, match="backend"):
        load_sentence_model(str(ckpt), backend="st")


def test_eval_sts_shortcut_agrees_with_the_suite(data, tmp_path):
    from tasks.eval_sts import main as eval_sts

    folder = tmp_path / "stsb"
    folder.mkdir()
    for split in ("dev", "test"):
        (folder / f"sts-{split}.csv").write_text((data / "sts-test.csv").read_text())
    short = eval_sts(["--model", "tiny-random", "--sts-data", str(folder), "--out-dir", str(tmp_path / "o"), "--device", "cpu"])
    suite = _run(data, tmp_path, "--models", "tiny-random", "--tasks", "STS-B")
    assert short["sts_test_spearman"] == pytest.approx(suite["rows"][0]["metrics"]["STS-B"]["spearman"], abs=1e-6)


def test_model_identity_follows_file_contents_not_mtimes(tmp_path):
    import os

    from nda.metrics.sentence_encoders import _fingerprint

    folder = tmp_path / "model"
    folder.mkdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(b"a" * 64)
    before = _fingerprint(folder)
    stat = weights.stat()
    weights.write_bytes(b"b" * 64)  # retrained: same size
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime restored, as cp -p / rsync -a do
    assert _fingerprint(folder) != before
