"""nda.reporting.plot_metrics: every job's loss_plot.png from its metrics.csv, tolerant of gaps and torn lines."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from nda.reporting import metric_series, plot_metrics

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# knn_top1 logged at step 2 only, sim_nda always empty, a non-number in loss at step 3, a torn last line
CSV = ("step,loss,instance_acc,knn_top1,sim_nda,lr\n"
       "1,2.5,0.1,,,0.1\n"
       "2,2.0,0.3,40.0,,0.09\n"
       "3,nan-ish,0.5,,,0.08\n"
       "4,1.5,0.")


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_series_skip_gaps_empty_columns_and_the_torn_line(tmp_path):
    (tmp_path / "metrics.csv").write_text(CSV)
    series = metric_series(tmp_path / "metrics.csv")
    assert set(series) == {"loss", "instance_acc", "knn_top1", "lr"}  # sim_nda: nothing to draw
    assert series["loss"][0] == [1.0, 2.0] and series["loss"][1] == pytest.approx([2.5, 2.0])
    assert series["knn_top1"] == ([2.0], [40.0])
    assert series["instance_acc"][0] == [1.0, 2.0, 3.0]  # the torn "0." (of 0.7?) is not drawn as 0


def test_plot_with_a_torn_and_an_empty_column_is_a_valid_png(tmp_path, capsys):
    (tmp_path / "metrics.csv").write_text(CSV)
    png = tmp_path / "loss_plot.png"
    columns = {"loss": ("loss",), "accuracy": ("instance_acc", "knn_top1"), "similarity": ("sim_nda",),
               "absent": ("no_such_column",)}
    assert plot_metrics(tmp_path / "metrics.csv", png, columns) == png
    assert _png_size(png) == (1100, 400)  # two panels drawn (5.5 x 4 in each at 100 dpi): the empty ones left out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss_plot.png", "metrics.csv"]  # no temp file left
    assert plot_metrics(tmp_path / "metrics.csv", tmp_path / "default.png") is not None  # losses | other metrics
    assert _png_size(tmp_path / "default.png") == (1100, 400)


def test_nothing_to_plot_or_no_matplotlib_skips_with_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "metrics.csv").write_text("step,loss\n")
    assert plot_metrics(tmp_path / "metrics.csv", tmp_path / "p.png") is None and not (tmp_path / "p.png").exists()
    assert "metrics.csv has no numbers in the columns to plot: p.png skipped" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    (tmp_path / "metrics.csv").write_text(CSV)
    assert plot_metrics(tmp_path / "metrics.csv", tmp_path / "p.png") is None and not (tmp_path / "p.png").exists()
    assert "matplotlib is not installed (pip install 'nda[plots]'): p.png skipped" in capsys.readouterr().out


def test_a_file_without_a_step_column_is_a_clear_error(tmp_path):
    (tmp_path / "metrics.csv").write_text("loss\n1.0\n")
    with pytest.raises(ValueError, match=r"metrics.csv: no 'step' column in its header"):
        metric_series(tmp_path / "metrics.csv")
    (tmp_path / "metrics.csv").write_text("")
    with pytest.raises(ValueError, match=r"metrics.csv: no 'step' column in its header"):
        plot_metrics(tmp_path / "metrics.csv", tmp_path / "p.png")
