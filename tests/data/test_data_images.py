"""The image data layer past RAM: memory-mapped caches, take(), resumable/validated builds, content keys."""

from __future__ import annotations

import json
import os
import pickle
import tarfile
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import nda.data.cache as cache_mod
import nda.data.image_cache as image_cache
import nda.data.image_decode as image_decode
import nda.data.image_sources as image_sources
import nda.data.image_tar as image_tar
from nda.data.images import ImageData, build_image_cache, load_images, open_image_cache
from nda.run import batch_indices


def _folder(root, n_per_class=7, classes=("cat", "dog", "emu"), size=(10, 12), fmt="png", seed=0):
    """``root/train/<class>/<i>.<fmt>`` and a one-class ``root/test``; returns the pixel arrays by path."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for split, n in (("train", n_per_class), ("test", 2)):
        for cls in classes if split == "train" else classes[:1]:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                path = root / split / cls / f"{i:03d}.{fmt}"
                Image.fromarray(arr).save(path)
                pixels[path] = arr
    return pixels


def _patch_open_image(monkeypatch, fn):
    """Replace the file decode where the folder and tar sources call it."""
    for module in (image_sources, image_tar):
        monkeypatch.setattr(module, "open_image", fn)


def _count_decodes(monkeypatch):
    calls = {"n": 0}
    real = image_decode.open_image

    def counting(src, where):
        calls["n"] += 1
        return real(src, where)

    _patch_open_image(monkeypatch, counting)
    return calls


def _entry(cache, split="train"):
    metas = sorted((cache / "arrays").glob(f"*-{split}-*.json"))
    assert len(metas) == 1, metas
    return metas[0].with_suffix("")


# ------------------------------------------------------------------------------------------------ take
@pytest.mark.parametrize("reader", ["mmap", "pread"])
def test_take_equals_the_in_ram_gather(tmp_path, reader):
    _folder(tmp_path / "d")
    ram = load_images(tmp_path / "d", cache_dir=tmp_path / "c", in_memory=True)
    mapped = load_images(tmp_path / "d", cache_dir=tmp_path / "c", in_memory=False, reader=reader)
    assert ram.in_memory and not mapped.in_memory and mapped.reader == reader
    assert (len(mapped), mapped.channels, mapped.image_size, mapped.num_classes) == (21, 3, 10, 3)
    assert mapped.name == ram.name == "d/train" and mapped.classes == ["cat", "dog", "emu"]
    assert torch.equal(mapped.labels, ram.labels) and mapped.labels.tolist() == [0] * 7 + [1] * 7 + [2] * 7
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        idx = torch.randint(0, len(ram), (9,), generator=g)
        expected = ram.images[idx]
        assert torch.equal(mapped.take(idx), expected) and torch.equal(ram.take(idx), expected)
    assert torch.equal(mapped.take([3, 3, 0]), ram.images[[3, 3, 0]])  # lists and repeats
    assert torch.equal(mapped.take(np.array([20])), ram.images[20:21])
    assert mapped.take(torch.zeros(0, dtype=torch.long)).shape == (0, 3, 12, 10) == mapped.take([]).shape
    assert torch.equal(mapped.images, ram.images)  # zero-copy view of the file
    # a limited subset stays memory-mapped behind an index map when asked to
    sub_ram = load_images(tmp_path / "d", cache_dir=tmp_path / "c", limit=8, in_memory=True)
    sub_map = load_images(tmp_path / "d", cache_dir=tmp_path / "c", limit=8, in_memory=False, reader=reader)
    assert not sub_map.in_memory and len(sub_map) == 8 and torch.equal(sub_map.labels, sub_ram.labels)
    assert torch.equal(sub_map.take(torch.arange(8).flip(0)), sub_ram.images.flip(0))
    assert torch.equal(sub_map.images, sub_ram.images)


def test_take_rejects_bad_indices(tmp_path):
    _folder(tmp_path / "d", n_per_class=2)
    for data in (load_images(tmp_path / "d", cache_dir=tmp_path / "c", in_memory=b) for b in (True, False)):
        with pytest.raises(IndexError, match=r"\[0, 6\)"):
            data.take(torch.tensor([0, 6]))
        with pytest.raises(IndexError):
            data.take([-1])
        with pytest.raises(TypeError, match="integers"):
            data.take(torch.tensor([0.0, 1.0]))
        with pytest.raises(ValueError, match="1-D"):
            data.take(torch.zeros(2, 2, dtype=torch.long))


def test_size_decides_ram_or_memory_map(tmp_path, monkeypatch):
    _folder(tmp_path / "d", n_per_class=2)  # 6 images of 3*12*10 = 360 bytes
    assert load_images(tmp_path / "d", cache_dir=tmp_path / "c").in_memory  # far under the 2 GiB default
    monkeypatch.setenv("NDA_IN_MEMORY_MAX_BYTES", str(6 * 360 - 1))
    assert not load_images(tmp_path / "d", cache_dir=tmp_path / "c").in_memory
    monkeypatch.setenv("NDA_IN_MEMORY_MAX_BYTES", str(6 * 360))
    assert load_images(tmp_path / "d", cache_dir=tmp_path / "c").in_memory
    assert not load_images(tmp_path / "d", cache_dir=tmp_path / "c", in_memory=False).in_memory
    monkeypatch.setenv("NDA_IN_MEMORY_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="NDA_IN_MEMORY_MAX_BYTES"):
        load_images(tmp_path / "d", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="reader"):
        load_images(tmp_path / "d", cache_dir=tmp_path / "c", reader="fast")


def test_mapped_data_pickles_by_path(tmp_path):
    _folder(tmp_path / "d", n_per_class=2)
    mapped = load_images(tmp_path / "d", cache_dir=tmp_path / "c", in_memory=False, reader="pread")
    again = pickle.loads(pickle.dumps(mapped))
    assert not again.in_memory and torch.equal(again.take([5, 0]), mapped.take([5, 0]))


# ---------------------------------------------------------------------------------- broken caches
@pytest.mark.parametrize("damage", ["truncate", "extend", "header", "pixels", "no_record"])
def test_damaged_cache_is_detected_and_rebuilt(tmp_path, damage, caplog):
    _folder(tmp_path / "d")
    good = load_images(tmp_path / "d", cache_dir=tmp_path / "c", in_memory=True).images.clone()
    base = _entry(tmp_path / "c")
    path = base.with_name(base.name + ".images.npy")
    size = path.stat().st_size
    if damage == "truncate":
        os.truncate(path, size - 100)
    elif damage == "extend":
        with open(path, "ab") as fh:
            fh.write(b"\0" * 360)
    elif damage == "header":
        with open(path, "r+b") as fh:
            fh.write(b"garbage!")
    elif damage == "pixels":  # same length, different bytes: the digest spot check catches it
        with open(path, "r+b") as fh:
            fh.seek(size - 50)
            fh.write(bytes(50))
    else:  # data present but no completion record: a half-written entry
        base.with_suffix(".json").unlink()
    if damage != "no_record":
        with pytest.raises(ValueError, match="image cache"):
            open_image_cache(base)
    calls = {"n": 0}
    real = image_decode.open_image

    def counting(src, where):
        calls["n"] += 1
        return real(src, where)

    with pytest.MonkeyPatch.context() as mp:
        _patch_open_image(mp, counting)
        rebuilt = load_images(tmp_path / "d", cache_dir=tmp_path / "c", in_memory=False)
    assert calls["n"] == 21  # decoded again (headers are probed without a decode), never read as data
    assert torch.equal(rebuilt.images, good)
    assert open_image_cache(base).nbytes == good.numel()


def test_interrupted_build_resumes_and_partial_file_is_never_data(tmp_path, monkeypatch):
    pixels = _folder(tmp_path / "d")
    monkeypatch.setattr(image_decode, "CHUNK_BYTES", 5 * 360)  # 5 images per chunk: commits after 5, 10, ...
    real = image_decode.open_image
    calls = {"n": 0}

    class Interrupted(Exception):
        pass

    def dies_at_13(src, where):
        calls["n"] += 1
        if calls["n"] == 13:  # 12 decodes done: chunks [0, 5) and [5, 10) are committed
            raise Interrupted
        return real(src, where)

    _patch_open_image(monkeypatch, dies_at_13)
    with pytest.raises(Interrupted):
        load_images(tmp_path / "d", cache_dir=tmp_path / "c")
    arrays = tmp_path / "c" / "arrays"
    records = [p for p in arrays.glob("*.json") if not p.name.endswith(".progress.json")]
    assert not records and not list(arrays.glob("*.images.npy"))  # nothing readable as data
    (part,) = arrays.glob("*.images.npy.part")
    assert json.loads(part.with_name(part.name.replace(".part", ".progress.json")).read_text())["done"] == 10
    counted = _count_decodes(monkeypatch)
    data = load_images(tmp_path / "d", cache_dir=tmp_path / "c", in_memory=False)
    assert counted["n"] == 21 - 10  # resumed: only the images after the last committed chunk
    files = sorted(p for p in pixels if p.parts[-3] == "train")
    expected = torch.from_numpy(np.stack([pixels[p] for p in files])).permute(0, 3, 1, 2)
    assert torch.equal(data.images, expected)
    assert not list(arrays.glob("*.part")) and not list(arrays.glob("*.progress.json"))


def test_tarball_build_resumes_in_stream_order(tmp_path, monkeypatch):
    _folder(tmp_path / "d")
    tar = tmp_path / "d.tar"
    with tarfile.open(tar, "w") as fh:  # members added in reverse: stream order != row order
        for path in sorted((tmp_path / "d").rglob("*"), reverse=True):
            fh.add(path, arcname=str(path.relative_to(tmp_path)), recursive=False)
    reference = load_images(tmp_path / "d", cache_dir=tmp_path / "ref").images
    monkeypatch.setattr(image_decode, "CHUNK_BYTES", 4 * 360)
    real = image_decode.open_image
    calls = {"n": 0}

    def dies(src, where):
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt
        return real(src, where)

    _patch_open_image(monkeypatch, dies)
    with pytest.raises(KeyboardInterrupt):
        load_images(tar, cache_dir=tmp_path / "c")
    counted = _count_decodes(monkeypatch)
    data = load_images(tar, cache_dir=tmp_path / "c")
    assert counted["n"] == 21 - 8  # chunks of 4: 8 images were committed before the interruption
    assert torch.equal(data.images, reference) and data.classes == ["cat", "dog", "emu"]


def test_progress_record_without_its_data_restarts(tmp_path, monkeypatch):
    _folder(tmp_path / "d")
    monkeypatch.setattr(image_decode, "CHUNK_BYTES", 5 * 360)
    real = image_decode.open_image
    state = {"n": 0}

    def dies(src, where):
        state["n"] += 1
        if state["n"] == 9:
            raise RuntimeError("killed")
        return real(src, where)

    _patch_open_image(monkeypatch, dies)
    with pytest.raises(RuntimeError):
        load_images(tmp_path / "d", cache_dir=tmp_path / "c")
    (part,) = (tmp_path / "c" / "arrays").glob("*.images.npy.part")
    os.truncate(part, 1000)  # the data the progress record vouches for is gone
    calls = _count_decodes(monkeypatch)
    data = load_images(tmp_path / "d", cache_dir=tmp_path / "c")
    assert calls["n"] == 21  # started over
    assert torch.equal(data.images, load_images(tmp_path / "d", cache_dir=tmp_path / "ref").images)


# ------------------------------------------------------------------------------------ content keys
def _same_size_rewrite(path, value):
    """Rewrite an image file with other pixels but the same byte size, then restore its atime/mtime."""
    st = path.stat()
    with Image.open(path) as im:
        size, mode = im.size, im.mode
    Image.new(mode, size, (value,) * len(mode)).save(path)
    assert path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_cache_key_changes_with_content_at_same_size_and_mtime(tmp_path, monkeypatch):
    _folder(tmp_path / "d", fmt="bmp")  # BMP: same dimensions -> same byte size
    folder_times = ((tmp_path / "d").stat().st_atime_ns, (tmp_path / "d").stat().st_mtime_ns)
    before = load_images(tmp_path / "d", cache_dir=tmp_path / "c")
    target = tmp_path / "d" / "train" / "dog" / "003.bmp"
    _same_size_rewrite(target, 77)
    os.utime(tmp_path / "d", ns=folder_times)
    after = load_images(tmp_path / "d", cache_dir=tmp_path / "c")
    assert int(after.images[10].min()) == int(after.images[10].max()) == 77  # dog/003 is row 7 + 3
    assert not torch.equal(after.images[10], before.images[10])
    assert torch.equal(after.images[:10], before.images[:10])
    assert len(list((tmp_path / "c" / "arrays").glob("*-train-*.json"))) == 2  # a new key, a new entry

    # a tarball rewritten with the same size and mtime
    tar = tmp_path / "d.tar"
    with tarfile.open(tar, "w") as fh:
        fh.add(tmp_path / "d", arcname="d")
    st = tar.stat()
    first = load_images(tar, cache_dir=tmp_path / "c")
    _same_size_rewrite(target, 200)
    with tarfile.open(tar, "w") as fh:
        fh.add(tmp_path / "d", arcname="d")
    os.utime(tar, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert tar.stat().st_size == st.st_size
    second = load_images(tar, cache_dir=tmp_path / "c")
    assert int(first.images[10].max()) == 77 and int(second.images[10].max()) == 200


def test_unchanged_files_are_not_read_again_unless_asked(tmp_path, monkeypatch):
    _folder(tmp_path / "d", n_per_class=3)
    load_images(tmp_path / "d", cache_dir=tmp_path / "c")
    hashed = {"n": 0}
    real = cache_mod.hash_file

    def counting(path):
        hashed["n"] += 1
        return real(path)

    monkeypatch.setattr(cache_mod, "hash_file", counting)
    load_images(tmp_path / "d", cache_dir=tmp_path / "c")
    assert hashed["n"] == 0  # stat unchanged: digests come from the memo
    monkeypatch.setenv("NDA_CACHE_REHASH", "1")
    load_images(tmp_path / "d", cache_dir=tmp_path / "c")
    assert hashed["n"] == 9


# ------------------------------------------------------------------------------------- bad sources
def test_corrupt_jpeg_fails_naming_the_file(tmp_path):
    _folder(tmp_path / "d", n_per_class=3, fmt="jpg")
    bad = tmp_path / "d" / "train" / "dog" / "001.jpg"
    bad.write_bytes(bad.read_bytes()[:60])  # a truncated JPEG
    with pytest.raises(ValueError, match=r"cannot decode image .*dog/001\.jpg"):
        load_images(tmp_path / "d", cache_dir=tmp_path / "c")
    tar = tmp_path / "d.tar.gz"
    with tarfile.open(tar, "w:gz") as fh:
        fh.add(tmp_path / "d", arcname="d")
    with pytest.raises(ValueError, match=r"d\.tar\.gz:d/train/dog/001\.jpg"):
        load_images(tar, cache_dir=tmp_path / "c")
    bad.unlink()  # removing the file gives a new content key and a clean build
    assert len(load_images(tmp_path / "d", cache_dir=tmp_path / "c")) == 8


def test_hidden_files_are_skipped(tmp_path):
    _folder(tmp_path / "d", n_per_class=2)
    (tmp_path / "d" / "train" / "cat" / "._000.png").write_bytes(b"\0\5\0\7 not an image")  # macOS AppleDouble
    assert len(load_images(tmp_path / "d", cache_dir=tmp_path / "c")) == 6


# ------------------------------------------------------------------------------------ data order
def test_sharded_batches_from_a_memory_mapped_set(tmp_path):
    _folder(tmp_path / "d", n_per_class=12)  # 36 images
    ram = load_images(tmp_path / "d", cache_dir=tmp_path / "c", in_memory=True).images
    rank_data = [load_images(tmp_path / "d", cache_dir=tmp_path / "c", in_memory=False) for _ in range(2)]
    batch, world = 4, 2
    per_epoch = len(ram) // (batch * world)
    seen = []
    for step in range(per_epoch):
        shards = [batch_indices(step, len(ram), batch, 7, rank, world) for rank in range(world)]
        assert not set(shards[0].tolist()) & set(shards[1].tolist())  # each process reads its own shard
        for rank in range(world):
            assert torch.equal(rank_data[rank].take(shards[rank]), ram[shards[rank]])
        seen += shards[0].tolist() + shards[1].tolist()
    assert len(set(seen)) == len(seen) == per_epoch * batch * world
    # a "resumed" process (a fresh ImageData) at step s reads exactly what the uninterrupted one read
    resumed = load_images(tmp_path / "d", cache_dir=tmp_path / "c", in_memory=False)
    for step in (per_epoch - 1, per_epoch, 3 * per_epoch + 1):
        idx = batch_indices(step, len(ram), batch, 7, 1, world)
        assert torch.equal(resumed.take(idx), rank_data[1].take(idx))


# ----------------------------------------------------------------------------------- other sources
def test_hf_dataset_goes_through_the_same_cache(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(3)
    arrays = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(10)]
    ds = datasets.Dataset.from_dict({"img": [Image.fromarray(a) for a in arrays], "label": [i % 2 for i in range(10)]})
    ds = ds.cast_column("img", datasets.Image()).cast_column("label", datasets.ClassLabel(names=["no", "yes"]))
    data = load_images(ds, "train", cache_dir=tmp_path / "c", in_memory=False)
    assert not data.in_memory and data.classes == ["no", "yes"] and data.labels.tolist() == [0, 1] * 5
    assert torch.equal(data.images, torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))
    assert len(list((tmp_path / "c" / "arrays").glob("*.images.npy"))) == 1
    calls = {"n": 0}
    real = image_decode._decode_one

    def counting(*args):
        calls["n"] += 1
        return real(*args)

    monkeypatch.setattr(image_decode, "_decode_one", counting)  # HF cells arrive decoded: count the conversions
    again = load_images(ds.select(range(10)), "train", cache_dir=tmp_path / "c", image_size=8)
    assert calls["n"] == 10 and torch.equal(again.images, data.images)  # another fingerprint: decoded again
    calls["n"] = 0
    load_images(ds, "train", cache_dir=tmp_path / "c")
    assert calls["n"] == 0


def test_hf_name_falls_back_to_its_last_cache_when_the_hub_is_unreachable(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    arrays = [np.full((4, 4, 3), 9 * i, np.uint8) for i in range(4)]
    ds = datasets.Dataset.from_dict({"image": [Image.fromarray(a) for a in arrays]})
    ds = ds.cast_column("image", datasets.Image())
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: ds)
    online = load_images("hf:someone/tiny", "train", cache_dir=tmp_path / "c")
    assert online.labels.tolist() == [-1] * 4 and int(online.images[3].max()) == 27

    def offline(name, split):
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    assert torch.equal(load_images("hf:someone/tiny", "train", cache_dir=tmp_path / "c").images, online.images)
    with pytest.raises(ValueError, match="could not load 'someone/tiny'"):
        load_images("hf:someone/tiny", "test", cache_dir=tmp_path / "c")  # never cached: a clear error


def test_build_image_cache_resumes_a_generated_set(tmp_path):
    full = np.random.default_rng(0).integers(0, 256, (50, 3, 4, 4), dtype=np.uint8)
    starts = []

    def chunks(start, fail_at=None):
        starts.append(start)
        for a in range(start, 50, 16):
            if fail_at is not None and a >= fail_at:
                raise RuntimeError("interrupted")
            yield full[a:a + 16]

    with pytest.raises(RuntimeError):
        build_image_cache(tmp_path / "synth", lambda s: chunks(s, fail_at=32), 50, (3, 4, 4),
                          labels=np.arange(50) % 5, classes="abcde", key="synth-v1")
    with pytest.raises(ValueError, match="completion record"):
        open_image_cache(tmp_path / "synth")
    path = build_image_cache(tmp_path / "synth", chunks, 50, (3, 4, 4), labels=np.arange(50) % 5, classes="abcde",
                             key="synth-v1")
    assert starts == [0, 32]
    data = open_image_cache(path, in_memory=False)
    assert torch.equal(data.images, torch.from_numpy(full)) and data.num_classes == 5
    assert torch.equal(data.take([49, 0]), torch.from_numpy(full[[49, 0]]))


def test_concurrent_loads_decode_once(tmp_path, monkeypatch):
    _folder(tmp_path / "d", n_per_class=4)
    calls = _count_decodes(monkeypatch)
    results = []
    threads = [threading.Thread(target=lambda: results.append(load_images(tmp_path / "d", cache_dir=tmp_path / "c")))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls["n"] == 12 and torch.equal(results[0].images, results[1].images)


def test_unwritable_cache_decodes_into_ram(tmp_path, monkeypatch):
    import contextlib
    import errno

    _folder(tmp_path / "d", n_per_class=2)

    @contextlib.contextmanager
    def read_only(path):  # what a read-only file system answers (chmod does not stop root, who runs CI here)
        raise OSError(errno.EROFS, "Read-only file system", str(path))
        yield

    monkeypatch.setattr(image_cache, "file_lock", read_only)
    data = load_images(tmp_path / "d", cache_dir=tmp_path / "c")
    assert data.in_memory and len(data) == 6 and not list((tmp_path / "c").rglob("*.npy"))
    monkeypatch.undo()
    assert torch.equal(load_images(tmp_path / "d", cache_dir=tmp_path / "c2").images, data.images)


def test_disk_full_is_a_clear_error_and_the_build_resumes(tmp_path, monkeypatch):
    import errno

    _folder(tmp_path / "d")
    monkeypatch.setattr(image_decode, "CHUNK_BYTES", 5 * 360)
    real = cache_mod.ResumableArray.write
    calls = {"n": 0}

    def fills_up(self, rows, values):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, rows, values)

    monkeypatch.setattr(cache_mod.ResumableArray, "write", fills_up)
    with pytest.raises(OSError, match=r"no space left .*build resumes where it stopped"):
        load_images(tmp_path / "d", cache_dir=tmp_path / "c")
    monkeypatch.undo()
    counted = _count_decodes(monkeypatch)
    assert len(load_images(tmp_path / "d", cache_dir=tmp_path / "c")) == 21
    assert counted["n"] == 21 - 10


def test_in_ram_image_data_still_constructs_directly():
    x = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    data = ImageData(x, torch.arange(4), ["a"], "tiny")
    assert data.in_memory and data.images is x and torch.equal(data.take([1, 2]), x[1:3])
    with pytest.raises(ValueError, match="uint8"):
        ImageData(x.float(), torch.arange(4), [], "bad")
    with pytest.raises(ValueError, match="labels"):
        ImageData(x, torch.arange(3), [], "bad")


def test_images_is_a_small_entry_that_reexports_its_parts():
    """Issue 20 item 4: sources, decoding and the cache live in their own modules and the pixel-range helpers
    in nda.vision.pixels; the names callers import from nda.data.images are the same objects."""
    import nda.data.images as images
    from nda.vision import pixels

    assert images.to_float is pixels.to_float and images.to_uint8 is pixels.to_uint8
    assert images.to_8bit is image_decode.to_8bit and images.is_image_name is image_decode.is_image_name
    assert images.build_image_cache is image_cache.build_image_cache
    assert images.open_image_cache is image_cache.open_image_cache
    assert len(open(images.__file__).read().splitlines()) < 250


def test_the_deprecated_training_shim_is_gone():
    with pytest.raises(ModuleNotFoundError):
        __import__("nda.training")
