"""The run skeleton: folder rules, lock, no-pickle checkpoints, config on resume, tracking, randomness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from nda.run import (CheckpointError, Checkpointer, Run, RunConfig, RunFolder, RunFolderError, Tracker,
                     derive_seed, load_model, parse_config, save_model)
from nda.run.checkpoint import pack_state, read_state, unpack_state, write_state
from nda.run.testing import OneProcessAccelerator


@dataclass
class ToyConfig(RunConfig):
    lr: float = 0.1
    width: int = field(default=4, metadata={"help": "layer width"})


def toy_run(out: Path, *args: str, steps: int = 6, fail_at: int | None = None) -> list[dict]:
    cfg = parse_config(ToyConfig, ["--out-dir", str(out), "--steps", str(steps), "--log-every", "1",
                                   "--checkpoint-every", "2", "--progress", "false", *args])
    cfg.check_run_fields()
    acc = OneProcessAccelerator()
    with Run(cfg, acc, job="toy") as run:
        torch.manual_seed(cfg.seed)
        model = torch.nn.Linear(cfg.width, 1)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        run.restore(model=model, opt=opt)
        for step in run.loop():
            if fail_at is not None and step == fail_at:
                raise KeyboardInterrupt  # an interruption after the checkpoint at fail_at
            x = torch.randn(8, cfg.width, generator=run.generator("data", step))
            noise = torch.randn(8, 1)  # the global RNG: seeded per step by the loop
            loss = ((model(x) - noise) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if run.log_due:
                run.log({"loss": loss.detach()})
        run.finish({"final_weight_sum": float(model.weight.detach().sum())})
        return run.tracker.rows


def test_fresh_run_then_refuse_existing_folder(tmp_path):
    rows = toy_run(tmp_path / "r")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "r" / "config.json").is_file()
    with pytest.raises(RunFolderError, match="already holds a run.*--resume.*--overwrite"):
        toy_run(tmp_path / "r")


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    full = toy_run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        toy_run(tmp_path / "b", fail_at=5)  # checkpoints at 2 and 4; rows 1..5 logged
    resumed = toy_run(tmp_path / "b", "--resume")
    assert resumed == full
    res_a = json.loads((tmp_path / "a" / "results.json").read_text())
    res_b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert res_a["final_weight_sum"] == res_b["final_weight_sum"]
    assert res_b["run"]["resumed_from"].endswith("step_00000004")


def test_overwrite_starts_clean_only_after_restore(tmp_path):
    toy_run(tmp_path / "r", steps=4)
    (tmp_path / "r" / "stray.txt").write_text("mine")  # put there by a user, after the run: not the run's to delete
    toy_run(tmp_path / "r", "--overwrite", "--seed", "1", steps=2)
    assert (tmp_path / "r" / "stray.txt").read_text() == "mine"
    assert [p.name for p in Checkpointer(tmp_path / "r").completed()] == ["step_00000002"]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["seed"] == 1


def test_failed_invocation_leaves_config_untouched(tmp_path):
    toy_run(tmp_path / "r", steps=2)
    before = (tmp_path / "r" / "config.json").read_text()
    cfg = parse_config(ToyConfig, ["--out-dir", str(tmp_path / "r"), "--overwrite", "--width", "8"])
    with pytest.raises(ValueError, match="boom"):
        with Run(cfg, OneProcessAccelerator()):
            raise ValueError("boom")  # e.g. the data or model failed to build
    assert (tmp_path / "r" / "config.json").read_text() == before
    assert (tmp_path / "r" / "checkpoints").is_dir()


def test_fresh_run_that_fails_to_build_leaves_no_folder(tmp_path):
    cfg = parse_config(ToyConfig, ["--out-dir", str(tmp_path / "new")])
    with pytest.raises(ValueError):
        with Run(cfg, OneProcessAccelerator()):
            raise ValueError("no data")
    assert not (tmp_path / "new").exists()


def test_resume_refuses_changed_training_flags_but_not_run_control(tmp_path):
    toy_run(tmp_path / "r", steps=2)
    with pytest.raises(ValueError, match=r"--lr 0.1 -> 0.5"):
        toy_run(tmp_path / "r", "--resume", "--lr", "0.5", steps=4)
    rows = toy_run(tmp_path / "r", "--resume", steps=4)  # more steps is fine
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_resume_without_run_or_with_overwrite_is_an_error(tmp_path):
    with pytest.raises(RunFolderError, match="no run to continue"):
        toy_run(tmp_path / "empty", "--resume")
    cfg = parse_config(ToyConfig, ["--resume", "--overwrite"])
    with pytest.raises(ValueError, match="give one of them"):
        cfg.check_run_fields()


def test_resume_of_a_finished_run_adds_no_duplicate_rows(tmp_path):
    toy_run(tmp_path / "r", steps=2)
    rows = toy_run(tmp_path / "r", "--resume", steps=2)
    rows = toy_run(tmp_path / "r", "--resume", steps=2)
    assert [r["step"] for r in rows] == [1, 2]
    lines = (tmp_path / "r" / "metrics.csv").read_text().strip().splitlines()
    assert len(lines) == 3


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from nda.run import RunFolder
    f = RunFolder(sys.argv[1]); f.acquire(); print("locked", flush=True); time.sleep(60)
""")


