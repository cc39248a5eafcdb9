"""NDA negatives for sentence-transformers users: a MultipleNegativesRankingLoss that makes them on the fly.

Why in the loss: from sentence-transformers v3 on, ``SentenceTransformerTrainer``'s data collator tokenises
every dataset column before the loss runs, so ``loss.forward(sentence_features, labels)`` receives token
features, never strings. The loss therefore builds its negatives from the anchor column's features
(:func:`nda.text.token_negatives` / :func:`nda.text.text_negatives`, with the mask of usable ones):

- ``level="token"`` (the default whenever every negative of the spec works on token ids: token_shuffle,
  span_stitch and their mixes): the negative edits ``input_ids`` directly on the model's device, with the
  model tokenizer's special ids kept in place -- no decoding, no re-tokenisation;
- ``level="string"`` (needed for counterfactual, which edits words): the anchors are decoded with the
  model's tokenizer (``skip_special_tokens``), edited as strings, and re-tokenised with the model's
  tokenizer. Decoding is exact for cased tokenizers up to whitespace around punctuation, and lower-cases for
  uncased ones (which is what the model sees anyway).

The maths is ``tasks/sentence.py``'s, through the same object (:class:`nda.objectives.SoftNegativeLoss`, float32
with autocast off): ``mode="column"`` adds each anchor's ``k`` negatives as extra candidates for *every* anchor
of the batch (like MNRL's hard-negative columns), each counting ``negative_weight`` times in the softmax
denominator; ``mode="margin"`` keeps MNRL as is and adds ``margin_weight`` x SNCSE's bidirectional margin
between each anchor, its positive and its own negatives. A negative equal to its anchor (a counterfactual that
could not flip, a one-word sentence) is masked out.

So a dataset of (anchor, positive) pairs, or (anchor, positive, negative...) tuples, trains with
``NDAMultipleNegativesRankingLoss(model, "token_shuffle")`` as a drop-in for ``MultipleNegativesRankingLoss``.
The other path needs no custom loss: precompute the negative column with
``datasets.Dataset.map(nda.integrations.datasets.add_negatives(...))`` and train the plain
``MultipleNegativesRankingLoss`` on (anchor, positive, negative) columns (see ``examples/sentence_transformers_nda.py``).

:class:`NDASuiteEvaluator` runs nda's evaluation suite (:mod:`nda.metrics.sentence_eval`: STS, negation and
word-order sensitivity, the CAD probe) as a sentence-transformers evaluator, so it scores the model during
``SentenceTransformerTrainer`` training (``evaluator=``) with the same numbers as ``tasks/eval_sentence.py``.

Only public sentence-transformers API is used (``model(features)["sentence_embedding"]``, ``model.tokenizer``,
``model.tokenize`` / ``model.preprocess``, ``util.cos_sim`` / ``util.dot_score``): sentence-transformers >= 3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nda.distributed import gather_no_grad, gather_with_grad, world_info
from nda.objectives.soft_negative import NEGATIVE_LOSS_MODES, SoftNegativeLoss, uses_negatives
from nda.text import supports_token_level, text_negatives, token_negatives

try:  # sentence-transformers >= 6 (the old path warns)
    from sentence_transformers.sentence_transformer.evaluation import SentenceEvaluator
except ImportError:  # sentence-transformers 3-5
    from sentence_transformers.evaluation import SentenceEvaluator

__all__ = ["NDAMultipleNegativesRankingLoss", "NDASuiteEvaluator", "MultipleNegativesRankingLoss",  # noqa: F822
           "supports_token_level"]  # (MultipleNegativesRankingLoss: module __getattr__)


def __getattr__(name: str) -> Any:
    """``MultipleNegativesRankingLoss`` re-exported from wherever this sentence-transformers version keeps it
    (v6 moved it; the old path warns), for the precomputed-negatives path."""
    if name == "MultipleNegativesRankingLoss":
        try:
            from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
        except ImportError:  # sentence-transformers < 6
            from sentence_transformers.losses import MultipleNegativesRankingLoss
        return MultipleNegativesRankingLoss
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _describe(negative: Any) -> Any:
    """The negative's config without tokenizer objects (model cards serialise it to JSON)."""
    cfg = negative.config() if hasattr(negative, "config") else repr(negative)

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k != "tokenizer"}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)

    return clean(cfg)


