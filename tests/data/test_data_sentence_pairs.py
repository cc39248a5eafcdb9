"""The sentence-pair readers live in nda.data.sentence_pairs (data, not metrics)."""

from __future__ import annotations

import nda.data.sentence_pairs as pairs


def test_readers_live_in_nda_data_and_nowhere_else(tmp_path):
    import importlib.util

    assert importlib.util.find_spec("nda.metrics.sentence_data") is None  # metrics keep only the metrics
    for name in ("SENTEVAL_STS_SUBSETS", "StsYear", "LabelledPairs", "load_senteval_sts_year", "load_sick_relatedness",
                 "load_sick_entailment", "load_labelled_pairs"):
        assert getattr(getattr(pairs, name), "__module__", "nda.data.sentence_pairs") == "nda.data.sentence_pairs", name
    file = tmp_path / "cannot.tsv"
    file.write_text("premise\thypothesis\tlabel\nIt rains.\tIt does not rain.\t1\nIt rains.\tRain falls.\t0\n")
    got = pairs.load_labelled_pairs(file)
    assert got.labels == [1, 0] and got.sentences2 == ["It does not rain.", "Rain falls."]
