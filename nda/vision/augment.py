"""MoCo-v2 positive views as batched tensor ops on the training device, one parameter draw per sample.

Why not ``torchvision.transforms.v2.Compose`` on the batch: a v2 transform called on a ``(B, C, H, W)``
tensor draws ONE parameter set and applies it to every sample, so all views of a batch would share the
same crop, jitter and flip. A contrastive learner needs independent views, and a Python loop over samples
(the usual per-image ``Dataset.__getitem__`` pipeline) starves a GPU. Here every parameter is drawn per
sample in one batched draw (seeded through :mod:`nda.sampling`) and applied in one batched op:

- random resized crop: the boxes are drawn as in ``v2.RandomResizedCrop.get_params`` (10 tries per sample,
  all tried at once, centre-crop fallback), then cut and resized together with ``torchvision.ops.roi_align``
  (one bilinear sample per output pixel when enlarging, area-like averaging when shrinking);
- horizontal flip: a masked select;
- colour jitter (p=0.8): brightness, contrast, saturation and hue factors per sample, applied in a random
  order per sample (as ``v2.ColorJitter`` does per call) by four rounds of masked selects;
- grayscale (p=0.2): a masked blend with ``v2.functional.rgb_to_grayscale``;
- gaussian blur (p=0.5 for images >= 64 px, off for smaller ones as in MoCo's CIFAR recipes): a
  per-sample separable kernel applied as one grouped convolution;
- normalisation with per-channel mean/std (:func:`normalize_images`, shared with feature extraction).

Input: uint8 ``[0, 255]`` or float ``[0, 1]`` ``(B, C, H, W)`` with ``C`` in (1, 3); output: float32
``(B, C, size, size)``, normalised. Single-channel images skip saturation, hue and grayscale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align
from torchvision.transforms.v2 import functional as TF

from nda.sampling import batched_randperm, check_generator, rand

__all__ = [
    "MoCoV2Augment",
    "normalize_images",
    "default_mean_std",
    "random_resized_crop_boxes",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_mean_std(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet statistics (torchvision's ResNets' convention); their channel average for 1-channel images."""
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    if channels == 1:
        return (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
    raise ValueError(f"images must have 1 or 3 channels, got {channels}")


def _to_unit_float(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have shape (B, C, H, W) with C in (1, 3), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise TypeError(f"{name} must be uint8 [0, 255] or float [0, 1], got {images.dtype}")
    return images.float()


def normalize_images(
    images: torch.Tensor,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """uint8 ``[0, 255]`` or float ``[0, 1]`` -> float32 ``(x - mean) / std`` (the encoders' input convention).

    ``mean``/``std`` each default to :func:`default_mean_std` of the channel count.
    """
    x = _to_unit_float(images)
    if mean is None or std is None:  # each defaults on its own (a given mean is never dropped for a missing std)
        default_mean, default_std = default_mean_std(x.shape[1])
        mean = default_mean if mean is None else mean
        std = default_std if std is None else std
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise ValueError(f"mean/std need {x.shape[1]} values (one per channel), got {len(mean)}/{len(std)}")
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def random_resized_crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    *,
    tries: int = 10,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``(batch, 4)`` float boxes ``(x0, y0, x1, y1)`` in pixel units, one per sample, drawn as
    ``RandomResizedCrop.get_params``: ``tries`` candidates per sample at once, the first one that fits is
    kept, else a centre crop with the aspect ratio clamped to ``ratio``."""
    area = float(height * width)
    target = area * (scale[0] + (scale[1] - scale[0]) * rand(batch, tries, generator=generator, device=device))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * rand(batch, tries, generator=generator, device=device))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.float().argmax(dim=1, keepdim=True)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    any_ok = ok.any(dim=1)
    # centre-crop fallback (whole image, aspect clamped), as torchvision
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = float(width), float(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = float(round(height * ratio[1])), float(height)
    else:
        fw, fh = float(width), float(height)
    w = torch.where(any_ok, w, torch.full_like(w, fw))
    h = torch.where(any_ok, h, torch.full_like(h, fh))
    # integer offsets uniform in [0, W - w] x [0, H - h]: floor(u * (span + 1)), computed here rather than with
    # sampling.randint, whose range check would cost a device->host sync per call on the GPU
    u = rand(batch, 2, generator=generator, device=device)
    x0 = torch.minimum(torch.floor(u[:, 0] * (width - w + 1)), width - w)
    y0 = torch.minimum(torch.floor(u[:, 1] * (height - h + 1)), height - h)
    x0 = torch.where(any_ok, x0, torch.full_like(x0, (width - fw) // 2))
    y0 = torch.where(any_ok, y0, torch.full_like(y0, (height - fh) // 2))
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _pair(value: object, name: str) -> tuple[float, float]:
    """A ``(min, max)`` pair of finite numbers (NaN and inf are rejected here: they passed the range checks)."""
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or len(value) != 2
        or not all(_is_number(v) and math.isfinite(v) for v in value)
    ):
        raise ValueError(f"{name} must be a (min, max) pair of finite numbers, got {name}={value!r}")
    return float(value[0]), float(value[1])


# ------------------------------------------------------------------------------------ colour helpers
def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma (1 channel) of RGB images; single-channel images are their own luma."""
    return TF.rgb_to_grayscale(x, num_output_channels=1) if x.shape[1] == 3 else x


def _rgb_to_hsv(img: torch.Tensor) -> torch.Tensor:
    r, g, b = img.unbind(dim=1)
    maxc = img.amax(dim=1)
    minc = img.amin(dim=1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    crd = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / crd, (maxc - g) / crd, (maxc - b) / crd
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack([h, s, maxc], dim=1)


def _hsv_to_rgb(img: torch.Tensor) -> torch.Tensor:
    h, s, v = img.unbind(dim=1)
    h6 = h * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = i.long() % 6
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    r = torch.stack([v, q, p, p, t, v], dim=1)
    g = torch.stack([t, v, v, q, p, p], dim=1)
    b = torch.stack([p, p, t, v, v, q], dim=1)
    idx = i.unsqueeze(1)
    return torch.cat([r.gather(1, idx), g.gather(1, idx), b.gather(1, idx)], dim=1)


def _adjust_hue(x: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    hsv = _rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + hue.view(-1, 1, 1), 1.0)
    return _hsv_to_rgb(torch.stack([h, hsv[:, 1], hsv[:, 2]], dim=1))


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``factor * a + (1 - factor) * b`` clamped to [0, 1] (torchvision's ``_blend``), per-sample factor."""
    f = factor.view(-1, 1, 1, 1)
    return (f * a + (1.0 - f) * b).clamp(0.0, 1.0)


class MoCoV2Augment(nn.Module):
    """The MoCo-v2 positive view, per-sample parameters, batched (see the module docstring).

    Args:
        size: output side (square).
        scale, ratio: random-resized-crop area fraction and aspect-ratio range (MoCo-v2: ``(0.2, 1)``).
        brightness, contrast, saturation, hue: colour-jitter strengths (MoCo-v2: 0.4, 0.4, 0.4, 0.1).
        p_jitter, p_gray, p_flip: probabilities of colour jitter (0.8), grayscale (0.2), horizontal flip (0.5).
        p_blur: probability of gaussian blur; ``None`` -> 0.5 for ``size >= 64``, else 0 (32-px CIFAR
            recipes drop it: a 3-px kernel mostly erases the image).
        blur_sigma: sigma range (MoCo-v2: ``(0.1, 2.0)``); ``blur_kernel``: odd kernel side (default ~10 %
            of ``size``, at least 3).
        mean, std: normalisation (default :func:`default_mean_std`).

    Example:
        >>> aug = MoCoV2Augment(32)
        >>> x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
        >>> aug(x, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([8, 3, 32, 32])
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.2, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        p_jitter: float = 0.8,
        p_gray: float = 0.2,
        p_blur: float | None = None,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        blur_kernel: int | None = None,
        p_flip: float = 0.5,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        scale, ratio, blur_sigma = _pair(scale, "scale"), _pair(ratio, "ratio"), _pair(blur_sigma, "blur_sigma")
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"ratio must satisfy 0 < min <= max (finite), got {ratio}")
        for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not (_is_number(v) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {name}={v!r}")
        if not (_is_number(hue) and 0 <= hue <= 0.5):
            raise ValueError(f"hue must be in [0, 0.5], got {hue}")
        p_blur = (0.5 if size >= 64 else 0.0) if p_blur is None else p_blur
        for name, p in (("p_jitter", p_jitter), ("p_gray", p_gray), ("p_blur", p_blur), ("p_flip", p_flip)):
            if not (_is_number(p) and 0 <= p <= 1):
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        if not (0 < blur_sigma[0] <= blur_sigma[1]):
            raise ValueError(f"blur_sigma must satisfy 0 < min <= max (finite), got {blur_sigma}")
        if blur_kernel is None:
            blur_kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
        if isinstance(blur_kernel, bool) or not isinstance(blur_kernel, int) or blur_kernel < 1 or blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be a positive odd int, got {blur_kernel!r}")
        for name, values in (("mean", mean), ("std", std)):
            if values is not None and (
                isinstance(values, (str, bytes))
                or not isinstance(values, Sequence)
                or not all(_is_number(v) and math.isfinite(v) for v in values)
            ):
                raise ValueError(
                    f"{name} must be None or a sequence of finite numbers (one per channel), got {name}={values!r}"
                )
        if std is not None and not all(v > 0 for v in std):
            raise ValueError(f"std must be > 0 for every channel (it divides), got std={std!r}")
        self.size = size
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.p_jitter, self.p_gray, self.p_blur, self.p_flip = p_jitter, p_gray, p_blur, p_flip
        self.blur_sigma, self.blur_kernel = tuple(blur_sigma), blur_kernel
        self.mean, self.std = mean, std

    # ----------------------------------------------------------------------------------------- steps
    def _crop_flip(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b, _, h, w = x.shape
        boxes = random_resized_crop_boxes(b, h, w, self.scale, self.ratio, generator=generator, device=x.device)
        rois = torch.cat([torch.arange(b, device=x.device, dtype=x.dtype)[:, None], boxes.to(x.dtype)], dim=1)
        out = roi_align(x, rois, output_size=(self.size, self.size), spatial_scale=1.0, sampling_ratio=-1,
                        aligned=True)
        flip = rand(b, generator=generator, device=x.device) < self.p_flip
        return torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)

    def _jitter(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b, c = x.shape[:2]
        dev = x.device
        u = rand(b, 4, generator=generator, device=dev)
        def factor(strength: float, u_: torch.Tensor) -> torch.Tensor:  # torchvision: U[max(0, 1-s), 1+s]
            lo = max(0.0, 1.0 - strength)
            return lo + (1.0 + strength - lo) * u_

        bri, con, sat = factor(self.brightness, u[:, 0]), factor(self.contrast, u[:, 1]), factor(self.saturation, u[:, 2])
        hue = -self.hue + 2 * self.hue * u[:, 3]
        order = batched_randperm(b, 4, generator=generator, device=dev)  # per-sample order of the 4 ops
        apply = rand(b, generator=generator, device=dev) < self.p_jitter
        rgb = c == 3
        y = x
        for r in range(4):  # four rounds over the four ops; never a loop over samples
            op = order[:, r].view(-1, 1, 1, 1)
            out = torch.where(op == 0, (y * bri.view(-1, 1, 1, 1)).clamp(0, 1), y)
            mean = _gray(y).mean(dim=(1, 2, 3), keepdim=True)
            out = torch.where(op == 1, _blend(y, mean, con), out)
            if rgb:
                out = torch.where(op == 2, _blend(y, _gray(y), sat), out)
                if self.hue > 0:
                    out = torch.where(op == 3, _adjust_hue(y, hue), out)
            y = out
        return torch.where(apply.view(-1, 1, 1, 1), y, x)

    def _grayscale(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if x.shape[1] != 3 or self.p_gray == 0:
            return x
        gray = rand(x.shape[0], generator=generator, device=x.device) < self.p_gray
        return torch.where(gray.view(-1, 1, 1, 1), TF.rgb_to_grayscale(x, num_output_channels=3), x)

    def _blur(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.p_blur == 0:
            return x
        b, c, h, w = x.shape
        dev = x.device
        lo, hi = self.blur_sigma
        sigma = lo + (hi - lo) * rand(b, generator=generator, device=dev)
        blur = rand(b, generator=generator, device=dev) < self.p_blur
        half = self.blur_kernel // 2
        t = torch.arange(-half, half + 1, device=dev, dtype=x.dtype)
        kern = torch.exp(-0.5 * (t[None, :] / sigma[:, None]) ** 2)
        kern = (kern / kern.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, k)
        y = x.reshape(1, b * c, h, w)
        pad_mode = "reflect" if half < min(h, w) else "replicate"
        y = F.conv2d(F.pad(y, (half, half, 0, 0), mode=pad_mode), kern.view(b * c, 1, 1, -1), groups=b * c)
        y = F.conv2d(F.pad(y, (0, 0, half, half), mode=pad_mode), kern.view(b * c, 1, -1, 1), groups=b * c)
        return torch.where(blur.view(-1, 1, 1, 1), y.view(b, c, h, w), x)

    def forward(self, images: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """One independent MoCo-v2 view of every image: ``(B, C, H, W)`` -> float32 ``(B, C, size, size)``."""
        check_generator(generator)
        x = _to_unit_float(images)
        if x.shape[0] == 0:
            raise ValueError("images must hold at least one image")
        x = self._crop_flip(x, generator)
        x = self._jitter(x, generator)
        x = self._grayscale(x, generator)
        x = self._blur(x, generator)
        return normalize_images(x, self.mean, self.std)

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, scale={self.scale}, jitter=({self.brightness}, {self.contrast}, {self.saturation}, "
            f"{self.hue}) p={self.p_jitter}, p_gray={self.p_gray}, p_blur={self.p_blur}, p_flip={self.p_flip}"
        )
