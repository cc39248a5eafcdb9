"""Reference statistics for FID/KID: computed once per (images, split, extractor, N, image size) and cached.

Why: the real side of FID/KID is the same at every evaluation of every run, and Inception features are the
expensive part (10k images: ~30 s on a GPU, ~30 min on 2 CPU cores). As pytorch-fid's ``save_fid_stats``,
the mean ``mu`` (D,) and covariance ``sigma`` (D, D) are stored (float64, in an ``.npz`` that pytorch-fid
reads as is: ``np.load(path)["mu"]``). Unlike pytorch-fid, the ``features`` (N, D) are stored too, because
KID is an MMD over samples and cannot be computed from a mean and a covariance; the extractors output
float32, so float32 storage loses nothing (10k x 2048: 82 MB). A JSON sidecar records what the file is. No
pickle anywhere: ``np.load(..., allow_pickle=False)``.

The cache key: the sha256 of the exact pixels used (the dataset's identity: a path is not one -- the same
file can move, another file can take its place), the split, ``extractor.name`` (which carries the sha256 of
its weights), N, the image shape (C, H, W), and a format version. Change any of them and the statistics are
computed again; an unreadable or inconsistent cache entry is recomputed and overwritten.

    >>> stats = reference_stats(extractor, ref.images, split="test", dataset="cifar10-jpg")  # doctest: +SKIP
    >>> fid_kid(extractor, sampler, stats, num_samples=10_000, device="cuda")              # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nda.files import atomic_path, atomic_write_text, default_cache_dir, sha256_bytes
from nda.metrics.fid import compute_features, feature_statistics

__all__ = ["ReferenceStats", "reference_stats", "load_reference_stats", "save_reference_stats", "images_sha256"]

_FORMAT_VERSION = 1


@dataclass(eq=False)  # arrays: compare fields explicitly
class ReferenceStats:
    """Features and their mean/covariance for the real side of FID/KID, with what they were computed from.

    ``computed`` is True when this call ran the extractor, False when the statistics came from the cache.
    """

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray
    extractor: str
    split: str
    dataset: str
    images_sha256: str
    image_shape: tuple[int, ...]
    path: Path | None = None
    computed: bool = False

    @property
    def num_images(self) -> int:
        return int(self.features.shape[0])

    def describe(self) -> str:
        """``"cifar10-jpg/test (10000 images)"``, as the GAN results name their reference."""
        label = f"{self.dataset}/{self.split}" if self.dataset else self.split
        return f"{label} ({self.num_images} images)"

    def meta(self) -> dict[str, Any]:
        return {"format_version": _FORMAT_VERSION, "extractor": self.extractor, "split": self.split,
                "dataset": self.dataset, "num_images": self.num_images, "image_shape": list(self.image_shape),
                "images_sha256": self.images_sha256, "feature_dim": int(self.features.shape[1])}


def images_sha256(images: torch.Tensor, chunk: int = 1024) -> str:
    """sha256 of dtype, shape and bytes of an image tensor, hashed in chunks (no full copy; a CUDA tensor is
    copied to the CPU one chunk at a time -- an evaluation step, not a hot path)."""
    h = hashlib.sha256(f"{images.dtype}|{tuple(images.shape)}|".encode())
    for i in range(0, images.shape[0], chunk):
        h.update(images[i : i + chunk].detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


def _key(extractor_name: str, split: str, n: int, image_shape: tuple[int, ...], sha: str) -> str:
    text = json.dumps([_FORMAT_VERSION, extractor_name, split, n, list(image_shape), sha])
    return sha256_bytes(text.encode(), 16)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")[:40] or "x"


def save_reference_stats(stats: ReferenceStats, path: str | os.PathLike) -> Path:
    """Write ``<path>.npz`` (``mu``, ``sigma``, ``features``) and ``<path>.json`` atomically; returns the npz path."""
    npz = Path(path).with_suffix(".npz")
    npz.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(npz) as tmp, open(tmp, "wb") as f:  # concurrent writers of one key write the same content
        np.savez(f, mu=stats.mu.astype(np.float64), sigma=stats.sigma.astype(np.float64),
                 features=stats.features.astype(np.float32))
    atomic_write_text(npz.with_suffix(".json"), json.dumps(stats.meta(), indent=2))
    return npz


def load_reference_stats(path: str | os.PathLike) -> ReferenceStats:
    """Read statistics written by :func:`save_reference_stats` (no pickle); ``ValueError`` if inconsistent."""
    npz = Path(path).with_suffix(".npz")
    meta = json.loads(npz.with_suffix(".json").read_text())
    with np.load(npz, allow_pickle=False) as data:
        mu, sigma, features = data["mu"], data["sigma"], data["features"]
    n, d = int(meta["num_images"]), int(meta["feature_dim"])
    if mu.shape != (d,) or sigma.shape != (d, d) or features.shape != (n, d):
        raise ValueError(f"{npz}: arrays {mu.shape}, {sigma.shape}, {features.shape} do not match its JSON "
                         f"({n} images, {d} features)")
    return ReferenceStats(mu, sigma, features, meta["extractor"], meta["split"], meta["dataset"],
                          meta["images_sha256"], tuple(meta["image_shape"]), path=npz)


def reference_stats(
    extractor: Any,
    images: torch.Tensor,
    split: str,
    dataset: str = "",
    num_images: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 500,
    device: torch.device | str | None = None,
    progress: bool | None = None,
) -> ReferenceStats:
    """Statistics of the first ``num_images`` (default all) of ``images`` under ``extractor``, from the cache
    (``<cache_dir>/fid_stats/``; default ``$NDA_CACHE`` or ``~/.cache/nda``) or computed and stored there.

    ``split`` and ``dataset`` label the result (``dataset`` only for humans: the content hash identifies it).
    """
    name = getattr(extractor, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError("extractor must have a non-empty .name (its identity is part of the cache key)")
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise TypeError(f"images must be an image tensor (N, C, H, W), got {getattr(images, 'shape', type(images))}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty string such as 'test', got {split!r}")
    n = images.shape[0] if num_images is None else num_images
    if not isinstance(n, int) or not 2 <= n <= images.shape[0]:
        raise ValueError(f"num_images must be an int in [2, {images.shape[0]}] (FID needs a covariance), got {num_images!r}")
    images = images[:n]
    shape = tuple(int(s) for s in images.shape[1:])
    sha = images_sha256(images)
    if cache_dir is None:
        cache_dir = default_cache_dir()
    path = Path(cache_dir) / "fid_stats" / f"{_slug(split)}_n{n}_{_slug(name)}_{_key(name, split, n, shape, sha)}.npz"
    if path.is_file() and path.with_suffix(".json").is_file():
        try:
            stats = load_reference_stats(path)
            if (stats.extractor, stats.split, stats.num_images, stats.image_shape, stats.images_sha256) == (name, split, n, shape, sha):
                stats.dataset = dataset or stats.dataset
                return stats
            warnings.warn(f"reference statistics {path} do not match their key; computing them again", stacklevel=2)
        except Exception as err:  # truncated zip, bad JSON, missing key...: the cache is only a cache
            warnings.warn(f"reference statistics {path} are unreadable ({err}); computing them again", stacklevel=2)
    features = compute_features(extractor, images, batch_size=batch_size, device=device, progress=progress,
                                desc=f"features ({split} reference)")
    mu, sigma = feature_statistics(features)
    stats = ReferenceStats(mu, sigma, features.to(torch.float32).numpy(), name, split, dataset, sha, shape,
                           computed=True)
    stats.path = save_reference_stats(stats, path)
    return stats
