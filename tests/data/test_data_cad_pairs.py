"""The one reader of CAD paired files (nda.data.labeled_text.read_counterfactual_pairs), its rule for which row is
the original, the pair lookup built on it, and the one word diff."""

from __future__ import annotations

import pytest

from nda.data.labeled_text import (
    load_counterfactual_pairs,
    load_labeled_texts,
    read_counterfactual_pairs,
    word_diff,
)


def _write(path, rows, header="Sentiment\tText\tbatch_id"):
    path.write_text(header + "\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_first_row_of_a_batch_is_the_original_and_every_later_row_a_counterfactual(tmp_path):
    paired = _write(tmp_path / "train_paired.tsv", [
        ("Negative", "a dull film", "1"), ("Positive", "a lively film", "2"),   # batches interleaved
        ("Positive", "a fine film", "1"), ("Negative", "a dead film", "2"),
        ("Positive", "a great film", "1"),                                        # a second counterfactual of 1
        ("Negative", "alone", "3"),                                               # no counterfactual: skipped
    ])
    pairs = read_counterfactual_pairs(paired)
    assert [(p.batch_id, p.original, p.counterfactual, p.counterfactual_label, p.lines) for p in pairs] == [
        ("1", "a dull film", "a fine film", "Positive", (2, 4)),
        ("1", "a dull film", "a great film", "Positive", (2, 6)),
        ("2", "a lively film", "a dead film", "Negative", (3, 5)),
    ]
    partners = load_counterfactual_pairs(paired)
    # two counterfactuals of one original share its flipped label: they are not counterfactuals of each other
    assert partners["a fine film"] == [("a dull film", 0)]
    assert partners["a dull film"] == [("a fine film", 1), ("a great film", 1)]
    assert "alone" not in partners


def test_bad_paired_files_are_one_line_errors_naming_the_file_and_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match=r"x.tsv: a paired counterfactual file needs .* missing batch_id"):
        read_counterfactual_pairs(_write(tmp_path / "x.tsv", [("Negative", "bad")], header="Sentiment\tText"))
    with pytest.raises(ValueError, match=r"y.tsv:3: expected 3 columns"):
        read_counterfactual_pairs(_write(tmp_path / "y.tsv", [("Negative", "bad", "1"), ("Positive", "good")]))
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("Sentiment\tText\tbatch_id\nPositive\tcaf\xe9\t1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not UTF-8 text \(byte 0xe9 at offset \d+, line 2\)"):
        read_counterfactual_pairs(latin)
    bad_label = _write(tmp_path / "z.tsv", [("Negative", "a", "1"), ("Mixed", "b", "1")])
    with pytest.raises(ValueError, match=r"z.tsv:3: unknown sentiment label 'Mixed'"):
        load_counterfactual_pairs(bad_label)


def test_a_header_without_rows_is_an_error_not_an_empty_set(tmp_path):
    with pytest.raises(ValueError, match=r"holds no rows"):
        load_labeled_texts(_write(tmp_path / "empty.tsv", [], header="Sentiment\tText"))


def test_word_diff_shows_counts_and_locates_the_edits():
    diff = word_diff("one two three four five six seven eight nine ten", "one two THREE four five six seven eight nine", 1)
    assert diff.shown == "… two {three -> THREE} four … nine {ten -> }"
    assert diff.changed == 2 and diff.positions == {2, 9}
    assert word_diff("a b", "a b") == ("(no edit)", 0, frozenset())
    assert word_diff("a b c", "a x y z c").changed == 3  # a replacement counts its longer side
