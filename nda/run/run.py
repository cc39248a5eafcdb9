"""The lifecycle every training job shares, as one small object.

    cfg = validate(parse_config(MyConfig))             # flags checked; nothing written yet
    acc = make_accelerator(cfg)
    with Run(cfg, acc, job="gan") as run:               # folder rules + lock, before any data is loaded
        ... build data, models, optimizers ...          # a failure here leaves the folder as it was
        run.restore(G=G, D=D, opt_g=opt_g, opt_d=opt_d) # config.json written now; --resume loads here
        for step in run.loop():                         # seeds the step; checkpoints; agreed time limit
            ... one optimizer step, batches from run.batch_indices(...), draws from run.generator(...) ...
            if run.log_due: run.log({"loss": loss})     # one all-reduce, one CSV row
        run.finish(results)                             # results.json

What a checkpoint holds is what ``restore`` was given (their ``state_dict()``), plus the loop step: no RNG
state, because every draw is a function of ``(seed, step, rank)`` (:mod:`nda.run.randomness`). What the
run trained on is bound to it with ``run.bind_data(data_fingerprint(...), what)``: a ``--resume`` on other
data is refused instead of silently continuing as another run.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from nda.files import atomic_write_json
from nda.run.checkpoint import Checkpointer
from nda.run.config import RunConfig, config_dict, flag, saved_config
from nda.run.folder import RunFolder, RunFolderError
from nda.run.randomness import batch_indices, seed_globals, step_generator
from nda.run.tracking import TRACKERS_DIR, Tracker, tracker_config, tracker_names

__all__ = ["Run", "make_accelerator", "write_json", "cli", "data_fingerprint"]


def make_accelerator(cfg: RunConfig, **kwargs: Any):
    """An ``accelerate.Accelerator`` for ``cfg`` (mixed precision, CPU, threads, ``--report-to`` trackers logging
    under ``<out-dir>/trackers``; TF32 and cuDNN autotune on CUDA). Nothing is written until :meth:`Run.restore`.

    Gradient accumulation is left to the job (:meth:`Run.accumulate`), which makes it explicit and stateless.
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    trackers = tracker_names(cfg.report_to)
    if trackers:
        kwargs.setdefault("log_with", trackers)
        kwargs.setdefault("project_config", ProjectConfiguration(
            project_dir=str(cfg.out_dir), logging_dir=str(Path(cfg.out_dir) / TRACKERS_DIR)))
    acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=cfg.cpu, **kwargs)
    if acc.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return acc


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, obj, indent=2, default=str)
    return path