def test_live_lock_is_an_error_and_dead_lock_is_taken_over(tmp_path):
    folder = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=rf"in use by a live run \(pid {proc.pid}"):
            toy_run(folder)
    finally:
        proc.kill()
        proc.wait()
    # the holder was killed (-9): its lock file is still there, the OS lock is gone
    assert (folder / ".nda.lock").exists()
    assert [r["step"] for r in toy_run(folder, steps=2)] == [1, 2]


def test_second_run_in_same_process_is_refused(tmp_path):
    a = RunFolder(tmp_path)
    a.acquire()
    try:
        with pytest.raises(RunFolderError, match="live run"):
            RunFolder(tmp_path).acquire()
    finally:
        a.release()


def test_out_dir_that_is_a_file_or_unwritable(tmp_path):
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(RunFolderError, match="not a folder"):
        toy_run(file)
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(RunFolderError, match="not writable"):
            toy_run(ro / "run")


# ------------------------------------------------------------------------------------- checkpoints
def test_pack_unpack_round_trip_of_optimizer_state():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.0, 0.9))
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    state = {"opt": opt.state_dict(), "x": (1, float("inf"), None, "s"), "shared": [model[0].weight, model[0].weight]}
    skeleton, tensors = pack_state(state)
    json.dumps(skeleton)
    back = unpack_state(skeleton, tensors)
    assert back["x"] == (1, float("inf"), None, "s")
    assert set(back["opt"]["state"]) == {0, 1, 2, 3}  # int keys survive
    assert back["opt"]["param_groups"][0]["betas"] == (0.0, 0.9)
    assert torch.equal(back["opt"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    opt2 = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt2.load_state_dict(back["opt"])


def test_unsupported_values_are_refused():
    with pytest.raises(TypeError, match="no pickled objects"):
        pack_state({"f": object()})


def test_pickle_payload_is_never_executed(tmp_path):
    toy_run(tmp_path / "r", steps=2)
    ckpt = Checkpointer(tmp_path / "r").latest()
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import pickle

    (ckpt / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match="unexpected files"):
        toy_run(tmp_path / "r", "--resume", steps=4)
    # an attacker who also rewrites the manifest to list the payload gets a format error, not execution
    manifest = json.loads((ckpt / "nda_manifest.json").read_text())
    manifest["files"]["custom_checkpoint_0.pkl"] = {"bytes": 1, "sha256": "0"}
    (ckpt / "nda_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="never unpickled"):
        read_state(ckpt)
    assert not marker.exists()


def test_corrupt_latest_checkpoint_names_older_complete_ones(tmp_path):
    toy_run(tmp_path / "r", "--keep-checkpoints", "3", steps=6)
    latest = Checkpointer(tmp_path / "r").latest()
    data = (latest / "state.safetensors").read_bytes()
    (latest / "state.safetensors").write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match=r"truncated or corrupted.*step_00000004.*--resume <path>"):
        toy_run(tmp_path / "r", "--resume", "--keep-checkpoints", "3", steps=8)


def test_disk_full_keeps_previous_checkpoint(tmp_path, monkeypatch):
    ckpt = Checkpointer(tmp_path, keep=2)
    ckpt.save(1, {"w": torch.ones(3)})
    import errno

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("nda.run.checkpoint.write_state", full)
    with pytest.raises(CheckpointError, match=r"disk is full.*step_00000001 is intact"):
        ckpt.save(2, {"w": torch.zeros(3)})
    assert [p.name for p in ckpt.completed()] == ["step_00000001"]
    assert not list(tmp_path.glob("checkpoints/.*.tmp*"))


def test_accelerate_checkpoint_is_refused_with_an_explanation(tmp_path):
    folder = tmp_path / "step_00000001"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "nda_manifest.json").write_text(json.dumps({"step": 1, "files": {"model.safetensors": {}}}))
    with pytest.raises(CheckpointError, match="not an nda-checkpoint/1"):
        read_state(folder)


def test_write_read_state(tmp_path):
    write_state(tmp_path, {"a": torch.arange(3), "b": {"c": 2.5}}, step=7)
    step, state = read_state(tmp_path)
    assert step == 7 and state["b"]["c"] == 2.5 and torch.equal(state["a"], torch.arange(3))


# ------------------------------------------------------------------------------- models, tracking
def test_save_and_load_model_with_constructor_args(tmp_path):
    from nda.models.gan import DCGANGenerator

    g = DCGANGenerator(16, 8, 32, 3, 0)
    save_model(tmp_path / "G", g, DCGANGenerator, {"z_dim": 16, "ch": 8, "image_size": 32, "channels": 3,
                                                   "num_classes": 0})
    g2 = load_model(tmp_path / "G")
    z = torch.randn(2, 16)
    g.eval()
    assert torch.equal(g(z), g2(z))


def test_load_model_refuses_factories_outside_nda(tmp_path):
    g = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="nda package"):
        save_model(tmp_path, g, "os.system", {})
    (tmp_path / "model.json").write_text(json.dumps({"factory": "os.system", "kwargs": {"command": "true"}}))
    with pytest.raises(ValueError, match="refusing"):
        load_model(tmp_path)


