"""--overwrite deletes only what an nda run wrote (its .nda-run.json manifest), never a user's file, and never a
live run whose lock file was deleted (issue 17 item 2 / 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from nda.run import Run, RunConfig, RunFolderError, parse_config
from nda.run.folder import MANIFEST_NAME
from nda.run.testing import OneProcessAccelerator as OneProcess


@dataclass
class Cfg(RunConfig):
    lr: float = 0.1


def run(out: Path, *args: str, steps: int = 2) -> None:
    cfg = parse_config(Cfg, ["--out-dir", str(out), "--steps", str(steps), "--progress", "false", *args])
    cfg.check_run_fields()
    with Run(cfg, OneProcess(), job="toy") as r:
        model = torch.nn.Linear(2, 1)
        r.restore(model=model)
        for _ in r.loop():
            pass
        r.finish({})


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_bytes().hex() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("files", [
    {"src/main.py": "keep", "config.json": "{}"},          # a source tree / a HF model folder: config.json
    {"metrics.csv": "step,loss\n1,0.5\n"},                 # a folder of someone's metrics
    {"results.json": "{\"acc\": 1}"},
])
def test_overwrite_refuses_a_folder_without_a_run_manifest_and_deletes_nothing(tmp_path, files):
    folder = tmp_path / "x"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    with pytest.raises(RunFolderError, match=rf"--overwrite: .* but no run of nda \(no {MANIFEST_NAME}"):
        run(folder, "--overwrite")
    # nothing deleted, and no lock file left behind in the user's folder
    assert _tree(folder) == {k: v.encode().hex() for k, v in files.items()}
    assert sorted(p.name for p in folder.iterdir()) == sorted({n.split("/")[0] for n in files})


def test_an_old_run_without_manifest_is_refused_with_a_clear_message(tmp_path):
    folder = tmp_path / "old"
    run(folder)
    (folder / MANIFEST_NAME).unlink()  # what a run of nda before the manifest looks like
    before = _tree(folder)
    with pytest.raises(RunFolderError, match="a run of an older nda.*delete it yourself"):
        run(folder, "--overwrite")
    assert _tree(folder) == before


def test_overwrite_deletes_the_runs_files_and_keeps_the_users(tmp_path):
    folder = tmp_path / "r"
    run(folder, steps=4)
    (folder / "notes.md").write_text("my notes")
    (folder / "extra").mkdir()
    (folder / "extra" / "plot.py").write_text("print(1)")
    run(folder, "--overwrite", "--seed", "1", steps=2)
    assert (folder / "notes.md").read_text() == "my notes" and (folder / "extra" / "plot.py").is_file()
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["step_00000002"]
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert "notes.md" not in manifest["entries"] and "extra" not in manifest["entries"]
    assert {"config.json", "checkpoints", "results.json"} <= set(manifest["entries"]) and manifest["live"] is None
    run(folder, "--overwrite", steps=2)  # and again: the user's files stay foreign
    assert (folder / "notes.md").read_text() == "my notes"


LIVE_RUN = textwrap.dedent("""
    import sys, time, torch
    from nda.run import Run, RunConfig, parse_config
    sys.path.insert(0, sys.argv[2])
    from test_rel_run_folder import OneProcess, Cfg
    cfg = parse_config(Cfg, ["--out-dir", sys.argv[1], "--steps", "1000", "--progress", "false"])
    run = Run(cfg, OneProcess(), job="live")
    run.restore(model=torch.nn.Linear(2, 1))
    print("live", flush=True)
    time.sleep(60)
""")


@pytest.mark.slow  # multi-process
def test_a_live_run_whose_lock_file_was_deleted_is_not_wiped(tmp_path):
    folder = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-c", LIVE_RUN, str(folder), str(Path(__file__).parent)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert proc.stdout.readline().strip() == "live"
        (folder / ".nda.lock").unlink()  # the OS lock no longer keeps a second run out
        before = _tree(folder)
        with pytest.raises(RunFolderError, match=rf"live run \(pid {proc.pid}.*lock file .nda.lock was removed"):
            run(folder, "--overwrite")
        assert {k: v for k, v in _tree(folder).items() if k != ".nda.lock"} == \
            {k: v for k, v in before.items() if k != ".nda.lock"}
    finally:
        proc.kill()
        proc.wait()
    run(folder, "--overwrite")  # the holder is dead now: its manifest entry no longer counts


def test_a_lock_file_replaced_before_the_overwrite_deletes_nothing(tmp_path):
    folder = tmp_path / "r"
    run(folder, steps=2)
    before = _tree(folder)
    cfg = parse_config(Cfg, ["--out-dir", str(folder), "--overwrite", "--progress", "false", "--steps", "2"])
    with Run(cfg, OneProcess()) as r:
        (folder / ".nda.lock").unlink()  # e.g. a clean-up script, while this run was loading its data
        (folder / ".nda.lock").write_text("")
        with pytest.raises(RunFolderError, match="lock file .nda.lock was removed or replaced"):
            r.restore(model=torch.nn.Linear(2, 1))
    after = _tree(folder)
    assert {k: after[k] for k in before if k not in (".nda.lock", MANIFEST_NAME)} == \
        {k: v for k, v in before.items() if k not in (".nda.lock", MANIFEST_NAME)}
