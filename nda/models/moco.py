"""MoCo-v2 (He et al. 2020; Chen et al. 2020): query encoder, momentum key encoder, a queue of keys.

What lives here and why it is built this way:

- :func:`build_backbone`: any torchvision ResNet by name (``resnet18`` ... ``wide_resnet101_2``), with the
  CIFAR stem (3x3 conv, stride 1, no max-pool) for 32-px images, or ``"tiny"`` (a 2-block CNN for tests);
  the classifier is dropped, the backbone returns pooled features.
- :class:`MoCo`: ``forward(images)`` is the *query* path only (the one that needs gradients, so it is what
  DDP wraps and synchronises). The key path runs outside the DDP forward on the unwrapped module, under
  ``torch.no_grad``: :meth:`MoCo.momentum_update` (``k = m * k + (1 - m) * q``), :meth:`MoCo.encode_keys`
  (with shuffle-BN across processes), :meth:`MoCo.dequeue_and_enqueue`.
- The queue ``(K, D)`` and its pointer are registered buffers: a checkpoint of the model's ``state_dict``
  holds them, and resume restores the exact queue.
- Batch-norm leakage (a batch's keys and queries sharing BN statistics lets the model find the positive by
  the statistics instead of the content): ``bn="shuffle"`` (MoCo's fix: the key inputs of all processes
  are gathered, permuted with one permutation shared by every rank, encoded, and un-permuted, so a key
  never shares BN statistics with its own query); ``bn="sync"`` (SyncBatchNorm, GPU); ``bn="none"``.
  ``bn_splits=S`` splits every BN batch into ``S`` groups (MoCo's single-GPU CIFAR demo): with one
  process, shuffle-BN then permutes keys across the splits, which is what makes it effective on one GPU.
- Keys enter the queue after :func:`nda.distributed.concat_all_gather`, so every rank enqueues the same keys
  in the same order and the queue stays identical everywhere.
- The training step (two views, NDA negatives, one batched key forward, the loss, the enqueue) is
  :func:`nda.models.moco_step.moco_step`: the job and the benchmark run the same code.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from nda.distributed import concat_all_gather, world_info
from nda.models.registry import HubModel, register_model

__all__ = [
    "MoCo",
    "build_backbone",
    "available_archs",
    "SplitBatchNorm",
    "TinyEncoder",
    "BN_MODES",
    "check_queue_config",
    "projection_head",
]

BN_MODES = ("shuffle", "sync", "none")


# ---------------------------------------------------------------------------------------- backbones
class TinyEncoder(nn.Module):
    """A 2-block CNN (conv-BN-ReLU x 2, global pool): seconds-fast stand-in for tests and CPU demos."""

    def __init__(self, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_dim = 2 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def available_archs() -> list[str]:
    """``"tiny"`` and every torchvision ResNet / ResNeXt / wide ResNet constructor name."""
    import torchvision

    names = [n for n in torchvision.models.list_models(module=torchvision.models)
             if n.startswith(("resnet", "resnext", "wide_resnet"))]
    return ["tiny", *sorted(names)]


def build_backbone(arch: str = "resnet18", cifar_stem: bool = True, in_channels: int = 3) -> tuple[nn.Module, int]:
    """A randomly initialised feature extractor and its feature width.

    ``cifar_stem`` replaces the 7x7 stride-2 conv + max-pool by a 3x3 stride-1 conv (32-px images keep
    their resolution). ``in_channels`` other than 3 replaces the first conv.
    """
    if not isinstance(arch, str):
        raise TypeError(f"arch must be a string, got {type(arch).__name__}")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    if arch == "tiny":
        enc = TinyEncoder(in_channels)
        return enc, enc.out_dim
    names = available_archs()
    if arch not in names:
        raise ValueError(f"unknown arch {arch!r}; available: {', '.join(names)}")
    import torchvision

    net = torchvision.models.get_model(arch, weights=None)
    if cifar_stem:
        net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, 7, stride=2, padding=3, bias=False)
    feat_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, feat_dim


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm over ``num_splits`` groups of the batch (sample ``n`` in group ``n % num_splits``): the
    statistics of ``num_splits`` devices on one device (MoCo's single-GPU CIFAR demo).

    Contiguous (NCHW) input: the demo's trick, a free ``view`` as ``(N/S, S*C, H, W)`` and one fused
    ``F.batch_norm``. Channels-last input (where that view would be a copy): a ``view`` of the batch
    dimension as ``(N/S, S, C, H, W)`` and explicit float32 statistics. Both give the same result. Running
    statistics are updated with the mean over the groups (as the demo); eval mode is plain BatchNorm.
    """

    def __init__(self, num_features: int, num_splits: int, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self.num_splits = num_splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if not self.training or self.num_splits == 1:
            return super().forward(x)
        s = self.num_splits
        if n % s:
            raise ValueError(f"SplitBatchNorm: batch {n} is not divisible by num_splits={s}")
        mom = self.momentum if self.momentum is not None else 0.1
        if x.is_contiguous() and self.affine and self.track_running_stats:
            mean_s, var_s = self.running_mean.repeat(s), self.running_var.repeat(s)
            out = F.batch_norm(x.view(n // s, s * c, h, w), mean_s, var_s, self.weight.repeat(s),
                               self.bias.repeat(s), True, mom, self.eps)
            with torch.no_grad():
                self.running_mean.copy_(mean_s.view(s, c).mean(dim=0))
                self.running_var.copy_(var_s.view(s, c).mean(dim=0))
                self.num_batches_tracked.add_(1)
            return out.view(n, c, h, w)
        xs = x.view(n // s, s, c, h, w).float()
        var, mean = torch.var_mean(xs, dim=(0, 3, 4), unbiased=False, keepdim=True)  # (1, S, C, 1, 1)
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            scale = scale * self.weight.view(1, 1, c, 1, 1)
        y = (xs - mean) * scale
        if self.affine:
            y = y + self.bias.view(1, 1, c, 1, 1)
        if self.track_running_stats:
            with torch.no_grad():
                m = (n // s) * h * w
                self.running_mean.lerp_(mean.view(s, c).mean(dim=0).to(self.running_mean.dtype), mom)
                unbiased = var.view(s, c) * (m / max(m - 1, 1))
                self.running_var.lerp_(unbiased.mean(dim=0).to(self.running_var.dtype), mom)
                self.num_batches_tracked.add_(1)
        return y.to(x.dtype).reshape(n, c, h, w)


def _split_bn(module: nn.Module, num_splits: int) -> nn.Module:
    """Replace every ``BatchNorm2d`` of ``module`` by a :class:`SplitBatchNorm` with the same parameters."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, SplitBatchNorm):
            new = SplitBatchNorm(child.num_features, num_splits, eps=child.eps, momentum=child.momentum)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            _split_bn(child, num_splits)
    return module


def projection_head(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """MoCo-v2's 2-layer MLP head: Linear -> ReLU -> Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


# --------------------------------------------------------------------------------------------- MoCo
@register_model
class MoCo(nn.Module, HubModel):
    """MoCo-v2 encoders and queue. ``forward`` = query embeddings (L2-normalised, ``(B, dim)``).

    Args:
        arch: backbone name (:func:`available_archs`); cifar_stem: see :func:`build_backbone`.
        in_channels: 1 or 3. dim: embedding size (128). hidden_dim: MLP width (default: feature width).
        queue_size: number of keys in the queue (MoCo's ``K``; 4096 for CIFAR, 65536 for ImageNet).
        momentum: key-encoder EMA coefficient ``m`` (0.99 CIFAR, 0.999 ImageNet).
        bn: ``"shuffle"`` | ``"sync"`` | ``"none"`` (see the module docstring); bn_splits: BN groups per batch.

    Example:
        >>> model = MoCo("tiny", queue_size=64, dim=16)
        >>> x = torch.randn(8, 3, 16, 16)
        >>> q = model(x)
        >>> model.momentum_update()
        >>> k = model.encode_keys(x)
        >>> model.dequeue_and_enqueue(k)
        >>> q.shape, model.queue.shape, int(model.queue_ptr)
        (torch.Size([8, 16]), torch.Size([64, 16]), 8)
    """

    def __init__(
        self,
        arch: str = "resnet18",
        cifar_stem: bool = True,
        in_channels: int = 3,
        dim: int = 128,
        hidden_dim: int | None = None,
        queue_size: int = 4096,
        momentum: float = 0.99,
        bn: str = "shuffle",
        bn_splits: int = 1,
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("queue_size", queue_size), ("bn_splits", bn_splits)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if bn not in BN_MODES:
            raise ValueError(f"bn must be one of {BN_MODES}, got {bn!r}")
        if bn == "sync" and bn_splits != 1:
            raise ValueError("bn_splits > 1 simulates several devices' BN on one; it cannot be combined with bn='sync'")
        backbone, feat_dim = build_backbone(arch, cifar_stem, in_channels)
        if bn_splits > 1:
            _split_bn(backbone, bn_splits)
        self.hidden_dim = hidden_dim
        hidden_dim = hidden_dim or feat_dim
        self.arch, self.cifar_stem, self.in_channels = arch, cifar_stem, in_channels
        self.dim, self.queue_size, self.momentum = dim, queue_size, float(momentum)
        self.bn, self.bn_splits, self.feature_dim = bn, bn_splits, feat_dim

        self.query_encoder = nn.Sequential(backbone, projection_head(feat_dim, hidden_dim, dim))
        self.key_encoder = copy.deepcopy(self.query_encoder)
        for p in self.key_encoder.parameters():
            p.requires_grad_(False)
        queue = F.normalize(torch.randn(queue_size, dim, generator=torch.Generator().manual_seed(0)), dim=1)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def config(self) -> dict:
        """The constructor arguments (JSON values): ``MoCo(**model.config())`` rebuilds this architecture, which is
        what :func:`nda.run.save_model` stores beside the weights."""
        return {"arch": self.arch, "cifar_stem": self.cifar_stem, "in_channels": self.in_channels, "dim": self.dim,
                "hidden_dim": self.hidden_dim, "queue_size": self.queue_size, "momentum": self.momentum,
                "bn": self.bn, "bn_splits": self.bn_splits}

    @property
    def backbone(self) -> nn.Module:
        """The query backbone (pooled features, no head): what kNN / linear probes evaluate."""
        return self.query_encoder[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Query embeddings ``(B, dim)``, L2-normalised; the only path with gradients."""
        return F.normalize(self.query_encoder(images), dim=1)

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``key = m * key + (1 - m) * query`` for every parameter (buffers such as BN statistics are the key
        encoder's own, as in MoCo)."""
        q_params = [p.detach() for p in self.query_encoder.parameters()]
        k_params = [p for p in self.key_encoder.parameters()]
        torch._foreach_mul_(k_params, self.momentum)
        torch._foreach_add_(k_params, q_params, alpha=1.0 - self.momentum)

    @torch.no_grad()
    def encode_keys(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Key embeddings ``(N, dim)``, L2-normalised, no gradient.

        With ``bn="shuffle"`` the inputs of all ranks are gathered, permuted by one permutation (drawn on
        rank 0, broadcast), each rank encodes its slice, and the outputs are gathered and un-permuted: BN
        statistics of a key come from other processes' (or other splits') samples than its query's. Every
        rank must call this with the same ``N``.
        """
        rank, world = world_info()
        if self.bn != "shuffle" or (world == 1 and self.bn_splits == 1):
            return F.normalize(self.key_encoder(images), dim=1)
        local = images.shape[0]
        x_all = concat_all_gather(images)
        total = x_all.shape[0]
        if generator is not None and generator.device == x_all.device:
            perm = torch.randperm(total, generator=generator, device=x_all.device)
        elif generator is not None:
            perm = torch.randperm(total, generator=generator, device=generator.device).to(x_all.device)
        else:
            perm = torch.randperm(total, device=x_all.device)
        if world > 1:
            dist.broadcast(perm, src=0)
        mine = perm.view(world, local)[rank]
        k = self.key_encoder(x_all[mine])
        k_all = concat_all_gather(k)
        unshuffle = torch.argsort(perm)
        k = k_all[unshuffle].view(world, local, -1)[rank]
        return F.normalize(k, dim=1)

    @torch.no_grad()
    def dequeue_and_enqueue(self, keys: torch.Tensor) -> None:
        """Overwrite the ``len(keys)`` oldest queue entries with ``keys`` (wrapping around the end), advance the
        pointer. ``keys`` must already be gathered from all ranks (identical everywhere). No host sync."""
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape (N, {self.dim}), got {tuple(keys.shape)}")
        n = keys.shape[0]
        if n > self.queue_size:
            raise ValueError(f"cannot enqueue {n} keys into a queue of {self.queue_size}: use a larger queue_size")
        idx = (self.queue_ptr + torch.arange(n, device=self.queue.device)) % self.queue_size
        self.queue.index_copy_(0, idx, keys.detach().to(self.queue.dtype))
        self.queue_ptr.copy_((self.queue_ptr + n) % self.queue_size)

    def extra_repr(self) -> str:
        return (f"arch={self.arch!r}, cifar_stem={self.cifar_stem}, dim={self.dim}, queue_size={self.queue_size}, "
                f"momentum={self.momentum}, bn={self.bn!r}, bn_splits={self.bn_splits}")


def check_queue_config(queue_size: int, batch_size: int, world_size: int, nda_k: int, nda_to_queue: bool) -> int:
    """Validate the queue against the global batch; return the number of keys enqueued per step.

    Each step enqueues the keys of the whole global batch (``batch_size * world_size``; times ``1 + K`` when
    NDA keys also enter the queue). The queue must hold a whole number of such chunks, so every key lives
    exactly ``queue_size / chunk`` steps and the pointer always lands on a chunk boundary.
    """
    if isinstance(nda_k, bool) or not isinstance(nda_k, int) or nda_k < 0:
        raise ValueError(f"nda_k (negatives per anchor) must be an int >= 0, got {nda_k!r}")
    per_step = batch_size * world_size * ((1 + nda_k) if nda_to_queue else 1)
    if queue_size % per_step:
        what = f"{batch_size} per process x {world_size} processes" + (
            f" x (1 + nda_k={nda_k}) keys, since nda_to_queue" if nda_to_queue else "")
        raise ValueError(
            f"queue_size={queue_size} is not divisible by the keys enqueued per step ({per_step} = {what}); "
            f"pick a queue_size that is a multiple of {per_step}, e.g. {max(1, queue_size // per_step) * per_step}"
        )
    return per_step
