"""Losses that consume negatives. They see logits and embeddings, never pixels or strings.

* :class:`DiscriminatorNegativeLoss`: the paper's GAN loss, ``real + a*fake + b*NDA`` (hinge or BCE), with
  a same-compute ``mode="mix"`` (:func:`mix_fake_and_negative`); :func:`generator_loss` is unchanged by NDA.
* :class:`ContrastiveNegativeLoss`: InfoNCE with per-anchor NDA negatives beside a queue (MoCo) or the
  batch (SimCSE), with a mask for negatives that failed and a weight ``w`` per NDA column.
* :class:`SoftNegativeLoss`: the one call sentence jobs make: NDA negatives as weighted InfoNCE columns
  (``mode="column"``) or as SNCSE's bidirectional margin next to InfoNCE without them (``mode="margin"``,
  :func:`bidirectional_margin_loss`); :func:`uses_negatives` says which steps use NDA under ``--nda-every N``.
* :func:`discriminator_anomaly_score`, :func:`contrastive_anomaly_score`: OOD scores (higher = more
  anomalous) for ``nda.metrics.anomaly.anomaly_auroc``.
"""

from nda.objectives.anomaly import contrastive_anomaly_score, discriminator_anomaly_score
from nda.objectives.contrastive import ContrastiveNegativeLoss, ContrastiveOutput
from nda.objectives.discriminator import (
    DiscriminatorLossOutput,
    DiscriminatorNegativeLoss,
    fake_loss,
    generator_loss,
    mix_fake_and_negative,
    real_loss,
)
from nda.objectives.margin import bidirectional_margin_loss, margin_delta
from nda.objectives.soft_negative import NEGATIVE_LOSS_MODES, SoftNegativeLoss, SoftNegativeOutput, uses_negatives

__all__ = [
    "DiscriminatorNegativeLoss",
    "DiscriminatorLossOutput",
    "mix_fake_and_negative",
    "generator_loss",
    "real_loss",
    "fake_loss",
    "ContrastiveNegativeLoss",
    "ContrastiveOutput",
    "SoftNegativeLoss",
    "SoftNegativeOutput",
    "NEGATIVE_LOSS_MODES",
    "uses_negatives",
    "bidirectional_margin_loss",
    "margin_delta",
    "discriminator_anomaly_score",
    "contrastive_anomaly_score",
]
