"""Learning-rate schedules as pure functions of the step: nothing to checkpoint, so resume is exact."""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["warmup_lr", "set_lr"]


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