def _normalize_for(similarity_fct: Callable[..., Tensor] | None) -> bool:
    """Cosine (``None`` / ``util.cos_sim``) -> True, dot product (``util.dot_score``) -> False."""
    if similarity_fct is None:
        return True
    from sentence_transformers import util

    if similarity_fct is util.cos_sim:
        return True
    if similarity_fct is util.dot_score:
        return False
    raise ValueError("similarity_fct must be sentence_transformers.util.cos_sim (default) or util.dot_score: the loss "
                     f"computes through nda.objectives.SoftNegativeLoss, got {similarity_fct!r}")


class NDAMultipleNegativesRankingLoss(nn.Module):
    """MNRL (InfoNCE over in-batch positives + any hard-negative columns) with ``k`` NDA negatives per anchor.

    Args:
        model: a ``SentenceTransformer``.
        negative: an ``nda.build`` spec of text negatives (``"token_shuffle"``, ``"span_stitch:min_fraction=0.3"``,
            ``"token_shuffle|counterfactual"``) or a text-negative instance. Image negatives are refused.
        k: NDA negatives per anchor.
        scale: logit scale (``1 / temperature``; 20 = MNRL's default, temperature 0.05).
        similarity_fct: ``util.cos_sim`` (default) or ``util.dot_score``.
        mode: ``"column"`` (weighted NDA columns) or ``"margin"`` (SNCSE's margin next to MNRL), as
            ``tasks/sentence.py --nda-loss``.
        negative_weight: column mode: each NDA negative counts ``w`` times in the denominator (``--nda-weight``).
        margin_weight, alpha, beta: margin mode: ``lambda``, and the zero-loss band ``[-beta, -alpha]`` of
            ``cos(q, neg) - cos(q, pos)`` (``--nda-lambda``, ``--margin-alpha``, ``--margin-beta``).
        every: make and use negatives on every ``every``-th training batch only (``--nda-every``; counted by
            this loss in :attr:`batches_seen`, so with gradient accumulation a "step" here is a micro-batch;
            after a trainer resume set ``loss.batches_seen`` to the batches already seen).
        level: ``"auto"`` (token level when the negative supports it, else string), ``"token"`` or ``"string"``.
        seed: seed of the loss's own ``torch.Generator`` (reproducible negatives); ``None``: global RNG.
        gather_across_devices: gather candidates (and NDA columns) from every process, with gradients.

    Logits per anchor: ``[positives (B) | hard-negative columns (B each) | NDA negatives (B*k, column mode)]``,
    scaled, label = the anchor's own positive -- MNRL's ``query_to_doc`` direction.

    Example::

        from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
        model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
        loss = NDAMultipleNegativesRankingLoss(model, "token_shuffle", mode="margin", margin_weight=0.1)
        trainer = SentenceTransformerTrainer(model=model, train_dataset=pairs, loss=loss)  # (anchor, positive)
        trainer.train()
    """

    def __init__(
        self,
        model: nn.Module,
        negative: Any,
        k: int = 1,
        scale: float = 20.0,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] | None = None,
        mode: str = "column",
        negative_weight: float = 1.0,
        margin_weight: float = 1e-3,
        alpha: float = 0.1,
        beta: float = 0.3,
        every: int = 1,
        level: str = "auto",
        seed: int | None = 0,
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__()
        from nda.compose import leaves
        from nda.registry import build

        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < float("inf"):
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        if mode not in NEGATIVE_LOSS_MODES:
            raise ValueError(f"mode must be one of {NEGATIVE_LOSS_MODES}, got {mode!r}")
        uses_negatives(0, every)  # validates every (an int >= 1)
        if level not in ("auto", "token", "string"):
            raise ValueError(f"level must be 'auto', 'token' or 'string', got {level!r}")
        tokenizer = getattr(model, "tokenizer", None)
        built = build(negative, tokenizer=tokenizer) if tokenizer is not None and not callable(negative) else build(negative)
        if built is None:
            raise ValueError("negative must name a text negative (got 'none'); use MultipleNegativesRankingLoss without NDA")
        wrong = [p for p in leaves(built) if getattr(p, "modality", "text") != "text"]
        if wrong:
            raise ValueError(f"negative {negative!r} contains the {wrong[0].modality} negative "
                             f"{getattr(wrong[0], 'name', wrong[0])!r}; a sentence-transformers loss needs text negatives")
        if level == "auto":
            level = "token" if supports_token_level(built) and tokenizer is not None else "string"
        if level == "token" and not supports_token_level(built):
            raise ValueError(f"{built!r} does not work on token ids (e.g. counterfactual edits words); use level='string'")
        if level == "string" and tokenizer is None:
            raise ValueError("level='string' decodes the anchors with model.tokenizer, but the model has none")
        self.model = model
        self.negative = built
        self.k = k
        self.scale = float(scale)
        self.similarity_fct = similarity_fct
        self.every = every
        self.level = level
        self.seed = seed
        self.gather_across_devices = gather_across_devices
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.batches_seen = 0
        self.criterion = SoftNegativeLoss(mode, temperature=1.0 / self.scale, negative_weight=negative_weight,
                                          margin_weight=margin_weight, alpha=alpha, beta=beta,
                                          normalize=_normalize_for(similarity_fct))

    # ------------------------------------------------------------------------------------ negatives
    def make_negatives(self, anchor: dict[str, Tensor]) -> tuple[list[dict[str, Tensor]], Tensor]:
        """``k`` feature dicts of NDA negatives of the anchors and the ``(B, k)`` bool mask of usable ones."""
        ids = anchor["input_ids"]
        if self.level == "token":
            base = {key: v for key, v in anchor.items() if isinstance(v, Tensor) and v.ndim == 2 and v.shape == ids.shape}
            return token_negatives(base, self.negative, self.k, generator=self.generator)
        texts = self.model.tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True)
        negs, mask = text_negatives(texts, self.negative, self.k, generator=self.generator, device=ids.device)
        tokenize = getattr(self.model, "preprocess", None) or self.model.tokenize  # v6 name / v3-v5 name
        feats = [{key: v.to(ids.device) if isinstance(v, Tensor) else v for key, v in tokenize(list(n)).items()}
                 for n in negs]
        return feats, mask

    # ---------------------------------------------------------------------------------------- loss
    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        features = list(sentence_features)
        if len(features) < 2:
            raise ValueError(f"NDAMultipleNegativesRankingLoss needs (anchor, positive[, negatives...]) columns, got {len(features)}")
        use = True
        if self.model.training:
            use = uses_negatives(self.batches_seen, self.every)
            self.batches_seen += 1
        neg_feats, mask = self.make_negatives(features[0]) if use else ([], None)
        embeddings = [self.model(f)["sentence_embedding"] for f in features]
        nda = [self.model(f)["sentence_embedding"] for f in neg_feats]
        return self.compute_loss_from_embeddings(embeddings, nda or None, mask)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], nda: list[Tensor] | None = None,
                                     mask: Tensor | None = None) -> Tensor:
        """``embeddings``: [anchors, positives, hard negatives...] each ``(B, D)``; ``nda``: ``k`` x ``(B, D)``
        (or ``None``: plain MNRL); ``mask``: ``(B, k)`` usable NDA negatives."""
        queries, docs = embeddings[0], list(embeddings[1:])
        block = torch.stack(list(nda), dim=1) if nda else None  # (B, k, D)
        offset = 0
        if self.gather_across_devices:
            rank, _ = world_info()
            offset = rank * queries.shape[0]
            docs = [gather_with_grad(d) for d in docs]
            if block is not None and self.criterion.mode == "column":  # the margin uses each anchor's own only
                block = gather_with_grad(block.contiguous())
                mask = gather_no_grad(mask) if mask is not None else None
        out = self.criterion(queries, torch.cat(docs), block, negative_mask=mask, in_batch=True, share_negatives=True,
                             positive_offset=offset)
        return out.loss

    def get_config_dict(self) -> dict[str, Any]:
        c = self.criterion
        return {"negative": _describe(self.negative), "k": self.k, "scale": self.scale, "mode": c.mode,
                "negative_weight": c.negative_weight, "margin_weight": c.margin_weight, "alpha": c.alpha,
                "beta": c.beta, "every": self.every, "level": self.level, "seed": self.seed,
                "gather_across_devices": self.gather_across_devices}

    @property
    def citation(self) -> str:
        return """
@inproceedings{sinha2021negative,
  title={Negative Data Augmentation},
  author={Sinha, Abhishek and Ayush, Kumar and Song, Jiaming and Uzkent, Burak and Jin, Hongxia and Ermon, Stefano},
  booktitle={International Conference on Learning Representations},
  year={2021}
}
"""


