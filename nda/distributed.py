"""Collectives for contrastive learning across processes, in one home (as lightly's ``utils/dist.py``).

- :func:`gather_with_grad` -- ``all_gather`` whose backward sums every rank's gradient: in-batch negatives
  from all processes with exact gradients (SimCSE / SimCLR across GPUs);
- :func:`concat_all_gather` / :func:`gather_no_grad` -- ``all_gather`` without a graph (MoCo queue keys,
  masks, labels; bools travel as uint8 because gloo has none);
- :func:`world_info` -- ``(rank, world_size)``, ``(0, 1)`` without a process group.

Each is the identity without an initialised process group of two or more processes, so single-process
code paths need no special case.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["world_info", "gather_with_grad", "gather_no_grad", "concat_all_gather"]


def _ready() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_info() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """``all_gather`` along dim 0; backward all-reduces (sums) the incoming gradient and returns this rank's
    slice, so every rank's loss contributes to the gradient of every rank's embeddings."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world = dist.get_world_size()
        ctx.rank = dist.get_rank()
        ctx.rows = tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        parts[ctx.rank] = tensor
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (same shape on every rank) from all processes along dim 0, keeping gradients.

    Why not ``accelerate.utils.gather``: it returns a tensor without a graph, so the other ranks' keys would
    be constants and the local keys would get no gradient through the other ranks' losses. Here the local
    slice is this rank's own tensor (its graph is kept) and the backward sums every rank's gradient (one
    ``all_reduce``): the exact gradient of the sum of all ranks' losses, which DDP then averages like any
    other gradient. Works on every backend (gloo has no ``reduce_scatter``).
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if not _ready():
        return tensor
    if not tensor.requires_grad:
        return gather_no_grad(tensor)
    return _GatherWithGrad.apply(tensor)


@torch.no_grad()
def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """``all_gather`` along dim 0 in rank order, without a graph; bools travel as uint8 (gloo has no bool)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if not _ready():
        return tensor
    is_bool = tensor.dtype == torch.bool
    t = tensor.to(torch.uint8) if is_bool else tensor
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    out = torch.cat(parts, dim=0)
    return out.bool() if is_bool else out


concat_all_gather = gather_no_grad  # MoCo's name for it (the queue's keys)
