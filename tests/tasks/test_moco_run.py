"""tasks/moco.py on the run skeleton: exact 2-process resume after an abrupt stop, folder rules through the CLI,
text negatives refused before loading, the final model rebuilt by eval_repr without pickle."""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nda.run import RunFolderError, load_model
from tasks import eval_repr
from tasks import moco as moco_task

ROOT = Path(__file__).resolve().parents[2]
# 2 processes x 8 images x grad-accum 2: 32 keys per step into a queue of 80 (the pointer wraps mid-queue)
TWO = ["--cpu", "true", "--arch", "tiny", "--image-size", "16", "--train-limit", "256", "--test-limit", "64",
       "--batch-size", "8", "--grad-accum", "2", "--queue-size", "80", "--dim", "16", "--nda", "jigsaw:grid=2",
       "--nda-k", "2", "--log-every", "1", "--checkpoint-every", "2", "--steps", "6", "--knn-every", "3",
       "--monitor-limit", "128", "--knn-k", "10", "--probe-epochs", "5", "--progress", "false", "--threads", "1"]
ONE = ["--cpu", "true", "--arch", "tiny", "--image-size", "16", "--train-limit", "128", "--test-limit", "32",
       "--batch-size", "8", "--queue-size", "32", "--dim", "8", "--nda", "jigsaw:grid=2", "--nda-k", "1",
       "--log-every", "1", "--probe-epochs", "3", "--knn-k", "5", "--steps", "2", "--progress", "false",
       "--threads", "1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out: Path, cache: Path, *extra: str, fault_at: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, NDA_CACHE=str(cache), OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    env.pop("NDA_FAULT_AT_STEP", None)
    if fault_at is not None:
        env["NDA_FAULT_AT_STEP"] = str(fault_at)
    # accelerate 1.15's `launch --cpu --num_processes 2` starts ONE process; torchrun via `--multi_gpu` with the
    # task's `--cpu true` starts two CPU processes on gloo (checked: results.json says processes == 2)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
           str(_free_port()), "tasks/moco.py", *TWO, "--out-dir", str(out), *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)


def _rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """A: 6 steps uninterrupted. B: the same command stopped abruptly (os._exit) after step 5, whose last
    checkpoint is step 4, then the same command with --resume."""
    tmp = tmp_path_factory.mktemp("moco2")
    a, b = tmp / "A", tmp / "B"
    proc = _launch(a, tmp / "cache")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = _launch(b, tmp / "cache", fault_at=5)
    assert proc.returncode != 0 and "NDA_FAULT_AT_STEP=5: exiting abruptly" in proc.stdout + proc.stderr
    interrupted = {"rows": _rows(b), "checkpoints": sorted(p.name for p in (b / "checkpoints").iterdir())}
    proc = _launch(b, tmp / "cache", "--resume")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return a, b, interrupted


@pytest.mark.slow
def test_two_process_run_interrupted_and_resumed_equals_uninterrupted(two_process_runs):
    a, b, interrupted = two_process_runs
    # the interrupted run had logged step 5 after its last checkpoint (step 4): resume drops and replays it
    assert [r["step"] for r in interrupted["rows"]] == ["1", "2", "3", "4", "5"]
    assert interrupted["checkpoints"] == ["step_00000002", "step_00000004"]
    rows_a, rows_b = _rows(a), _rows(b)
    assert [r["step"] for r in rows_a] == ["1", "2", "3", "4", "5", "6"]
    assert rows_a[2]["knn_top1"] and rows_a[5]["knn_top1"] and rows_a[0]["sim_nda"]
    assert rows_b == rows_a  # every logged value (loss, similarities, lr, kNN) bit for bit
    res_a = json.loads((a / "results.json").read_text())
    res_b = json.loads((b / "results.json").read_text())
    assert res_a["run"]["processes"] == res_b["run"]["processes"] == 2
    assert res_b["run"]["resumed_from"].endswith("step_00000004") and res_a["run"]["resumed_from"] is None
    assert res_a["global_batch"] == 32 and res_a["queue_ptr"] == res_b["queue_ptr"] == (6 * 32) % 80
    # one queue on both ranks, and the resumed run ends with the very same queue
    assert len(set(res_a["queue_sha256"])) == 1 and res_a["queue_sha256"] == res_b["queue_sha256"]
    assert (res_a["knn_top1"], res_a["linear_probe_top1"]) == (res_b["knn_top1"], res_b["linear_probe_top1"])
    final_a, final_b = load_model(a / "final"), load_model(b / "final")
    for (name, ta), tb in zip(final_a.state_dict().items(), final_b.state_dict().values()):
        assert torch.equal(ta, tb), name


def _forbid_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("eval_repr unpickled something")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


