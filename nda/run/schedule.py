"""Schedules as pure functions of the step -- learning rates and the micro-batch (phase) indices that data
order and random draws are derived from: nothing to checkpoint, so resume is exact."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["warmup_lr", "set_lr", "MicroSchedule"]


def warmup_lr(step: int, lr: float, warmup_steps: int, steps: int, decay: str = "linear") -> float:
    """Linear warm-up over ``warmup_steps``, then ``"linear"`` or ``"cosine"`` decay to 0 at ``steps``.

    >>> [round(warmup_lr(s, 1.0, 2, 6), 2) for s in range(6)]
    [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]
    >>> warmup_lr(6, 1.0, 2, 6, "cosine")
    0.0
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if decay == "linear":
        return lr * max(0.0, (steps - step) / max(1, steps - warmup_steps))
    if decay == "cosine":
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    raise ValueError(f"decay must be 'linear' or 'cosine', got {decay!r}")


def set_lr(optimizer: object, lr: float) -> None:
    """Set every parameter group's learning rate (``optimizer.param_groups``)."""
    groups: Iterable[dict] = optimizer.param_groups  # type: ignore[attr-defined]
    for group in groups:
        group["lr"] = lr


@dataclass(frozen=True)
class MicroSchedule:
    """Where each micro-batch of an optimizer step sits in one global count.

    Why: a job derives data order (``run.batch_indices``) and random draws (``run.generator(stream, i)``) from
    a global micro-step index ``i``, so a resumed run (any number of processes) replays the uninterrupted one.
    Optimizer step ``step`` is ``updates`` updates (a GAN: ``n_dis`` D updates, then G's) of ``grad_accum``
    micro-batches each; micro-batch ``micro`` of update ``update`` is number
    ``(step * updates + update) * grad_accum + micro``. Written once here instead of by hand in every job.

    >>> phases = MicroSchedule(grad_accum=2, updates=3)   # e.g. n_dis=2 D updates, then the G update
    >>> [list(phases.micro_steps(1, u)) for u in range(3)]
    [[(0, 6), (1, 7)], [(0, 8), (1, 9)], [(0, 10), (1, 11)]]
    >>> list(MicroSchedule(grad_accum=3).micro_steps(2))  # one update per step (MoCo, classify)
    [(0, 6), (1, 7), (2, 8)]
    """

    grad_accum: int
    updates: int = 1

    def __post_init__(self) -> None:
        for name in ("grad_accum", "updates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MicroSchedule: {name} must be an int >= 1, got {value!r}")

    def index(self, step: int, update: int = 0, micro: int = 0) -> int:
        """The global index of micro-batch ``micro`` of update ``update`` of optimizer step ``step``."""
        return (step * self.updates + update) * self.grad_accum + micro

    def micro_steps(self, step: int, update: int = 0) -> Iterator[tuple[int, int]]:
        """``(micro, index)`` for each micro-batch of one update of ``step``, in order."""
        first = self.index(step, update)
        for micro in range(self.grad_accum):
            yield micro, first + micro
