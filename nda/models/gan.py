"""GAN models for the NDA experiments: SNGAN ResNet (Miyato et al. 2018, CIFAR) and a small SN-DCGAN.

- :class:`ResNetGenerator` / :class:`ResNetDiscriminator`: the SNGAN/BigGAN-style CIFAR architecture
  (generator: linear -> 4x4, up-sampling residual blocks, BN-ReLU-conv-tanh; discriminator: spectral-norm
  residual blocks, ReLU, global sum pooling, spectral-norm linear). Class-conditional via conditional
  BatchNorm in G and a projection discriminator (Miyato & Koyama 2018) when ``num_classes > 0``.
- :class:`DCGANGenerator` / :class:`DCGANDiscriminator`: a small transposed-conv generator and a
  spectral-norm conv discriminator (the "standard CNN" of the SNGAN paper, narrower), fast enough for CPU runs.
- :class:`EMA`: exponential moving average of the generator's weights (evaluated instead of G itself).

Images are ``(B, C, S, S)`` in ``[-1, 1]`` (tanh output); ``S`` a power of two in [16, 128] (32 is the
paper's CIFAR setting, 64 works too). Discriminators return one logit per sample, shape ``(B,)``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

from nda.models.registry import HubModel, register_model

__all__ = [
    "ConditionalBatchNorm2d",
    "ResNetGenerator",
    "ResNetDiscriminator",
    "DCGANGenerator",
    "DCGANDiscriminator",
    "EMA",
    "build_gan",
    "check_image_size",
]


def check_image_size(image_size: int) -> int:
    """``log2(image_size)`` for a power of two in [16, 128]; a ``ValueError`` naming the allowed sizes otherwise."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 16 <= image_size <= 128 \
            or image_size & (image_size - 1):
        raise ValueError(f"image_size must be a power of two in [16, 128] (32 for CIFAR-10, 64 works), got {image_size!r}")
    return int(math.log2(image_size))


class _Configurable:
    """``config()``: the constructor arguments, so a saved model is rebuilt from JSON (``nda.run.save_model``)."""

    _config_keys: tuple[str, ...] = ()

    def config(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._config_keys}


