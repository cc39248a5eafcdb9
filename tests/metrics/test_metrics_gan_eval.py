"""Cached reference statistics and the GAN evaluation functions (fid_kid, discriminator_anomaly).

The cache logic does not depend on the extractor, so these tests use the shipped CIFAR-10 classifier
(milliseconds per batch) wrapped in a counter that proves when features were (not) computed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nda.data.images import load_images
from nda.metrics.extractors import CifarClassifierExtractor
from nda.metrics.gan_eval import discriminator_anomaly, fid_kid
from nda.metrics.reference import load_reference_stats, reference_stats


class Counting:
    """An extractor that counts the images it has seen."""

    def __init__(self, inner, name: str | None = None) -> None:
        self.inner, self.name, self.dim, self.images = inner, name or inner.name, inner.dim, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        return self.inner(x)


@pytest.fixture(scope="module")
def classifier():
    return CifarClassifierExtractor()


@pytest.fixture(scope="module")
def digits():
    return load_images("digits", "test", 32, 3).images, load_images("digits", "train", 32, 3).images


def test_reference_stats_are_cached_and_invalidated_by_n_split_content_and_extractor(classifier, digits, tmp_path):
    test, train = digits
    ext = Counting(classifier)
    first = reference_stats(ext, test, split="test", dataset="digits", num_images=40, cache_dir=tmp_path)
    assert first.computed and ext.images == 40 and first.features.shape == (40, classifier.dim)
    again = reference_stats(ext, test, split="test", dataset="digits", num_images=40, cache_dir=tmp_path)
    assert not again.computed and ext.images == 40  # reused: the extractor did not run
    assert np.array_equal(again.mu, first.mu) and np.array_equal(again.sigma, first.sigma)
    assert np.array_equal(again.features, first.features)
    # any part of the key changes -> computed again
    assert reference_stats(ext, test, split="test", num_images=50, cache_dir=tmp_path).computed and ext.images == 90
    assert reference_stats(ext, test, split="val", num_images=40, cache_dir=tmp_path).computed and ext.images == 130
    assert reference_stats(ext, train, split="test", num_images=40, cache_dir=tmp_path).computed and ext.images == 170
    other = Counting(classifier, name="cifar10-classifier@00000000")  # other weights = another feature space
    assert reference_stats(other, test, split="test", num_images=40, cache_dir=tmp_path).computed and other.images == 40
    small = load_images("digits", "test", 16, 3).images  # another image size
    assert reference_stats(ext, small, split="test", num_images=40, cache_dir=tmp_path).computed and ext.images == 210
    # and each of them is now cached as well
    assert not reference_stats(ext, test, split="val", num_images=40, cache_dir=tmp_path).computed and ext.images == 210
    assert len(list((tmp_path / "fid_stats").glob("*.npz"))) == 6


def test_reference_stats_files_are_pytorch_fid_npz_plus_json_without_pickle(classifier, digits, tmp_path):
    stats = reference_stats(classifier, digits[0], split="test", dataset="digits", num_images=50, cache_dir=tmp_path)
    with np.load(stats.path, allow_pickle=False) as npz:  # what pytorch-fid reads: mu, sigma
        assert npz["mu"].shape == (classifier.dim,) and npz["sigma"].shape == (classifier.dim,) * 2
        assert npz["features"].dtype == np.float32
    meta = json.loads(stats.path.with_suffix(".json").read_text())
    assert meta["extractor"] == classifier.name and meta["num_images"] == 50 and meta["split"] == "test"
    assert meta["image_shape"] == [3, 32, 32] and len(meta["images_sha256"]) == 64
    loaded = load_reference_stats(stats.path)
    assert loaded.meta() == stats.meta() and loaded.path == stats.path and not loaded.computed
    assert all(np.array_equal(getattr(loaded, k), getattr(stats, k)) for k in ("mu", "sigma", "features"))
    assert stats.describe() == "digits/test (50 images)"


def test_a_damaged_cache_entry_is_recomputed(classifier, digits, tmp_path):
    ext = Counting(classifier)
    stats = reference_stats(ext, digits[0], split="test", num_images=50, cache_dir=tmp_path)
    stats.path.write_bytes(stats.path.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="unreadable"):
        again = reference_stats(ext, digits[0], split="test", num_images=50, cache_dir=tmp_path)
    assert again.computed and ext.images == 100 and np.array_equal(again.mu, stats.mu)
    assert not reference_stats(ext, digits[0], split="test", num_images=50, cache_dir=tmp_path).computed


def test_reference_stats_input_errors(classifier, digits, tmp_path):
    with pytest.raises(ValueError, match="num_images"):
        reference_stats(classifier, digits[0], split="test", num_images=10_000, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="split"):
        reference_stats(classifier, digits[0], split="", cache_dir=tmp_path)
    with pytest.raises(TypeError, match="name"):
        reference_stats(lambda x: x, digits[0], split="test", cache_dir=tmp_path)


def test_fid_kid_from_cached_stats_equals_fid_kid_from_images(classifier, digits, tmp_path):
    test, train = digits
    fake = train[:200]
    from_images = fid_kid(classifier, fake, test, 200, "cpu", kid_subsets=5, kid_subset_size=100,
                          reference_name="digits/test")
    stats = reference_stats(classifier, test, split="test", dataset="digits", cache_dir=tmp_path)
    from_stats = fid_kid(classifier, fake, stats, 200, "cpu", kid_subsets=5, kid_subset_size=100)
    assert from_stats["fid"]["value"] == from_images["fid"]["value"] > 0
    assert from_stats["kid"]["value"] == from_images["kid"]["value"]
    assert from_stats["fid"]["reference"] == from_images["fid"]["reference"] == f"digits/test ({len(test)} images)"
    assert from_stats["fid"]["extractor"] == classifier.name and from_stats["fid"]["n_generated"] == 200
    calls = iter(range(0, 200, 64))

    def sampler(n: int) -> torch.Tensor:
        i = next(calls)
        return fake[i : i + n]

    from_sampler = fid_kid(classifier, sampler, stats, 200, "cpu", batch_size=64, kid_subsets=5, kid_subset_size=100)
    assert from_sampler["fid"]["value"] == pytest.approx(from_stats["fid"]["value"], rel=1e-9)
    with pytest.raises(ValueError, match="feature spaces"):
        fid_kid(Counting(classifier, name="inception-v3-fid@7ff4a85c"), fake, stats, 200, "cpu")
    with pytest.raises(TypeError, match="reference"):
        fid_kid(classifier, fake, stats.mu, 200, "cpu")
    self_fid = fid_kid(classifier, test, stats, len(test), "cpu", kid_subsets=5, kid_subset_size=100)
    assert self_fid["fid"]["value"] == pytest.approx(0.0, abs=1e-6)


class TotalVariationD(torch.nn.Module):
    """A stand-in discriminator: D(x) = -total variation, so -D(x) flags noisy images and not blurred ones."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tv = (x[..., 1:, :] - x[..., :-1, :]).abs().mean((1, 2, 3)) + (x[..., 1:] - x[..., :-1]).abs().mean((1, 2, 3))
        return -tv[:, None]


def test_discriminator_anomaly_scores_each_ood_set(digits):
    images = digits[0][:64]
    res = discriminator_anomaly(TotalVariationD(), images, "digits/test", "cpu", severity=3, include_digits=False)
    auroc = res["auroc"]
    assert set(auroc) == {f"{n} (severity 3)" for n in ("gaussian_noise", "gaussian_blur", "contrast", "jpeg")}
    # noise raises the total variation of every image, blur lowers it: far above and below chance
    assert auroc["gaussian_noise (severity 3)"] > 0.9 and auroc["gaussian_blur (severity 3)"] < 0.5
    assert res["in"] == "digits/test (64 images)" and res["score"].startswith("-D(x)")
    again = discriminator_anomaly(TotalVariationD(), images, "digits/test", "cpu", include_digits=False)
    assert again == res  # seeded
    with_digits = discriminator_anomaly(TotalVariationD(), images, "digits/test", "cpu", image_size=32)
    assert "digits (upscaled)" in with_digits["auroc"]
    conditional = TotalVariationD()
    conditional.num_classes = 10
    assert "skipped" in discriminator_anomaly(conditional, images, "digits/test", "cpu")
