"""tasks/gan.py on the run skeleton: exact 2-process resume after an interruption, one run per folder, a
failed invocation that leaves the run alone, modality errors before any loading, models without pickle."""

from __future__ import annotations

import csv
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nda.run import Checkpointer, RunFolderError, load_model
from tasks import eval_gan, gan  # the repo root is on sys.path (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]

TINY = ["--data", "digits", "--limit", "64", "--image-size", "16", "--g-ch", "8", "--d-ch", "8", "--z-dim", "16",
        "--batch-size", "16", "--eval-samples", "0", "--log-every", "1", "--progress", "false", "--threads", "1"]


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in csv.DictReader(fh)]


def _launch(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes 2 tasks/gan.py --cpu true ...``: two gloo CPU processes
    (accelerate 1.15's ``launch --cpu --num_processes 2`` would start one)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29563",
           str(ROOT / "tasks" / "gan.py"), "--cpu", "true", *args]
    base = {k: v for k, v in os.environ.items() if k != "NDA_FAULT_AT_STEP"}
    env = {**base, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_process_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    # issue 9's repro: accelerate restored rank 0's noise/NDA generator states on rank 1, so a resumed
    # 2-process run drew identical noise on both ranks and rows 15 and 20 differed from the uninterrupted run
    common = TINY + ["--steps", "20", "--checkpoint-every", "10", "--log-every", "5"]
    a, b = tmp_path / "a", tmp_path / "b"
    full = _launch(common + ["--out-dir", str(a)])
    assert full.returncode == 0, full.stderr[-3000:]
    # interruption 1, graceful: --max-minutes is reached at the first log step (5): checkpoint at 5, stop
    stopped = _launch(common + ["--out-dir", str(b), "--max-minutes", "1e-6"])
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    stopped_results = json.loads((b / "results.json").read_text())
    # interruption 2, abrupt (as kill -9): resumed at 5, checkpoint at 10, row 15 logged, then the process dies
    killed = _launch(common + ["--out-dir", str(b), "--resume"], env={"NDA_FAULT_AT_STEP": "15"})
    resumed = _launch(common + ["--out-dir", str(b), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    rows_a, rows_b = _rows(a), _rows(b)
    assert [r["step"] for r in rows_a] == ["5", "10", "15", "20"]
    assert rows_b == rows_a  # every logged scalar identical, not approximately equal
    res_a, res_b = json.loads((a / "results.json").read_text()), json.loads((b / "results.json").read_text())
    assert res_a["run"]["processes"] == res_b["run"]["processes"] == 2
    assert stopped_results["run"]["stopped_early"] and stopped_results["run"]["steps"] == 5
    assert "models" not in stopped_results  # a time-limited stop leaves the final models to the resumed run
    # the fault injection did kill it after step 15 (torchrun reports the child's exit code 75 as a failure)
    assert killed.returncode != 0 and "NDA_FAULT_AT_STEP=15" in killed.stdout + killed.stderr, killed.stderr[-3000:]
    assert res_b["run"]["resumed_from"].endswith("step_00000010") and res_b["run"]["steps"] == 20
    for name in ("generator_ema", "discriminator"):  # the final models are identical too
        ga, gb = load_model(a / "models" / name), load_model(b / "models" / name)
        sa, sb = ga.state_dict(), gb.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name


def test_existing_folder_is_refused_and_overwrite_starts_clean(tmp_path):
    out = tmp_path / "run"
    gan.main(TINY + ["--steps", "3", "--out-dir", str(out), "--checkpoint-every", "1", "--keep-checkpoints", "5"])
    before = (out / "metrics.csv").read_text()
    with pytest.raises(RunFolderError, match="already holds a run.*--resume.*--overwrite"):
        gan.main(TINY + ["--steps", "2", "--out-dir", str(out), "--seed", "1"])
    assert (out / "metrics.csv").read_text() == before  # nothing mixed into the old run
    gan.main(TINY + ["--steps", "2", "--out-dir", str(out), "--seed", "1", "--overwrite"])
    assert [r["step"] for r in _rows(out)] == ["1", "2"]
    assert [p.name for p in Checkpointer(out).completed()] == ["step_00000002"]  # old step_3 gone, not "newer"
    assert json.loads((out / "config.json").read_text())["seed"] == 1


def test_failed_invocation_leaves_the_run_intact(tmp_path):
    out = tmp_path / "run"
    gan.main(TINY + ["--steps", "2", "--out-dir", str(out)])
    config = (out / "config.json").read_bytes()
    # issue 9: this exited 1 and left config.json saying sngan/stitch/-1
    for bad in (["--arch", "sngan", "--nda", "stitch", "--lr-d", "-1"], ["--overwrite", "--lr-d", "-1"]):
        with pytest.raises(ValueError, match="--lr-d must be > 0"):
            gan.main(TINY + ["--steps", "2", "--out-dir", str(out), *bad])
    # a failure while loading data, after the folder was accepted (--overwrite): nothing deleted or rewritten
    with pytest.raises((ValueError, FileNotFoundError)):
        gan.main(TINY + ["--steps", "2", "--out-dir", str(out), "--overwrite", "--data", str(tmp_path / "missing")])
    # a resume that changes a training flag is refused, not continued as another run
    with pytest.raises(ValueError, match=r"--n-dis 1 -> 2"):
        gan.main(TINY + ["--steps", "4", "--out-dir", str(out), "--resume", "--n-dis", "2"])
    assert (out / "config.json").read_bytes() == config
    assert [p.name for p in Checkpointer(out).completed()] == ["step_00000002"]


@pytest.mark.parametrize("flag, spec", [("--nda", "token_shuffle"), ("--nda", "jigsaw|token_shuffle"),
                                        ("--augment", "token_shuffle"), ("--augment", "no_such_transform")])
def test_text_or_unknown_spec_fails_before_data_and_models(tmp_path, monkeypatch, flag, spec):
    def never(*args, **kwargs):
        raise AssertionError("data was loaded before the spec was checked")

    monkeypatch.setattr(gan, "load_images", never)
    monkeypatch.setattr(gan, "build_gan", never)
    with pytest.raises(ValueError, match=flag):
        gan.main(TINY + [flag, spec, "--out-dir", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_eval_gan_loads_final_models_and_checkpoints_without_pickle(tmp_path, monkeypatch):
    out = tmp_path / "run"
    gan.main(TINY + ["--steps", "2", "--checkpoint-every", "1", "--keep-checkpoints", "3", "--out-dir", str(out)])
    assert not [p for p in out.rglob("*") if p.suffix in (".pkl", ".bin", ".pt")]

    def no_unpickling(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    final = eval_gan.load_run(out)
    first = eval_gan.load_run(out / "checkpoints" / "step_00000001")
    assert final.source == out / "models" and first.run_dir == out
    z = torch.randn(4, 16)
    # the final models are the step-2 checkpoint's EMA G and D, rebuilt from their constructor arguments
    last = eval_gan.load_run(out / "checkpoints" / "step_00000002")
    assert torch.equal(final.generator(z), last.generator(z))
    assert not torch.equal(final.generator(z), first.generator(z))
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    assert torch.equal(final.discriminator(x), last.discriminator(x))
    info = json.loads((out / "models" / "generator_ema" / "model.json").read_text())
    assert info["factory"] == "nda.models.gan.DCGANGenerator" and info["kwargs"]["z_dim"] == 16
