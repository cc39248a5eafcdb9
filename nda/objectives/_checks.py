"""Argument checks shared by the objectives: every bad input names the argument and what was expected."""

from __future__ import annotations

import math

import torch

__all__ = ["check_tensor", "check_logits", "check_weight", "check_number", "check_temperature"]


def check_tensor(name: str, value: object, *, floating: bool = True) -> torch.Tensor:
    """``value`` as-is if it is a tensor (of a floating dtype when ``floating``), else a clear ``TypeError``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype (logits/embeddings), got {value.dtype}")
    return value


def check_logits(name: str, value: object) -> torch.Tensor:
    """Discriminator logits ``(B,)`` or ``(B, 1)`` -> ``(B,)`` float32 (the loss is computed in float32 so
    fp16/bf16 logits from mixed precision cannot overflow in ``softplus``)."""
    t = check_tensor(name, value)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise ValueError(f"{name} must have shape (B,) or (B, 1): one realness logit per sample, got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty: need at least one sample")
    return t.float()


def check_weight(name: str, value: object) -> float:
    """A finite, non-negative Python number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return float(value)


def check_number(name: str, value: object) -> float:
    """A finite Python number of any sign (margins, offsets)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def check_temperature(value: object, name: str = "temperature") -> float:
    """A finite number > 0 (``inf`` would flatten every logit to 0, ``NaN`` would poison the loss)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not value > 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)
