"""The run skeleton every ``tasks/`` job shares: config, folder, randomness, checkpoints, logging, lifecycle.

A job reads top to bottom (nanoGPT's ``train.py`` is the model), and this package holds what would
otherwise be re-invented, subtly differently, in each job:

- :mod:`nda.run.config` -- a dataclass config with the shared run fields (:class:`RunConfig`), the CLI built
  from it (:func:`parse_config`), and small validators that name the flag;
- :mod:`nda.run.folder` -- one run per folder: a non-empty folder is refused unless ``--resume`` or
  ``--overwrite``, which deletes only what the run's manifest (``.nda-run.json``) says a run wrote; a lock
  held by a live process is an error, a dead process's lock is taken over;
- :mod:`nda.run.randomness` -- every random draw a pure function of ``(seed, step, rank)``: data order
  (:func:`batch_indices`), per-step generators, per-step global seeding (dropout). Resume needs no RNG state;
- :mod:`nda.run.checkpoint` -- checkpoints as safetensors + JSON (never unpickled), atomic, verified;
- :mod:`nda.run.tracking` -- ``metrics.csv``, one row per step, idempotent on resume, forwarded to the
  ``--report-to`` trackers of accelerate (TensorBoard, W&B, MLflow, ...);
- :mod:`nda.run.schedule` -- learning-rate schedules as pure functions of the step (:func:`warmup_lr`);
- :mod:`nda.run.artifacts` -- final models saved with their constructor arguments, rebuilt without pickle;
- :mod:`nda.run.run` -- :class:`Run`, the lifecycle: start (rules, lock) -> bind_data (the content of the
  training data, checked on resume) -> restore (config written only now, after everything was built) -> loop
  (checkpoints, agreed time limit) -> finish; :func:`cli` turns user and environment errors into one line.
"""

from nda.run.artifacts import ModelFolderError, load_model, save_model
from nda.run.checkpoint import CheckpointError, Checkpointer
from nda.run.config import RunConfig, parse_config
from nda.run.folder import RunFolder, RunFolderError
from nda.run.randomness import batch_indices, derive_seed, step_generator
from nda.run.run import Run, cli, data_fingerprint, make_accelerator
from nda.run.tracking import Tracker

__all__ = [
    "RunConfig",
    "parse_config",
    "RunFolder",
    "RunFolderError",
    "batch_indices",
    "derive_seed",
    "step_generator",
    "Checkpointer",
    "CheckpointError",
    "Tracker",
    "save_model",
    "load_model",
    "ModelFolderError",
    "Run",
    "data_fingerprint",
    "make_accelerator",
    "cli",
]
