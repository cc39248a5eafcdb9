"""Regression tests for the numeric arguments of the image negatives (issue 9 item 6): NaN/inf and other
out-of-range values are rejected at construction with a ValueError naming the argument, and MixUp/CutMix with
small alpha return real negatives (finite, never one of the two input images unchanged)."""

from __future__ import annotations

import math

import pytest
import torch

import nda
from nda.vision import CutMix, Cutout, MixUp, Rotate, Shift
from nda.vision.augment import MoCoV2Augment, normalize_images


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int, c: int = 3, h: int = 8, w: int = 8, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    x = torch.rand(b, c, h, w, generator=gen(seed))
    return (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x


# ---------------------------------------------------------------- MixUp
@pytest.mark.parametrize("alpha", [0.01, 1e-3, 1e-6])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_mixup_small_alpha_gives_finite_blends_never_an_input_image(alpha, dtype):
    """Regression: Beta sampling returned NaN for ~14% (alpha=0.01) / ~81% (1e-3) of the samples: NaN images,
    black for uint8; and a weight of exactly 0 or 1 returns a real image unchanged."""
    x = images(256, dtype=dtype)
    t = MixUp(alpha=alpha)
    params = t.sample_params(x, generator=gen(1))
    y = t.apply(x, params)
    lam, partner = params["lam"], params["partner"]
    assert bool(torch.isfinite(lam).all())
    lo, hi = torch.tensor(0.01), torch.tensor(0.99)  # clipped to [min_weight, 1 - min_weight] (float32 values)
    assert bool((lam >= lo).all()) and bool((lam <= hi).all())
    if dtype == torch.float32:
        assert bool(torch.isfinite(y).all())
    else:
        assert not bool((y.flatten(1).amax(1) == 0).any())  # no black images
    same_as_source = (y == x).flatten(1).all(1)
    same_as_partner = (y == x[partner]).flatten(1).all(1)
    assert not bool((same_as_source | same_as_partner).any())


def test_mixup_default_alpha_is_unchanged_by_the_clip():
    x = images(64)
    g = gen(2)
    nda.sampling.derangement(64, generator=g)  # the draws before lam
    raw = nda.sampling.beta(25.0, 25.0, (64,), generator=g)
    assert torch.equal(MixUp().sample_params(x, generator=gen(2))["lam"], raw)


@pytest.mark.parametrize("cls", [MixUp, CutMix])
@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, 0, -1.0, True, "25"])
def test_alpha_must_be_finite_and_positive(cls, bad):
    """Regression: alpha=inf was accepted (MixUp: all-NaN negatives; CutMix: NaN lam silently gave 1x1 boxes)."""
    with pytest.raises(ValueError, match="alpha"):
        cls(alpha=bad)


@pytest.mark.parametrize("bad", [0, -0.1, 0.6, math.nan, math.inf, True])
def test_mixup_min_weight_validation(bad):
    with pytest.raises(ValueError, match="min_weight"):
        MixUp(min_weight=bad)


def test_mixup_min_weight_round_trips_through_build():
    t = nda.build("mixup:alpha=0.5,min_weight=0.1")
    assert isinstance(t, MixUp) and t.min_weight == 0.1
    assert repr(nda.build(t.config())) == repr(t)
    lam = t.sample_params(images(512), generator=gen(0))["lam"]
    assert float(lam.min()) >= 0.1 - 1e-7 and float(lam.max()) <= 0.9 + 1e-7


# ---------------------------------------------------------------- CutMix
@pytest.mark.parametrize("alpha", [0.05, 1e-3])
def test_cutmix_small_alpha_never_returns_the_partner_image(alpha):
    """Regression: lam exactly 0 gave a box over the whole image when the centre fell in the middle: the
    'negative' was the partner, a real image (20 of 512 on 2x2 images at alpha=0.05)."""
    x = images(512, h=2, w=2)
    t = CutMix(alpha=alpha)
    params = t.sample_params(x, generator=gen(0))
    y = t.apply(x, params)
    assert bool(torch.isfinite(params["lam"]).all())
    assert bool((params["height"] * params["width"] < 4).all()) and bool((params["lam"] > 0).all())
    assert not bool((y == x[params["partner"]]).flatten(1).all(1).any())
    assert not bool((y == x).flatten(1).all(1).any())


