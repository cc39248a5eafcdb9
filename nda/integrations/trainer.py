"""``NDATrainer``: a ``transformers.Trainer`` whose loss uses the negatives :class:`NegativeDataCollator` adds.

Why: a stock ``Trainer`` passes the batch to ``model(**inputs)``; a Hugging Face model swallows the
``negative_*`` keys through ``**kwargs`` and trains as if there were no negatives, with no error. Here
``compute_loss`` takes the ``negative_*`` keys out of the batch and turns them into a loss, chosen by what the
model returns for the originals:

- **logits** (``*ForSequenceClassification``): the negatives must be label-flipping counterfactuals
  (``NegativeDataCollator(tok, "counterfactual")``, also inside ``"counterfactual|token_shuffle"``). Each usable
  one (``negative_valid & negative_flipped``) is an extra labelled row with its flipped label
  (``negative_labels``), as in counterfactually augmented data (Kaushik et al., 2020)::

      loss = (sum CE(originals, labels) + w * sum CE(usable counterfactuals, flipped labels)) / (B + w * n)

  ``w = counterfactual_weight`` (1: a counterfactual counts like an original row). Negatives without labels
  (token_shuffle, span_stitch) have no class to learn: a clear error, never ignored.
- **embeddings** (a 2-D tensor, ``sentence_embedding``, or ``last_hidden_state`` mean-pooled over the
  attention mask, e.g. ``BertModel`` or :class:`nda.models.sentence.SentenceEncoder`): unsupervised SimCSE with
  NDA negatives -- the positive of an anchor is the anchor encoded again under another dropout mask, and each
  anchor's ``k`` negatives (masked by ``negative_valid``) join the in-batch negatives of
  :class:`nda.objectives.ContrastiveNegativeLoss` (``temperature``, ``negative_weight``).
- anything else is an error naming what the model returned.

A training or evaluation batch without ``negative_input_ids`` is an error too. ``remove_unused_columns`` (on
by default) would drop the raw-text column the collator needs: the collator's ``text_column`` and
``label_column`` are kept (other unused columns are still dropped), so default ``TrainingArguments`` work.
``predict`` on unlabelled data scores the originals only (negatives are dropped before the model sees them).

The returned loss is a per-batch mean: the Trainer divides it by the gradient-accumulation steps
(``loss_is_scaled_for_ga = False``; ``num_items_in_batch`` is not used).

Example::

    collator = NegativeDataCollator(tokenizer, "counterfactual", seed=0)
    trainer = NDATrainer(model=BertForSequenceClassification(config), args=TrainingArguments("out"),
                         train_dataset=ds, data_collator=collator)        # ds columns: text, label
    trainer.train()
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer

from nda.models.sentence import pool
from nda.objectives.contrastive import ContrastiveNegativeLoss

__all__ = ["NDATrainer", "NEGATIVE_KEYS"]

NEGATIVE_KEYS = ("negative_input_ids", "negative_attention_mask", "negative_token_type_ids")
_FLAG_KEYS = ("negative_valid", "negative_flipped", "negative_labels")


def _number(name: str, value: Any, positive: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


class NDATrainer(Trainer):
    """``transformers.Trainer`` that trains on the collator's negatives (see the module docstring).

    Args:
        counterfactual_weight: classifier models: weight ``w >= 0`` of each counterfactual row (0: originals only).
        temperature: embedding models: InfoNCE temperature (SimCSE: 0.05).
        negative_weight: embedding models: each NDA negative counts ``w`` times in the softmax denominator.
        *args, **kwargs: ``transformers.Trainer``'s; ``data_collator`` must add ``negative_*`` keys
            (:class:`nda.integrations.collator.NegativeDataCollator`); ``compute_loss_func`` is refused.
    """

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean (transformers >= 5 reads this)

    def __init__(self, *args: Any, counterfactual_weight: float = 1.0, temperature: float = 0.05,
                 negative_weight: float = 1.0, **kwargs: Any) -> None:
        if kwargs.get("data_collator") is None:
            raise ValueError("NDATrainer needs data_collator=NegativeDataCollator(tokenizer, negative) (or a collator "
                             "that adds negative_input_ids); without one there are no negatives to train on")
        if kwargs.get("compute_loss_func") is not None:
            raise ValueError("NDATrainer computes its own loss from the negatives; compute_loss_func is not supported")
        self.counterfactual_weight = _number("counterfactual_weight", counterfactual_weight, positive=False)
        self.criterion = ContrastiveNegativeLoss(temperature=_number("temperature", temperature, positive=True),
                                                 in_batch=True, negative_weight=negative_weight)
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False  # transformers 4.x: divide the per-batch mean by the GA steps too

    # -------------------------------------------------------------------------------- dataset columns
    def _set_signature_columns_if_needed(self) -> None:
        """Keep the collator's raw-text and label columns through ``remove_unused_columns``."""
        super()._set_signature_columns_if_needed()
        for attr in ("text_column", "label_column"):
            column = getattr(self.data_collator, attr, None)
            if isinstance(column, str) and column not in self._signature_columns:
                self._signature_columns.append(column)

    # ------------------------------------------------------------------------------------------ loss
    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        negatives, flags, originals = _split(inputs)
        if "input_ids" not in negatives:
            raise ValueError("NDATrainer got a batch without negative_input_ids (keys: "
                             f"{sorted(inputs)}): use data_collator=NegativeDataCollator(tokenizer, negative)")
        if "negative_valid" not in flags:
            raise ValueError("NDATrainer needs negative_valid (bool, one per negative row) to mask unusable negatives")
        labels = originals.pop("labels", None)
        outputs = model(**originals)
        if _get(outputs, "logits") is not None:
            loss = self._counterfactual_loss(model, outputs, labels, negatives, flags)
        else:
            if labels is not None:
                raise ValueError("NDATrainer: the batch has labels but the model returned no logits; a classifier "
                                 "needs a classification head (e.g. *ForSequenceClassification)")
            loss = self._contrastive_loss(model, originals, outputs, negatives, flags)
        return (loss, outputs) if return_outputs else loss

    def _counterfactual_loss(self, model: torch.nn.Module, outputs: Any, labels: Any, negatives: dict[str, Any],
                             flags: dict[str, Any]) -> torch.Tensor:
        logits = _get(outputs, "logits")
        if labels is None:
            raise ValueError("NDATrainer: the classifier's batch has no labels (a 'label' column, renamed 'labels' "
                             "by the collator); counterfactuals are labelled rows and need them")
        if logits.ndim != 2 or logits.shape[1] < 2 or labels.dtype.is_floating_point:
            raise ValueError("NDATrainer: counterfactuals flip class labels, so the model must be a single-label "
                             f"classifier (logits (B, C>=2), integer labels); got logits {tuple(logits.shape)} and "
                             f"{labels.dtype} labels (regression / multi-label models cannot use them)")
        if "negative_labels" not in flags or "negative_flipped" not in flags:
            raise ValueError("NDATrainer: the negatives reaching this classifier carry no labels, so it cannot learn "
                             "from them (a shuffled sentence has no class); use a label-flipping negative "
                             "(NegativeDataCollator(tok, 'counterfactual')) or an embedding model (contrastive loss)")
        new_labels = flags["negative_labels"]
        if not isinstance(new_labels, torch.Tensor):
            raise TypeError(f"negative_labels must be a tensor of class ids, got {type(new_labels).__name__}")
        smoothing = float(getattr(self.args, "label_smoothing_factor", 0.0) or 0.0)
        total = F.cross_entropy(logits.float(), labels, reduction="sum", label_smoothing=smoothing)
        rows = float(labels.shape[0])
        usable = flags["negative_valid"].bool() & flags["negative_flipped"].bool()
        n_usable = int(usable.sum()) if self.counterfactual_weight > 0 else 0  # one host sync (was any() then sum())
        if n_usable:
            cf_logits = _get(model(**{key: v[usable] for key, v in negatives.items()}), "logits")
            cf = F.cross_entropy(cf_logits.float(), new_labels.to(labels.device)[usable].long(), reduction="sum",
                                 label_smoothing=smoothing)
            total = total + self.counterfactual_weight * cf
            rows += self.counterfactual_weight * n_usable
        return total / rows

    def _contrastive_loss(self, model: torch.nn.Module, originals: dict[str, Any], outputs: Any,
                          negatives: dict[str, Any], flags: dict[str, Any]) -> torch.Tensor:
        anchors = _embed(outputs, originals.get("attention_mask"))
        positives = _embed(model(**originals), originals.get("attention_mask"))  # another dropout mask
        negs = _embed(model(**negatives), negatives.get("attention_mask"))
        b = anchors.shape[0]
        if negs.shape[0] % b:
            raise ValueError(f"negative_input_ids has {negs.shape[0]} rows for {b} anchors; expected B * k rows")
        k = negs.shape[0] // b
        mask = flags["negative_valid"].bool().reshape(b, k)
        return self.criterion(anchors, positives, negs.reshape(b, k, -1), negative_mask=mask).loss

    # ------------------------------------------------------------------------------------ prediction
    def prediction_step(self, model: torch.nn.Module, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> Any:
        has_labels = bool(self.label_names) and all(inputs.get(k) is not None for k in self.label_names)
        if not has_labels:
            if self.label_names:  # unlabelled data (predict): score the originals, without their negatives
                inputs = {key: v for key, v in inputs.items() if not key.startswith("negative_")}
                return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
            inputs = self._prepare_inputs(inputs)  # an embedding model: the contrastive loss is the evaluation
            with torch.no_grad(), self.compute_loss_context_manager():
                loss = self.compute_loss(model, inputs)
            return (loss.detach(), None, None)
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)


