"""A one-process stand-in for ``accelerate.Accelerator``: the few members :class:`~nda.run.Run` uses.

Why: unit tests (and notebooks) of code built on the run skeleton should not need a launcher or a process
group, and three hand-written copies of this stand-in had already drifted apart.

>>> acc = OneProcessAccelerator()
>>> acc.is_main_process, acc.num_processes, acc.reduce(1.5)
(True, 1, 1.5)
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["OneProcessAccelerator"]


class OneProcessAccelerator:
    """The Accelerator members ``Run`` uses, for a single CPU process (no gathers, no autocast, no scaler)."""

    is_main_process = True
    process_index = 0
    num_processes = 1
    device = torch.device("cpu")
    scaler = None
    mixed_precision = "no"

    def wait_for_everyone(self) -> None:
        """Nothing to wait for with one process."""

    def unwrap_model(self, model: Any) -> Any:
        return model

    def print(self, *args: Any) -> None:
        print(*args)

    def reduce(self, tensor: Any, reduction: str = "mean") -> Any:
        return tensor
