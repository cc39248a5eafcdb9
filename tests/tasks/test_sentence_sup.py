"""Supervised sentence training (tasks/sentence.py --mode sup, nda.models.simcse): the symmetric loss, masked hard
negatives, NDA negatives from the anchor / positive, double-flip extra positives, and a short run on pair sets
with the train/eval overlap guard -- on fixed embeddings (exact maths) or the tiny random BERT (CPU)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nda.base import NegativeResult
from nda.models.simcse import ContrastiveBatch, build_contrastive_batch, contrastive_step
from nda.objectives import SoftNegativeLoss

ROOT = Path(__file__).resolve().parents[2]
T = 0.05


class _Fixed(torch.nn.Module):
    """A 'model' returning given embeddings: the step's maths is checked against a hand computation."""

    def __init__(self, emb: torch.Tensor) -> None:
        super().__init__()
        self.emb = emb

    def forward(self, **features):
        return self.emb


def _ce(q: torch.Tensor, keys: torch.Tensor, label: int) -> torch.Tensor:
    logits = F.normalize(q, dim=-1) @ F.normalize(keys, dim=-1).T / T
    return F.cross_entropy(logits[None], torch.tensor([label]))


def _emb(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _batch(rows: torch.Tensor, b: int, h: int, **kw) -> ContrastiveBatch:
    return ContrastiveBatch({"input_ids": torch.zeros(rows.shape[0], 1, dtype=torch.long)}, b, h, **kw)


def test_symmetric_loss_is_the_mean_of_both_directions_with_masked_hard_negatives():
    b, d = 4, 8
    q, p, hard = _emb(b, d, seed=1), _emb(b, d, seed=2), _emb(3, d, seed=3)  # row 1 has no hard negative
    hard_rows = torch.tensor([True, False, True, True])
    rows = torch.cat([q, p, hard])
    out = contrastive_step(_Fixed(rows), _batch(rows, b, 3, k=0, negative_mask=None, hard_rows=hard_rows),
                           SoftNegativeLoss(temperature=T), symmetric=True)
    fwd = torch.stack([_ce(q[i], torch.cat([p, hard]), i) for i in range(b)]).mean()
    bwd = torch.stack([_ce(p[i], torch.cat([q, hard]), i) for i in range(b)]).mean()
    torch.testing.assert_close(out.loss, (fwd + bwd) / 2, rtol=1e-5, atol=1e-6)
    assert out.logits.shape == (b, b + 3)  # 3 hard-negative columns, not 4: the missing one is not a column
    one_way = contrastive_step(_Fixed(rows), _batch(rows, b, 3, k=0, negative_mask=None, hard_rows=hard_rows),
                               SoftNegativeLoss(temperature=T), symmetric=False)
    torch.testing.assert_close(one_way.loss, fwd, rtol=1e-5, atol=1e-6)


def test_extra_positive_is_a_masked_second_term_without_the_rows_own_positive():
    b, d = 4, 8
    q, p, extra = _emb(b, d, seed=4), _emb(b, d, seed=5), _emb(2, d, seed=6)
    extra_rows = torch.tensor([False, True, False, True])  # rows 1 and 3 have a double-flip paraphrase
    rows = torch.cat([q, p, extra])
    out = contrastive_step(_Fixed(rows), _batch(rows, b, 0, k=0, negative_mask=None, extra_rows=extra_rows),
                           SoftNegativeLoss(temperature=T), extra_weight=0.5)
    main = torch.stack([_ce(q[i], p, i) for i in range(b)]).mean()
    others = p[torch.tensor([0, 2])]  # the positives of the rows without one stay negatives; own ones do not
    term = (_ce(q[1], torch.cat([extra, others]), 0) + _ce(q[3], torch.cat([extra, others]), 1)) / b
    torch.testing.assert_close(out.extra_positive, term, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.loss, main + 0.5 * term, rtol=1e-5, atol=1e-6)


class _Spy:
    """A text negative that appends ' NOT' and records what it was called on."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts, generator=None):
        self.calls.append(list(texts))
        return [t + " NOT" for t in texts]


@pytest.fixture(scope="module")
def encoder():
    from nda.models.sentence import SentenceEncoder

    return SentenceEncoder.from_pretrained("tiny-random", max_length=16)


ANCHORS = ["a man sleeps", "dogs run fast", "the sky is blue"]
POSITIVES = ["a person sleeps", "animals move", "the sky looks blue"]


@pytest.mark.parametrize("source,calls,k", [("anchor", [ANCHORS], 1), ("positive", [POSITIVES], 1),
                                            ("both", [ANCHORS, POSITIVES], 2)])
def test_nda_source_makes_negatives_from_the_anchor_the_positive_or_both(encoder, source, calls, k):
    spy = _Spy()
    batch = build_contrastive_batch(encoder, ANCHORS, POSITIVES, ["x", "", "y"], spy, k=1, nda_source=source)
    assert spy.calls == calls and batch.k == k and batch.negative_mask.shape == (3, k)
    assert batch.num_hard == 2 and batch.hard_rows.tolist() == [True, False, True]
    assert batch.features["input_ids"].shape[0] == 3 + 3 + 2 + 3 * k
    ids = batch.features["input_ids"][3 + 3 + 2 :]  # the NDA block, source-major: its first rows are calls[0]'s
    expect = encoder.tokenize([t + " NOT" for c in calls for t in c])["input_ids"]
    assert torch.equal(ids[:, : expect.shape[1]], expect)
    with pytest.raises(ValueError, match="nda_source='both' needs positives"):
        build_contrastive_batch(encoder, ANCHORS, negative=spy, nda_source="both")


class _DoubleFlip:
    """A label-flipping generator whose result reports .paraphrase for the given rows."""

    flips_labels = True

    def __init__(self, flags, report: bool = True) -> None:
        self.flags, self.report = flags, report

    def __call__(self, texts, generator=None, labels=None, label_map=None):
        out = [t + " (double)" for t in texts]
        if not self.report:
            return _NoFlags(out)
        return NegativeResult(out, flipped=[False] * len(texts), valid=[False] * len(texts), paraphrase=self.flags)


class _NoFlags(list):
    """A result list without the .paraphrase flags (a generator that cannot say which rows keep their label)."""


def test_extra_positives_only_on_paraphrase_rows_and_next_to_a_single_flip(encoder, monkeypatch):
    maker = _DoubleFlip([True, False, True])
    batch = build_contrastive_batch(encoder, ANCHORS, POSITIVES, paraphrase=maker)
    assert batch.extra_rows.tolist() == [True, False, True] and batch.num_extra == 2
    assert batch.features["input_ids"].shape[0] == 3 + 3 + 2

    class _FlipsRow0:  # a single-flip negative usable on row 0 only (the others unchanged: masked)
        def __call__(self, texts, generator=None):
            return [t + " NOT" if i == 0 else t for i, t in enumerate(texts)]

    paired = build_contrastive_batch(encoder, ANCHORS, POSITIVES, negative=_FlipsRow0(), paraphrase=maker,
                                     paraphrase_needs_negative=True)
    assert paired.negative_mask[:, 0].tolist() == [True, False, False]
    assert paired.extra_rows.tolist() == [True, False, False]  # row 2's paraphrase has no single flip beside it
    extra_ids = paired.features["input_ids"][-1:]
    want = encoder.tokenize([ANCHORS[0] + " (double)"])["input_ids"]
    assert torch.equal(extra_ids[:, : want.shape[1]], want)
    unpaired = build_contrastive_batch(encoder, ANCHORS, POSITIVES, paraphrase=maker, paraphrase_needs_negative=True)
    assert unpaired.num_extra == 0  # no NDA on this step: no single flips, so no extra positives

    import nda.models.simcse as simcse

    monkeypatch.setattr(simcse, "apply_text", lambda neg, texts, generator=None: neg(texts))
    with pytest.raises(ValueError, match="does not report .paraphrase"):
        build_contrastive_batch(encoder, ANCHORS, POSITIVES, paraphrase=_DoubleFlip(None, report=False))


# ------------------------------------------------------------------------------------------------ the task
@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Text indexes in a temp cache; the evaluation suite's default paths point at nothing unless a test says."""
    import nda.metrics.sentence_eval as suite

    monkeypatch.setenv("NDA_CACHE", str(tmp_path_factory.getbasetemp() / "nda_cache"))
    for paths in (suite.DEFAULT_PATHS, suite.DEV_DEFAULT_PATHS):
        for key in paths:
            monkeypatch.setitem(paths, key, str(tmp_path_factory.getbasetemp() / "no_eval" / key))


SNLI = [("A man sleeps .", "A person sleeps .", "entailment"), ("A man sleeps .", "A man is awake .", "contradiction"),
        ("Dogs run fast .", "Animals move .", "entailment"), ("Dogs run fast .", "Dogs sit still .", "contradiction"),
        ("Kids play outside .", "Children play .", "entailment"), ("The sky is blue .", "The sky looks blue .", "entailment"),
        ("A plane is taking off .", "An airplane departs .", "entailment"),
        ("A plane is taking off .", "A plane is landing .", "contradiction")]
TSV = ["She is happy.\tShe is glad.", "The soup is hot.\tThe soup is very warm.", "He is tall.\tHe is not short.",
       "The road is long.\tThe road is not short."]


@pytest.fixture
def data(tmp_path) -> Path:
    snli = tmp_path / "snli"
    snli.mkdir()
    for name, col in zip(("s1", "s2", "labels"), zip(*SNLI)):
        (snli / f"{name}.test").write_text("\n".join(col) + "\n")
    (tmp_path / "pairs.tsv").write_text("\n".join(TSV) + "\n")
    # an evaluation set sharing one SNLI premise (tokenised differently) and one TSV sentence
    (tmp_path / "cannot.tsv").write_text("a man sleeps\tno man sleeps\t1\nthe soup is hot\tthe soup is warm\t0\n")
    return tmp_path


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--model", "tiny-random", "--mode", "sup", "--pairs", f"snli:{data / 'snli'},tsv:{data / 'pairs.tsv'}",
            "--batch-size", "4", "--steps", "2", "--lr", "1e-3", "--sts-data", "none", "--save-model", "false",
            "--log-every", "1", "--progress", "false", "--cpu", "true", "--out-dir", str(out), *extra]


