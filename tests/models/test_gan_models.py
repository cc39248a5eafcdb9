"""GAN models, EMA, image loading and corruptions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nda.data.corruptions import CORRUPTIONS, contrast, corrupt, gaussian_noise
from nda.data.images import ImageData, load_images, to_float, to_uint8
from nda.models.gan import EMA, build_gan


@pytest.mark.parametrize("arch", ["sngan", "dcgan"])
@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("classes", [0, 10])
def test_gan_shapes_and_range(arch, size, classes):
    torch.manual_seed(0)
    G, D = build_gan(arch, z_dim=16, g_ch=8, d_ch=8, image_size=size, channels=3, num_classes=classes)
    y = torch.randint(0, 10, (4,)) if classes else None
    x = G(torch.randn(4, 16), y)
    assert x.shape == (4, 3, size, size) and x.abs().max() <= 1
    assert D(x, y).shape == (4,)


def test_gan_errors():
    with pytest.raises(ValueError, match="image_size"):
        build_gan("sngan", z_dim=8, g_ch=8, d_ch=8, image_size=48, channels=3)
    with pytest.raises(ValueError, match="arch"):
        build_gan("vae", z_dim=8, g_ch=8, d_ch=8, image_size=32, channels=3)
    G, D = build_gan("dcgan", z_dim=8, g_ch=8, d_ch=8, image_size=16, channels=1, num_classes=3)
    with pytest.raises(ValueError, match="labels"):
        G(torch.randn(2, 8))


def test_ema_warmup_and_average():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # n=1: decay min(0.9, 2/11) -> w = 0 + (1 - 2/11) * 1
    assert ema.model.weight.item() == pytest.approx(1 - 2 / 11)
    for _ in range(200):
        ema.update(model)
    assert ema.model.weight.item() == pytest.approx(1.0, abs=1e-6)
    state = ema.state_dict()
    other = EMA(torch.nn.Linear(1, 1, bias=False), decay=0.5)
    other.load_state_dict(state)
    assert other.num_updates == 201 and other.decay == 0.9


def test_load_digits():
    train, test, full = load_images(), load_images("digits", "test"), load_images("digits", "all", 16, 3)
    assert isinstance(train, ImageData) and train.images.dtype == torch.uint8
    assert train.images.shape[1:] == (1, 32, 32) and len(train) + len(test) == 1797
    assert full.images.shape == (1797, 3, 16, 16) and full.num_classes == 10
    assert int(full.images.max()) == 255 and set(full.labels.tolist()) == set(range(10))
    assert len(load_images("digits", limit=50)) == 50
    with pytest.raises(ValueError, match="split"):
        load_images("digits", "validation")


def _write_folder(root, layout_split: bool):
    rng = np.random.default_rng(0)
    base = root / "train" if layout_split else root
    for cls in ("cat", "dog"):
        for i in range(3):
            (base / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(base / cls / f"{i}.png")
    if layout_split:
        (root / "test" / "cat").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "test" / "cat" / "0.png")


def test_load_image_folder(tmp_path):
    root = tmp_path / "data"
    _write_folder(root, layout_split=True)
    data = load_images(root, "train", cache_dir=tmp_path / "cache")
    assert data.images.shape == (6, 3, 8, 8) and data.classes == ["cat", "dog"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    png = np.array(Image.open(root / "train" / "dog" / "1.png"))
    assert torch.equal(data.images[4], torch.from_numpy(png).permute(2, 0, 1))
    again = load_images(root, "train", cache_dir=tmp_path / "cache")  # from the .npy cache
    assert torch.equal(again.images, data.images) and list((tmp_path / "cache" / "arrays").glob("*.npy"))
    small = load_images(root, "test", image_size=4, channels=1, cache_dir=tmp_path / "cache")
    assert small.images.shape == (1, 1, 4, 4)
    with pytest.raises(ValueError, match="available splits"):
        load_images(root, "val", cache_dir=tmp_path / "cache")
    flat = tmp_path / "flat"
    _write_folder(flat, layout_split=False)
    assert len(load_images(flat, cache_dir=tmp_path / "cache")) == 6
    with pytest.raises(ValueError, match="no split sub-folders"):
        load_images(flat, "test", cache_dir=tmp_path / "cache")
    samples = tmp_path / "samples"  # a flat folder of (generated) images: unlabelled
    samples.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), 10 * i, np.uint8)).save(samples / f"{i}.png")
    flat_samples = load_images(samples, "all", cache_dir=tmp_path / "cache")
    assert flat_samples.images.shape == (4, 1, 8, 8) and flat_samples.labels.tolist() == [-1] * 4
    empty = tmp_path / "empty" / "cls"
    empty.mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        load_images(tmp_path / "empty", cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError):
        load_images(str(tmp_path / "missing" / "dir.tar.gz"))


def test_folder_cache_sees_rewritten_and_added_images(tmp_path):
    # regression: folders were cached under their own mtime, which does not change when a file inside is
    # rewritten (regenerated samples, same names) or a file is added to a class sub-folder: stale arrays
    import os

    samples, cache = tmp_path / "samples", tmp_path / "cache"
    samples.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8), 10 * i, np.uint8)).save(samples / f"{i}.png")
    assert int(load_images(samples, "all", cache_dir=cache).images[0].max()) == 0
    folder_times = (samples.stat().st_atime_ns, samples.stat().st_mtime_ns)
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(samples / "0.png")
    st = (samples / "0.png").stat()
    os.utime(samples / "0.png", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    os.utime(samples, ns=folder_times)  # the folder itself looks untouched
    assert int(load_images(samples, "all", cache_dir=cache).images[0].max()) == 200
    root = tmp_path / "data"
    _write_folder(root, layout_split=True)
    assert len(load_images(root, "train", cache_dir=cache)) == 6
    root_times = (root.stat().st_atime_ns, root.stat().st_mtime_ns)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "cat" / "new.png")
    os.utime(root, ns=root_times)
    assert len(load_images(root, "train", cache_dir=cache)) == 7


def test_tarball_source(tmp_path):
    import tarfile

    root = tmp_path / "ds"
    _write_folder(root, layout_split=True)
    tar = tmp_path / "ds.tar.gz"
    with tarfile.open(tar, "w:gz") as fh:
        fh.add(root, arcname="ds")
    data = load_images(tar, "train", cache_dir=tmp_path / "cache")
    assert data.images.shape == (6, 3, 8, 8) and data.classes == ["cat", "dog"]


def test_float_uint8_round_trip():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    f = to_float(x)
    assert f.min() == -1 and f.max() == 1
    assert torch.equal(to_uint8(f), x)


def test_corruptions():
    x = load_images("digits", "test", 32, 3, limit=16).images
    g = torch.Generator().manual_seed(0)
    for name in CORRUPTIONS:
        out = corrupt(x, name, 3, generator=torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.dtype == torch.uint8 and not torch.equal(out, x), name
    a = gaussian_noise(x, 2, generator=torch.Generator().manual_seed(1))
    b = gaussian_noise(x, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert contrast(x, 5).float().std() < contrast(x, 1).float().std() < x.float().std()
    with pytest.raises(ValueError, match="severity"):
        corrupt(x, "jpeg", 6, generator=g)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(x, "fog")


def test_contrast_uses_per_channel_means_as_cifar10c():
    # CIFAR-10-C: means over (H, W) per channel; flat channels are then left unchanged
    x = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    x[:, 0], x[:, 1], x[:, 2] = 200, 0, 100
    assert torch.equal(contrast(x, 3), x)
    y = torch.tensor([[0, 100], [100, 200]], dtype=torch.uint8).view(1, 1, 2, 2)  # mean 100, factor 0.4
    assert contrast(y, 3).view(-1).tolist() == [60, 100, 100, 140]


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_gaussian_blur_matches_skimage_settings(severity):
    # CIFAR-10-C blurs with skimage.filters.gaussian: scipy's gaussian_filter, mode="nearest", truncate=4
    from scipy.ndimage import gaussian_filter

    from nda.data.corruptions import _BLUR, gaussian_blur

    x = torch.randint(0, 256, (2, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    sigma = _BLUR[severity - 1]
    ref = gaussian_filter(x.double().numpy() / 255.0, sigma=(0, 0, sigma, sigma), mode="nearest", truncate=4.0)
    ref = torch.from_numpy(np.clip(np.round(ref * 255.0), 0, 255))
    assert (gaussian_blur(x, severity).double() - ref).abs().max() <= 1


# ------------------------------------------------------------------ D/G steps (nda.models.gan_train), config
def test_models_rebuild_from_their_config():
    for arch in ("sngan", "dcgan"):
        G, D = build_gan(arch, z_dim=16, g_ch=8, d_ch=8, image_size=16, channels=3, num_classes=4)
        for model in (G, D):
            again = type(model)(**model.config())
            assert again.config() == model.config()
            again.load_state_dict(model.state_dict())  # same layout


class _RecordingD(torch.nn.Module):
    """A discriminator that remembers what it was shown."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, x, y=None):
        self.seen.append(x.detach().clone())
        return x.flatten(1).mean(1) * self.w


