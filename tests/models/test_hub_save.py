"""Final models (GAN, MoCo, CIFAR classifier) saved by nda.run.save_model load with the Hub's own
``Class.from_pretrained(folder)`` and are ready for ``push_to_hub`` (never called here: no network)."""

from __future__ import annotations

import json

import pytest
import torch

from nda.models.cifar_classifier import CifarClassifier
from nda.models.gan import DCGANDiscriminator, DCGANGenerator, EMA, ResNetDiscriminator, ResNetGenerator
from nda.models.moco import MoCo
from nda.models.registry import HubModel, registered_models
from nda.run import load_model, save_model

CASES = [
    (ResNetGenerator, {"z_dim": 8, "ch": 8, "image_size": 16, "channels": 3, "num_classes": 2}),
    (ResNetDiscriminator, {"ch": 8, "image_size": 16, "channels": 3, "num_classes": 2}),
    (DCGANGenerator, {"z_dim": 8, "ch": 4, "image_size": 16, "channels": 1, "num_classes": 0}),
    (DCGANDiscriminator, {"ch": 4, "image_size": 16, "channels": 1, "num_classes": 0}),
    (MoCo, {"arch": "tiny", "cifar_stem": True, "in_channels": 1, "dim": 8, "hidden_dim": None, "queue_size": 16,
            "momentum": 0.9, "bn": "shuffle", "bn_splits": 1}),
    (CifarClassifier, {"width": 2, "num_classes": 10}),
]


def _perturbed(cls, kwargs):
    """A model whose every tensor (buffers too: BN statistics, spectral-norm vectors, the queue) differs from
    a fresh ``cls(**kwargs)``, so loading the wrong thing cannot pass."""
    torch.manual_seed(0)
    model = cls(**kwargs)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.rand_like(t) + 0.5)
            else:
                t.add_(1)
    return model


@pytest.mark.parametrize("cls,kwargs", CASES, ids=[c.__name__ for c, _ in CASES])
def test_saved_model_loads_with_from_pretrained_and_load_model(cls, kwargs, tmp_path):
    model = _perturbed(cls, kwargs)
    folder = save_model(tmp_path / "m", model, cls, kwargs, meta={"data": "digits", "nda": "jigsaw", "step": 7})
    fresh = cls(**kwargs).state_dict()
    for loaded in (cls.from_pretrained(folder), load_model(folder)):
        assert type(loaded) is cls and not loaded.training
        state = loaded.state_dict()
        assert state.keys() == model.state_dict().keys()
        for k, v in model.state_dict().items():
            assert torch.equal(state[k], v), k
            assert not torch.equal(fresh[k], v), k  # the perturbation reached every tensor
    assert json.loads((folder / "config.json").read_text()) == kwargs
    card = (folder / "README.md").read_text()
    assert "library_name: nda" in card and f"`{cls.__name__}`" in card and "`nda`: `jigsaw`" in card
    assert callable(getattr(model, "push_to_hub", None)) and callable(getattr(model, "save_pretrained", None))


def test_from_pretrained_is_strict_about_missing_tensors(tmp_path):
    """The mixin's default ``strict=False`` would keep random weights for tensors a folder lacks."""
    from safetensors.torch import load_file, save_file

    kwargs = CASES[2][1]
    folder = save_model(tmp_path / "g", DCGANGenerator(**kwargs), DCGANGenerator, kwargs)
    state = load_file(str(folder / "model.safetensors"))
    del state["stem.weight"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(RuntimeError, match="Missing key"):
        DCGANGenerator.from_pretrained(folder)


def test_every_registered_model_is_a_hub_model_and_ema_copies_keep_their_config():
    models = registered_models()
    assert {"nda.models.gan.ResNetGenerator", "nda.models.moco.MoCo"} <= set(models)
    assert all(issubclass(c, HubModel) and issubclass(c, torch.nn.Module) for c in models.values())
    g = DCGANGenerator(**CASES[2][1])
    assert EMA(g).model._hub_mixin_config == CASES[2][1]  # the EMA generator (deep copy) saves the same config
