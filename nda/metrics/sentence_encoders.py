"""Turn any ``--model`` spec of the sentence evaluations into an encode function with a cache identity.

Specs: a sentence-transformers model folder or hub name; ``default`` (all-MiniLM-L6-v2); ``tiny-random``; a
run folder of ``tasks/sentence.py`` (its ``model/``); a checkpoint folder of such a run
(``<run>/checkpoints/step_N``: the weights are loaded into the run's base model).

Backends:

* ``"st"`` (``SentenceTransformer``): the model's own module pipeline (``modules.json``: any pooling mode,
  ``Dense`` heads, ``Normalize``, prompts, ``max_seq_length``) -- the model exactly as its authors, MTEB and
  sentence-transformers' evaluators run it. This is the default for anything it can load.
* ``"nda"`` (:class:`nda.models.sentence.SentenceEncoder`): backbone + cls/mean pooling, what
  ``tasks/sentence.py`` trains and evaluates during training. Used for ``tiny-random`` and checkpoint
  folders (which ``SentenceTransformer`` cannot load) and on request (``backend="nda"``).

Cosine similarities agree between the two for mean/cls-pooled models; raw embeddings can differ by a
``Normalize`` module, which matters for a probe on unnormalised features -- hence "the model's own pipeline".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from nda.files import default_cache_dir, sha256_file, short_hash

__all__ = ["LoadedSentenceModel", "load_sentence_model", "load_sentence_encoder", "run_base_model", "resolve_device", "BACKENDS"]

BACKENDS = ("auto", "st", "nda")


@dataclass
class LoadedSentenceModel:
    """``encode(texts)`` -> ``(len(texts), D)`` float32 CPU embeddings of one batch (eval mode, no grad);
    ``identity``: everything the embeddings depend on (weights fingerprint, backend, pooling, max length,
    library versions), the key of the embedding cache; ``base_model``: the untouched model a run started from
    (the floor), when the spec is a run or checkpoint folder."""

    spec: str
    backend: str
    kind: str
    identity: str
    encode: Callable[[list[str]], torch.Tensor]
    description: str
    base_model: str | None = None
    max_length: int | None = None  # tokens per text the model encodes (longer texts are truncated)


def _is_run(path: Path) -> bool:
    return path.is_dir() and (path / "model").is_dir() and (path / "config.json").is_file()


def _is_checkpoint(path: Path) -> bool:
    from nda.run.checkpoint import MANIFEST, STATE_TENSORS

    return path.is_dir() and (path / STATE_TENSORS).is_file() and (path / MANIFEST).is_file()


def run_base_model(spec: str) -> str | None:
    """The ``--model`` a ``tasks/sentence.py`` run (or one of its checkpoints) started from, else ``None``."""
    path = Path(spec)
    config = path / "config.json" if _is_run(path) else path.parents[1] / "config.json" if _is_checkpoint(path) else None
    if config is None or not config.is_file():
        return None
    return str(json.loads(config.read_text()).get("model") or "default")


def load_sentence_encoder(spec: str, pooling: str | None = None, max_length: int | None = None):
    """``(SentenceEncoder, kind)`` from any spec (see the module doc); kind is ``run``, ``checkpoint`` or ``model``."""
    from nda.models.sentence import SentenceEncoder
    from nda.run.checkpoint import read_state

    path = Path(spec)
    if _is_run(path):
        return SentenceEncoder.from_pretrained(str(path / "model"), pooling=pooling, max_length=max_length), "run"
    if _is_checkpoint(path):
        _, state = read_state(path)  # verified against its manifest, nothing unpickled
        if "model" not in state:
            raise ValueError(f"checkpoint {path} holds no 'model' state (holds {sorted(state)})")
        config = path.parents[1] / "config.json"
        if not config.is_file():
            raise FileNotFoundError(f"checkpoint {path}: its run's {config} (the base model to load into) is missing")
        run_cfg = json.loads(config.read_text())
        saved_pooling = run_cfg.get("pooling", "auto")
        encoder = SentenceEncoder.from_pretrained(
            run_cfg.get("model", "default"), pooling=pooling or (None if saved_pooling == "auto" else saved_pooling),
            max_length=max_length or run_cfg.get("max_length"),
        )
        encoder.load_state_dict(state["model"])
        return encoder, "checkpoint"
    return SentenceEncoder.from_pretrained(spec, pooling=pooling, max_length=max_length), "model"


def _fingerprint(path: Path) -> str:
    """Identity of a model folder's contents: every file's relative name and the digest of its bytes.

    Contents, not size and mtime: a retrained model of the same architecture has weight files of the same
    size, and ``cp -p`` / ``rsync -a`` restore mtimes, so a (size, mtime) key would serve the old model's cached
    embeddings. The digests come from the data layer's :class:`~nda.data.cache.DigestMemo` (remembered on disk
    by size, mtime, ctime and inode, so an unchanged folder is not read again, even by the next process)."""
    from nda.data.cache import DigestMemo  # the stat-keyed memo is the data cache's; the hashes are the core's

    files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts)
    digests = DigestMemo(default_cache_dir(), path, "sentence-model").digests(files, desc=f"hashing {path.name}")
    return short_hash(*(f"{f}\0{d.tobytes().hex()}" for f, d in zip(files, digests)), length=16)


def _versions(backend: str) -> str:
    import transformers

    text = f"torch={torch.__version__},transformers={transformers.__version__}"
    if backend == "st":
        import sentence_transformers

        text += f",sentence-transformers={sentence_transformers.__version__}"
    return text


def load_sentence_model(
    spec: str,
    backend: str = "auto",
    pooling: str | None = None,
    max_length: int | None = None,
    device: str | torch.device = "cpu",
) -> LoadedSentenceModel:
    """Load ``spec`` for evaluation (see the module doc for specs and backends).

    ``pooling`` (``cls``/``mean``) needs the ``nda`` backend (with ``st`` the model's own Pooling module
    decides); ``max_length`` caps the tokens of either backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    from nda.models.sentence import resolve_model_name

    device = torch.device(device)
    path = Path(spec)
    base = run_base_model(spec)
    needs_nda = spec == "tiny-random" or _is_checkpoint(path)
    if backend == "st" and needs_nda:
        raise ValueError(f"{spec!r} cannot be loaded by sentence-transformers (tiny-random / checkpoint folder): use backend='nda'")
    if backend == "auto":
        backend = "nda" if needs_nda or pooling is not None else "st"
    if backend == "st" and pooling is not None:
        raise ValueError("pooling overrides need backend='nda' (with 'st' the model's own Pooling module decides)")

    target = str(path / "model") if _is_run(path) else resolve_model_name(spec) if spec != "tiny-random" else spec
    if spec == "tiny-random":
        where = "tiny-random:seed=0"
    elif _is_checkpoint(path):
        from nda.run.checkpoint import MANIFEST

        where = f"checkpoint:{path.resolve()}:{sha256_file(path / MANIFEST)[:16]}"
    elif Path(target).is_dir():
        where = f"folder:{Path(target).resolve()}:{_fingerprint(Path(target))}"
    else:
        where = f"hub:{target}"

    if backend == "st":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(target, device=str(device))
        if max_length is not None:
            model.max_seq_length = int(max_length)
        model.eval()

        def encode(texts: list[str]) -> torch.Tensor:
            out = model.encode(list(texts), batch_size=max(1, len(texts)), convert_to_tensor=True, show_progress_bar=False)
            return out.float().cpu()

        kind = "run" if _is_run(path) else "model"
        settings = f"max_seq_length={model.max_seq_length}"
        tokens = int(model.max_seq_length)
        description = f"SentenceTransformer({target}), {settings}"
    else:
        encoder, kind = load_sentence_encoder(spec, pooling=pooling, max_length=max_length)
        encoder.to(device).eval()

        def encode(texts: list[str]) -> torch.Tensor:
            return encoder.encode(list(texts), batch_size=max(1, len(texts)), device="cpu")

        settings = f"pooling={encoder.pooling},max_length={encoder.max_length}"
        tokens = int(encoder.max_length)
        description = f"SentenceEncoder({spec}), {settings}"
    identity = f"{where}|backend={backend}|{settings}|device={device.type}|{_versions(backend)}"
    return LoadedSentenceModel(spec, backend, kind if spec != "tiny-random" else "tiny-random", identity, encode,
                               description, base, tokens)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else unchanged."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