def _check_labels(y: torch.Tensor | None, num_classes: int, batch: int) -> None:
    if num_classes > 0:
        if y is None:
            raise ValueError(f"this model is class-conditional ({num_classes} classes): pass labels y of shape ({batch},)")
        if y.shape != (batch,):
            raise ValueError(f"y must have shape ({batch},), got {tuple(y.shape)}")


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose scale and shift come from a class embedding (plain affine BN when ``num_classes == 0``)."""

    def __init__(self, num_features: int, num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(num_features, affine=num_classes == 0)
        if num_classes > 0:
            self.gain = nn.Embedding(num_classes, num_features)
            self.bias = nn.Embedding(num_classes, num_features)
            nn.init.ones_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = self.bn(x)
        if self.num_classes == 0:
            return out
        return out * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


# ------------------------------------------------------------------------------------------- ResNet
class _GBlock(nn.Module):
    def __init__(self, cin: int, cout: int, num_classes: int) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(cin, num_classes)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn2 = ConditionalBatchNorm2d(cout, num_classes)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1)
        for conv in (self.conv1, self.conv2):
            nn.init.xavier_uniform_(conv.weight, math.sqrt(2))
        nn.init.xavier_uniform_(self.shortcut.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


@register_model
class ResNetGenerator(_Configurable, nn.Module, HubModel):
    """SNGAN CIFAR generator: ``z (B, z_dim)`` [+ labels ``y (B,)``] -> images ``(B, channels, S, S)`` in [-1, 1].

    ``ch`` is the width (256 in Miyato et al.'s CIFAR model; 128 is a common cheaper setting).
    """

    _config_keys = ("z_dim", "ch", "image_size", "channels", "num_classes")

    def __init__(self, z_dim: int = 128, ch: int = 256, image_size: int = 32, channels: int = 3, num_classes: int = 0) -> None:
        super().__init__()
        n_up = check_image_size(image_size) - 2
        self.z_dim, self.ch, self.image_size, self.channels, self.num_classes = z_dim, ch, image_size, channels, num_classes
        self.linear = nn.Linear(z_dim, 4 * 4 * ch)
        self.blocks = nn.ModuleList([_GBlock(ch, ch, num_classes) for _ in range(n_up)])
        self.bn = nn.BatchNorm2d(ch)
        self.out = nn.Conv2d(ch, channels, 3, padding=1)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.xavier_uniform_(self.out.weight)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        _check_labels(y, self.num_classes, z.shape[0])
        h = self.linear(z).view(z.shape[0], self.ch, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out(F.relu(self.bn(h))))


class _DBlock(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool, first: bool = False) -> None:
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = spectral_norm(nn.Conv2d(cin, cout, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(cout, cout, 3, padding=1))
        self.shortcut = spectral_norm(nn.Conv2d(cin, cout, 1)) if (cin != cout or down) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)  # the first ("optimized") block sees raw pixels
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.shortcut is not None:
            if self.first:  # pool then conv, as in the SNGAN optimized block
                s = self.shortcut(F.avg_pool2d(x, 2))
            else:
                s = self.shortcut(x)
                if self.down:
                    s = F.avg_pool2d(s, 2)
        return h + s


class _ProjectionHead(nn.Module):
    """``logit = linear(h) + <embed(y), h>`` (projection discriminator; plain linear when unconditional)."""

    def __init__(self, ch: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.linear = spectral_norm(nn.Linear(ch, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, ch)) if num_classes > 0 else None

    def forward(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        out = self.linear(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * h).sum(1)
        return out


@register_model
class ResNetDiscriminator(_Configurable, nn.Module, HubModel):
    """SNGAN CIFAR discriminator: images ``(B, C, S, S)`` [+ labels] -> logits ``(B,)``; spectral norm everywhere."""

    _config_keys = ("ch", "image_size", "channels", "num_classes")

    def __init__(self, ch: int = 128, image_size: int = 32, channels: int = 3, num_classes: int = 0) -> None:
        super().__init__()
        n_down = check_image_size(image_size) - 3  # 32 -> 8x8 features after the down-sampling blocks
        self.ch, self.image_size, self.channels, self.num_classes = ch, image_size, channels, num_classes
        blocks: list[nn.Module] = [_DBlock(channels, ch, down=True, first=True)]
        blocks += [_DBlock(ch, ch, down=True) for _ in range(max(n_down - 1, 0))]
        blocks += [_DBlock(ch, ch, down=False), _DBlock(ch, ch, down=False)]
        self.blocks = nn.Sequential(*blocks)
        self.head = _ProjectionHead(ch, num_classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        _check_labels(y, self.num_classes, x.shape[0])
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # global sum pooling
        return self.head(h, y)


# -------------------------------------------------------------------------------------------- DCGAN
@register_model
class DCGANGenerator(_Configurable, nn.Module, HubModel):
    """Small DCGAN generator: ``z`` -> 4x4 (transposed conv) -> doubling blocks -> ``(B, C, S, S)`` in [-1, 1]."""

    _config_keys = ("z_dim", "ch", "image_size", "channels", "num_classes")

    def __init__(self, z_dim: int = 64, ch: int = 32, image_size: int = 32, channels: int = 1, num_classes: int = 0) -> None:
        super().__init__()
        n_up = check_image_size(image_size) - 2
        self.z_dim, self.ch, self.image_size, self.channels, self.num_classes = z_dim, ch, image_size, channels, num_classes
        widths = [ch * 2 ** (n_up - 1 - i) for i in range(n_up)]  # e.g. ch*4, ch*2, ch for 32 px
        self.stem = nn.ConvTranspose2d(z_dim, widths[0], 4, 1, 0)  # 1x1 -> 4x4
        self.bns = nn.ModuleList([ConditionalBatchNorm2d(w, num_classes) for w in widths])
        ups = [nn.ConvTranspose2d(widths[i], widths[i + 1], 4, 2, 1) for i in range(n_up - 1)]
        self.ups = nn.ModuleList(ups)
        self.out = nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        _check_labels(y, self.num_classes, z.shape[0])
        h = F.relu(self.bns[0](self.stem(z[:, :, None, None]), y))
        for up, bn in zip(self.ups, self.bns[1:]):
            h = F.relu(bn(up(h), y))
        return torch.tanh(self.out(h))


@register_model
class DCGANDiscriminator(_Configurable, nn.Module, HubModel):
    """Small spectral-norm conv discriminator (SN-DCGAN): strided convs with LeakyReLU, projection head."""

    _config_keys = ("ch", "image_size", "channels", "num_classes")

    def __init__(self, ch: int = 32, image_size: int = 32, channels: int = 1, num_classes: int = 0) -> None:
        super().__init__()
        n_down = check_image_size(image_size) - 2  # down to 4x4
        self.ch, self.image_size, self.channels, self.num_classes = ch, image_size, channels, num_classes
        layers: list[nn.Module] = []
        width = channels
        for i in range(n_down):  # 4x4 stride-2 convs: S -> S/2 -> ... -> 4, widths ch, 2ch, 4ch, 4ch, ...
            nxt = ch * 2 ** min(i, 2)
            layers += [spectral_norm(nn.Conv2d(width, nxt, 4, 2, 1)), nn.LeakyReLU(0.1)]
            width = nxt
        layers += [spectral_norm(nn.Conv2d(width, width, 3, 1, 1)), nn.LeakyReLU(0.1)]
        self.features = nn.Sequential(*layers)
        self.head = _ProjectionHead(width, num_classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        _check_labels(y, self.num_classes, x.shape[0])
        return self.head(self.features(x).sum(dim=(2, 3)), y)


def build_gan(arch: str, *, z_dim: int, g_ch: int, d_ch: int, image_size: int, channels: int,
              num_classes: int = 0) -> tuple[nn.Module, nn.Module]:
    """``(generator, discriminator)`` for ``arch`` in ``{"sngan", "dcgan"}``."""
    if arch == "sngan":
        return (ResNetGenerator(z_dim, g_ch, image_size, channels, num_classes),
                ResNetDiscriminator(d_ch, image_size, channels, num_classes))
    if arch == "dcgan":
        return (DCGANGenerator(z_dim, g_ch, image_size, channels, num_classes),
                DCGANDiscriminator(d_ch, image_size, channels, num_classes))
    raise ValueError(f"arch must be 'sngan' or 'dcgan', got {arch!r}")


# ---------------------------------------------------------------------------------------------- EMA
class EMA:
    """Exponential moving average of a model's parameters (buffers such as BN statistics are copied).

    ``decay`` ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates so early, random
    weights are forgotten quickly; ``start_step`` updates are plain copies (the average starts later).
    Checkpointable: ``state_dict`` / ``load_state_dict`` (tensors and numbers: pass it to ``Run.restore``).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, start_step: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.start_step = start_step
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights (pass the unwrapped model, not DDP)."""
        self.num_updates += 1
        n = self.num_updates
        d = 0.0 if n <= self.start_step else min(self.decay, (1 + n) / (10 + n))
        src = dict(model.named_parameters())
        dst = list(self.model.named_parameters())
        ema_params = [p for _, p in dst]
        new_params = [src[name].detach().to(p.dtype) for name, p in dst]
        torch._foreach_lerp_(ema_params, new_params, 1.0 - d)
        for (_, b_ema), b in zip(self.model.named_buffers(), model.buffers()):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "num_updates": self.num_updates, "decay": self.decay,
                "start_step": self.start_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.num_updates = int(state["num_updates"])
        self.decay = float(state["decay"])
        self.start_step = int(state["start_step"])
