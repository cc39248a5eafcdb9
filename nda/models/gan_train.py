"""One discriminator step and one generator step of an NDA GAN, shared by ``tasks/gan.py`` and
``benchmarks/gan_step.py`` (so the benchmark times the code that trains, not a copy of it).

The discriminator step (Sinha et al., ICLR 2021, sec. 4): sample fakes with G (no grad), make the NDA batch
from the real one, one D pass over the concatenated batch, loss ``real + a*fake + b*NDA`` (``mode="separate"``)
or the same-compute ``mode="mix"`` (a share of the fakes replaced by NDA samples). The generator step is the
plain GAN generator loss: NDA never changes what G optimises.

``augment`` is the control the paper argues against: the same transform used as a label-preserving *positive*
augmentation, DiffAugment-style (Zhao et al., 2020): applied to real AND fake images before D, each batch with
its own per-sample draws, and in the generator step to G's samples too, with gradients flowing through it (the
image negatives are index/mask/blend ops, differentiable for float input). NDA samples are made from the
un-augmented real batch and are not augmented again, so ``--augment`` leaves the negative path as it was.

Every random draw comes from a generator the caller passes (``noise``, ``nda``, ``augment``), so a run can
derive each from ``(seed, step, rank)`` and resume exactly. ``backward`` is the caller's (``accelerator.backward``
for mixed precision); the caller zeroes gradients and steps the optimizer (gradient accumulation stays explicit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nda.objectives import DiscriminatorNegativeLoss, generator_loss
from nda.vision.pixels import to_float, to_uint8

__all__ = ["sample_noise", "augment_images", "discriminator_step", "generator_step"]

Backward = Callable[[torch.Tensor], Any]


def sample_noise(n: int, z_dim: int, num_classes: int, generator: torch.Generator | None,
                 device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(z, y)``: ``n`` standard-normal latents and, for a conditional model, uniformly drawn class labels."""
    z = torch.randn(n, z_dim, generator=generator, device=device)
    y = torch.randint(0, num_classes, (n,), generator=generator, device=device) if num_classes else None
    return z, y


def image_sampler(G: nn.Module, generator: torch.Generator | None,
                  device: torch.device | str) -> Callable[[int], torch.Tensor]:
    """``n -> (n, C, H, W)`` uint8 samples of ``G`` on one noise stream: what FID/KID consume."""

    @torch.no_grad()
    def sample(n: int) -> torch.Tensor:
        z, y = sample_noise(n, G.z_dim, G.num_classes, generator, device)
        return to_uint8(G(z, y).float())

    return sample


def augment_images(augment: Callable[..., torch.Tensor] | None, x: torch.Tensor, generator: torch.Generator | None,
                   p: float = 1.0) -> torch.Tensor:
    """``augment(x)`` for each sample with probability ``p`` (1: every sample, as DiffAugment), else ``x``.

    ``p < 1`` is ADA's knob (Karras et al., 2020): a transform applied to every image can "leak" into the
    generated distribution, one applied with ``p`` well below 1 cannot for invertible transform families.
    """
    if augment is None:
        return x
    out = augment(x, generator=generator)
    if p < 1.0:
        keep = torch.rand(x.shape[0], generator=generator, device=x.device) >= p
        out = torch.where(keep.view(-1, 1, 1, 1), x, out)
    return out


def _cat(*labels: torch.Tensor | None) -> torch.Tensor | None:
    return None if labels[0] is None else torch.cat(labels)  # type: ignore[arg-type]


