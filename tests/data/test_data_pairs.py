"""nda.data.pairs (supervised pair loaders) and nda.data.overlap (train/eval overlap guard) on small files
written here: the exact rows each public format gives, the test-split rules, and what the guard drops."""

from __future__ import annotations

from pathlib import Path

import pytest

from nda.data.overlap import OverlapGuard, normalise, overlap_key
from nda.data.pairs import load_pair_source, nli_triples, parse_pair_specs


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _rows(spec: str, **kw):
    return load_pair_source(parse_pair_specs(spec)[0], **kw).rows


def test_snli_dev_and_test_give_triples_of_the_same_premise(tmp_path):
    snli = tmp_path / "snli"
    for split, rows in {"dev": [("A man sleeps .", "A person sleeps .", "entailment"),
                                ("A man sleeps .", "A man is awake .", "contradiction"),
                                ("A man sleeps .", "A man dreams .", "neutral"),
                                ("Dogs run .", "Animals move .", "entailment")],
                        "test": [("Kids play .", "Kids do not play .", "contradiction"),
                                 ("Kids play .", "Children play .", "entailment")]}.items():
        for name, col in zip(("s1", "s2", "labels"), zip(*rows)):
            _write(snli / f"{name}.{split}", "\n".join(col) + "\n")
    rows = _rows(f"snli:{snli}")
    assert rows == [("A man sleeps .", "A person sleeps .", "A man is awake ."),
                    ("Dogs run .", "Animals move .", ""),  # no contradiction of that premise: no hard negative
                    ("Kids play .", "Children play .", "Kids do not play .")]


def test_mrpc_sick_cad_stsb_and_tsv_formats(tmp_path):
    mrpc = _write(tmp_path / "msr_paraphrase_train.txt", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                  "1\t1\t2\tHe left .\tHe went away .\n0\t3\t4\tIt rains .\tIt is sunny .\n")
    assert _rows(f"mrpc:{mrpc}") == [("He left .", "He went away .", "")]

    header = "pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\tSemEval_set\n"
    sick = _write(tmp_path / "SICK.txt", header + "1\tA cat eats\tA cat is eating\tENTAILMENT\t4.5\tTRAIN\n"
                  "2\tA cat eats\tNo cat eats\tCONTRADICTION\t3\tTRAIN\n3\tA dog runs\tA dog moves\tENTAILMENT\t4\tTEST\n"
                  "4\tA boy sings\tA kid sings\tENTAILMENT\t4\tTRIAL\n")
    assert _rows(f"sick:{sick}") == [("A cat eats", "A cat is eating", "No cat eats")]  # TRAIN only

    cad = tmp_path / "NLI"
    head = "sentence1\tsentence2\tgold_label\n"
    _write(cad / "original/train.tsv", head + "A man rides a bike.\tA man is cycling.\tentailment\n")
    _write(cad / "revised_hypothesis/train.tsv", head + "A man rides a bike.\tA man walks.\tcontradiction\n"
           "A man rides a bike.\tA man is tall.\tneutral\n")
    _write(cad / "revised_premise/train.tsv", head + "A man rides a car.\tA man is cycling.\tcontradiction\n")
    assert _rows(f"cad-nli:{cad}") == [("A man rides a bike.", "A man is cycling.", "A man walks."),
                                        ("A man is cycling.", "A man rides a bike.", "A man rides a car.")]

    sts = _write(tmp_path / "sts-train.csv", "g\tf\t2012\t1\t4.6\tA plane flies.\tA jet flies.\n"
                 "g\tf\t2012\t2\t1.0\tA plane flies.\tA cat sits.\n")
    assert _rows(f"stsb:{sts}", min_score=4.0) == [("A plane flies.", "A jet flies.", "")]
    two, three = _write(tmp_path / "two.tsv", "a\tb\na\tb\nc\td\n"), _write(tmp_path / "three.tsv", "a\tb\tx\n")
    assert _rows(f"tsv:{two}") == [("a", "b", ""), ("c", "d", "")]  # duplicates dropped
    assert _rows(f"tsv:{three}") == [("a", "b", "x")]