def _main(argv):
    from tasks.sentence import main

    return main(argv)


def test_sup_run_on_mixed_pair_sets_drops_evaluation_overlap_and_records_it(data, tmp_path, monkeypatch):
    import nda.metrics.sentence_eval as suite

    monkeypatch.setitem(suite.DEFAULT_PATHS, "cannot", str(data / "cannot.tsv"))
    results = _main(_args(data, tmp_path / "run", "--nda", "counterfactual", "--nda-source", "both"))
    guard = results["overlap_guard"]
    assert guard["ran"] and guard["eval_sets"] == ["CANNOT"] and "STS12" in guard["not_checked"]
    assert guard["dropped"] == {"snli:snli": 1, "tsv:pairs.tsv": 1} and guard["rows_before"] == {"snli:snli": 5, "tsv:pairs.tsv": 4}
    assert results["train_rows"] == 7 and results["symmetric"] is True
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["overlap_guard"] == guard
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and all(float(r["nda_valid_frac"]) > 0 for r in rows)
    assert all(torch.isfinite(torch.tensor(float(r["loss"]))) for r in rows)


def test_train_file_pairs_are_guarded_too(data, tmp_path, monkeypatch):
    import nda.metrics.sentence_eval as suite

    monkeypatch.setitem(suite.DEFAULT_PATHS, "cannot", str(data / "cannot.tsv"))
    args = _args(data, tmp_path / "run")
    args[args.index("--pairs"):args.index("--pairs") + 2] = ["--train-file", str(data / "pairs.tsv")]
    args[args.index("--batch-size") + 1] = "2"
    results = _main(args)
    assert results["overlap_guard"]["dropped"] == {"pairs.tsv": 1} and results["train_rows"] == 3


