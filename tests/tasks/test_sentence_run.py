"""tasks/sentence.py in two CPU processes (gloo): a run killed after a checkpoint and resumed writes exactly the
metrics rows of an uninterrupted run (data order, NDA draws and dropout are functions of (seed, step, rank))."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRAIN = [
    "A man is playing a guitar.", "The dog is running in the park.", "Two women are eating food.",
    "A boy is riding a red bike.", "The police said two men were killed.", "She is not walking home.",
    "A cat sits on the old car.", "The government said prices will rise.", "A girl is cutting an onion.",
    "People are walking down the street.", "The market fell by two percent.", "A horse runs in a field.",
    "A woman is playing the piano.", "Three men are playing chess.", "A plane is taking off.",
    "The child is sleeping.", "Hello.", "Dogs!",  # two that no negative can change (masked)
]
STS = [(4.8, "A man is playing a guitar.", "A man plays the guitar."),
       (0.2, "A man is playing a guitar.", "A woman is cutting an onion."),
       (4.2, "Two dogs run on the beach.", "Two dogs are running on the sand."),
       (0.8, "A cat is sleeping.", "A dog is barking loudly.")]


UNSUP = ("--train-file", "{data}/train.txt", "--nda", "token_shuffle|counterfactual", "--nda-k", "2", "--nda-weight", "0.5",
         "--nda-every", "2")


def _launch(out: Path, data: Path, *extra: str, fault_at: int | None = None, flags: tuple[str, ...] = UNSUP
            ) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes 2 ... --cpu true``: two gloo CPU processes. (accelerate 1.x
    ignores --num_processes together with its own --cpu flag and starts ONE process.)"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "NDA_CACHE": str(data / "nda_cache")}
    env.pop("NDA_FAULT_AT_STEP", None)
    if fault_at is not None:
        env["NDA_FAULT_AT_STEP"] = str(fault_at)
    cmd = [shutil.which("accelerate") or "accelerate", "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "tasks" / "sentence.py"),
           "--model", "tiny-random", "--sts-data", str(data), "--cpu", "true",
           "--batch-size", "3", "--steps", "6", "--grad-accum", "2", "--log-every", "1", "--checkpoint-every", "2",
           "--eval-every", "3", "--lr", "1e-3", "--threads", "1", "--progress", "false", "--out-dir", str(out),
           "--overlap-guard", "none",  # hermetic: the same rows with or without ../shared on the machine
           *(f.format(data=data) for f in flags), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.mark.slow
def test_two_process_run_killed_after_a_checkpoint_resumes_to_identical_rows(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text("\n".join(TRAIN) + "\n")
    for split in ("dev", "test"):
        (data / f"sts-{split}.csv").write_text("".join(f"g\tf\t2012\t{i}\t{s}\t{a}\t{b}\n" for i, (s, a, b) in enumerate(STS)))

    full = _launch(tmp_path / "full", data)
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _launch(tmp_path / "cut", data, fault_at=3)  # checkpoint at 2; step 3 runs and logs, then os._exit
    assert killed.returncode != 0 and not (tmp_path / "cut" / "results.json").exists()
    assert (tmp_path / "cut" / "metrics.csv").read_text().strip().splitlines()[-1].startswith("3,")  # logged, lost
    assert [p.name for p in sorted((tmp_path / "cut" / "checkpoints").glob("step_*"))] == ["step_00000002"]
    resumed = _launch(tmp_path / "cut", data, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a, b = (tmp_path / "full" / "metrics.csv").read_text(), (tmp_path / "cut" / "metrics.csv").read_text()
    assert a == b
    lines = a.strip().splitlines()
    header = lines[0].split(",")
    assert len(lines) == 7 and "sts_dev_spearman" in header and "nda_valid_frac" in header
    # gathered over 2 processes: 2*3 positives + 2*3*2 NDA columns on NDA steps (every 2nd), 2*3 on the others
    per_anchor = [float(line.split(",")[header.index("logits_per_anchor")]) for line in lines[1:]]
    assert per_anchor == [18, 6, 18, 6, 18, 6]
    res_full = json.loads((tmp_path / "full" / "results.json").read_text())
    res_cut = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert res_full["run"]["processes"] == res_cut["run"]["processes"] == 2 and res_cut["world_size"] == 2
    assert res_cut["run"]["resumed_from"].endswith("step_00000002")
    assert res_full["final"] == res_cut["final"]


@pytest.mark.slow
def test_two_process_supervised_run_resumes_to_identical_rows(tmp_path):
    """Sup rows with and without hard negatives (padded and gathered across ranks), NDA from both sides, the
    symmetric loss and double-flip extra positives: killed after a checkpoint and resumed = uninterrupted."""
    data = tmp_path / "data"
    data.mkdir()
    triples = [f"{a}\t{a.lower()}\t{'' if i % 3 == 0 else c}" for i, (a, c) in enumerate(zip(TRAIN, TRAIN[2:] + TRAIN[:2]))]
    (data / "pairs.tsv").write_text("\n".join(triples) + "\n")
    for split in ("dev", "test"):
        (data / f"sts-{split}.csv").write_text("".join(f"g\tf\t2012\t{i}\t{s}\t{a}\t{b}\n" for i, (s, a, b) in enumerate(STS)))
    sup = ("--mode", "sup", "--pairs", "tsv:{data}/pairs.tsv", "--overlap-guard", "none", "--nda", "counterfactual",
           "--nda-source", "both", "--nda-positive", "counterfactual:negation=False>counterfactual:antonyms=False")
    full = _launch(tmp_path / "full", data, flags=sup)
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _launch(tmp_path / "cut", data, fault_at=3, flags=sup)
    assert killed.returncode != 0 and not (tmp_path / "cut" / "results.json").exists()
    resumed = _launch(tmp_path / "cut", data, "--resume", flags=sup)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = (tmp_path / "full" / "metrics.csv").read_text(), (tmp_path / "cut" / "metrics.csv").read_text()
    assert a == b
    header = a.splitlines()[0].split(",")
    assert "extra_frac" in header and "nda_valid_frac" in header
    res = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert res["world_size"] == 2 and res["symmetric"] is True and res["overlap_guard"]["ran"] is False
