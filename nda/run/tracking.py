"""Scalars of a run: ``metrics.csv`` (always) and TensorBoard (when installed), main process only.

One row per step: logging a second set of values at a step (an evaluation after the training scalars, or
the same final evaluation after a ``--resume`` of a finished run) fills that step's row instead of adding a
row, so the file never holds duplicates. On resume, rows after the checkpoint's step (logged by the
interrupted run after its last checkpoint) are dropped first.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["Tracker"]


class Tracker:
    """``log(values, step)`` -> one CSV row per step.

    >>> import tempfile
    >>> t = Tracker(tempfile.mkdtemp(), tensorboard=False)
    >>> t.log({"loss": 1.0}, 10); t.log({"fid": 3.0}, 10)
    >>> t.rows
    [{'step': 10, 'loss': 1.0, 'fid': 3.0}]
    """

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True, tensorboard: bool = True,
                 resumed_step: int | None = None) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.csv"
        self._writer = None
        self._rows: dict[int, dict[str, Any]] = {}
        self._keys: list[str] = ["step"]
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and resumed_step is not None:
            with open(self.path, newline="") as fh:
                for row in csv.DictReader(fh):
                    step = int(float(row["step"]))
                    if step <= resumed_step:
                        self._rows[step] = {"step": step, **{k: _number(v) for k, v in row.items()
                                                             if k != "step" and v != ""}}
        self._rewrite()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                # purge_step: events the interrupted run wrote after the checkpoint are dropped, as rows are
                self._writer = SummaryWriter(str(Path(run_dir) / "tensorboard"),
                                             purge_step=None if resumed_step is None else resumed_step + 1)
            except Exception:  # tensorboard not installed: CSV only
                self._writer = None

    def log(self, values: Mapping[str, float], step: int) -> None:
        if not self.enabled:
            return
        step = int(step)
        new_row = step not in self._rows and (not self._rows or step > max(self._rows))
        row = self._rows.setdefault(step, {"step": step})
        row.update({k: float(v) for k, v in values.items()})
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, float(value), step)
        if new_row and set(row) <= set(self._keys):  # the common case: one more line with known columns
            with open(self.path, "a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=self._keys, restval="").writerow(row)
        else:
            self._rewrite()

    def _rewrite(self) -> None:
        keys: list[str] = ["step"]
        for row in self._rows.values():
            keys.extend(k for k in row if k not in keys)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys, restval="")
            writer.writeheader()
            writer.writerows(self._rows[s] for s in sorted(self._rows))
        os.replace(tmp, self.path)
        self._keys = keys

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [dict(self._rows[s]) for s in sorted(self._rows)]

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text
