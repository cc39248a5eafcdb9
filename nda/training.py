"""Deprecated home of the run plumbing: everything now lives in :mod:`nda.run` (re-exported here)."""

from nda.run.checkpoint import CheckpointError, Checkpointer
from nda.run.config import parse_config
from nda.run.randomness import batch_indices
from nda.run.tracking import Tracker

__all__ = ["parse_config", "batch_indices", "Checkpointer", "CheckpointError", "Tracker"]