class NDASuiteEvaluator(SentenceEvaluator):
    """nda's evaluation suite as a sentence-transformers evaluator (``SentenceTransformerTrainer(evaluator=...)``).

    Args:
        paths: dataset locations for :func:`nda.metrics.sentence_eval.load_suite` (keys of ``DEFAULT_PATHS``;
            ``None`` values skip a task); ignored when ``suite`` is given.
        tasks: which tasks to load (default: every task of ``split``).
        split: ``"test"`` (the reported suite) or ``"dev"`` (STS-B dev, SICK TRIAL: what checkpoint selection and
            recipe choices should read, so the test numbers are never the ones tuned on).
        suite: an already loaded :class:`~nda.metrics.sentence_eval.Suite` (e.g. a small dev subset).
        name: prefix of the metric names (``"nda"`` -> ``nda_STS-B_spearman``; the trainer adds ``eval_``).
        batch_size: encoding batch size.
        primary_metric: the metric (without prefix) that selects the best checkpoint; default ``"dev avg"``
            (dev: needs both STS-B-dev and SICK-R-trial) or ``"STS avg"`` (test: needs all seven STS tasks),
            else the first metric of the first task.
        probe_kwargs: passed to the CAD probe (:func:`nda.metrics.probe.logistic_probe`).

    Metrics: every float of ``score_suite`` (scores x100, higher = better), flattened to ``<task>_<metric>``
    (``STS-B_spearman``, ``CANNOT_auroc``, ``CAD_new_dev_acc``, ``STS avg``). Datasets that are missing are
    skipped when loading (listed in :attr:`skipped`); a suite with nothing left is an error. The model is
    re-encoded on every call (no embedding cache: it changes while training).
    """

    def __init__(self, paths: dict[str, Any] | None = None, tasks: Iterable[str] | None = None, suite: Any = None,
                 name: str = "nda", batch_size: int = 64, primary_metric: str | None = None,
                 probe_kwargs: dict[str, Any] | None = None, split: str = "test") -> None:
        super().__init__()
        from nda.metrics.sentence_eval import load_suite

        if suite is None:
            suite = load_suite(paths, tuple(tasks) if tasks is not None else None, split=split)
        if not getattr(suite, "tasks", None):
            reasons = "; ".join(f"{t}: {r}" for t, r in getattr(suite, "skipped", {}).items())
            raise ValueError(f"NDASuiteEvaluator has no task to run: every dataset was skipped ({reasons or 'none given'})")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.suite = suite
        self.name = name
        self.batch_size = batch_size
        self.probe_kwargs = dict(probe_kwargs or {})
        self._primary = primary_metric
        self.primary_metric = primary_metric  # the unprefixed name until the first call resolves the default

    @property
    def skipped(self) -> dict[str, str]:
        """Tasks that did not load, with the reason."""
        return dict(self.suite.skipped)

    def __call__(self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        from nda.metrics.sentence_eval import embed_suite, score_suite

        def encode(texts: list[str]) -> Tensor:
            return model.encode(texts, batch_size=self.batch_size, convert_to_tensor=True, show_progress_bar=False)

        who = self.name or "the model under training"
        emb = embed_suite(self.suite, encode, batch_size=self.batch_size, progress=False, model=who)
        scores, _ = score_suite(self.suite, emb, self.probe_kwargs, model=who)
        metrics = flatten_suite_metrics(scores)
        average = next((m for m in ("dev avg", "STS avg") if m in metrics), None)
        primary = self._primary or average or next(iter(metrics))
        if primary not in metrics:
            raise ValueError(f"primary_metric {primary!r} is not among the metrics {sorted(metrics)}")
        self.primary_metric = primary
        if output_path is not None:
            _append_csv(Path(output_path) / f"{self.name or 'nda'}_suite_results.csv", epoch, steps, metrics)
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def get_config_dict(self) -> dict[str, Any]:
        return {"tasks": list(self.suite.tasks), "skipped": list(self.suite.skipped), "batch_size": self.batch_size}


def flatten_suite_metrics(scores: dict[str, Any]) -> dict[str, float]:
    """``score_suite`` metrics as flat ``{"<task>_<metric>": x100 float}``: numbers only (no pair counts, no
    per-C cross-validation tables, no regularisation strength)."""
    flat: dict[str, float] = {}
    for task, value in scores.items():
        if isinstance(value, dict):
            for key, number in value.items():
                if isinstance(number, float) and key not in ("C",):
                    flat[f"{task}_{key}"] = number
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[task] = float(value)
    return flat


def _append_csv(path: Path, epoch: int, steps: int, metrics: dict[str, float]) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file()
    with path.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["epoch", "steps", *metrics])
        writer.writerow([epoch, steps, *metrics.values()])
