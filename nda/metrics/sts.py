"""Semantic textual similarity: Spearman correlation (x100) of cosine similarity against gold scores.

The STS-B protocol of SimCSE and sentence-transformers: embed both sentences of each pair, take the
cosine similarity, and report Spearman's rank correlation with the human scores (0-5), times 100.
:func:`sts_spearman` agrees with sentence-transformers' ``EmbeddingSimilarityEvaluator`` (``spearman_cosine``
x 100) on the same model and data; ties in ranks are averaged as in ``scipy.stats.spearmanr``.

Data: :func:`load_sts` reads the tab-separated STS Benchmark files (``sts-{train,dev,test}.csv``: genre,
file, year, id, score, sentence1, sentence2 [, extra source fields]) or the Hugging Face datasets
``sentence-transformers/stsb`` / ``mteb/stsbenchmark-sts`` (imported lazily, needs the hub).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nda.metrics.finite import check_finite_embeddings

__all__ = ["StsData", "load_sts", "sts_spearman", "spearman", "pearson", "sts_sentences"]

_SPLIT_FILES = {"train": "sts-train.csv", "dev": "sts-dev.csv", "validation": "sts-dev.csv", "test": "sts-test.csv"}


@dataclass
class StsData:
    """Pairs of sentences with gold similarity scores (``scores[i]`` for ``(sentences1[i], sentences2[i])``)."""

    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]
    source: str = ""

    def __len__(self) -> int:
        return len(self.scores)


def _read_sts_file(path: Path) -> StsData:
    s1: list[str] = []
    s2: list[str] = []
    scores: list[float] = []
    # Not the csv module: sentences contain quotes, and some lines carry extra tab-separated source fields.
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 7:
                raise ValueError(
                    f"{path}:{lineno}: expected >= 7 tab-separated fields (genre, file, year, id, score, "
                    f"sentence1, sentence2), got {len(fields)}"
                )
            try:
                score = float(fields[4])
            except ValueError:
                if lineno == 1:  # a header line
                    continue
                raise ValueError(f"{path}:{lineno}: the score field {fields[4]!r} is not a number") from None
            s1.append(fields[5])
            s2.append(fields[6])
            scores.append(score)
    if not scores:
        raise ValueError(f"{path}: no STS pairs found")
    return StsData(s1, s2, scores, source=str(path))


def load_sts(path_or_split: str | os.PathLike, split: str = "test") -> StsData:
    """STS pairs from a file, a folder of STS-B files, or a Hugging Face dataset name.

    - a file (``.../sts-test.csv``): read as is (``split`` ignored);
    - a folder holding ``sts-{train,dev,test}.csv``: the file of ``split`` (``dev`` or ``validation``);
    - ``"train"``/``"dev"``/``"test"`` alone, or a hub name such as ``sentence-transformers/stsb`` or
      ``mteb/stsbenchmark-sts``: the Hugging Face dataset (lazy ``datasets`` import; needs the hub or its cache).
    """
    if split not in _SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(_SPLIT_FILES)}, got {split!r}")
    path = Path(path_or_split)
    if path.is_file():
        return _read_sts_file(path)
    if path.is_dir():
        file = path / _SPLIT_FILES[split]
        if not file.is_file():
            raise FileNotFoundError(f"{path} has no {_SPLIT_FILES[split]} (split {split!r})")
        return _read_sts_file(file)
    name = str(path_or_split)
    if name in ("train", "dev", "validation", "test"):
        split, name = name, "sentence-transformers/stsb"
    if os.sep in name and name.count("/") != 1 or name.endswith((".csv", ".tsv")):
        raise FileNotFoundError(f"STS data {name!r} is neither an existing file/folder nor a dataset name")
    return _load_hf(name, split)


def _load_hf(name: str, split: str) -> StsData:
    try:
        from datasets import load_dataset
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"loading the STS dataset {name!r} needs the 'datasets' package ({err})") from err
    hf_split = "validation" if split == "dev" else split
    ds = load_dataset(name, split=hf_split)
    cols = ds.column_names
    score_col = next((c for c in ("score", "label", "similarity_score") if c in cols), None)
    if "sentence1" not in cols or "sentence2" not in cols or score_col is None:
        raise ValueError(f"dataset {name!r} needs columns sentence1, sentence2 and score/label, got {cols}")
    return StsData(list(ds["sentence1"]), list(ds["sentence2"]), [float(x) for x in ds[score_col]], source=f"{name}:{hf_split}")


def sts_sentences(data: StsData) -> list[str]:
    """All sentences of ``data`` (both sides), deduplicated, in first-seen order (an unsupervised corpus)."""
    return list(dict.fromkeys([*data.sentences1, *data.sentences2]))


# -------------------------------------------------------------------------------------------- metric
def _rank(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n with ties averaged (scipy's ``rankdata(method="average")``), vectorised."""
    n = x.numel()
    order = torch.argsort(x, stable=True)
    sorted_x = x[order]
    new_group = torch.ones(n, dtype=torch.bool, device=x.device)
    new_group[1:] = sorted_x[1:] != sorted_x[:-1]
    group = torch.cumsum(new_group.long(), 0) - 1  # group id of each sorted position
    positions = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)
    sums = torch.zeros(int(group[-1]) + 1, dtype=torch.float64, device=x.device).index_add_(0, group, positions)
    counts = torch.zeros_like(sums).index_add_(0, group, torch.ones_like(positions))
    ranks = torch.empty(n, dtype=torch.float64, device=x.device)
    ranks[order] = (sums / counts)[group]
    return ranks