def test_tracker_merges_rows_of_one_step_and_truncates_on_resume(tmp_path):
    t = Tracker(tmp_path, tensorboard=False)
    for s in (1, 2, 3):
        t.log({"loss": float(s)}, s)
    t.log({"fid": 9.0}, 3)
    t2 = Tracker(tmp_path, tensorboard=False, resumed_step=2)
    assert t2.rows == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}]


def test_derive_seed_is_distinct_across_rank_step_stream():
    seeds = {derive_seed(0, s, r, st) for s in range(50) for r in range(4) for st in ("nda", "noise", "data")}
    assert len(seeds) == 50 * 4 * 3


def test_parse_config_rejects_non_finite_floats():
    with pytest.raises(SystemExit):
        parse_config(ToyConfig, ["--lr", "inf"])


# ------------------------------------------------------------------------------ review regressions
def test_a_real_write_failure_is_a_checkpoint_error_and_leaves_no_temp(tmp_path):
    import resource
    import signal

    ckpt = Checkpointer(tmp_path, keep=2)
    ckpt.save(1, {"w": torch.ones(3)})
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
    try:  # safetensors raises its own error type (not OSError) when the file cannot be written
        with pytest.raises(CheckpointError, match=r"step_00000002.*step_00000001 is intact"):
            ckpt.save(2, {"w": torch.zeros(1_000_000)})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert [p.name for p in ckpt.completed()] == ["step_00000001"]
    assert not list((tmp_path / "checkpoints").glob(".*.tmp*"))


def test_overwrite_refuses_a_folder_that_holds_no_run(tmp_path):
    folder = tmp_path / "thesis"
    (folder / ".git").mkdir(parents=True)
    (folder / "thesis.tex").write_text("years of work")
    with pytest.raises(RunFolderError, match="holds no run|but no run"):
        toy_run(folder, "--overwrite")
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_resume_from_another_runs_checkpoint_is_refused(tmp_path):
    toy_run(tmp_path / "a", steps=4)
    toy_run(tmp_path / "b", steps=4)
    with pytest.raises(CheckpointError, match="not a checkpoint of this run"):
        toy_run(tmp_path / "b", "--resume", str(tmp_path / "a" / "checkpoints" / "step_00000004"), steps=8)


def test_saved_config_never_deletes_or_continues_a_run_by_itself(tmp_path):
    toy_run(tmp_path / "a", steps=2)
    toy_run(tmp_path / "a", "--overwrite", steps=2)
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert "overwrite" not in saved and "resume" not in saved
    legacy = {**saved, "overwrite": True, "resume": "latest"}
    (tmp_path / "old.json").write_text(json.dumps(legacy))
    cfg = parse_config(ToyConfig, ["--config", str(tmp_path / "old.json")])
    assert cfg.overwrite is False and cfg.resume is None


class TwoProcessAccelerator(OneProcessAccelerator):
    num_processes = 2


