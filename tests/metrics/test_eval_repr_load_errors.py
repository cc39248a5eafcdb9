"""tasks/eval_repr.py --encoder on a broken folder or weights file: one ValueError line naming the path and what is
wrong, whatever the loader underneath raises (issue 17 item 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nda.models.moco import MoCo
from nda.run import save_model
from tasks import eval_repr

KWARGS = {"arch": "tiny", "in_channels": 3, "dim": 8, "queue_size": 16}


@pytest.fixture()
def good(tmp_path) -> Path:
    folder = tmp_path / "final"
    save_model(folder, MoCo(**KWARGS), MoCo, KWARGS)
    return folder


def _edit_info(folder: Path, **change) -> None:
    info = json.loads((folder / "model.json").read_text())
    info.update({k: v for k, v in change.items() if k != "kwargs"})
    info["kwargs"].update(change.get("kwargs", {}))
    (folder / "model.json").write_text(json.dumps(info))


BREAKS = {  # what each break raised before: ModuleNotFoundError, TypeError, RuntimeError, SafetensorError, ...
    "unknown factory module": lambda f: _edit_info(f, factory="nda.models.nope.MoCo"),
    "unexpected kwarg": lambda f: _edit_info(f, kwargs={"bogus": 1}),
    "weights of another shape": lambda f: _edit_info(f, kwargs={"dim": 16}),
    "model.json not JSON": lambda f: (f / "model.json").write_text("{not json"),
    "truncated weights": lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:100]),
    "garbage weights": lambda f: (f / "model.safetensors").write_bytes(b"\0" * 64),
    "weights missing": lambda f: (f / "model.safetensors").unlink(),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_a_broken_model_folder_is_one_line_naming_it(good, name):
    assert eval_repr.load_encoder(str(good))[1].startswith("MoCo query backbone")
    BREAKS[name](good)
    with pytest.raises(ValueError) as err:
        eval_repr.load_encoder(str(good))
    message = str(err.value)
    assert message.startswith(f"--encoder {good}: cannot load this folder (") and "\n" not in message, message
    assert len(message) < 600


@pytest.mark.parametrize("raised", [RuntimeError("line one\n\tline two"), OSError(5, "I/O error"), KeyError("kwargs"),
                                    MemoryError()])
def test_whatever_load_model_raises_becomes_one_line(good, monkeypatch, raised):
    def load_model(folder, device="cpu"):
        raise raised

    monkeypatch.setattr(eval_repr, "load_model", load_model)
    with pytest.raises(ValueError, match=rf"^--encoder {good}: cannot load this folder \({type(raised).__name__}") as err:
        eval_repr.load_encoder(str(good))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("suffix, data", [(".safetensors", b"garbage"), (".pt", b"garbage"), (".pt", None)])
def test_a_broken_weights_file_is_one_line_naming_it(tmp_path, suffix, data):
    path = tmp_path / f"w{suffix}"
    if data is None:  # a loadable file that holds no state dict
        torch.save(torch.zeros(3), path)
    else:
        path.write_bytes(data)
    with pytest.raises(ValueError) as err:
        eval_repr.load_encoder(str(path), arch="tiny")
    message = str(err.value)
    assert message.startswith(f"--encoder {path}: cannot load this weights file (") and "\n" not in message, message


def test_the_task_prints_one_line(good, tmp_path, capsys):
    """Through the CLI entry point: exit status 2 and the message on one line, no traceback."""
    import subprocess
    import sys

    _edit_info(good, kwargs={"bogus": 1})
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(root / "tasks" / "eval_repr.py"), "--encoder", str(good)],
                          capture_output=True, text=True, cwd=root, timeout=120)
    err = done.stderr.strip().splitlines()
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert any(f"--encoder {good}: cannot load this folder (" in line and "'bogus'" in line for line in err), done.stderr
