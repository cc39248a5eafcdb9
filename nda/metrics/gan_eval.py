"""GAN evaluation shared by the GAN job, ``tasks/eval_gan.py`` and benchmarks: FID/KID of a generator (or of
image tensors) against a reference set, and the discriminator as an anomaly detector.

Why here and not in a task: tasks never import tasks, and the training job's final evaluation and the
stand-alone evaluation must compute the same numbers the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from nda.metrics.fid import compute_features, fid_from_features, kid_from_features
from nda.metrics.reference import ReferenceStats

__all__ = ["fid_kid", "discriminator_anomaly"]


@torch.no_grad()
def fid_kid(
    extractor: Any,
    sampler_or_images: torch.Tensor | Callable[[int], torch.Tensor],
    reference: torch.Tensor | ReferenceStats,
    num_samples: int,
    device: torch.device | str | None,
    batch_size: int = 500,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    reference_name: str = "",
    generator_name: str = "",
    progress: bool | None = None,
) -> dict:
    """``{"fid": {...}, "kid": {...}}`` of generated images against a reference, each naming the extractor,
    the sample count and the reference.

    ``sampler_or_images``: uint8 images ``(N, C, H, W)`` or ``sampler(n) -> images`` (quantise generated
    images to uint8 first, as saved images are: :func:`nda.data.images.to_uint8`). ``reference``: real images
    (features computed now) or a :class:`ReferenceStats` from :func:`nda.metrics.reference.reference_stats`
    (cached; must come from the same extractor -- mixing feature spaces is a ``ValueError``). Both give the
    same numbers for the same images. ``progress``: bars over feature extraction on the main process (``None``:
    when stderr is a terminal; see :func:`nda.metrics.fid.show_progress`).
    """
    fake_device = device if isinstance(sampler_or_images, torch.Tensor) else None  # a sampler makes its own
    f_fake = compute_features(extractor, sampler_or_images, batch_size=batch_size, device=fake_device,
                              num_samples=num_samples, progress=progress, desc="features (generated)")
    if isinstance(reference, ReferenceStats):
        if reference.extractor != extractor.name:
            raise ValueError(f"reference statistics were computed with {reference.extractor}, but the extractor is "
                             f"{extractor.name}: FID/KID across feature spaces mean nothing")
        if reference.features.shape[1] != f_fake.shape[1]:
            raise ValueError(f"reference features are {reference.features.shape[1]}-d, generated {f_fake.shape[1]}-d")
        f_real = reference.features
        fid = fid_from_features(f_fake, f_real, statistics2=(reference.mu, reference.sigma))
        n_real = reference.num_images
        label = reference_name or (f"{reference.dataset}/{reference.split}" if reference.dataset else reference.split)
    elif isinstance(reference, torch.Tensor):
        f_real = compute_features(extractor, reference, batch_size=batch_size, device=device, progress=progress,
                                  desc="features (reference)")
        fid = fid_from_features(f_fake, f_real)
        n_real = int(f_real.shape[0])
        label = reference_name
    else:
        raise TypeError(f"reference must be an image tensor or ReferenceStats, got {type(reference).__name__}")
    subset = min(kid_subset_size, f_fake.shape[0], n_real)
    kid, kid_std = kid_from_features(f_fake, f_real, subsets=kid_subsets, subset_size=subset)
    common = {"extractor": extractor.name, "n_generated": int(f_fake.shape[0]),
              "reference": f"{label} ({n_real} images)", "generator": generator_name}
    if isinstance(reference, ReferenceStats) and reference.path is not None:
        common["reference_stats"] = str(reference.path)
    return {"fid": {"value": fid, **common}, "kid": {"value": kid, "std": kid_std, "subset_size": subset, **common}}


@torch.no_grad()
def discriminator_anomaly(
    d_model: Callable[[torch.Tensor], torch.Tensor],
    in_images: torch.Tensor,
    in_name: str,
    device: torch.device | str,
    severity: int = 3,
    image_size: int | None = None,
    seed: int = 0,
    include_digits: bool = True,
    batch_size: int = 500,
) -> dict:
    """AUROC of ``-D(x)`` (higher = more anomalous) for the in-distribution uint8 images against each OOD set:
    the same images with each CIFAR-10-C-style corruption at ``severity`` (:mod:`nda.data.corruptions`), and
    scikit-learn's digits upscaled to the image size (another domain; ``include_digits``)."""
    from nda.data.corruptions import CORRUPTIONS, corrupt
    from nda.data.images import load_images, to_float
    from nda.metrics.anomaly import auroc_table
    from nda.objectives.anomaly import discriminator_anomaly_score

    if getattr(d_model, "num_classes", 0):
        return {"skipped": "anomaly scores need an unconditional discriminator (labels of OOD images are undefined)"}
    if hasattr(d_model, "eval"):
        d_model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    size = image_size or in_images.shape[-1]

    def scores(u8: torch.Tensor) -> torch.Tensor:
        logits = (d_model(to_float(u8[i : i + batch_size].to(device))).float() for i in range(0, len(u8), batch_size))
        return torch.cat([discriminator_anomaly_score(d).cpu() for d in logits])

    s_in = scores(in_images)
    ood = {f"{name} (severity {severity})": corrupt(in_images.to(device), name, severity, generator=gen)
           for name in CORRUPTIONS}
    if include_digits:
        ood["digits (upscaled)"] = load_images("digits", "all", image_size=size, channels=in_images.shape[1]).images
    table = auroc_table(s_in, {name: scores(x) for name, x in ood.items()})
    return {"score": "-D(x), higher = more anomalous", "in": f"{in_name} ({len(in_images)} images)", "auroc": table}