def data_fingerprint(*parts: Any) -> str:
    """SHA-256 over what a run trains on: tensors / arrays (their dtype, shape and bytes), strings and lists of
    them, numbers. Cheap next to training (one pass over the bytes, memory-mapped arrays paged in, not copied).

    >>> data_fingerprint(torch.arange(3, dtype=torch.uint8), ["a", "b"]) != data_fingerprint(torch.arange(3), ["ab"])
    True
    """
    import numpy as np

    h = hashlib.sha256()

    def feed(part: Any) -> None:
        if isinstance(part, torch.Tensor):
            t = part.detach().cpu().contiguous()
            h.update(f"tensor:{t.dtype}:{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().data if t.numel() else b"")
        elif isinstance(part, np.ndarray):
            a = np.ascontiguousarray(part)
            h.update(f"array:{a.dtype.str}:{a.shape}|".encode())
            h.update(a.reshape(-1).view(np.uint8).data if a.size else b"")
        elif isinstance(part, (str, bytes)):
            b = part.encode() if isinstance(part, str) else part
            h.update(f"bytes:{len(b)}|".encode())
            h.update(b)
        elif isinstance(part, (list, tuple)):
            h.update(f"list:{len(part)}|".encode())
            for item in part:
                feed(item)
        elif part is None or isinstance(part, (bool, int, float)):
            h.update(f"{type(part).__name__}:{part!r}|".encode())
        else:
            raise TypeError(f"data_fingerprint: cannot fingerprint a {type(part).__name__}")

    for part in parts:
        feed(part)
    return h.hexdigest()


class Run:
    """One run of a job in ``cfg.out_dir``: folder rules, lock, restore, loop, logging, checkpoints, finish.

    Call every method on every process (several of them are collectives); only the main process writes.
    """

    def __init__(self, cfg: RunConfig, accelerator: Any, job: str = "run") -> None:
        if not isinstance(cfg, RunConfig):
            raise TypeError(f"cfg must be a RunConfig (subclass), got {type(cfg).__name__}")
        self.cfg = cfg
        self.acc = accelerator
        self.job = job
        self.folder = RunFolder(cfg.out_dir)
        self.mode = "resume" if cfg.resume is not None else "overwrite" if cfg.overwrite else "fresh"
        self.step = 0
        self.resumed_from: str | None = None
        self.stopped_early = False
        self.extra: dict[str, Any] = {}
        self.tracker: Tracker | None = None
        self.checkpointer = Checkpointer(cfg.out_dir, cfg.keep_checkpoints, accelerator)
        self._objects: dict[str, Any] = {}
        self._data: dict[str, dict[str, str]] = {}
        self._trackers = tracker_names(cfg.report_to)
        self._trackers_started = False
        self._restored = False
        self._t0 = time.time()
        self._in_step: int | None = None
        error = ""
        if self.is_main:
            try:  # lock first: a live run in the folder is named as such, and nothing changes between check and use
                self.folder.acquire()
                self.mode = self.folder.check_mode(resume=cfg.resume is not None, overwrite=cfg.overwrite)
                if self.mode == "resume" and not (self.out_dir / "config.json").is_file():
                    raise RunFolderError(
                        f"--resume: {self.out_dir} has no config.json: without it the continued run cannot be checked "
                        "against the run its checkpoints belong to; refusing (start a new run in another --out-dir)")
                self.folder.claim(job, adopt_legacy=self.mode == "resume")  # the manifest names this live holder
            except RunFolderError as err:
                error = str(err)
                if self.folder.locked:
                    self._release_lock(remove_if_empty=True)
        self._agree_or_raise(error, RunFolderError, "the main process refused the run folder")

    # ------------------------------------------------------------------------------------ properties
    @property
    def is_main(self) -> bool:
        return self.acc.is_main_process

    @property
    def rank(self) -> int:
        return self.acc.process_index

    @property
    def world_size(self) -> int:
        return self.acc.num_processes

    @property
    def device(self) -> torch.device:
        return self.acc.device

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.out_dir)

    @property
    def elapsed_s(self) -> float:
        """Seconds since :meth:`restore` (this session's training time so far)."""
        return time.time() - self._t0

    # ------------------------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """End the trackers, record what the run wrote in its manifest, release the lock; a fresh run that never
        started leaves no folder behind."""
        if self.tracker is not None:
            self.tracker.close()
        if self._trackers_started:
            self._trackers_started = False
            self.acc.end_training()  # every --report-to tracker finished (and the process group ended)
        if self.folder.locked:
            if self._restored:
                self._record()
            self._release_lock(remove_if_empty=not self._restored and self.mode == "fresh")

    def _release_lock(self, remove_if_empty: bool) -> None:
        """Release the lock; remove the folder a fresh run created but never used (lock file first, while held)."""
        if remove_if_empty:
            self.folder.discard()
        else:
            self.folder.release()

    def bind_data(self, fingerprint: str | Callable[[], str], what: str, name: str = "train") -> None:
        """Bind the run to the content of its data (``fingerprint``: :func:`data_fingerprint` of what it trains on,
        or a function computing it, called on the main process only); ``what`` says what it is in messages.

        Stored in the run's manifest; a ``--resume`` whose data differ (a class folder added, a file edited) is
        refused with a ValueError. Call it on every process, before :meth:`restore` (nothing written yet).
        """
        error = ""
        record: dict[str, str] = {}
        if self.is_main:
            record = {"fingerprint": str(fingerprint() if callable(fingerprint) else fingerprint), "what": str(what)}
            try:
                saved = self.folder.data_records().get(name) if self.mode == "resume" else None
            except RunFolderError as err:
                saved, error = None, str(err)
            if saved is not None and saved.get("fingerprint") != record["fingerprint"]:
                error = (f"--resume with other training data: the run in {self.out_dir} trained on {saved.get('what')} "
                         f"(sha256 {str(saved.get('fingerprint'))[:12]}), this invocation loaded {what} (sha256 "
                         f"{record['fingerprint'][:12]}); restore the run's data or start a new run (--overwrite or "
                         "another --out-dir)")
            elif self.mode == "resume" and saved is None and not error:
                self.acc.print(f"note: {self.out_dir} recorded no fingerprint of its {name} data (a run of an older "
                               f"nda); recording {what} now")
        self._agree_or_raise(error, ValueError, "the main process refused the run's data")
        self._data[name] = record
        if self._restored and self.is_main:
            self.folder.record(data={name: record})

    def start(self) -> None:
        """Start a run that trains nothing and keeps no checkpoints (a probe, an evaluation): ``config.json``
        written, an ``--overwrite``'d folder cleared, as :meth:`restore` does; ``--resume`` has nothing to continue."""
        if self.mode == "resume":
            raise RunFolderError(f"--resume: the {self.job} run in {self.out_dir} trains nothing and keeps no "
                                 "checkpoints to continue from; run it again with --overwrite")
        self.restore()

    def restore(self, **objects: Any) -> int:
        """Start the run with everything built: ``objects`` are what a checkpoint holds (prepared models,
        optimizers, an EMA, ...: anything with ``state_dict``/``load_state_dict`` of tensors and plain values).

        fresh: write ``config.json``; ``--overwrite``: delete the old run first; ``--resume``: refuse changed
        training flags, load the checkpoint into ``objects``. Returns the first step to run.
        """
        for name, obj in objects.items():
            if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
                raise TypeError(f"restore({name}=...): needs state_dict/load_state_dict, got {type(obj).__name__}")
        self._objects = dict(objects)
        if self.acc.scaler is not None:
            self._objects["_grad_scaler"] = self.acc.scaler
        cfg = self.cfg
        if self.mode == "resume":
            self._check_resumed_config()
            folder, step, state = self.checkpointer.load(cfg.resume)
            missing = sorted(set(self._objects) - set(state))
            if missing:
                from nda.run.checkpoint import CheckpointError

                raise CheckpointError(f"checkpoint {folder} holds no state for {missing} (holds {sorted(state)})")
            loop = state.get("_loop", {})
            self._check_resumed_setup(folder, loop)
            for name, obj in self._objects.items():
                _unwrap(self.acc, obj).load_state_dict(state[name])
            self.step = int(loop.get("step", step))
            self.extra = dict(loop.get("extra", {}))
            self.resumed_from = str(folder)
            self.acc.print(f"resumed from {folder} (step {self.step})")
        self.acc.wait_for_everyone()
        error = ""
        if self.is_main:
            try:
                if self.mode == "overwrite":
                    kept = self.folder.clear()  # only what a run wrote, and only while the lock is still ours
                    if kept:
                        self.acc.print(f"--overwrite kept {', '.join(kept)} in {self.out_dir}: not written by a run")
                if self.mode == "resume":
                    self.folder.check_lock()
                    for dropped in self.checkpointer.drop_after(self.step):
                        self.acc.print(f"removed {dropped}: newer than the resumed step, an abandoned continuation")
                write_json(self.out_dir / "config.json", saved_config(cfg))
                self.folder.record(data=self._data)
            except RunFolderError as err:
                error = str(err)
        self._agree_or_raise(error, RunFolderError, "the main process could not start the run in its folder")
        self.tracker = Tracker(self.out_dir, enabled=self.is_main,
                               resumed_step=self.step if self.mode == "resume" else None,
                               forward=self.acc.log if self._trackers else None)
        if self._trackers:
            init_kwargs = {"tensorboard": {"purge_step": self.step + 1}} if self.mode == "resume" else {}
            self.acc.init_trackers(self.job, config=tracker_config(cfg), init_kwargs=init_kwargs)
            self._trackers_started = True
        self._restored = True
        self._t0 = time.time()
        return self.step

    def _setup(self) -> dict[str, Any]:
        """What a checkpoint's numbers depend on beyond the flags: the process count and the precision in use."""
        return {"world_size": self.world_size, "mixed_precision": str(self.acc.mixed_precision)}

    def _check_resumed_setup(self, folder: Path, loop: Mapping[str, Any]) -> None:
        saved = loop.get("setup", {})
        now = self._setup()
        changed = [f"{k} {saved[k]!r} -> {now[k]!r}" for k in now if k in saved and saved[k] != now[k]]
        if changed:
            raise ValueError(f"--resume from {folder} with another setup ({'; '.join(changed)}): the data partition, "
                             "batch and precision would differ from the run's; resume with the same number of "
                             "processes and mixed precision")

    def _check_resumed_config(self) -> None:
        path = self.out_dir / "config.json"
        if not path.is_file():
            raise RunFolderError(f"--resume: {path} is missing: the continued run cannot be checked against the "
                                 "run its checkpoints belong to; refusing (start a new run in another --out-dir)")
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RunFolderError(f"--resume: {path} is unreadable ({err})") from err
        now = config_dict(self.cfg)
        changed = sorted(k for k in now if k in saved and saved[k] != now[k]
                         and k not in type(self.cfg).resume_may_change)
        if changed:
            diff = "; ".join(f"{flag(k)} {saved[k]!r} -> {now[k]!r}" for k in changed)
            raise ValueError(f"--resume with training flags that differ from {path}: {diff}. The continued run "
                             "would not be the run its checkpoints belong to: restore these flags, or start a "
                             "new run (--overwrite or another --out-dir)")

    # --------------------------------------------------------------------------------------------- loop
    def loop(self) -> Iterator[int]:
        """Yield the index of each step still to run; after each, checkpoint when due and stop (with a
        checkpoint) when ``--max-minutes`` is reached on any process. Seeds the global RNGs per step."""
        if not self._restored:
            raise RuntimeError("call run.restore(...) before run.loop()")
        from tqdm.auto import tqdm

        cfg = self.cfg
        bar = tqdm(total=cfg.steps, initial=self.step, desc=self.job, dynamic_ncols=True,
                   disable=not (self.is_main and cfg.progress))
        try:
            while self.step < cfg.steps:
                step = self.step
                seed_globals(cfg.seed, step, self.rank)
                self._in_step = step
                yield step
                self._in_step = None
                self.step = step + 1
                bar.update(1)
                done = self.step == cfg.steps
                at_log = self.step % cfg.log_every == 0 or done
                late = not done and self._out_of_time(at_log)
                if done or late or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0):
                    self.save()
                if str(self.step) == os.environ.get("NDA_FAULT_AT_STEP"):  # fault injection for resume tests
                    print(f"NDA_FAULT_AT_STEP={self.step}: exiting abruptly (as a killed run would)", flush=True)
                    os._exit(75)
                if late:
                    self.stopped_early = True
                    self.acc.print(f"--max-minutes {cfg.max_minutes} reached at step {self.step}: checkpointed, stopping")
                    break
        finally:
            bar.close()

    @property
    def log_due(self) -> bool:
        """True inside the loop body of a step that ends at a log step (every ``--log-every``, and the last)."""
        end = self._current_end()
        return end % self.cfg.log_every == 0 or end == self.cfg.steps

    def every(self, n: int) -> bool:
        """True inside the loop body of a step that ends at a multiple of ``n`` (``n = 0``: never)."""
        return bool(n) and self._current_end() % n == 0

    def _current_end(self) -> int:
        return (self._in_step + 1) if self._in_step is not None else self.step

    def _out_of_time(self, at_log: bool) -> bool:
        if self.cfg.max_minutes is None:
            return False
        late = self.elapsed_s > 60 * self.cfg.max_minutes
        if self.world_size == 1:
            return late
        if not at_log:  # every process must take the same decision: agree at log steps only
            return False
        return bool(self.acc.reduce(torch.tensor([float(late)], device=self.device), "sum").item() > 0)

    # ---------------------------------------------------------------------------------- randomness
    def generator(self, stream: str, index: int, device: torch.device | str | None = None) -> torch.Generator:
        """A generator for ``stream`` at ``index`` (a step or micro-step) on this rank: a pure function."""
        return step_generator(self.cfg.seed, index, self.rank, stream, device if device is not None else self.device)

    def batch_indices(self, micro_step: int, num_samples: int, batch_size: int) -> torch.Tensor:
        """This rank's sample indices (CPU) for a global micro-step (``step * grad_accum + micro``)."""
        return batch_indices(micro_step, num_samples, batch_size, self.cfg.seed, self.rank, self.world_size)

    def accumulate(self, model: Any, micro: int):
        """Context for micro-batch ``micro`` of an optimizer step: DDP syncs gradients on the last one only.
        Scale each micro-batch's loss by ``1 / grad_accum`` yourself (explicit beats a hidden counter)."""
        if micro < self.cfg.grad_accum - 1 and self.world_size > 1:
            return self.acc.no_sync(model)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------------------- logging, saving
    def log(self, values: Mapping[str, Any], step: int | None = None) -> dict[str, float]:
        """Average tensor values over processes (one all-reduce, one host copy), write one CSV row at the end
        of the current step (or ``step``), and return the row. A collective: call it on every process."""
        tensors = {k: v for k, v in values.items() if isinstance(v, torch.Tensor)}
        row: dict[str, float] = {}
        if tensors:
            stacked = torch.stack([v.detach().float().reshape(()) for v in tensors.values()])
            if self.world_size > 1:
                stacked = self.acc.reduce(stacked, "mean")
            row.update(zip(tensors, stacked.tolist()))
        row.update({k: float(v) for k, v in values.items() if k not in tensors and v is not None})
        if self.tracker is not None:
            self.tracker.log(row, self._current_end() if step is None else step)
        return row

    def save(self) -> Path:
        """Checkpoint everything given to :meth:`restore`, at the current step (every process calls it)."""
        state = {name: _unwrap(self.acc, obj).state_dict() for name, obj in self._objects.items()}
        state["_loop"] = {"step": self.step, "extra": self.extra, "setup": self._setup()}
        path = self.checkpointer.save(self.step, state)
        self._record()  # the manifest lists what the run has written so far
        return path

    def write_json(self, name: str, obj: Any) -> Path | None:
        """``<out_dir>/<name>`` written atomically by the main process."""
        return write_json(self.out_dir / name, obj) if self.is_main else None

    def finish(self, results: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``results.json`` (with the run's own facts added) and wait for every process."""
        out = dict(results)
        out.setdefault("run", {
            "job": self.job, "steps": self.step, "steps_planned": self.cfg.steps, "stopped_early": self.stopped_early,
            "resumed_from": self.resumed_from, "processes": self.world_size, "device": str(self.device),
            "mixed_precision": str(self.acc.mixed_precision), "seconds_this_session": round(self.elapsed_s, 1),
        })
        self.write_json("results.json", out)
        self._record()
        if self.tracker is not None:
            self.tracker.close()
        self.acc.wait_for_everyone()
        return out

    # -------------------------------------------------------------------------------------- helpers
    def _record(self) -> None:
        """Refresh the manifest's list of what the run wrote (main process). A failure here is a warning: the
        checkpoint or results were written, and the next refresh (at the latest when the run closes) retries."""
        if not self.is_main:
            return
        try:
            self.folder.record()
        except RunFolderError as err:
            self.acc.print(f"warning: {err}")

    def _agree_or_raise(self, error: str, exc: type[Exception], other_message: str) -> None:
        failed = bool(error)
        if self.world_size > 1:
            failed = self.acc.reduce(torch.tensor([float(failed)], device=self.device), "sum").item() > 0
        if error:
            raise exc(error)
        if failed:
            raise exc(f"{other_message} (see its error)")


def _unwrap(acc: Any, obj: Any) -> Any:
    return acc.unwrap_model(obj) if isinstance(obj, torch.nn.Module) else obj


def cli(main: Any, prog: str) -> None:
    """Run a job's ``main()`` from the command line without a raw traceback for what is not a bug: a user error
    (bad flag, missing file, refused run folder, bad checkpoint) exits with status 2, an environment failure
    (disk full or another ``OSError``, a safetensors file error, a hub / network error, a model name that
    ``from_pretrained`` cannot find) with status 1, each as one line ``<prog>: error: ...`` naming the file or
    the name. ``NDA_TRACEBACK=1`` shows the traceback instead."""
    import sys

    from nda.run.checkpoint import CheckpointError

    try:
        main()
    except (ValueError, FileNotFoundError, NotADirectoryError, RunFolderError, CheckpointError) as err:
        if os.environ.get("NDA_TRACEBACK"):
            raise
        print(f"{prog}: error: {_one_line(err)} (NDA_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        sys.exit(2)
    except Exception as err:  # noqa: BLE001 - only the kinds _environment_error names; the rest re-raised
        text = _environment_error(err)
        if text is None or os.environ.get("NDA_TRACEBACK"):
            raise
        print(f"{prog}: error: {text} (NDA_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        sys.exit(1)


# exceptions of these packages are about files or the network, never a bug of the job: one line, not a traceback
_ENVIRONMENT_MODULES = ("safetensors", "huggingface_hub", "requests", "httpx", "httpx2", "urllib3")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


# what loaders of the ecosystem call the model / repo they load: named in the message when the error does not
_NAME_VARIABLES = ("pretrained_model_name_or_path", "model_name_or_path", "path_or_repo_id", "repo_id")


def _loaded_name(err: BaseException) -> str | None:
    """The model or repo name a failing ``from_pretrained`` / hub download was given (its frames' locals):
    transformers' "couldn't find them in the cached files" says neither which model nor which file."""
    tb = err.__traceback__
    found = None
    while tb is not None:
        local = tb.tb_frame.f_locals
        for var in _NAME_VARIABLES:
            if isinstance(local.get(var), (str, os.PathLike)):
                found = found or str(local[var])  # the outermost: what the job asked for
        tb = tb.tb_next
    return found


def _environment_error(err: BaseException) -> str | None:
    """The one-line message for an OSError or a file / hub / network error, ``None`` for anything else."""
    text = _environment_text(err)
    name = _loaded_name(err) if text is not None else None
    if name is not None and name not in text:
        text = f"{name!r}: {text}"
    return text


def _environment_text(err: BaseException) -> str | None:
    package = type(err).__module__.split(".")[0].lstrip("_")
    if isinstance(err, OSError):
        code = errno.errorcode.get(err.errno or 0)
        names = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
        if names and err.strerror:
            reason = err.strerror + (f" [{code}]" if code else "")
            if err.errno == errno.ENOSPC:
                reason += ": free space there or choose another --out-dir"
            return f"{names}: {reason}"
        if package in _ENVIRONMENT_MODULES:
            return f"{type(err).__name__}: {_one_line(err)}"
        return _one_line(err) + (f" [{code}]" if code else "")
    if package in _ENVIRONMENT_MODULES or any(c.__module__.split(".")[0].lstrip("_") in _ENVIRONMENT_MODULES
                                              for c in type(err).__mro__[1:-2]):
        return f"{type(err).__name__}: {_one_line(err)}"
    return None
