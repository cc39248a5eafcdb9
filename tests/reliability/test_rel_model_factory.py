"""Saved model folders (nda.run.artifacts): only allow-listed classes are built, every broken folder is one
ModelFolderError naming it, and a save that fails (full disk) leaves no folder that loads."""

from __future__ import annotations

import errno
import json
import sys

import pytest
import torch

from nda.models.gan import DCGANGenerator
from nda.models.moco import TinyEncoder
from nda.run.artifacts import ModelFolderError, load_model, read_model_info, save_model

KWARGS = {"z_dim": 8, "ch": 4, "image_size": 16, "channels": 1, "num_classes": 0}


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "G"
    save_model(folder, DCGANGenerator(**KWARGS), DCGANGenerator, KWARGS, {"step": 3})
    return folder


def _write_info(folder, info) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(info if isinstance(info, str) else json.dumps(info))


def test_factory_with_import_time_effects_is_never_imported(tmp_path):
    """Regression: ``nda.__main__`` runs the CLI on import and raises SystemExit, which escaped ``except Exception``."""
    sys.modules.pop("nda.__main__", None)
    _write_info(tmp_path, {"factory": "nda.__main__.main", "kwargs": {}})
    with pytest.raises(ModelFolderError, match=rf"^{tmp_path}: unknown model factory 'nda.__main__.main'"):
        load_model(tmp_path)
    assert "nda.__main__" not in sys.modules


def test_allow_list_refuses_unregistered_classes_and_keeps_old_folders_loading(tmp_path):
    """An nn.Module class of nda that is not registered was imported and built by name before; a folder in the
    old layout (dotted class path, weights only) still loads, mapped to its registry key, not imported."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    enc = TinyEncoder()
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(tmp_path / "model.safetensors"))
    _write_info(tmp_path, {"factory": "nda.models.moco.TinyEncoder", "kwargs": {}})
    with pytest.raises(ModelFolderError, match="unknown model factory 'nda.models.moco.TinyEncoder'"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="not a model class of the nda package registered"):
        save_model(tmp_path / "x", enc, TinyEncoder, {})

    old = tmp_path / "old"
    g = DCGANGenerator(**KWARGS).eval()
    _write_info(old, {"factory": "nda.models.gan.DCGANGenerator", "kwargs": KWARGS, "meta": {}})
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, str(old / "model.safetensors"))
    z = torch.randn(2, 8)
    torch.testing.assert_close(load_model(old)(z), g(z))  # same weights; outputs to float tolerance


@pytest.mark.parametrize("text,what", [
    (None, "no model.json"),
    ("{not json", "model.json is not readable JSON"),
    ("[1, 2]", "model.json has the wrong structure"),
    (json.dumps({"factory": 3, "kwargs": {}}), "model.json has the wrong structure"),
    (json.dumps({"factory": "nda.models.gan.DCGANGenerator", "kwargs": [1]}), "model.json has the wrong structure"),
])
def test_missing_or_garbage_model_json(tmp_path, text, what):
    if text is not None:
        _write_info(tmp_path, text)
    with pytest.raises(ModelFolderError, match=f"^{tmp_path}: {what}"):
        load_model(tmp_path)
    with pytest.raises(ModelFolderError, match=what):
        read_model_info(tmp_path)


@pytest.mark.parametrize("kwargs,detail", [
    ({**KWARGS, "bogus": 1}, "unexpected keyword argument 'bogus'"),
    ({**KWARGS, "image_size": 33}, "image_size must be a power of two"),
])
def test_kwargs_the_constructor_refuses(saved, kwargs, detail):
    info = read_model_info(saved)
    _write_info(saved, {**info, "kwargs": kwargs})
    refused = rf"^{saved}: DCGANGenerator refused the kwargs in model.json \(.*{detail}"
    with pytest.raises(ModelFolderError, match=refused):
        load_model(saved)


def test_weights_missing_truncated_or_of_the_wrong_shape(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFolderError, match=rf"^{saved}: model.safetensors is unreadable or truncated \(Safetensor"):
        load_model(saved)
    (saved / "model.safetensors").unlink()
    with pytest.raises(ModelFolderError, match=rf"^{saved}: no model.safetensors"):
        load_model(saved)
    (saved / "model.safetensors").write_bytes(data)
    _write_info(saved, {**read_model_info(saved), "kwargs": {**KWARGS, "ch": 8}})
    with pytest.raises(ModelFolderError, match=rf"^{saved}: model.safetensors does not fit DCGANGenerator.*mismatch"):
        load_model(saved)


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_save_on_a_full_disk_names_the_folder_and_leaves_nothing_loadable(saved, monkeypatch):
    """Weights half written (safetensors raises), or model.json not written: the folder never loads -- not even
    the model saved there before, whose model.json would now describe other weights."""
    import safetensors.torch

    real_save = safetensors.torch.save_file

    def half_written(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as fh:
            fh.truncate(100)
        raise OSError(errno.ENOSPC, "No space left on device")

    g = DCGANGenerator(**KWARGS)
    monkeypatch.setattr(safetensors.torch, "save_file", half_written)
    with pytest.raises(ModelFolderError, match=rf"^{saved}: could not save the model \(OSError: .*No space left"):
        save_model(saved, g, DCGANGenerator, KWARGS)
    assert not (saved / "model.json").exists() and not list(saved.glob(".*tmp*"))
    with pytest.raises(ModelFolderError, match="no model.json"):
        load_model(saved)
    monkeypatch.setattr(safetensors.torch, "save_file", real_save)

    import nda.run.artifacts as artifacts

    real_write = artifacts.atomic_write_text
    monkeypatch.setattr(artifacts, "atomic_write_text",
                        lambda path, text: _full_disk() if path.name == "model.json" else real_write(path, text))
    with pytest.raises(ModelFolderError, match=rf"^{saved}: could not save the model"):
        save_model(saved, g, DCGANGenerator, KWARGS)
    with pytest.raises(ModelFolderError, match="no model.json"):
        load_model(saved)
    monkeypatch.setattr(artifacts, "atomic_write_text", real_write)
    save_model(saved, g, DCGANGenerator, KWARGS)  # space again: a normal save
    z = torch.randn(2, 8)
    torch.testing.assert_close(load_model(saved)(z), g.eval()(z))


def test_save_checks_kwargs_before_writing(tmp_path):
    g = DCGANGenerator(**KWARGS)
    with pytest.raises(TypeError, match="kwargs do not fit"):
        save_model(tmp_path / "G", g, DCGANGenerator, {**KWARGS, "bogus": 1})
    with pytest.raises(TypeError, match="model is a DCGANGenerator"):
        save_model(tmp_path / "G", g, "nda.models.gan.ResNetGenerator", {})
    assert not (tmp_path / "G").exists()