def test_resume_with_another_process_count_is_refused(tmp_path):
    toy_run(tmp_path / "r", steps=2)
    cfg = parse_config(ToyConfig, ["--out-dir", str(tmp_path / "r"), "--resume", "--steps", "4"])
    with Run(cfg, TwoProcessAccelerator()) as run:
        model = torch.nn.Linear(4, 1)
        with pytest.raises(ValueError, match="world_size 1 -> 2"):
            run.restore(model=model, opt=torch.optim.Adam(model.parameters()))


def test_resuming_an_older_checkpoint_drops_the_abandoned_newer_ones(tmp_path):
    toy_run(tmp_path / "r", "--keep-checkpoints", "3", steps=6)  # checkpoints 2, 4, 6
    older = tmp_path / "r" / "checkpoints" / "step_00000002"
    rows = toy_run(tmp_path / "r", "--keep-checkpoints", "3", "--resume", str(older), steps=6)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [p.name for p in Checkpointer(tmp_path / "r").completed()] == ["step_00000002", "step_00000004",
                                                                         "step_00000006"]


def test_load_model_calls_only_module_classes(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("safe")
    (tmp_path / "model.json").write_text(json.dumps({"factory": "nda.run.run.write_json",
                                                    "kwargs": {"path": str(victim), "obj": "overwritten"}}))
    with pytest.raises(ValueError, match="not a torch.nn.Module class"):
        load_model(tmp_path)
    assert victim.read_text() == "safe"


def test_two_tensors_with_one_key_are_refused():
    with pytest.raises(TypeError, match="two tensors map to the key 'a.b'"):
        pack_state({"a.b": torch.ones(1), "a": {"b": torch.zeros(1)}})


def test_a_live_run_is_named_even_for_a_fresh_invocation(tmp_path):
    folder = tmp_path / "r"
    toy_run(folder, steps=2)
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=rf"in use by a live run \(pid {proc.pid}"):
            toy_run(folder, steps=2)
    finally:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------ cli: one line, not a traceback
def _cli_error(capsys, exc: BaseException, *, name: str | None = None) -> tuple[int, str]:
    from nda.run import cli

    def main():
        pretrained_model_name_or_path = name  # noqa: F841 - what from_pretrained calls the model it loads
        raise exc

    with pytest.raises(SystemExit) as stop:
        cli(main, "tasks/x.py")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tasks/x.py: error: "), err
    return stop.value.code, err


def test_cli_disk_full_names_the_file(capsys, monkeypatch):
    import errno

    monkeypatch.delenv("NDA_TRACEBACK", raising=False)
    code, err = _cli_error(capsys, OSError(errno.ENOSPC, "No space left on device", "runs/x/checkpoints/step_1"))
    assert code == 1 and "runs/x/checkpoints/step_1: No space left on device [ENOSPC]" in err
    from nda.run import cli

    def disk_full():
        raise OSError(errno.ENOSPC, "No space left on device", "f")

    monkeypatch.setenv("NDA_TRACEBACK", "1")  # the traceback on request
    with pytest.raises(OSError):
        cli(disk_full, "x")
    monkeypatch.delenv("NDA_TRACEBACK")
    with pytest.raises(KeyError):  # a bug keeps its traceback
        cli(lambda: {}["missing"], "x")


class FakeResponse:
    headers: dict = {}
    request = None


def test_cli_safetensors_and_hub_errors_are_one_line(capsys, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError
    from safetensors import SafetensorError

    monkeypatch.delenv("NDA_TRACEBACK", raising=False)
    cases = [(SafetensorError("Error while deserializing header: HeaderTooLarge"), "HeaderTooLarge"),
             (OfflineModeIsEnabled("Cannot reach https://huggingface.co/api/models/org/m:\n offline mode is enabled."),
              "OfflineModeIsEnabled: Cannot reach https://huggingface.co/api/models/org/m: offline mode"),
             (RepositoryNotFoundError("404 Repository Not Found for url: https://huggingface.co/org/m",
                                      response=FakeResponse()), "RepositoryNotFoundError: 404 Repository Not Found"),
             (LocalEntryNotFoundError("cannot find the requested files in the disk cache"), "disk cache")]
    try:
        import requests

        cases.append((requests.ConnectionError("Max retries exceeded with url: /org/m"), "ConnectionError"))
    except ImportError:
        pass
    for exc, expected in cases:
        code, err = _cli_error(capsys, exc)
        assert code != 0 and expected in err, err
    # transformers' OSError for an unknown model names neither the model nor a file: the cli adds the name
    code, err = _cli_error(capsys, OSError("We couldn't connect to 'https://huggingface.co' to load the files.\n"
                                           "Check your internet connection"), name="org/no-such-model")
    assert code == 1 and "'org/no-such-model': We couldn't connect" in err

