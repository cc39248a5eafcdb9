"""Images loaded as they are, and image caches that never serve old or mixed data (issue 17, items 2-4).

Each test reproduces a reported failure: 16-bit PNGs clipped to white, the first file deciding a folder's
channel count, tarball links silently dropped, a repeated member name giving an all-black row, an image cache
returning an old array for new data or mixing two data sets, and a write error naming no file.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

import nda.data.cache as cache_mod
from nda.cli import load_image_folder
from nda.data.cache import CacheWriteError
from nda.data.images import build_image_cache, load_images, open_image_cache

RAMP16 = np.linspace(0, 65535, 16 * 16).round().astype(np.uint16).reshape(16, 16)


def _expected16(a: np.ndarray) -> np.ndarray:
    return ((a.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)


def _load(folder, tmp_path, **kw):
    return load_images(folder, cache_dir=tmp_path / "cache", **kw)


# ------------------------------------------------------------------------------------------ bit depth
def test_16_bit_png_is_rescaled_not_clipped(tmp_path):
    (tmp_path / "d").mkdir()
    for i in range(2):
        Image.fromarray(RAMP16).save(tmp_path / "d" / f"{i}.png")
    assert Image.open(tmp_path / "d" / "0.png").mode.startswith("I")
    data = _load(tmp_path / "d", tmp_path)
    assert data.channels == 1
    assert np.array_equal(data.images[0, 0].numpy(), _expected16(RAMP16))
    assert abs(data.images.float().mean().item() - 127.5) < 0.5  # was 254.5: everything above 255 clipped


def _rgba() -> np.ndarray:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (6, 6, 4), dtype=np.uint8)
    a[0, 0, 3], a[0, 1, 3] = 0, 255  # fully transparent and opaque pixels
    return a


def _case(mode: str):
    """(PIL image to save, file name, channels to load with, expected HxWxC uint8)."""
    rng = np.random.default_rng(1)
    if mode == "I":
        a = RAMP16.astype(np.int32)
        return Image.fromarray(a, "I"), "x.tif", 1, _expected16(a)[..., None]
    if mode == "F01":
        a = rng.random((6, 6)).astype(np.float32)
        return Image.fromarray(a, "F"), "x.tif", 1, np.rint(a.astype(np.float64) * 255).astype(np.uint8)[..., None]
    if mode == "F255":
        a = (rng.random((6, 6)) * 255).astype(np.float32)
        a[0, 0] = 255.0
        return Image.fromarray(a, "F"), "x.tif", 1, np.rint(a).astype(np.uint8)[..., None]
    if mode == "P":  # a palette whose entry 3 is transparent: composited over black
        idx = rng.integers(0, 4, (6, 6), dtype=np.uint8)
        palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], np.uint8)
        im = Image.fromarray(idx, "P")
        im.putpalette(palette.flatten().tolist())
        im.info["transparency"] = 3
        return im, "x.png", 3, np.where((idx == 3)[..., None], 0, palette[idx]).astype(np.uint8)
    if mode == "RGBA":
        a = _rgba()
        expected = ((a[..., :3].astype(np.uint16) * a[..., 3:] + 127) // 255).astype(np.uint8)
        return Image.fromarray(a, "RGBA"), "x.png", 3, expected
    if mode == "LA":
        a = _rgba()[..., 2:]
        expected = ((a[..., :1].astype(np.uint16) * a[..., 1:] + 127) // 255).astype(np.uint8)
        return Image.fromarray(a, "LA"), "x.png", 1, expected
    if mode == "CMYK":
        a = rng.integers(0, 256, (6, 6, 4), dtype=np.uint8)
        im = Image.fromarray(a, "CMYK")
        return im, "x.tif", 3, np.asarray(im.convert("RGB"))
    if mode == "1":
        a = rng.integers(0, 2, (6, 6)).astype(bool)
        return Image.fromarray(a), "x.png", 1, (a * 255).astype(np.uint8)[..., None]
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", ["I", "F01", "F255", "P", "RGBA", "LA", "CMYK", "1"])
def test_pixel_formats_are_decoded_as_they_are(tmp_path, mode, caplog):
    im, name, channels, expected = _case(mode)
    (tmp_path / "d").mkdir()
    im.save(tmp_path / "d" / name)
    with caplog.at_level(logging.WARNING, logger="nda.data"):
        data = _load(tmp_path / "d", tmp_path)
    assert data.channels == channels
    assert np.array_equal(data.images[0].permute(1, 2, 0).numpy(), expected)
    assert any("converted 1 of 1 images" in r.getMessage() and name in r.getMessage() for r in caplog.records)


def test_float_pixels_out_of_range_are_an_error_naming_the_file(tmp_path):
    (tmp_path / "d").mkdir()
    Image.fromarray(np.full((4, 4), -3.0, np.float32), "F").save(tmp_path / "d" / "neg.tif")
    with pytest.raises(ValueError, match=r"cannot decode image .*neg\.tif: float pixels in \[-3, -3\]"):
        _load(tmp_path / "d", tmp_path)


def test_cli_preview_reads_16_bit_images_like_the_loader(tmp_path):
    (tmp_path / "d").mkdir()
    Image.fromarray(RAMP16).save(tmp_path / "d" / "ramp.png")
    x = load_image_folder(tmp_path / "d", 1, 16)
    assert x.shape == (1, 3, 16, 16) and abs(x.float().mean().item() - 127.5) < 2  # was 254


# ------------------------------------------------------------------------------------------- channels
def _mixed(root, n_gray=1, n_rgb=5):
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n_gray):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / f"0_gray{i}.png")
    for i in range(n_rgb):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / f"1_rgb{i}.png")


def test_channel_count_is_the_majority_not_the_first_file(tmp_path, caplog):
    _mixed(tmp_path / "d")
    with caplog.at_level(logging.WARNING, logger="nda.data"):
        data = _load(tmp_path / "d", tmp_path)
    assert data.channels == 3 and len(data) == 6  # the first file (sorted) is the grayscale one
    gray = np.asarray(Image.open(tmp_path / "d" / "0_gray0.png"))
    assert all(np.array_equal(data.images[0, c].numpy(), gray) for c in range(3))
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "1 grayscale and 5 colour images" in text and "converted 1 of 6 images" in text
    assert _load(tmp_path / "d", tmp_path, channels=1).channels == 1  # an explicit choice wins
    _mixed(tmp_path / "g", n_gray=4, n_rgb=1)
    assert _load(tmp_path / "g", tmp_path).channels == 1


def test_image_size_is_the_most_common_one_and_a_resize_is_logged(tmp_path, caplog):
    (tmp_path / "d").mkdir()
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(tmp_path / "d" / "0_odd.png")  # sorted first
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 50 * i, np.uint8)).save(tmp_path / "d" / f"1_{i}.png")
    with caplog.at_level(logging.WARNING, logger="nda.data"):
        data = _load(tmp_path / "d", tmp_path)
    assert data.images.shape == (4, 3, 8, 8)  # the first file's 10x12 used to decide
    assert "1 of 4 images are not 8x8" in " ".join(r.getMessage() for r in caplog.records)


# -------------------------------------------------------------------------------------------- tarballs
def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _tar(path, members):
    """members: (name, bytes) regular files, (name, "->", target) symlinks, (name, "=>", target) hard links."""
    with tarfile.open(path, "w") as tar:
        for m in members:
            info = tarfile.TarInfo(m[0])
            if len(m) == 2:
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
            else:
                info.type = tarfile.SYMTYPE if m[1] == "->" else tarfile.LNKTYPE
                info.linkname = m[2]
                tar.addfile(info)
    return path


def test_tarball_resolves_hard_and_symbolic_links_like_its_folder(tmp_path):
    cls = tmp_path / "links" / "train" / "cat"
    cls.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(cls / f"{i:03d}.png")
    os.link(cls / "005.png", cls / "000a_hard.png")  # tar stores 000a_hard.png as the file, 005.png as the link
    os.symlink("003.png", cls / "zz_sym.png")
    folder = _load(tmp_path / "links", tmp_path)
    with tarfile.open(tmp_path / "links.tar", "w") as tar:
        tar.add(tmp_path / "links", arcname="links")
    packed = _load(tmp_path / "links.tar", tmp_path)
    assert len(folder) == len(packed) == 14  # the tarball used to load 12
    assert torch.equal(folder.images, packed.images)


@pytest.mark.parametrize("target, message", [
    ("../../../../etc/hosts.png", "outside the archive"),
    ("/etc/hosts.png", "absolute path"),
    ("missing.png", "not a file in the archive"),
])
def test_tarball_links_that_leave_the_archive_or_dangle_are_refused(tmp_path, target, message):
    tar = _tar(tmp_path / "x.tar", [("d/train/a/x.png", _png(9)), ("d/train/a/y.png", "->", target)])
    with pytest.raises(ValueError, match=rf"x\.tar: 'd/train/a/y\.png'.*{message}"):
        _load(tar, tmp_path)


def test_tarball_link_to_a_folder_is_refused(tmp_path):
    tar = _tar(tmp_path / "x.tar", [("d/train/a/x.png", _png(9)), ("d/train/b", "->", "a")])
    with pytest.raises(ValueError, match=r"'d/train/b' links to the folder 'd/train/a'"):
        _load(tar, tmp_path)


def test_tarball_with_a_repeated_member_name_is_refused(tmp_path):
    tar = _tar(tmp_path / "dup.tar", [("d/train/a/x.png", _png(200)), ("d/train/a/y.png", _png(200)),
                                      ("d/train/a/x.png", _png(100))])
    with pytest.raises(ValueError, match=r"dup\.tar has two members named 'd/train/a/x\.png'"):
        _load(tar, tmp_path)  # used to give 3 rows, the first all black


def test_broken_link_in_a_folder_is_an_error(tmp_path):
    (tmp_path / "d").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "d" / "a.png")
    os.symlink("gone.png", tmp_path / "d" / "b.png")
    with pytest.raises(ValueError, match=r"b\.png is a broken link"):
        _load(tmp_path / "d", tmp_path)


# --------------------------------------------------------------------------------------------- caches
def _blocks(value: int, n: int = 6, fail_at: int | None = None):
    def chunks(start):
        for a in range(start, n, 2):
            if fail_at is not None and a >= fail_at:
                raise RuntimeError("interrupted")
            yield np.full((min(2, n - a), 1, 2, 2), value + a, np.uint8)
    return chunks


def _values(path) -> list[int]:
    return open_image_cache(path).images[:, 0, 0, 0].tolist()


def test_build_image_cache_never_returns_an_old_array_for_new_data(tmp_path):
    base = tmp_path / "synth"
    assert _values(build_image_cache(base, _blocks(0), 6, (1, 2, 2))) == [0, 0, 2, 2, 4, 4]
    assert _values(build_image_cache(base, _blocks(100), 6, (1, 2, 2))) == [100, 100, 102, 102, 104, 104]
    assert _values(build_image_cache(base, _blocks(50), 6, (1, 2, 2), key="fifty")) == [50, 50, 52, 52, 54, 54]
    calls = []
    reused = build_image_cache(base, lambda s: calls.append(s) or _blocks(50)(s), 6, (1, 2, 2), key="fifty")
    assert calls == [] and _values(reused) == [50, 50, 52, 52, 54, 54]  # same key: reused, not rebuilt
    relabelled = build_image_cache(base, _blocks(50), 6, (1, 2, 2), labels=np.arange(6), key="fifty")
    assert open_image_cache(relabelled).labels.tolist() == list(range(6))


def test_interrupted_build_never_mixes_two_data_sets(tmp_path):
    base = tmp_path / "synth"
    with pytest.raises(RuntimeError):  # rows 0-3 of data set A are written, then the build dies
        build_image_cache(base, _blocks(0, fail_at=4), 6, (1, 2, 2))
    assert _values(build_image_cache(base, _blocks(100), 6, (1, 2, 2))) == [100, 100, 102, 102, 104, 104]  # B only
    with pytest.raises(RuntimeError):
        build_image_cache(base, _blocks(0, fail_at=4), 6, (1, 2, 2), key="a")
    assert _values(build_image_cache(base, _blocks(100), 6, (1, 2, 2), key="b")) == [100, 100, 102, 102, 104, 104]


def test_tampered_labels_are_detected_on_read(tmp_path):
    path = build_image_cache(tmp_path / "synth", _blocks(0), 6, (1, 2, 2), labels=np.arange(6), key="k")
    labels = path.with_name("synth.labels.npy")
    np.save(labels, np.arange(6)[::-1].copy())
    with pytest.raises(ValueError, match="labels do not match"):
        open_image_cache(path)


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
def test_write_error_during_a_build_names_the_file(tmp_path, monkeypatch, code):
    (tmp_path / "d").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "d" / "a.png")

    def fails(fd, data, pos):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(cache_mod.os, "pwrite", fails)
    with pytest.raises(CacheWriteError) as info:
        _load(tmp_path / "d", tmp_path)
    err = info.value
    assert err.errno == code and err.filename.endswith(".images.npy.part") and "\n" not in str(err)
    assert err.filename in str(err) and isinstance(err, OSError)
    if code == errno.ENOSPC:
        assert "no space left" in str(err) and "NDA_CACHE" in str(err)
    again = pickle.loads(pickle.dumps(err))  # crosses process boundaries intact
    assert type(again) is CacheWriteError and (again.errno, again.filename, str(again)) == (code, err.filename, str(err))


def test_hf_dataset_channel_count_is_the_majority(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)
    cells = [Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8))] + \
        [Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)) for _ in range(3)]
    ds = datasets.Dataset.from_dict({"image": cells}).cast_column("image", datasets.Image())
    data = load_images(ds, "train", cache_dir=tmp_path / "c")
    assert data.channels == 3  # the first row alone used to decide: 1
    assert torch.equal(data.images[1], torch.from_numpy(np.array(cells[1])).permute(2, 0, 1))