def test_several_sources_and_clear_errors(tmp_path):
    mrpc = _write(tmp_path / "mrpc.txt", "1\t1\t2\tx\ty\n")
    tsv = _write(tmp_path / "p.tsv", "a\tb\n")
    assert [s.kind for s in parse_pair_specs(f"mrpc:{mrpc},tsv:{tsv}")] == ["mrpc", "tsv"]
    assert [s.kind for s in parse_pair_specs([f"mrpc:{mrpc}", f"tsv:{tsv}"])] == ["mrpc", "tsv"]
    with pytest.raises(ValueError, match=r"--pairs 'wiki:.*kind one of snli, mrpc"):
        parse_pair_specs(f"wiki:{tsv}")
    with pytest.raises(ValueError, match="is not a file"):
        parse_pair_specs(f"tsv:{tmp_path / 'missing.tsv'}")
    with pytest.raises(ValueError, match="is not a folder"):
        parse_pair_specs(f"snli:{tsv}")
    test_file = _write(tmp_path / "pairs-test.tsv", "a\tb\n")
    with pytest.raises(ValueError, match="named as a test split; only SNLI"):
        parse_pair_specs(f"tsv:{test_file}")
    snli_test = tmp_path / "test"  # SNLI's test split is the one allowed exception
    _write(snli_test / "s1.test", "p\n"), _write(snli_test / "s2.test", "h\n"), _write(snli_test / "labels.test", "entailment\n")
    assert _rows(f"snli:{snli_test}") == [("p", "h", "")]
    with pytest.raises(ValueError, match="STS-B dev is an evaluation split"):
        parse_pair_specs(f"stsb:{_write(tmp_path / 'sts-dev.csv', 'x')}")
    bad = _write(tmp_path / "bad.txt", "yes\tno\n")
    with pytest.raises(ValueError, match=r"--pairs mrpc:.*expected Quality"):
        load_pair_source(parse_pair_specs(f"mrpc:{bad}")[0])


def test_nli_triples_cycle_contradictions_and_ignore_neutral():
    rows = nli_triples(["p", "p", "p", "p"], ["e1", "e2", "c1", "n"], ["entailment", "entailment", "contradiction", "neutral"])
    assert rows == [("p", "e1", "c1"), ("p", "e2", "c1")]


def test_overlap_keys_match_tokenised_copies():
    assert normalise("  Don't   STOP, now! ") == "don t stop now"
    assert overlap_key("Don't stop.") == overlap_key("do n't stop .") == "dontstop"
    assert overlap_key("A man plays.") != overlap_key("A man played.")


def test_guard_drops_rows_touching_any_evaluation_sentence_and_says_when_it_could_not_run():
    guard = OverlapGuard.from_texts(["a man is playing a guitar ."], checked=["STS12"], missing={"PAWS": "not found"})
    rows = [("A man is playing a guitar.", "x", ""), ("y", "z", "A MAN IS PLAYING A GUITAR"), ("p", "q", "")]
    kept, dropped = guard.filter(rows)
    assert kept == [("p", "q", "")] and dropped == 2
    report = guard.report({"snli": dropped})
    assert report["ran"] and report["dropped"] == {"snli": 2} and report["not_checked"] == {"PAWS": "not found"}
    empty = OverlapGuard.from_texts([], checked=[], missing={"STS12": "not found"})
    assert empty.filter(rows) == (rows, 0)
    blind = empty.report({"snli": 0})
    assert blind["ran"] is False and blind["dropped"] is None and "could not run" in blind["reason"]


def test_guard_filters_an_indexed_corpus_chunk_by_chunk_as_training_reads_it(tmp_path):
    """filter_corpus: a sentence line counts by its first tab field (what training reads), pair rows by every
    sentence; the result does not depend on the chunk size."""
    import numpy as np

    from nda.data.text import TextCorpus, load_sentences

    guard = OverlapGuard.from_texts(["The soup is hot.", "a man sleeps"], checked=["CANNOT"])
    lines = ["The soup is hot .\t1", "Birds fly.", "A man sleeps", "Rain falls.", "Cats nap.", "the SOUP is hot"]
    (tmp_path / "s.txt").write_text("\n".join(lines) + "\n")
    corpus = load_sentences(tmp_path / "s.txt", dedup=False, cache_dir=tmp_path / "cache")
    for chunk in (1, 2, 4, 100):
        kept, dropped = guard.filter_corpus(corpus, chunk=chunk)
        assert dropped == 3 and kept[:] == ["Birds fly.", "Rain falls.", "Cats nap."]
    pairs = TextCorpus.from_rows([("Dogs run.", "a man sleeps ."), ("Dogs run.", "Animals move.")])
    kept, dropped = guard.filter_corpus(pairs)
    assert dropped == 1 and kept[:] == [("Dogs run.", "Animals move.")]
    off = OverlapGuard.disabled("--overlap-guard none")
    assert off.filter_corpus(pairs) == (pairs, 0)
    assert pairs.select(np.array([False, True]))[:] == [("Dogs run.", "Animals move.")]
    with pytest.raises(ValueError, match=r"keep must be a boolean mask of shape \(2,\)"):
        pairs.select(np.array([0, 1]))
