"""Every random draw of a run as a pure function of ``(seed, step, rank, stream)``.

Why: a run that stores no RNG state cannot restore the wrong one. Accelerate, for one, saves custom
objects from rank 0 only, so a resumed 2-process run gave rank 1 rank 0's noise generator and both ranks
drew identical noise from then on. Deriving each step's generators from ``(seed, step, rank)`` makes
resume exact by construction, on any number of processes, and makes ranks differ by construction.
"""

from __future__ import annotations

import functools
import hashlib
import random

import torch

__all__ = ["derive_seed", "step_generator", "seed_globals", "batch_indices", "STREAMS"]

# named streams, so two consumers of one step never share a generator by accident
STREAMS = {"data": 0, "global": 1, "nda": 2, "noise": 3, "augment": 4, "shuffle": 5, "eval": 6, "extra": 7}


def derive_seed(seed: int, step: int, rank: int = 0, stream: int | str = 0) -> int:
    """A 63-bit seed from ``(seed, step, rank, stream)`` through SHA-256: distinct inputs never collide in
    practice (unlike packed bit fields, which overflow for large steps or many ranks).

    >>> derive_seed(0, 10, 1, "nda") == derive_seed(0, 10, 1, "nda") != derive_seed(0, 10, 0, "nda")
    True
    """
    stream_id = STREAMS[stream] if isinstance(stream, str) else int(stream)
    digest = hashlib.sha256(f"{int(seed)}/{int(step)}/{int(rank)}/{stream_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def step_generator(seed: int, step: int, rank: int = 0, stream: int | str = 0,
                   device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded by :func:`derive_seed`."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, step, rank, stream))


def seed_globals(seed: int, step: int, rank: int = 0) -> None:
    """Seed torch (CPU and every CUDA device), ``random`` and NumPy for one step: the draws that do not take a
    generator (dropout above all) then replay exactly after a resume."""
    value = derive_seed(seed, step, rank, "global")
    torch.manual_seed(value)
    random.seed(value)
    try:
        import numpy as np

        np.random.seed(value % 2**32)
    except ImportError:  # pragma: no cover - numpy ships with torch's usual installs
        pass


def batch_indices(step: int, num_samples: int, batch_size: int, seed: int, rank: int = 0,
                  world_size: int = 1) -> torch.Tensor:
    """Indices (CPU, int64) of ``rank``'s local batch at global micro-step ``step``: a pure function.

    Each epoch is a seeded permutation of ``range(num_samples)``; the global batch (``batch_size`` per
    process times ``world_size``) at ``step`` is a contiguous slice of it (a batch that would straddle the
    epoch end is dropped), and each rank takes its own part: ranks never see the same sample in a step.

    >>> batch_indices(0, 10, 2, seed=0, rank=0, world_size=2).tolist() != batch_indices(0, 10, 2, 0, 1, 2).tolist()
    True
    """
    for name, value in (("step", step), ("num_samples", num_samples), ("batch_size", batch_size),
                        ("world_size", world_size), ("rank", rank)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size or step < 0:
        raise ValueError(f"need batch_size >= 1, world_size >= 1, 0 <= rank < world_size, step >= 0; got "
                         f"batch_size={batch_size}, world_size={world_size}, rank={rank}, step={step}")
    global_batch = batch_size * world_size
    if num_samples < global_batch:
        raise ValueError(
            f"the dataset has {num_samples} samples, fewer than one global batch "
            f"({batch_size} per process x {world_size} processes)"
        )
    per_epoch = num_samples // global_batch
    epoch, within = divmod(step, per_epoch)
    perm = _epoch_permutation(num_samples, seed, epoch)
    start = within * global_batch + rank * batch_size
    return perm[start : start + batch_size].clone()


@functools.lru_cache(maxsize=4)
def _epoch_permutation(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """The seeded order of one epoch, built once per epoch rather than at every step."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=g)