def test_unsupervised_sentences_are_guarded_too(data, tmp_path, monkeypatch):
    """Unsupervised SimCSE on a sentence file must not train on an evaluation sentence either (it did: the
    guard only ran for pairs, and results.json said unsupervised corpora are not filtered)."""
    import nda.metrics.sentence_eval as suite

    monkeypatch.setitem(suite.DEFAULT_PATHS, "cannot", str(data / "cannot.tsv"))
    # a SentEval-style "text<TAB>label" line trains on its text, so the guard must check that text
    sentences = ["The soup is hot.\t1", "A man sleeps!", "Birds fly south.", "Rain falls.", "Cats nap a lot."]
    (data / "wiki.txt").write_text("\n".join(sentences) + "\n")
    args = _args(data, tmp_path / "run")
    args[args.index("--mode") + 1] = "unsup"
    args[args.index("--pairs"):args.index("--pairs") + 2] = ["--train-file", str(data / "wiki.txt")]
    args[args.index("--batch-size") + 1] = "2"
    results = _main(args)
    guard = results["overlap_guard"]
    assert guard["ran"] and guard["dropped"] == {"wiki.txt": 2} and results["train_rows"] == 3


def test_guard_without_evaluation_data_says_it_could_not_run(data, tmp_path):
    results = _main(_args(data, tmp_path / "run"))
    guard = results["overlap_guard"]
    assert guard["ran"] is False and guard["dropped"] is None and "could not run" in guard["reason"]
    assert results["train_rows"] == 5 + 4


