"""--resume continues only the same run (issue 17 item 3): a folder without its config.json, other training data
(content fingerprint bound by every training job) or a changed training flag is refused; a torn last line of
metrics.csv is dropped with a warning instead of failing every later --resume."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from nda.run import Run, RunConfig, RunFolderError, data_fingerprint, parse_config
from nda.run.folder import MANIFEST_NAME
from nda.run.testing import OneProcessAccelerator as OneProcess


@dataclass
class Cfg(RunConfig):
    lr: float = 0.1


def run(out: Path, *args: str, steps: int = 4, data: torch.Tensor | None = None) -> list[dict]:
    cfg = parse_config(Cfg, ["--out-dir", str(out), "--steps", str(steps), "--log-every", "1", "--checkpoint-every",
                             "2", "--progress", "false", *args])
    cfg.check_run_fields()
    with Run(cfg, OneProcess(), job="toy") as r:
        x = data if data is not None else torch.arange(12, dtype=torch.uint8).reshape(3, 4)
        r.bind_data(data_fingerprint(x), f"toy ({len(x)} rows)")
        model = torch.nn.Linear(4, 1)
        r.restore(model=model)
        for step in r.loop():
            if r.log_due:
                r.log({"loss": float(step) / 2})
        r.finish({})
        return r.tracker.rows


def test_resume_of_a_folder_without_its_config_is_refused(tmp_path):
    run(tmp_path / "r", steps=2)
    (tmp_path / "r" / "config.json").unlink()
    with pytest.raises(RunFolderError, match="--resume: .* has no config.json"):
        run(tmp_path / "r", "--resume", "--lr", "0.5", steps=4)
    assert not (tmp_path / "r" / "config.json").exists()  # not rewritten with the new flags


def test_resume_on_other_data_is_refused_and_the_same_data_continues(tmp_path):
    data = torch.arange(12, dtype=torch.uint8).reshape(3, 4)
    run(tmp_path / "r", steps=2, data=data)
    more = torch.cat([data, data[:1]])
    with pytest.raises(ValueError, match=r"other training data: .*toy \(3 rows\).*toy \(4 rows\)"):
        run(tmp_path / "r", "--resume", steps=4, data=more)
    with pytest.raises(ValueError, match="other training data"):
        run(tmp_path / "r", "--resume", steps=4, data=data.flip(0))  # same size, other content
    with pytest.raises(ValueError, match=r"--lr 0.1 -> 0.5"):  # and a changed training flag stays refused
        run(tmp_path / "r", "--resume", "--lr", "0.5", steps=4, data=data)
    assert [r["step"] for r in run(tmp_path / "r", "--resume", steps=4, data=data.clone())] == [1, 2, 3, 4]
    saved = json.loads((tmp_path / "r" / MANIFEST_NAME).read_text())["data"]["train"]
    assert saved == {"fingerprint": data_fingerprint(data), "what": "toy (3 rows)"}


def test_a_torn_last_line_of_metrics_csv_is_dropped_on_resume(tmp_path, capsys):
    out = tmp_path / "r"
    run(out, steps=4)
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[2] == "2,0.5"
    (out / "metrics.csv").write_text("\n".join(lines[:2] + [lines[2][:3]]))  # died writing row 2: "2,0" (not 0.5)
    (out / "checkpoints" / "step_00000004").rename(out / "checkpoints" / ".gone")  # resume from step 2
    rows = run(out, "--resume", steps=4)
    assert [r["step"] for r in rows] == [1, 3, 4] and rows[1]["loss"] == pytest.approx(1.0)
    assert "dropped a torn last line (line 3, '2,0')" in capsys.readouterr().err
    # a short last line at a checkpointed step (the interrupted run died writing it) is dropped too
    with open(out / "metrics.csv", "a") as fh:
        fh.write("4\n")
    assert [r["step"] for r in run(out, "--resume", steps=4)] == [1, 3, 4]


def test_a_malformed_line_inside_metrics_csv_is_a_clear_error(tmp_path):
    out = tmp_path / "r"
    run(out, steps=2)
    lines = (out / "metrics.csv").read_text().splitlines()
    (out / "metrics.csv").write_text("\n".join([lines[0], "1", *lines[2:]]) + "\n")
    with pytest.raises(ValueError, match=r"metrics.csv: line 2 is malformed"):
        run(out, "--resume", steps=2)


# ------------------------------------------------------------------------------- the jobs bind their data
def _image_folder(root: Path, classes: str, n: int = 6) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


@pytest.mark.slow
def test_gan_resume_after_a_class_folder_was_added_is_refused(tmp_path):
    from tasks import gan

    images = _image_folder(tmp_path / "imgs", "ab")
    args = ["--data", str(images), "--image-size", "16", "--g-ch", "4", "--d-ch", "4", "--z-dim", "4", "--batch-size",
            "4", "--eval-samples", "0", "--progress", "false", "--threads", "1", "--cache-dir", str(tmp_path / "cache"),
            "--out-dir", str(tmp_path / "run")]
    gan.main(args + ["--steps", "1"])
    _image_folder(images, "c")  # 12 -> 18 images
    with pytest.raises(ValueError, match=r"other training data: .*\(12 images\).*\(18 images\)"):
        gan.main(args + ["--steps", "2", "--resume"])
    with open(tmp_path / "run" / "metrics.csv", newline="") as fh:
        assert [r["step"] for r in csv.DictReader(fh)] == ["1"]  # nothing trained on the other data


@pytest.mark.slow
def test_moco_and_classify_bind_their_training_data(tmp_path):
    from tasks import classify, moco

    moco.main(["--cpu", "true", "--arch", "tiny", "--image-size", "8", "--train-limit", "16", "--batch-size", "8",
               "--queue-size", "16", "--dim", "4", "--steps", "1", "--final-eval", "false", "--progress", "false",
               "--threads", "1", "--out-dir", str(tmp_path / "moco")])
    assert json.loads((tmp_path / "moco" / MANIFEST_NAME).read_text())["data"]["train"]["what"].endswith("(16 images)")
    train = tmp_path / "train.tsv"
    train.write_text("Sentiment\tText\n" + "".join(f"{s}\t{t} {i}\n" for i in range(3)
                                                   for s, t in (("Positive", "good"), ("Negative", "bad"))))
    common = ["--mode", "finetune", "--train", str(train), "--model", "tiny-random", "--batch-size", "2",
              "--progress", "false", "--out-dir", str(tmp_path / "cls")]
    classify.main(common + ["--steps", "1"])
    train.write_text(train.read_text().replace("good 0", "great 0"))
    with pytest.raises(ValueError, match=r"other training data: .*\(6 texts\)"):
        classify.main(common + ["--steps", "2", "--resume"])
