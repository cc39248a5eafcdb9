"""Fréchet distance (FID) and kernel distance (KID) between two sets of features, over any extractor.

Why "over any extractor": the usual Inception-v3 weights are not always reachable (offline machines), and a
number means nothing without its feature space. These functions take features; :func:`compute_features`
runs an extractor from :mod:`nda.metrics.extractors` over images or a sampler. Report every value with
``extractor.name``.

- FID (Heusel et al. 2017): ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})``, in float64. The trace of the
  matrix square root is computed as ``sum sqrt(eig(S1^{1/2} S2 S1^{1/2}))``, a symmetric PSD matrix, so the
  eigenvalues are real and clipped at 0: no complex parts and no ``sqrtm`` failures on singular covariances.
- KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets (mean and std reported).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = [
    "frechet_distance",
    "fid_from_features",
    "kid_from_features",
    "kernel_inception_distance",
    "feature_statistics",
    "compute_features",
    "show_progress",
]


def show_progress(progress: bool | None) -> bool:
    """Whether to draw a progress bar: never off the main process (one bar, not one per rank); ``None`` = only
    when stderr is a terminal (no bar lines in log files); otherwise ``progress``."""
    from nda.distributed import world_info

    if world_info()[0] != 0 or os.environ.get("RANK", "0") != "0":
        return False
    return sys.stderr.isatty() if progress is None else bool(progress)


def _as_float64(name: str, x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf values")
    return arr


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (float64, >= 0).

    >>> frechet_distance(np.zeros(2), np.eye(2), np.ones(2), np.eye(2))
    2.0
    """
    mu1, mu2 = _as_float64("mu1", mu1), _as_float64("mu2", mu2)
    s1, s2 = _as_float64("sigma1", sigma1), _as_float64("sigma2", sigma2)
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 must be 1-D vectors of the same length, got {mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    if s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"sigma1 and sigma2 must be ({d}, {d}) matrices, got {s1.shape} and {s2.shape}")
    root1 = _sqrt_psd(s1)
    inner = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(value, 0.0)


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of ``(N, D)`` features."""
    f = _as_float64("features", features)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def fid_from_features(features1: Any, features2: Any, statistics2: tuple[Any, Any] | None = None) -> float:
    """FID between two ``(N, D)`` feature sets (use >= several thousand samples; the estimate is biased
    upwards for small N, so compare runs at the same N).

    When a set has no more samples than dimensions (a quick evaluation: 64 samples of 2048-d Inception
    features), its covariance has rank < N and the same value is computed exactly in the N-dimensional
    sample space (:func:`_fid_low_rank`: milliseconds instead of several D x D eigendecompositions).
    ``statistics2``: the precomputed ``(mu, sigma)`` of ``features2`` (cached reference statistics, as
    :func:`feature_statistics` returns them), used instead of recomputing them -- the value is the same.
    """
    f1, f2 = _as_float64("features1", features1), _as_float64("features2", features2)
    for name, f in (("features1", f1), ("features2", f2)):
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"{name} must be (N, D) with N >= 2, got shape {f.shape}")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dimensions differ: {f1.shape[1]} vs {f2.shape[1]}")
    if min(f1.shape[0], f2.shape[0]) <= f1.shape[1]:
        return _fid_low_rank(f1, f2)
    mu1, s1 = feature_statistics(f1)
    mu2, s2 = feature_statistics(f2) if statistics2 is None else statistics2
    return frechet_distance(mu1, s1, mu2, s2)


def _fid_low_rank(f1: np.ndarray, f2: np.ndarray) -> float:
    """Exact FID through the centred samples: with ``S1 = A'A / (n1 - 1)`` and ``S2 = B'B / (n2 - 1)``, the
    non-zero eigenvalues of ``S1 S2`` are those of ``(A B')(A B')' / ((n1 - 1)(n2 - 1))``, so
    ``tr (S1 S2)^{1/2}`` is the sum of the singular values of ``A B'`` over ``sqrt((n1 - 1)(n2 - 1))``:
    O(n1 n2 D) instead of O(D^3)."""
    a, b = f1 - f1.mean(axis=0), f2 - f2.mean(axis=0)
    n1, n2 = f1.shape[0] - 1, f2.shape[0] - 1
    tr_covmean = float(np.linalg.svd(a @ b.T, compute_uv=False).sum()) / np.sqrt(n1 * n2)
    diff = f1.mean(axis=0) - f2.mean(axis=0)
    value = float(diff @ diff + (a * a).sum() / n1 + (b * b).sum() / n2 - 2.0 * tr_covmean)
    return max(value, 0.0)


def kid_from_features(
    features1: Any,
    features2: Any,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (unbiased polynomial-kernel MMD^2) between two feature sets: ``(mean, std)`` over ``subsets``
    random subsets of ``min(subset_size, N1, N2)`` samples each."""
    f1, f2 = _as_float64("features1", features1), _as_float64("features2", features2)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D, got {f1.shape} and {f2.shape}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    m = min(subset_size, f1.shape[0], f2.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {f1.shape[0]} and {f2.shape[0]}")
    d = f1.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):  # a loop over subsets (an evaluation, not a hot path): m x m kernels each
        x = f1[rng.choice(f1.shape[0], m, replace=False)]
        y = f2[rng.choice(f2.shape[0], m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        values[i] = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    return float(values.mean()), float(values.std())


def kernel_inception_distance(features1: Any, features2: Any, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """Alias of :func:`kid_from_features` (the name is historical: any extractor's features work)."""
    return kid_from_features(features1, features2, subsets=subsets, subset_size=subset_size, seed=seed)


@torch.no_grad()
def compute_features(
    extractor: Callable[[torch.Tensor], torch.Tensor],
    images_or_sampler: torch.Tensor | Callable[[int], torch.Tensor],
    batch_size: int = 256,
    device: torch.device | str | None = None,
    num_samples: int | None = None,
    progress: bool | None = None,
    desc: str = "features",
) -> torch.Tensor:
    """Features ``(N, D)`` (float64, CPU) of a uint8/[-1, 1] image tensor ``(N, C, H, W)``, or of a sampler
    ``sampler(n) -> images (n, C, H, W)`` called until ``num_samples`` images were drawn.

    ``progress``: a tqdm bar (``desc``) on the main process only; ``None`` (default) shows it when stderr is a
    terminal, ``False`` never (:func:`show_progress`). 10k Inception features take minutes on a CPU.

    Generated images should be quantised to uint8 first (as saved images are) for comparable numbers:
    :func:`nda.data.images.to_uint8`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else None
    if isinstance(images_or_sampler, torch.Tensor):
        images = images_or_sampler
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        n = images.shape[0] if num_samples is None else min(num_samples, images.shape[0])
        batches = (images[i : i + batch_size] for i in range(0, n, batch_size))
    elif callable(images_or_sampler):
        if num_samples is None or num_samples < 1:
            raise ValueError("a sampler needs num_samples >= 1")
        n = num_samples
        sampler = images_or_sampler
        batches = (sampler(min(batch_size, n - i)) for i in range(0, n, batch_size))
    else:
        raise TypeError(f"images_or_sampler must be a tensor or a callable, got {type(images_or_sampler).__name__}")
    from tqdm.auto import tqdm

    out = []
    for batch in tqdm(batches, total=-(-n // batch_size), desc=desc, unit="batch", disable=not show_progress(progress),
                      leave=False):
        if device is not None:
            batch = batch.to(device, non_blocking=True)
        out.append(extractor(batch).detach().to("cpu", torch.float64))
    return torch.cat(out)