def discriminator_step(
    G: nn.Module,
    D: nn.Module,
    criterion: DiscriminatorNegativeLoss,
    real: torch.Tensor,
    *,
    z: torch.Tensor,
    labels: torch.Tensor | None = None,
    fake_labels: torch.Tensor | None = None,
    negative: Callable[..., torch.Tensor] | None = None,
    nda_generator: torch.Generator | None = None,
    augment: Callable[..., torch.Tensor] | None = None,
    augment_generator: torch.Generator | None = None,
    augment_p: float = 1.0,
    loss_scale: float = 1.0,
    backward: Backward | None = None,
) -> dict[str, torch.Tensor]:
    """Forward and backward of one D micro-batch; returns detached scalars to log (no host sync).

    ``real``: uint8 (or float in [-1, 1]) images ``(B, C, H, W)``; ``z``/``fake_labels``: G's inputs (from
    :func:`sample_noise`); ``labels``: the real batch's labels for a conditional D. The loss is multiplied by
    ``loss_scale`` (``1 / grad_accum``) before ``backward`` (default ``Tensor.backward``).
    """
    x = to_float(real)
    with torch.no_grad():
        fake = G(z, fake_labels).to(x.dtype)  # (bf16 under autocast) -> the real batch's dtype
    neg = to_float(negative(real, generator=nda_generator)) if negative is not None else None
    if augment is not None:  # positive augmentation: real and fake alike, each with its own draws
        x = augment_images(augment, x, augment_generator, augment_p)
        fake = augment_images(augment, fake, augment_generator, augment_p)
    parts: dict[str, torch.Tensor] = {}
    b = x.shape[0]
    if neg is None:  # one D pass over [real; fake] (DDP: one forward per backward)
        d_real, d_fake = D(torch.cat([x, fake]), _cat(labels, fake_labels)).split(b)
        out = criterion(d_real, d_fake)
    elif criterion.mode == "separate":  # one pass over [real; fake; NDA]: BN-free D, so batching is exact
        d_real, d_fake, d_neg = D(torch.cat([x, fake, neg]), _cat(labels, fake_labels, labels)).split(b)
        out = criterion(d_real, d_fake, d_neg)
        parts["D(neg)"] = d_neg.detach().mean()
    else:  # mix: a share of the fakes replaced by NDA samples, same compute as a plain GAN
        mixed, is_neg = criterion.mix(fake, neg, generator=nda_generator)
        y_mix = torch.where(is_neg, labels, fake_labels) if labels is not None else None
        d_real, d_mixed = D(torch.cat([x, mixed]), _cat(labels, y_mix)).split(b)
        out = criterion(d_real, d_mixed, negative_mask=is_neg)
        parts["D(neg)"] = (d_mixed.detach() * is_neg).sum() / is_neg.sum().clamp_min(1)
    (backward or torch.Tensor.backward)(out.loss * loss_scale)
    # D(real) from this pass, not an extra forward at log time: in train mode every D forward runs a
    # spectral-norm power iteration, so an extra pass would make training depend on --log-every
    parts.update({"loss_d": out.loss.detach(), "loss_d_real": out.real, "loss_d_fake": out.fake,
                  "D(real)": d_real.detach().mean()})
    if out.negative is not None:
        parts["loss_d_negative"] = out.negative
    return parts


def generator_step(
    G: nn.Module,
    D: nn.Module,
    loss: str,
    *,
    z: torch.Tensor,
    fake_labels: torch.Tensor | None = None,
    augment: Callable[..., torch.Tensor] | None = None,
    augment_generator: torch.Generator | None = None,
    augment_p: float = 1.0,
    loss_scale: float = 1.0,
    backward: Backward | None = None,
) -> dict[str, torch.Tensor]:
    """Forward and backward of one G micro-batch with the unchanged generator loss (``"hinge"`` or ``"bce"``);
    with ``augment``, D sees augmented fakes and the gradient flows back through the augmentation."""
    fake = augment_images(augment, G(z, fake_labels), augment_generator, augment_p)
    d_gen = D(fake, fake_labels)
    loss_g = generator_loss(d_gen, loss)
    (backward or torch.Tensor.backward)(loss_g * loss_scale)
    return {"loss_g": loss_g.detach(), "D(fake)": d_gen.detach().mean()}