@pytest.mark.slow
def test_eval_repr_rebuilds_the_final_model_without_pickle(two_process_runs, tmp_path, monkeypatch):
    a, _, _ = two_process_runs
    reference = load_model(a / "final")
    info = json.loads((a / "final" / "model.json").read_text())
    assert info["factory"] == "nda.models.moco.MoCo" and info["kwargs"]["in_channels"] == 1
    x = torch.randn(3, 1, 16, 16)
    want = reference.backbone(x)
    _forbid_pickle(monkeypatch)
    for spec in (a, a / "final", a / "checkpoints" / "step_00000006"):
        enc, description = eval_repr.load_encoder(str(spec))
        assert torch.equal(enc.eval()(x), want), spec
        assert "MoCo query backbone (tiny)" in description
    # the layout written before nda.run (final/moco.json + model.safetensors) still loads
    from safetensors.torch import save_file

    legacy = tmp_path / "old_run" / "final"
    legacy.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(legacy / "model.safetensors"))
    (legacy / "moco.json").write_text(json.dumps({**info["kwargs"], "image_size": 16}))
    enc, _ = eval_repr.load_encoder(str(legacy.parent))
    assert torch.equal(enc.eval()(x), want)
    with pytest.raises(ValueError, match="is not a MoCo run"):
        eval_repr.load_encoder(str(tmp_path))


# ------------------------------------------------------------------------------ single process, in-process
@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("NDA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.delenv("NDA_FAULT_AT_STEP", raising=False)
    return tmp_path


def test_folder_rules_through_the_cli(env):
    run = env / "R"
    moco_task.main([*ONE, "--out-dir", str(run)])
    config = (run / "config.json").read_text()
    with pytest.raises(RunFolderError, match="already holds a run.*--resume.*--overwrite"):
        moco_task.main([*ONE, "--out-dir", str(run)])
    # failed invocations leave the run as it was: a flag error (before Run), a data error (inside Run), a text
    # negative, and a --resume that changes the schedule (--steps: the cosine ends there)
    failures = [(["--queue-size", "30"], ValueError, "not divisible"),
                (["--data", str(env / "missing")], Exception, "missing"),
                (["--nda", "token_shuffle"], ValueError, "text negative"),
                (["--lr", "0.5"], ValueError, r"--lr 0.06 -> 0.5")]
    for args, exc, message in failures:
        with pytest.raises(exc, match=message):
            moco_task.main([*ONE, "--out-dir", str(run), "--resume" if "--lr" in args else "--overwrite", *args])
        assert (run / "config.json").read_text() == config, args
        assert (run / "checkpoints" / "step_00000002").is_dir() and (run / "final" / "model.json").is_file()
    with pytest.raises(ValueError, match=r"--steps 2 -> 4"):
        moco_task.main([*ONE, "--out-dir", str(run), "--resume", "--steps", "4"])
    resumed = moco_task.main([*ONE, "--out-dir", str(run), "--resume", "--final-eval", "false"])  # eval flag: ok
    assert resumed["run"]["resumed_from"].endswith("step_00000002") and "knn_top1" not in resumed
    assert [r["step"] for r in _rows(run)] == ["1", "2"]  # a finished run resumed adds no rows
    (run / "stray.txt").write_text("old")
    moco_task.main([*ONE, "--out-dir", str(run), "--overwrite", "--seed", "1", "--steps", "1", "--final-eval", "false"])
    assert (run / "stray.txt").read_text() == "old"  # a file the user put there is not the run's: kept
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000001"]
    assert json.loads((run / "config.json").read_text())["seed"] == 1 and [r["step"] for r in _rows(run)] == ["1"]


def test_text_negative_is_an_error_before_any_loading(env, monkeypatch):
    import nda.data.images

    def no_loading(*args, **kwargs):
        raise AssertionError("data loaded before the --nda check")

    monkeypatch.setattr(nda.data.images, "load_images", no_loading)
    monkeypatch.setattr(moco_task, "MoCo", no_loading)
    monkeypatch.setattr(moco_task, "make_accelerator", no_loading)
    for spec in ("token_shuffle", "jigsaw|token_shuffle"):
        with pytest.raises(ValueError, match="contains the text negative 'token_shuffle'; image negatives are needed"):
            moco_task.main([*ONE, "--out-dir", str(env / "R"), "--nda", spec])
    assert not (env / "R").exists()


def test_options_grad_accum_nda_on_images_into_the_queue(env):
    out = env / "opts"
    args = [*ONE, "--queue-size", "48", "--nda-k", "2", "--steps", "2", "--grad-accum", "2", "--nda-source", "image",
            "--nda-to-queue", "true", "--bn", "none", "--knn-every", "1", "--out-dir", str(out)]
    results = moco_task.main(args)
    assert results["keys_enqueued_per_micro_step"] == 24 and results["global_batch"] == 16
    assert results["queue_ptr"] == (2 * 2 * 24) % 48 and results["run"]["processes"] == 1
    rows = _rows(out)
    assert [r["step"] for r in rows] == ["1", "2"] and all(r["knn_top1"] and r["sim_nda"] for r in rows)
    assert float(rows[1]["lr"]) < float(rows[0]["lr"])  # cosine
    assert (out / "loss_plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # every job draws its losses
    shutil.rmtree(out)
