"""tasks/gan.py end to end on tiny data (CPU, one process): finite losses, parameters that move, NDA only when
asked, --augment as a positive control, exact continuation, logging that does not change training, clear errors
for bad flags and broken checkpoints, FID/KID and eval_gan on the saved models."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from nda.run import CheckpointError, RunFolderError
from nda.run.checkpoint import read_state
from tasks import eval_gan, gan  # the repo root is on sys.path (tests/conftest.py)

TINY = ["--data", "digits", "--limit", "64", "--image-size", "16", "--g-ch", "8", "--d-ch", "8", "--z-dim", "16",
        "--batch-size", "16", "--eval-samples", "0", "--log-every", "1", "--progress", "false", "--threads", "1"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NDA_CACHE", str(tmp_path / "cache"))  # reference statistics land here, not in ~/.cache


def _rows(run: Path) -> list[dict[str, float]]:
    with open(run / "metrics.csv", newline="") as fh:
        return [{k: float(v) for k, v in r.items() if k != "elapsed_s" and v != ""} for r in csv.DictReader(fh)]


def _state(run: Path, step: int) -> dict:
    return read_state(run / "checkpoints" / f"step_{step:08d}")[1]


def test_steps_are_finite_params_move_and_nda_only_when_asked(tmp_path):
    for spec in ("jigsaw", "none"):
        out = tmp_path / spec
        gan.main(TINY + ["--steps", "3", "--nda", spec, "--out-dir", str(out), "--checkpoint-every", "1",
                         "--keep-checkpoints", "3"])
        rows = _rows(out)
        assert [r["step"] for r in rows] == [1.0, 2.0, 3.0]
        assert all(math.isfinite(v) for r in rows for v in r.values())
        first, last = _state(out, 1), _state(out, 3)
        for name in ("G", "D", "ema"):
            a, b = (first[name]["model"], last[name]["model"]) if name == "ema" else (first[name], last[name])
            assert any(v.is_floating_point() and not torch.equal(v, b[k]) for k, v in a.items()), name
        assert set(first) >= {"G", "D", "opt_g", "opt_d", "ema"} and first["ema"]["num_updates"] == 1
        assert (out / "results.json").is_file() and (out / "loss_plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / "config.json").is_file() and list((out / "samples").glob("*.png"))
        if spec == "jigsaw":
            assert any(r["loss_d_negative"] > 0 for r in rows) and "D(neg)" in rows[0]
            for r in rows:  # the paper's weights: real + 0.25 fake + 0.75 NDA
                total = r["loss_d_real"] + 0.25 * r["loss_d_fake"] + 0.75 * r["loss_d_negative"]
                assert r["loss_d"] == pytest.approx(total, rel=1e-5)
        else:
            assert "loss_d_negative" not in rows[0] and "D(neg)" not in rows[0]


def test_mix_mode_and_conditional_sngan_run(tmp_path):
    out = tmp_path / "mix"
    res = gan.main(TINY + ["--arch", "sngan", "--conditional", "true", "--nda", "stitch", "--nda-mode", "mix",
                           "--n-dis", "2", "--grad-accum", "2", "--steps", "2", "--out-dir", str(out)])
    rows = _rows(out)
    assert len(rows) == 2 and all(math.isfinite(v) for r in rows for v in r.values())
    assert res["nda_mode"] == "mix" and res["run"]["steps"] == 2


def test_augment_is_a_positive_control_that_changes_training(tmp_path):
    plain, aug = tmp_path / "plain", tmp_path / "aug"
    gan.main(TINY + ["--steps", "2", "--nda", "none", "--out-dir", str(plain)])
    res = gan.main(TINY + ["--steps", "2", "--nda", "none", "--augment", "jigsaw", "--out-dir", str(aug)])
    a, b = _rows(plain), _rows(aug)
    assert a[0].keys() == b[0].keys() and "loss_d_negative" not in b[0]  # no negatives: the plain loss
    assert a[0]["D(real)"] != b[0]["D(real)"]  # D saw jigsawed reals
    assert res["augment"] == "jigsaw" and res["nda"] == "none"


def test_continuing_a_run_equals_the_longer_run(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    gan.main(TINY + ["--steps", "4", "--out-dir", str(straight)])
    gan.main(TINY + ["--steps", "2", "--out-dir", str(split)])
    res = gan.main(TINY + ["--steps", "4", "--out-dir", str(split), "--resume"])  # bare --resume: latest
    assert _rows(straight) == _rows(split)
    assert res["run"]["resumed_from"].endswith("step_00000002") and res["resumed_from_step"] == 2


def test_logging_does_not_change_training(tmp_path):
    # regression: the log step used to run an extra D forward, whose spectral-norm power iteration
    # (train mode) changed D, so the trajectory depended on --log-every
    every, sparse = tmp_path / "every", tmp_path / "sparse"
    gan.main(TINY + ["--steps", "2", "--out-dir", str(every)])
    gan.main(TINY + ["--steps", "2", "--log-every", "2", "--out-dir", str(sparse)])
    a, b = _state(every, 2)["D"], _state(sparse, 2)["D"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _rows(every)[-1] == _rows(sparse)[0]


def test_bad_spec_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--nda"):
        gan.main(TINY + ["--nda", "jigsaw:grid=1", "--out-dir", str(tmp_path / "y")])
    for mixed in ("token_shuffle", "jigsaw|token_shuffle", "cutout>token_shuffle"):  # a text member anywhere
        with pytest.raises(ValueError, match="text negative 'token_shuffle'"):
            gan.image_spec("--nda", mixed)
    assert gan.image_spec("--augment", None) is None and gan.image_spec("--nda", "none") is None


@pytest.mark.parametrize("flag, value", [
    ("--extractor", "clip"), ("--eval-samples", "1"), ("--ema-decay", "1.0"), ("--checkpoint-every", "-1"),
    ("--keep-checkpoints", "0"), ("--max-minutes", "-5"), ("--arch", "stylegan"), ("--lr-g", "0"),
    ("--beta2", "1.0"), ("--augment-p", "0"), ("--augment-p", "1.5"), ("--image-size", "48"), ("--channels", "2"),
    ("--loss", "wgan"), ("--nda-mode", "both"), ("--fake-weight", "-1"), ("--eval-every", "5"), ("--limit", "0")])
def test_bad_flags_fail_before_anything_is_written(tmp_path, flag, value):
    # an --extractor typo used to surface only after the whole training run, when FID was computed
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=flag):
        gan.main(TINY + [flag, value, "--out-dir", str(out)])  # TINY has --eval-samples 0
    assert not out.exists()


def test_too_small_dataset_fails_before_the_run_starts(tmp_path):
    with pytest.raises(ValueError, match="fewer than one global batch"):
        gan.main(TINY + ["--limit", "8", "--out-dir", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()


def test_periodic_eval_logs_fid_and_survives_a_missing_extractor(tmp_path, monkeypatch):
    import nda.metrics.extractors as ex

    out = tmp_path / "ok"
    res = gan.main(TINY + ["--steps", "2", "--eval-every", "1", "--eval-samples", "16", "--out-dir", str(out)])
    fid_rows = [r for r in _rows(out) if "fid" in r]
    assert [r["step"] for r in fid_rows] == [1.0, 2.0] and fid_rows[0]["fid"] > 0  # --eval-every, and the end
    assert res["fid"]["extractor"].startswith("cifar10-classifier") and res["fid"]["value"] == fid_rows[1]["fid"]
    assert "reference_stats" in res["fid"]  # the held-out split's statistics were cached

    def unavailable(*args, **kwargs):
        raise RuntimeError("the FID Inception weights are not available locally")

    monkeypatch.setattr(ex, "get_extractor", unavailable)
    out = tmp_path / "missing"  # regression: the periodic eval used to crash with a KeyError mid-training
    res = gan.main(TINY + ["--steps", "2", "--eval-every", "1", "--eval-samples", "16", "--out-dir", str(out)])
    assert res["run"]["steps"] == 2 and "not available" in res["fid_error"] and "fid" not in res


def test_eval_gan_bad_flags_fail_before_loading(tmp_path):
    for args, flag in ((["--num-samples", "1"], "--num-samples"), (["--extractor", "clip"], "--extractor"),
                       (["--severity", "9"], "--severity"), (["--anomaly", "true"], "--anomaly")):
        with pytest.raises(ValueError, match=flag):
            eval_gan.main(["--images", str(tmp_path), "--reference", "digits", *args])
    with pytest.raises(ValueError, match="exactly one"):
        eval_gan.main(["--reference", "digits"])


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    out = tmp_path / "run"
    gan.main(TINY + ["--steps", "2", "--out-dir", str(out), "--checkpoint-every", "2"])
    ckpt = out / "checkpoints" / "step_00000002"
    eval_gan.load_run(ckpt)  # intact: loads
    weights = ckpt / "state.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        gan.main(TINY + ["--steps", "4", "--out-dir", str(out), "--resume"])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        eval_gan.load_run(ckpt)
    with pytest.raises(RunFolderError, match="no run to continue"):
        gan.main(TINY + ["--steps", "4", "--out-dir", str(tmp_path / "empty"), "--resume"])


def test_eval_gan_on_a_run(tmp_path):
    out = tmp_path / "run"
    gan.main(TINY + ["--image-size", "32", "--steps", "1", "--out-dir", str(out)])
    args = ["--checkpoint", str(out), "--reference", "digits", "--num-samples", "64", "--kid-subsets", "5",
            "--extractor", "cifar10-classifier", "--device", "cpu"]
    res = eval_gan.main(args + ["--anomaly", "true", "--anomaly-limit", "64"])
    assert res["fid"]["extractor"].startswith("cifar10-classifier") and res["fid"]["value"] > 0
    aurocs = res["anomaly"]["auroc"]
    assert set(aurocs) == {f"{n} (severity 3)" for n in ("gaussian_noise", "gaussian_blur", "contrast", "jpeg")}
    assert all(0.0 <= v <= 1.0 for v in aurocs.values())
    assert (out / "eval_results.json").is_file()
    again = eval_gan.main(args)  # same seed, cached reference statistics: the same numbers
    assert again["fid"]["value"] == pytest.approx(res["fid"]["value"], rel=1e-6)


def test_validate_builds_the_loss_and_names_the_flag_of_its_errors(tmp_path):
    """Issue 20 item 4: validate() builds the discriminator loss (no restated rules), so what only the loss
    refused (both weights 0: D would never see a fake) is now a validation error naming the flag."""
    def cfg(*extra):
        return gan.parse_config(gan.GANConfig, TINY + ["--out-dir", str(tmp_path / "r"), *extra])

    with pytest.raises(ValueError, match=r"^--fake-weight and negative_weight are both 0"):
        gan.validate(cfg("--fake-weight", "0", "--negative-weight", "0"))
    with pytest.raises(ValueError, match=r"^--nda-mode must be 'separate' or 'mix', got 'both'"):
        gan.validate(cfg("--nda-mode", "both"))
    with pytest.raises(ValueError, match=r"^--image-size must be a power of two"):
        gan.validate(cfg("--image-size", "48"))


def test_micro_schedule_is_the_phase_arithmetic_the_jobs_wrote_by_hand():
    """Issue 20 item 4: one helper for the (phase, micro-step) schedule; its indices are exactly the old
    ``step * phases + k * grad_accum + a`` (random draws) and ``(step * n_dis + k) * grad_accum + a`` (data)."""
    from nda.run.schedule import MicroSchedule

    for n_dis, accum in ((1, 1), (5, 1), (2, 3)):
        phases, batches = MicroSchedule(accum, updates=n_dis + 1), MicroSchedule(accum, updates=n_dis)
        for step in range(4):
            for k in range(n_dis + 1):
                got = list(phases.micro_steps(step, k))
                assert got == [(a, step * (n_dis + 1) * accum + k * accum + a) for a in range(accum)]
                if k < n_dis:
                    assert [batches.index(step, k, a) for a in range(accum)] == \
                        [(step * n_dis + k) * accum + a for a in range(accum)]
    assert [i for _, i in MicroSchedule(2).micro_steps(3)] == [6, 7]  # moco / classify: step * grad_accum + micro
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="grad_accum must be an int >= 1"):
            MicroSchedule(bad)
