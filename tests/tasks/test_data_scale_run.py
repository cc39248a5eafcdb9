"""A job on a memory-mapped image set (issue 13): two processes, each reading its own shard of a set that is
not held in RAM, interrupted after a checkpoint and resumed, give the uninterrupted run's rows exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _image_folder(root: Path, n: int = 48) -> Path:
    """``<root>/<split>/<class>/*.png``: random 16x16 RGB images in two classes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("test", 16)):
        for i in range(count):
            folder = root / split / f"c{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def _rows(run: Path) -> list[dict[str, str]]:
    """metrics.csv without its wall-clock column."""
    import csv

    with open(run / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in csv.DictReader(fh)]


def _launch(args: list[str], cache: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29571",
           str(ROOT / "tasks" / "gan.py"), "--cpu", "true", *args]
    base = {k: v for k, v in os.environ.items() if k != "NDA_FAULT_AT_STEP"}
    full_env = {**base, "OMP_NUM_THREADS": "1", "NDA_CACHE": str(cache), "NDA_IN_MEMORY_MAX_BYTES": "0", **(env or {})}
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.mark.slow
def test_two_processes_on_a_memory_mapped_set_resume_exactly(tmp_path):
    data = _image_folder(tmp_path / "images")
    common = ["--data", str(data), "--cache-dir", str(tmp_path / "cache"), "--image-size", "16", "--g-ch", "8",
              "--d-ch", "8", "--z-dim", "16", "--batch-size", "8", "--eval-samples", "0", "--steps", "8",
              "--checkpoint-every", "4", "--log-every", "2", "--progress", "false", "--threads", "1"]
    full = _launch(common + ["--out-dir", str(tmp_path / "full")], tmp_path / "nda_cache")
    assert full.returncode == 0, full.stderr[-3000:]
    cut = _launch(common + ["--out-dir", str(tmp_path / "cut")], tmp_path / "nda_cache", {"NDA_FAULT_AT_STEP": "6"})
    assert cut.returncode != 0 and not (tmp_path / "cut" / "results.json").exists()
    resumed = _launch(common + ["--out-dir", str(tmp_path / "cut"), "--resume"], tmp_path / "nda_cache")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    res = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert res["run"]["processes"] == 2 and res["data_in_memory"] is False  # the memory-mapped path, 2 shards
    assert res["run"]["resumed_from"].endswith("step_00000004")
    assert _rows(tmp_path / "full") == _rows(tmp_path / "cut")
    assert list((tmp_path / "cache" / "arrays").glob("*.images.npy"))  # the decoded cache the shards read
