"""Image negatives inside torchvision v2 / nn.Sequential / kornia pipelines (``nda.as_transform``)."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

import nda
from nda.vision import Jigsaw
from nda.vision.transform import NegativeTransform, stream_seed


def _first_stream_result(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """What a seeded transform's first call in the main process must return: Jigsaw on its (0, -1) stream."""
    return Jigsaw(grid=2)(x, generator=torch.Generator().manual_seed(stream_seed(seed, 0, -1)))


def test_single_chw_image_in_v2_compose():
    x = torch.rand(3, 8, 8)
    out = v2.Compose([nda.as_transform("jigsaw:grid=2", seed=0)])(x)
    assert out.shape == x.shape and out.dtype == x.dtype and type(out) is torch.Tensor
    torch.testing.assert_close(out, _first_stream_result(x[None])[0])
    assert not torch.equal(out, x)


def test_image_label_sample_passes_the_label_through():
    x = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    img, label = v2.Compose([nda.as_transform("jigsaw:grid=2", seed=0)])((x, 3))
    assert label == 3 and img.dtype == torch.uint8
    assert torch.equal(img, _first_stream_result(x[None])[0])
    img, label = nda.as_transform("jigsaw:grid=2", seed=0)((x, torch.tensor(5)))  # a tensor label is not an image
    assert torch.equal(label, torch.tensor(5)) and torch.equal(img, _first_stream_result(x[None])[0])


@pytest.mark.parametrize("shape", [(3, 8, 8), (4, 3, 8, 8)])
def test_tv_tensors_image_stays_an_image(shape):
    x = tv_tensors.Image(torch.rand(shape))
    out = v2.Compose([v2.RandomHorizontalFlip(p=0.0), nda.as_transform("jigsaw:grid=2", seed=1)])(x)
    assert isinstance(out, tv_tensors.Image) and out.shape == x.shape
    assert not torch.equal(out.as_subclass(torch.Tensor), x.as_subclass(torch.Tensor))


def test_batch_with_a_given_generator_equals_the_negative_call():
    x = torch.rand(4, 3, 8, 8)
    t = nda.as_transform(Jigsaw(grid=2), generator=torch.Generator().manual_seed(3))
    assert torch.equal(t(x), Jigsaw(grid=2)(x, generator=torch.Generator().manual_seed(3)))
    assert isinstance(t, torch.nn.Module) and isinstance(t, v2.Transform)


def test_nn_sequential():
    x = torch.rand(4, 3, 8, 8)
    out = torch.nn.Sequential(nda.as_transform("jigsaw:grid=2", seed=0), torch.nn.Flatten())(x)
    torch.testing.assert_close(out, _first_stream_result(x).flatten(1))


def test_kornia_augmentation_sequential():
    K = pytest.importorskip("kornia.augmentation", reason="kornia not installed (pip install kornia)")
    x = torch.rand(4, 3, 8, 8)
    aug = K.AugmentationSequential(K.RandomHorizontalFlip(p=1.0), nda.as_transform("jigsaw:grid=2", seed=0))
    torch.testing.assert_close(aug(x), _first_stream_result(x.flip(-1)))


@pytest.mark.parametrize("spec", ["stitch", "mixup", "cutmix", "jigsaw|stitch"])
def test_pairwise_negative_on_a_single_image_is_a_clear_error(spec):
    t = nda.as_transform(spec, seed=0)
    with pytest.raises(ValueError, match="pairwise.*B >= 2"):
        t(torch.rand(3, 8, 8))
    assert t(torch.rand(2, 3, 8, 8)).shape == (2, 3, 8, 8)  # a batch is fine


class _Images(torch.utils.data.Dataset):
    def __init__(self, transform):
        self.images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform((self.images[i], i))


def _pass(transform, epoch=0):
    transform.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(_Images(transform), batch_size=3, num_workers=0)
    return torch.cat([img for img, _ in loader])


def test_dataloader_passes_with_the_same_seed_give_identical_negatives():
    t = nda.as_transform("cutout|jigsaw", seed=0)
    first = _pass(t)
    assert torch.equal(first, _pass(t))  # set_epoch(0) again: same stream
    assert torch.equal(first, _pass(nda.as_transform("cutout|jigsaw", seed=0)))  # a fresh copy, same seed
    assert not torch.equal(first, _pass(t, epoch=1))
    assert not torch.equal(first, _pass(nda.as_transform("cutout|jigsaw", seed=1)))


def test_workers_get_distinct_streams():
    assert len({stream_seed(0, 0, w) for w in (-1, 0, 1, 2)}) == 4


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: nda.as_transform("token_shuffle"), ValueError, "text negative"),
        (lambda: nda.as_transform("none"), ValueError, "names no negative"),
        (lambda: nda.as_transform("jigsaw", seed=0, generator=torch.Generator()), ValueError, "seed or generator"),
        (lambda: nda.as_transform("jigsaw", seed="1"), TypeError, "seed must be an int"),
        (lambda: nda.as_transform("jigsaw")(torch.rand(8, 8)), ValueError, r"\(C, H, W\) image or a \(B, C, H, W\)"),
        (lambda: nda.as_transform("jigsaw").set_epoch(-1), ValueError, "epoch"),
        (lambda: NegativeTransform(None), TypeError, "image negative"),
    ],
)
def test_bad_input_is_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_pil_images_and_boxes_are_refused():
    import PIL.Image

    t = nda.as_transform("jigsaw", seed=0)
    with pytest.raises(TypeError, match="ToImage"):
        t(PIL.Image.new("RGB", (8, 8)))
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[0, 0, 4, 4]]), format="XYXY", canvas_size=(8, 8))
    with pytest.raises(TypeError, match="BoundingBoxes"):
        t(tv_tensors.Image(torch.rand(3, 8, 8)), boxes)
    with pytest.raises(TypeError, match="Video"):
        t(tv_tensors.Video(torch.rand(2, 3, 8, 8)))