def test_cutmix_box_caps_on_thin_images_and_rejects_single_pixels():
    for h, w in ((1, 5), (5, 1), (2, 2)):
        x = images(64, h=h, w=w)
        params = CutMix(alpha=1e-3).sample_params(x, generator=gen(1))
        assert bool((params["height"] * params["width"] < h * w).all())
        assert bool((params["height"] >= 1).all() and (params["width"] >= 1).all())
    with pytest.raises(ValueError, match="at least 2 pixels"):
        CutMix()(images(4, h=1, w=1))


# ---------------------------------------------------------------- Cutout, Shift, Rotate
@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(max_size=math.inf), "max_size"),
        (dict(min_size=math.inf, max_size=math.inf), "min_size"),
        (dict(min_size=math.nan), "min_size"),
        (dict(max_size=math.nan), "max_size"),
        (dict(min_size=True), "min_size"),
        (dict(fill=math.nan), "fill"),
        (dict(fill=math.inf), "fill"),
        (dict(fill=-math.inf), "fill"),
        (dict(reference=True), "reference"),
        (dict(reference=32.0), "reference"),
    ],
)
def test_cutout_rejects_non_finite_arguments_up_front(kwargs, name):
    """Regression: max_size=inf was accepted and failed late (OverflowError on the first call); fill=NaN/inf gave
    NaN/inf pixels; reference=True was taken as 1."""
    with pytest.raises(ValueError, match=name):
        Cutout(**kwargs)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(max_shift=math.inf), "max_shift"),
        (dict(min_shift=math.nan), "min_shift"),
        (dict(min_shift=math.inf, max_shift=math.inf), "min_shift"),
        (dict(reference=True), "reference"),
        (dict(max_shift=True), "max_shift"),
    ],
)
def test_shift_rejects_non_finite_arguments_up_front(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Shift(**kwargs)


@pytest.mark.parametrize("angles", [1e39, (60, -1e39), math.inf, (math.nan,)])
def test_rotate_rejects_angles_that_are_not_finite_in_float32(angles):
    """Regression: an angle beyond float32's range became inf on the device and every image NaN."""
    with pytest.raises(ValueError, match="angles"):
        Rotate(angles=angles)
    Rotate(angles=1e30)(images(2))  # large but finite in float32: a (meaningless but valid) rotation


# ---------------------------------------------------------------- MoCo-v2 positive views
@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(brightness=math.nan), "brightness"),
        (dict(contrast=math.inf), "contrast"),
        (dict(saturation=math.nan), "saturation"),
        (dict(ratio=(0.75, math.inf)), "ratio"),
        (dict(scale=(0.2, math.nan)), "scale"),
        (dict(blur_sigma=(0.1, math.inf)), "blur_sigma"),
        (dict(blur_kernel=3.0), "blur_kernel"),
        (dict(blur_kernel=True), "blur_kernel"),
        (dict(mean=(math.nan, 0.5, 0.5)), "mean"),
        (dict(std=(0.0, 0.2, 0.2)), "std"),
        (dict(std=(math.inf, 0.2, 0.2)), "std"),
        (dict(p_flip=math.nan), "p_flip"),
    ],
)
def test_moco_augment_rejects_non_finite_arguments(kwargs, name):
    """Regression: NaN/inf brightness, contrast, saturation gave NaN views; inf ratio/blur_sigma, a float
    kernel size and a zero std were accepted."""
    with pytest.raises(ValueError, match=name):
        MoCoV2Augment(16, **kwargs)


def test_normalize_images_uses_a_given_mean_without_a_std():
    """Regression: passing only ``mean`` (or only ``std``) silently fell back to the defaults for both."""
    x = torch.rand(2, 3, 4, 4)
    mean = (0.1, 0.2, 0.3)
    out = normalize_images(x, mean=mean)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (x - torch.tensor(mean).view(1, 3, 1, 1)) / std)
