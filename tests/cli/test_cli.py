"""Tests of the ``nda`` command line (nda/cli/): real PNGs in a tmp dir, real grid sizes, real errors."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from nda.cli import load_image_folder, main

SIZE, PAD = 24, 2


def grid_height(rows: int) -> int:
    return rows * (SIZE + PAD) + PAD


def grid_width(n: int) -> int:
    return n * (SIZE + PAD) + PAD


@pytest.fixture
def image_dir(tmp_path):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i in range(5):
        array = (torch.rand(40 + 3 * i, 50, 3, generator=g) * 255).to(torch.uint8).numpy()
        folder = root / "sub" if i % 2 else root
        Image.fromarray(array).save(folder / f"img{i}.png")
    (root / "notes.txt").write_text("not an image")
    return root


def test_preview_images_grid_size_and_rows(image_dir, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "grid.png"
    code = main(["preview", "--images", str(image_dir), "--nda", "jigsaw", "stitch", "--nda", "cutout>rotate",
                 "--n", "4", "--size", str(SIZE), "--out", str(out), "--no-labels"])
    assert code == 0 and out.is_file()
    with Image.open(out) as im:
        assert im.size == (grid_width(4), grid_height(1 + 3))
        pixels = torch.from_numpy(np.asarray(im.convert("RGB")).copy())
    printed = capsys.readouterr().out
    assert str(out) in printed and "row 3: cutout>rotate" in printed
    # row 0 holds the originals: first cell equals the first picked image, resized
    first = load_image_folder(image_dir, 4, SIZE, seed=0)[0].permute(1, 2, 0)
    assert torch.equal(pixels[PAD : PAD + SIZE, PAD : PAD + SIZE], first)
    # row 1 (jigsaw) is a different image with the same pixel multiset as row 0, cell by cell
    jig = pixels[2 * PAD + SIZE : 2 * PAD + 2 * SIZE, PAD : PAD + SIZE]
    assert not torch.equal(jig, first) and torch.equal(jig.flatten().sort().values, first.flatten().sort().values)


def test_preview_labels_add_a_margin(image_dir, tmp_path):
    out = tmp_path / "grid.png"
    assert main(["preview", "--images", str(image_dir), "--nda", "shift", "--n", "3", "--size", str(SIZE), "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.height == grid_height(2) and im.width > grid_width(3)


def test_preview_default_photos_offline(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "default.png"
    assert main(["preview", "--nda", "mixup", "--n", "5", "--size", "16", "--out", str(out), "--no-labels"]) == 0
    with Image.open(out) as im:
        assert im.size == (5 * 18 + 2, 2 * 18 + 2)
    assert "scikit-learn" in capsys.readouterr().out


def test_preview_fewer_images_than_n(image_dir, tmp_path, capsys):
    out = tmp_path / "g.png"
    assert main(["preview", "--images", str(image_dir), "--nda", "jigsaw", "--n", "50", "--size", str(SIZE),
                 "--out", str(out), "--no-labels"]) == 0
    with Image.open(out) as im:
        assert im.width == grid_width(5)  # the 5 images found, recursively
    assert "only 5 images" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv_tail, message",
    [
        (["--images", "{missing}"], "does not exist"),
        (["--images", "{empty}"], "no image files"),
        (["--images", "{dir}", "--nda", "nonexistent"], "unknown negative"),
        (["--images", "{dir}", "--nda", "jigsaw:grid=100"], "larger than the image"),
        (["--images", "{dir}", "--nda", "stitch", "--n", "1"], "at least 2"),
        (["--texts", "{missing}"], "does not exist"),
    ],
)
def test_preview_errors(image_dir, tmp_path, capsys, argv_tail, message):
    (tmp_path / "empty").mkdir()
    values = {"missing": str(tmp_path / "nope"), "empty": str(tmp_path / "empty"), "dir": str(image_dir)}
    argv = ["preview", *[a.format(**values) for a in argv_tail], "--size", str(SIZE), "--out", str(tmp_path / "x.png")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_preview_rejects_wrong_modality(image_dir, tmp_path, capsys):
    if importlib.util.find_spec("nda.text.shuffle") is None:
        pytest.skip("nda.text.shuffle not written yet")
    assert main(["preview", "--images", str(image_dir), "--nda", "token_shuffle", "--out", str(tmp_path / "x.png")]) == 2
    assert "text negative" in capsys.readouterr().err


def test_preview_texts_token_shuffle(tmp_path, capsys):
    if importlib.util.find_spec("nda.text.shuffle") is None:
        pytest.skip("nda.text.shuffle not written yet")
    texts = tmp_path / "texts.txt"
    texts.write_text("the quick brown fox jumps over the lazy dog\n\nwe saw a very good film yesterday evening\n")
    out = tmp_path / "table.md"
    assert main(["preview", "--texts", str(texts), "--nda", "token_shuffle", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("| 0 ") or line.startswith("| 1 ")]
    assert len(rows) == 2  # the blank line is skipped
    original, negative = (cell.strip() for cell in rows[0].split("|")[2:4])
    assert original == "the quick brown fox jumps over the lazy dog"
    assert negative != original and sorted(negative.split()) == sorted(original.split())
    assert out.read_text().startswith("### token_shuffle")


def test_preview_texts_counterfactual_labels(tmp_path, capsys):
    if importlib.util.find_spec("nda.text.counterfactual") is None:
        pytest.skip("nda.text.counterfactual not written yet")
    texts = tmp_path / "labelled.tsv"
    texts.write_text("positive\tA good movie.\nnegative\tIt was not funny.\n")
    assert main(["preview", "--texts", str(texts), "--labels-column", "--label-map", "sentiment", "--nda", "counterfactual"]) == 0
    printed = capsys.readouterr().out
    assert "new label" in printed and "flipped" in printed
    row0 = next(line for line in printed.splitlines() if line.startswith("| 0 "))
    cells = [c.strip() for c in row0.split("|")[1:-1]]
    assert cells[3] == "positive" and cells[4] == "negative" and cells[5] in ("yes", "no")


def test_labels_column_requires_tabs(tmp_path, capsys):
    texts = tmp_path / "bad.tsv"
    texts.write_text("no tab here\n")
    assert main(["preview", "--texts", str(texts), "--labels-column", "--nda", "jigsaw"]) == 2
    assert "label<TAB>text" in capsys.readouterr().err


def test_list_prints_negatives_with_modality(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    jigsaw = next(line for line in lines if line.startswith("jigsaw"))
    assert "image" in jigsaw and "nda.vision.jigsaw:Jigsaw" in jigsaw
    assert main(["list", "--modality", "image"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["cutmix", "cutout", "jigsaw", "mixup", "rotate", "shift", "stitch"]


@pytest.mark.slow  # a second Python process
def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "nda", "list", "--modality", "image"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "stitch" in result.stdout


def test_bad_arguments_exit_via_argparse():
    with pytest.raises(SystemExit):
        main(["preview", "--n", "0"])
    with pytest.raises(SystemExit):
        main([])


# ------------------------------------------------------------------------------------------- bad --out / --texts
@pytest.mark.parametrize(
    "mode, out, message",
    [
        ("texts", "{tmp}", "is a folder"),
        ("images", "{tmp}", "is a folder"),
        ("texts", "{tmp}/table.png", "written as"),
        ("images", "{tmp}/grid.md", "written as"),
        ("images", "{tmp}/grid", "no extension"),
        ("texts", "{tmp}/missing/table.md", "does not exist; create it first"),
        ("images", "{tmp}/missing/grid.png", "does not exist; create it first"),
        ("texts", "{tmp}/afile.txt/table.md", "is not a folder"),
    ],
)
def test_bad_out_is_a_clear_error_before_any_work(image_dir, tmp_path, capsys, mode, out, message):
    """Regression (issue 9): --out as a folder / with a bad extension / under a missing or non-folder parent
    gave a traceback after the negatives ran (or silently created folders)."""
    (tmp_path / "afile.txt").write_text("x")
    texts = tmp_path / "t.txt"
    texts.write_text("the quick brown fox\n")
    source = ["--texts", str(texts), "--nda", "token_shuffle"] if mode == "texts" else ["--images", str(image_dir), "--nda", "jigsaw"]
    assert main(["preview", *source, "--out", out.format(tmp=tmp_path), "--size", str(SIZE)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert "###" not in captured.out  # validated before the negatives ran
    assert not (tmp_path / "missing").exists()


def test_unwritable_out_is_a_clear_error(tmp_path, capsys, monkeypatch):
    texts = tmp_path / "t.txt"
    texts.write_text("the quick brown fox\n")
    import nda.cli.common

    monkeypatch.setattr(nda.cli.common.os, "access", lambda *a, **k: False)  # as root, chmod alone would not stop us
    assert main(["preview", "--texts", str(texts), "--nda", "token_shuffle", "--out", str(tmp_path / "t.md")]) == 2
    assert "no permission" in capsys.readouterr().err
    monkeypatch.undo()

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(nda.cli.common.Path, "write_text", refuse)
    assert main(["preview", "--texts", str(texts), "--nda", "token_shuffle", "--out", str(tmp_path / "t.md")]) == 2
    assert "cannot write: Permission denied" in capsys.readouterr().err


def test_non_utf8_texts_is_a_clear_error(tmp_path, capsys):
    """Regression (issue 9): a Latin-1 --texts file raised UnicodeDecodeError with a traceback."""
    texts = tmp_path / "latin1.txt"
    texts.write_bytes("a good film\nun caf\xe9 tr\xe8s bon\n".encode("latin-1"))
    assert main(["preview", "--texts", str(texts), "--nda", "token_shuffle"]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8" in err and "line 2" in err and "iconv" in err
    assert main(["preview", "--texts", str(tmp_path), "--nda", "token_shuffle"]) == 2
    assert "is not a file" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- CAD pairs
CAD = [
    ("Negative", "The acting is terrible and the plot is boring. I hated it.", "1"),
    ("Positive", "The acting is great and the plot is exciting. I loved it.", "1"),
    ("Positive", "A wonderful film. Highly recommended, 9/10.", "2"),
    ("Negative", "A dreadful film. Not recommended, 2/10.", "2"),
    ("Negative", "Hmm.", "3"),
    ("Positive", "Wow.", "3"),
    ("Negative", "an orphan row", "4"),
]


def _write_cad(path):
    path.write_text("Sentiment\tText\tbatch_id\n" + "".join(f"{a}\t{b}\t{c}\n" for a, b, c in CAD), encoding="utf-8")


def test_preview_cad_pairs_shows_automatic_next_to_human(tmp_path, capsys):
    folder = tmp_path / "paired"
    folder.mkdir()
    _write_cad(folder / "dev_paired.tsv")
    out = tmp_path / "cad.md"
    assert main(["preview", "--cad-pairs", str(folder), "--n", "10", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "batch 1 (Negative)" in printed and "batch 2 (Positive)" in printed and "batch 4" not in printed
    edits = "The acting is {terrible -> great} and the plot is {boring -> exciting} I {hated -> loved} it"
    assert f"**human** (3 words): {edits}" in printed
    assert f"**counterfactual** (3 words -> Positive): {edits}" in printed
    assert "**counterfactual**: no counterfactual" in printed  # "Hmm." cannot be flipped: said, not faked
    assert "| counterfactual | 2/3 |" in printed
    assert out.read_text().startswith("# 3 CAD reviews")
    # the file form, an explicit spec, and the old strategy side by side
    assert main(["preview", "--cad-pairs", str(folder / "dev_paired.tsv"), "--n", "2", "--seed", "1",
                 "--nda", "counterfactual:strategy=rules", "counterfactual"]) == 0
    printed = capsys.readouterr().out
    assert "# 2 CAD reviews" in printed and "**counterfactual:strategy=rules**" in printed


def test_preview_cad_pairs_errors(tmp_path, capsys):
    assert main(["preview", "--cad-pairs", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["preview", "--cad-pairs", str(tmp_path)]) == 2
    assert "no *_paired.tsv" in capsys.readouterr().err
    bad = tmp_path / "x_paired.tsv"
    bad.write_text("label\ttext\nNegative\tbad\n")
    assert main(["preview", "--cad-pairs", str(bad)]) == 2
    assert "batch_id" in capsys.readouterr().err
    _write_cad(bad)
    assert main(["preview", "--cad-pairs", str(bad), "--nda", "jigsaw"]) == 2
    assert "image negative" in capsys.readouterr().err


def test_preview_cad_pairs_reads_with_the_one_cad_reader(tmp_path, capsys):
    """Issue 20: the preview had its own CAD reader (batches of exactly two rows, a --cad-pairs-only column check);
    it now reads with nda.data.labeled_text.read_counterfactual_pairs: first row the original, each later row one
    of its counterfactuals."""
    paired = tmp_path / "dev_paired.tsv"
    paired.write_text("Sentiment\tText\tbatch_id\nNegative\tI hated it.\t5\nPositive\tI loved it.\t5\n"
                      "Positive\tI adored it.\t5\n", encoding="utf-8")
    assert main(["preview", "--cad-pairs", str(paired), "--nda", "counterfactual"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# 2 CAD reviews") and printed.count("batch 5 (Negative)") == 2
    assert "**human** (1 words): I {hated -> loved} it" in printed and "I {hated -> adored} it" in printed
    latin = tmp_path / "latin_paired.tsv"
    latin.write_bytes("Sentiment\tText\tbatch_id\nPositive\tcaf\xe9\t1\n".encode("latin-1"))
    assert main(["preview", "--cad-pairs", str(latin)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nda: error: --cad-pairs: ") and "not UTF-8" in err and "line 2" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_the_preview_lives_outside_the_parser_module():
    """Issue 20: nda/cli.py was a parser plus a ~330-line preview; the parser module is now small."""
    import inspect

    import nda.cli
    import nda.cli.preview_images
    import nda.cli.preview_text

    assert len(inspect.getsource(nda.cli).splitlines()) < 150
    assert nda.cli.load_image_folder is nda.cli.preview_images.load_image_folder  # old import path kept
    assert not hasattr(nda.cli, "read_cad_pairs") and not hasattr(nda.cli.preview_text, "word_edits")