def _finite_pair(fn: str, x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Two flat float64 tensors of one length >= 2, all finite, or a one-line error naming the argument.

    Why refuse rather than skip: a NaN sorts last in ``argsort``, so NaN embeddings of a broken model would get
    a plausible rank correlation (an all-NaN ``x`` scored rho = 1.0 before)."""
    xt = torch.as_tensor(x, dtype=torch.float64).flatten()
    yt = torch.as_tensor(y, dtype=torch.float64, device=xt.device).flatten()
    if xt.numel() != yt.numel() or xt.numel() < 2:
        raise ValueError(f"{fn} needs two sequences of the same length >= 2, got {xt.numel()} and {yt.numel()}")
    for name, t in (("x", xt), ("y", yt)):
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            raise ValueError(f"{fn}: {name} holds {int(bad.sum())} non-finite value(s) (NaN/inf) of {t.numel()}, "
                             f"e.g. at index {int(bad.nonzero()[0, 0])}")
    return xt, yt


def _correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x - x.mean(), y - y.mean()
    denom = torch.sqrt((x * x).sum() * (y * y).sum())
    if float(denom) == 0.0:
        return float("nan")  # a constant input: correlation undefined (scipy returns nan too)
    return float((x * y).sum() / denom)


def spearman(x: Any, y: Any) -> float:
    """Spearman's rho of two 1-D sequences (Pearson correlation of tie-averaged ranks), in [-1, 1].

    Non-finite values are an error naming ``x`` or ``y``; a constant input gives ``nan`` (as scipy)."""
    xt, yt = _finite_pair("spearman", x, y)
    return _correlation(_rank(xt), _rank(yt))


def pearson(x: Any, y: Any) -> float:
    """Pearson's r of two 1-D sequences, in [-1, 1] (float64); non-finite values are an error naming the argument."""
    xt, yt = _finite_pair("pearson", x, y)
    return _correlation(xt, yt)


def _encoder_fn(model_or_encode_fn: Any, batch_size: int) -> Callable[[list[str]], torch.Tensor]:
    if callable(getattr(model_or_encode_fn, "encode", None)):
        model = model_or_encode_fn
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:  # pragma: no cover
            SentenceTransformer = ()  # type: ignore[assignment]
        if SentenceTransformer and isinstance(model, SentenceTransformer):
            return lambda texts: model.encode(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)
        return lambda texts: model.encode(texts, batch_size=batch_size)
    if callable(model_or_encode_fn):
        return model_or_encode_fn
    raise TypeError(
        "model_or_encode_fn must be a model with .encode(texts, batch_size=...) (SentenceEncoder, "
        f"SentenceTransformer) or a callable texts -> embeddings, got {type(model_or_encode_fn).__name__}"
    )


def sts_spearman(
    model_or_encode_fn: Any,
    sentences1: Sequence[str] | StsData,
    sentences2: Sequence[str] | None = None,
    scores: Sequence[float] | None = None,
    batch_size: int = 64,
    name: str | None = None,
) -> float:
    """Spearman correlation x 100 between ``cos(embed(s1), embed(s2))`` and the gold ``scores``.

    ``model_or_encode_fn``: a :class:`~nda.models.sentence.SentenceEncoder`, a ``SentenceTransformer`` or any
    callable ``list[str] -> (N, D)`` array/tensor. Pass an :class:`StsData` as ``sentences1`` instead of the
    three lists if you like. Non-finite embeddings are a ``ValueError`` naming the model (``name``, else its type).
    """
    if isinstance(sentences1, StsData):
        sentences1, sentences2, scores = sentences1.sentences1, sentences1.sentences2, sentences1.scores
    if sentences2 is None or scores is None:
        raise ValueError("sts_spearman needs sentences1, sentences2 and scores (or one StsData)")
    if not (len(sentences1) == len(sentences2) == len(scores)):
        raise ValueError(
            f"sentences1, sentences2 and scores must have the same length, got {len(sentences1)}, "
            f"{len(sentences2)}, {len(scores)}"
        )
    encode = _encoder_fn(model_or_encode_fn, batch_size)
    e1 = torch.as_tensor(encode(list(sentences1))).float()
    e2 = torch.as_tensor(encode(list(sentences2))).float().to(e1.device)
    if e1.shape != e2.shape or e1.ndim != 2:
        raise ValueError(f"the encoder must return (N, D) embeddings for both sides, got {tuple(e1.shape)} and {tuple(e2.shape)}")
    label = name or type(model_or_encode_fn).__name__
    check_finite_embeddings(e1, label, sentences1, task="STS (sentences1)")
    check_finite_embeddings(e2, label, sentences2, task="STS (sentences2)")
    cos = (F.normalize(e1, dim=-1) * F.normalize(e2, dim=-1)).sum(dim=-1)  # as sentence-transformers' pairwise_cos_sim
    return 100.0 * spearman(cos.detach().cpu(), torch.as_tensor(scores, dtype=torch.float64))
