"""One MoCo-v2 training step with NDA negatives: what ``tasks/moco.py`` runs and ``benchmarks/moco_step.py`` times.

Why a module of its own: tasks never import tasks, and a benchmark that times a copy of the step measures
the copy. The step is split where the job needs to act between the pieces:

- :func:`moco_step` -- two MoCo-v2 views, ``K`` NDA negatives per anchor, the query forward, ONE key-encoder
  forward over the positive keys and the ``B * K`` NDA images (no gradient), the InfoNCE loss against
  ``[positive | K NDA | queue]``. The caller runs backward (it owns gradient accumulation and DDP sync);
- :func:`enqueue_keys` -- gather the step's keys from every process and enqueue them (identical queues);
- :func:`step_stats` -- the logged scalars as one device tensor (no host sync; reduced by the caller).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from nda.distributed import concat_all_gather
from nda.models.moco import MoCo
from nda.objectives.contrastive import ContrastiveNegativeLoss

__all__ = ["MoCoStepOutput", "moco_step", "enqueue_keys", "step_stats", "STAT_NAMES", "NDA_SOURCES"]

NDA_SOURCES = ("view", "image")
STAT_NAMES = ("loss", "instance_acc", "sim_positive", "sim_nda", "sim_queue")


class MoCoStepOutput(NamedTuple):
    """``loss`` (scalar, with a graph), ``logits`` ``(B, 1 + K + N)`` (divided by the temperature, masked NDA
    negatives at ``-inf``), ``keys`` ``(B * (1 + K), D)``: the ``B`` positive keys first, then row
    ``B + j * B + i`` = negative ``j`` of anchor ``i``; ``nda_k``: the ``K`` of this step."""

    loss: torch.Tensor
    logits: torch.Tensor
    keys: torch.Tensor
    nda_k: int


def moco_step(
    query: Callable[[torch.Tensor], torch.Tensor],
    moco: MoCo,
    criterion: ContrastiveNegativeLoss,
    augment: Callable[..., torch.Tensor],
    negative: Callable[..., torch.Tensor] | None,
    images: torch.Tensor,
    nda_k: int,
    *,
    nda_source: str = "view",
    channels_last: bool = False,
    autocast: Callable[[], Any] | None = None,
    augment_generator: torch.Generator | None = None,
    nda_generator: torch.Generator | None = None,
    shuffle_generator: torch.Generator | None = None,
) -> MoCoStepOutput:
    """One MoCo forward on the uint8 batch ``images`` ``(B, C, H, W)``.

    ``query`` is the (DDP-wrapped) model: the only path with gradients; ``moco`` the unwrapped module whose key
    encoder and queue are used without gradients. ``nda_source="view"`` makes negatives from the augmented key
    view; ``"image"`` from the raw image, then augments them (so a negative is not the key view's crop). A
    negative equal to its input is masked out of the loss (it would be the positive pushed away). The NDA
    images share the positive keys' forward, so NDA costs key forwards only, never a query forward/backward.
    ``autocast``: a context factory for the key forward (the query forward is autocast by ``prepare``).
    """
    if nda_source not in NDA_SOURCES:
        raise ValueError(f"nda_source must be one of {NDA_SOURCES}, got {nda_source!r}")
    if isinstance(nda_k, bool) or not isinstance(nda_k, int) or nda_k < 0:
        raise ValueError(f"nda_k (NDA negatives per anchor) must be an int >= 0, got {nda_k!r}")
    K = nda_k if negative is not None else 0
    B = images.shape[0]
    view_q = augment(images, generator=augment_generator)
    view_k = augment(images, generator=augment_generator)
    key_inputs, keep = view_k, None
    if K:
        base = view_k.repeat(K, 1, 1, 1) if nda_source == "view" else images.repeat(K, 1, 1, 1)
        negs = negative(base, generator=nda_generator)
        keep = (negs != base).flatten(1).any(dim=1).view(K, B).T  # an unchanged output is no negative
        if nda_source == "image":
            negs = augment(negs, generator=nda_generator)
        key_inputs = torch.cat([view_k, negs], dim=0)
    if channels_last:
        view_q = view_q.contiguous(memory_format=torch.channels_last)
        key_inputs = key_inputs.contiguous(memory_format=torch.channels_last)
    q = query(view_q)
    with torch.no_grad(), (autocast() if autocast is not None else contextlib.nullcontext()):
        keys = moco.encode_keys(key_inputs, generator=shuffle_generator)
    k_nda = keys[B:].view(K, B, -1).transpose(0, 1) if K else None
    out = criterion(q, keys[:B], k_nda, queue=moco.queue.detach(), negative_mask=keep)
    return MoCoStepOutput(out.loss, out.logits, keys, K)


@torch.no_grad()
def enqueue_keys(moco: MoCo, step: MoCoStepOutput, nda_to_queue: bool = False) -> None:
    """Gather this step's positive keys (and its NDA keys with ``nda_to_queue``) from every process, in rank
    order, and enqueue them: every rank enqueues the same keys, so the queue stays identical everywhere."""
    B = step.logits.shape[0]
    keys = step.keys if nda_to_queue and step.nda_k else step.keys[:B]
    moco.dequeue_and_enqueue(concat_all_gather(keys))


def _finite_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the finite entries (masked NDA logits are -inf), without a host sync."""
    finite = torch.isfinite(x)
    return torch.where(finite, x, 0.0).sum() / finite.sum().clamp_min(1)


@torch.no_grad()
def step_stats(step: MoCoStepOutput, temperature: float) -> torch.Tensor:
    """``(5,)`` on the step's device, in :data:`STAT_NAMES` order: loss, instance accuracy (the positive has
    the largest logit), mean cosine similarity to the positive, to the (unmasked) NDA negatives (0 without
    NDA) and to the queue."""
    lg = step.logits.detach()
    K = step.nda_k
    return torch.stack([
        step.loss.detach().float(),
        (lg.argmax(dim=1) == 0).float().mean(),
        lg[:, 0].mean() * temperature,
        _finite_mean(lg[:, 1:1 + K]) * temperature if K else lg.new_zeros(()),
        lg[:, 1 + K:].mean() * temperature,
    ])