def _split(inputs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(negative model inputs without the prefix, negative flags, everything else)."""
    negatives = {key[len("negative_"):]: v for key, v in inputs.items() if key in NEGATIVE_KEYS}
    flags = {key: v for key, v in inputs.items() if key in _FLAG_KEYS}
    unknown = [key for key in inputs if key.startswith("negative_") and key not in NEGATIVE_KEYS + _FLAG_KEYS]
    if unknown:
        raise ValueError(f"NDATrainer does not know the batch keys {unknown}; known: {list(NEGATIVE_KEYS + _FLAG_KEYS)}")
    rest = {key: v for key, v in inputs.items() if not key.startswith("negative_")}
    return negatives, flags, rest


def _get(outputs: Any, key: str) -> Any:
    return outputs.get(key) if isinstance(outputs, Mapping) else getattr(outputs, key, None)


def _embed(outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """``(B, D)`` sentence embeddings from what an encoder returns."""
    if isinstance(outputs, torch.Tensor) and outputs.ndim == 2:
        return outputs
    for key in ("sentence_embedding", "text_embeds"):
        value = _get(outputs, key)
        if isinstance(value, torch.Tensor) and value.ndim == 2:
            return value
    hidden = _get(outputs, "last_hidden_state")
    if isinstance(hidden, torch.Tensor) and hidden.ndim == 3:
        mask = attention_mask if attention_mask is not None else hidden.new_ones(hidden.shape[:2])
        return pool(hidden, mask, "mean")
    kind = list(outputs.keys()) if isinstance(outputs, Mapping) else type(outputs).__name__
    raise ValueError("NDATrainer cannot use negatives with this model: it returned neither logits (a classifier, "
                     f"for counterfactuals) nor sentence embeddings (an encoder, for a contrastive loss), got {kind}")