def _d_inputs(negative, augment, mode="separate"):
    import nda
    from nda.models.gan_train import discriminator_step
    from nda.objectives import DiscriminatorNegativeLoss

    torch.manual_seed(0)
    G, _ = build_gan("dcgan", z_dim=8, g_ch=4, d_ch=4, image_size=16, channels=1)
    D = _RecordingD()
    real = torch.randint(0, 256, (6, 1, 16, 16), dtype=torch.uint8)
    crit = DiscriminatorNegativeLoss(mode=mode) if negative else DiscriminatorNegativeLoss.plain()
    parts = discriminator_step(
        G, D, crit, real, z=torch.randn(6, 8, generator=torch.Generator().manual_seed(1)),
        negative=nda.build(negative) if negative else None, nda_generator=torch.Generator().manual_seed(2),
        augment=nda.build(augment) if augment else None, augment_generator=torch.Generator().manual_seed(3))
    assert D.w.grad is not None and all(torch.isfinite(v) for v in parts.values())
    return D.seen[0].split(6), real, parts


def test_augment_changes_what_d_sees_and_not_the_nda_path():
    (r0, f0, n0), real, parts = _d_inputs("jigsaw", None)
    (r1, f1, n1), _, _ = _d_inputs("jigsaw", "shift")
    assert torch.equal(r0, to_float(real)) and "loss_d_negative" in parts
    assert not torch.equal(r1, r0) and not torch.equal(f1, f0)  # real AND fake augmented
    assert torch.equal(n1, n0)  # the NDA samples: the same draws from the un-augmented real batch
    # jigsaw as a positive: reals are jigsawed, and no negative term exists
    (r2, f2), _, parts = _d_inputs(None, "jigsaw")
    assert not torch.equal(r2, r0) and "loss_d_negative" not in parts
    assert torch.equal(torch.sort(r2.flatten(1)).values, torch.sort(r0.flatten(1)).values)  # same pixels, moved


