"""Text negatives: token shuffle, span stitching, label-flipping counterfactuals.

Each works on ``list[str]`` and (shuffle, stitch) on token mappings ``{"input_ids", "attention_mask"}``.
Registry names: ``token_shuffle``, ``span_stitch``, ``counterfactual``. String-level results are one type,
:class:`~nda.base.NegativeResult` (texts + ``flipped`` / ``valid`` / ``labels``); :func:`text_negatives` makes
k negatives per anchor with the mask of usable ones for every consumer.
"""

from nda.base import NegativeResult
from nda.text._words import supports_token_level
from nda.text.counterfactual import Counterfactual, CounterfactualResult, load_antonyms
from nda.text.negatives import text_negatives, token_negatives
from nda.text.shuffle import TokenShuffle
from nda.text.stitch import SpanStitch

__all__ = [
    "TokenShuffle",
    "SpanStitch",
    "Counterfactual",
    "CounterfactualResult",
    "NegativeResult",
    "load_antonyms",
    "supports_token_level",
    "text_negatives",
    "token_negatives",
]