def test_double_flip_positives_run_and_are_logged(data, tmp_path):
    spec = "counterfactual:negation=False>counterfactual:antonyms=False"
    _main(_args(data, tmp_path / "run", "--nda", "counterfactual", "--nda-positive", spec, "--nda-positive-weight", "0.5",
                "--steps", "3", "--batch-size", "9"))  # every row in every batch
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert all("extra_frac" in r for r in rows)
    assert any(float(r["extra_frac"]) > 0 for r in rows)  # "He is tall." -> "He is short." -> "He is not short."


def test_bad_sup_flags_are_clear_before_anything_is_written(data, tmp_path):
    out = tmp_path / "run"
    cases = [
        (["--nda-positive", "token_shuffle"], "--nda-positive 'token_shuffle' flips no labels"),
        (["--nda-source", "positive", "--mode", "unsup"], "need --mode sup"),
        (["--nda-source", "sideways"], "--nda-source"),
        (["--symmetric", "maybe"], "--symmetric"),
        (["--train-file", str(data / "pairs.tsv")], "exactly one of --train-file"),
        (["--pairs", f"tsv:{data / 'missing.tsv'}"], "is not a file"),
        (["--nda-positive-weight", "-1"], "--nda-positive-weight"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError, match=message):
            _main(_args(data, out, *extra))
    assert not out.exists()


def test_recipe_config_names_only_known_flags():
    from nda.run import parse_config
    from tasks.sentence import SentenceConfig

    cfg = parse_config(SentenceConfig, ["--config", str(ROOT / "configs" / "sentence_negation_aware.json")])
    assert cfg.mode == "sup" and cfg.symmetric == "true" and cfg.overlap_guard == "auto" and cfg.steps >= 200
    assert [p.split(":")[0] for p in cfg.pairs] == ["snli", "mrpc", "cad-nli"]
    # chosen on the dev splits (scripts/evidence_sentence_sup.py's rule): the margin kept dev avg, the column did not
    assert (cfg.nda, cfg.nda_source, cfg.nda_loss, cfg.nda_lambda) == ("counterfactual", "positive", "margin", 0.1)