def test_augment_p_and_real_fake_draws_are_independent():
    from nda.models.gan_train import augment_images
    from nda.vision import Shift

    x = torch.rand(64, 1, 8, 8)
    never = augment_images(Shift(), x, torch.Generator().manual_seed(0), p=1e-9)
    assert torch.equal(never, x)
    some = augment_images(Shift(), x, torch.Generator().manual_seed(0), p=0.5)
    changed = (some != x).flatten(1).any(1).float().mean().item()
    assert 0.2 < changed < 0.8
    g = torch.Generator().manual_seed(0)
    a, b = augment_images(Shift(), x, g), augment_images(Shift(), x, g)  # consecutive draws: real, then fake
    assert not torch.equal(a, b)


@pytest.mark.parametrize("spec", ["jigsaw", "shift", "rotate", "cutout", "stitch", "cutmix", "mixup"])
def test_generator_step_backpropagates_through_the_augmentation(spec):
    import nda
    from nda.models.gan_train import generator_step

    torch.manual_seed(0)
    G, D = build_gan("dcgan", z_dim=8, g_ch=4, d_ch=4, image_size=16, channels=1)
    out = generator_step(G, D, "hinge", z=torch.randn(4, 8), augment=nda.build(spec),
                         augment_generator=torch.Generator().manual_seed(0))
    grads = [p.grad for p in G.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    assert torch.isfinite(out["loss_g"])
