"""--report-to: accelerate's trackers on every job through one path (issue 18 item 3): the Accelerator built with
log_with, the saved config logged once, the metrics.csv rows forwarded, end_training at the end."""

from __future__ import annotations

import csv
from dataclasses import dataclass

import pytest
import torch

from nda.run import Run, RunConfig, make_accelerator, parse_config
from nda.run.tracking import tracker_config, tracker_names


@dataclass
class Cfg(RunConfig):
    lr: float = 0.1
    names: list[str] | None = None


def test_report_to_is_validated_with_the_flag_named():
    assert tracker_names("none") == []
    with pytest.raises(ValueError, match=r"--report-to 'tensorbored' is not a tracker accelerate knows"):
        parse_config(Cfg, ["--report-to", "tensorbored"]).check_run_fields()
    from accelerate.tracking import get_available_trackers

    installed = {str(getattr(t, "value", t)) for t in get_available_trackers()}
    missing = next((n for n in ("wandb", "mlflow", "comet_ml", "aim", "clearml") if n not in installed), None)
    if missing is not None:
        with pytest.raises(ValueError, match=rf"--report-to {missing}: the {missing} package is not installed"):
            parse_config(Cfg, ["--report-to", missing]).check_run_fields()
    assert set(tracker_names("all")) == installed
    # what init_trackers gets: the saved config as flat scalars (TensorBoard's hparams take no None or lists)
    flat = tracker_config(parse_config(Cfg, ["--names", "a,b"]))
    assert flat["names"] == "a,b" and flat["max_minutes"] == "none" and flat["lr"] == 0.1
    assert all(isinstance(v, (bool, int, float, str)) for v in flat.values())


@pytest.mark.slow  # ~4 s: most of it importing tensorboard
def test_tensorboard_run_logs_the_config_once_and_the_csv_rows(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    cfg = parse_config(Cfg, ["--out-dir", str(out), "--steps", "3", "--log-every", "1", "--progress", "false",
                             "--cpu", "true", "--report-to", "tensorboard"])
    cfg.check_run_fields()
    acc = make_accelerator(cfg)
    with Run(cfg, acc, job="toy") as run:
        model = torch.nn.Linear(2, 1)
        run.restore(model=model)
        for step in run.loop():
            if run.log_due:
                run.log({"loss": torch.tensor(1.0 / (step + 1)), "lr": 0.1})
        run.finish({})
    assert [t.name for t in acc.trackers] == ["tensorboard"]
    assert all(t.writer.all_writers is None for t in acc.trackers)  # end_training closed the writer
    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    logdir = out / "trackers" / "toy"
    events = EventAccumulator(str(logdir))
    events.Reload()
    for key in ("loss", "lr"):
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in logged] == [int(r["step"]) for r in rows] == [1, 2, 3]
        assert [v for _, v in logged] == pytest.approx([float(r[key]) for r in rows], rel=1e-6)
    hparams = list(logdir.glob("*/hparams.yml"))
    assert len(hparams) == 1 and "report_to: tensorboard" in hparams[0].read_text()
