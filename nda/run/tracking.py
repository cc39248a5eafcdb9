"""Scalars of a run: ``metrics.csv`` (always, main process) and the ``--report-to`` trackers of accelerate.

One row per step: logging a second set of values at a step (an evaluation after the training scalars, or
the same final evaluation after a ``--resume`` of a finished run) fills that step's row instead of adding a
row, so the file never holds duplicates. On resume, rows after the checkpoint's step (logged by the
interrupted run after its last checkpoint) are dropped first, and so is a torn last line (a run killed while
writing it).

Trackers (TensorBoard, W&B, MLflow, ...) are accelerate's own: :func:`nda.run.make_accelerator` builds the
``Accelerator`` with ``log_with``, :class:`nda.run.Run` starts them with the saved config, every row logged
here is forwarded to ``accelerator.log`` and the run ends them with ``end_training``: one path for all jobs.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nda.files import atomic_path

__all__ = ["Tracker", "tracker_names", "tracker_config", "TRACKERS_DIR"]

TRACKERS_DIR = "trackers"  # <out-dir>/trackers/<job>/: where file-based trackers (TensorBoard, ...) write


def tracker_names(spec: str) -> list[str]:
    """``--report-to`` -> accelerate tracker names: ``none`` -> ``[]``, ``all`` -> every installed one,
    ``tensorboard,wandb`` -> both; an unknown or not installed tracker is a ValueError naming the flag.

    >>> tracker_names("none")
    []
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"--report-to must be none, all or a comma list of trackers, got {spec!r}")
    names = [part.strip().lower() for part in spec.split(",") if part.strip()]
    if names == ["none"]:
        return []
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    installed = sorted(str(getattr(t, "value", t)) for t in get_available_trackers())
    if names == ["all"]:
        return installed
    known = sorted(LOGGER_TYPE_TO_CLASS)
    for name in names:
        if name not in known:
            raise ValueError(f"--report-to {name!r} is not a tracker accelerate knows; choose none, all or "
                             f"some of {', '.join(known)}")
        if name not in installed:
            raise ValueError(f"--report-to {name}: the {name} package is not installed (pip install {name}); "
                             f"installed trackers: {', '.join(installed) or 'none'}")
    return list(dict.fromkeys(names))


def tracker_config(cfg: Any) -> dict[str, bool | int | float | str]:
    """The saved config as the flat scalar values every accelerate tracker accepts (TensorBoard's hparams take
    no ``None`` or lists): ``None`` -> ``"none"``, lists -> comma-joined, mappings -> JSON."""
    from nda.run.config import saved_config

    out: dict[str, bool | int | float | str] = {}
    for key, value in saved_config(cfg).items():
        if value is None:
            value = "none"
        elif isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        elif not isinstance(value, (bool, int, float, str)):
            value = str(value)
        out[key] = value
    return out


class Tracker:
    """``log(values, step)`` -> one CSV row per step, and ``forward(values, step=step)`` (``accelerator.log``).

    >>> import tempfile
    >>> t = Tracker(tempfile.mkdtemp())
    >>> t.log({"loss": 1.0}, 10); t.log({"fid": 3.0}, 10)
    >>> t.rows
    [{'step': 10, 'loss': 1.0, 'fid': 3.0}]
    """

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True, tensorboard: bool = False,
                 resumed_step: int | None = None,
                 forward: Callable[..., Any] | None = None) -> None:
        if tensorboard:
            raise ValueError("Tracker(tensorboard=True) is gone: TensorBoard goes through accelerate's trackers "
                             "(--report-to tensorboard), forwarded here with forward=accelerator.log")
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.csv"
        self._forward = forward
        self._rows: dict[int, dict[str, Any]] = {}
        self._keys: list[str] = ["step"]
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and resumed_step is not None:
            for row in self._read_rows():
                step = row["step"]
                if step <= resumed_step:
                    self._rows[step] = row
        self._rewrite()

    def _read_rows(self) -> list[dict[str, Any]]:
        """The rows of an existing ``metrics.csv``; a torn last line is dropped with a warning, any other
        malformed line is a ValueError naming the file and line."""
        text = self.path.read_text(encoding="utf-8", errors="replace")
        if not text:
            return []
        reader = csv.reader(io.StringIO(text))
        header = next(reader)
        if "step" not in header:
            raise ValueError(f"{self.path}: no 'step' column in its header; not a metrics.csv of nda")
        rows = []
        parsed = list(reader)
        torn = not text.endswith("\n")
        for n, fields in enumerate(parsed, start=2):
            row = self._parse(header, fields)
            if n == len(parsed) + 1 and (row is None or torn):
                print(f"warning: {self.path}: dropped a torn last line (line {n}, {','.join(fields)[:60]!r}): "
                      "the interrupted run died while writing it", file=sys.stderr)
                continue
            if row is None:
                raise ValueError(f"{self.path}: line {n} is malformed ({','.join(fields)[:60]!r}); fix or delete "
                                 "that line, then --resume again")
            rows.append(row)
        return rows

    @staticmethod
    def _parse(header: list[str], fields: list[str]) -> dict[str, Any] | None:
        if len(fields) != len(header):
            return None
        values = dict(zip(header, fields))
        try:
            step = int(float(values["step"]))
        except ValueError:
            return None
        return {"step": step, **{k: _number(v) for k, v in values.items() if k != "step" and v != ""}}

    def log(self, values: Mapping[str, float], step: int) -> None:
        if not self.enabled:
            return
        step = int(step)
        new_row = step not in self._rows and (not self._rows or step > max(self._rows))
        row = self._rows.setdefault(step, {"step": step})
        scalars = {k: float(v) for k, v in values.items()}
        row.update(scalars)
        if self._forward is not None and scalars:
            self._forward(scalars, step=step)
        if new_row and set(row) <= set(self._keys):  # the common case: one more line with known columns
            with open(self.path, "a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=self._keys, restval="").writerow(row)
        else:
            self._rewrite()

    def _rewrite(self) -> None:
        keys: list[str] = ["step"]
        for row in self._rows.values():
            keys.extend(k for k in row if k not in keys)
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys, restval="")
            writer.writeheader()
            writer.writerows(self._rows[s] for s in sorted(self._rows))
        self._keys = keys

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [dict(self._rows[s]) for s in sorted(self._rows)]

    def close(self) -> None:
        """Nothing buffered here (the CSV is written per row; trackers are ended by the run)."""


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text
