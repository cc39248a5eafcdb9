"""A logistic-regression probe on frozen embeddings (scikit-learn), the standard "what does the embedding encode".

Why scikit-learn and not :func:`nda.metrics.representation.linear_probe` (torch): text probes are small
(thousands of rows, a few hundred dimensions), where lbfgs on the CPU is exact, deterministic and has no
learning rate or epoch budget to tune. Features are standardised (mean/std of the training split), and the
inverse regularisation strength ``C`` is either fixed or picked by stratified k-fold cross-validation on the
training split only (the evaluation splits are never seen before the final score).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(200, 5)); y = (x[:, 0] > 0).astype(int)
>>> res = logistic_probe(x[:150], y[:150], {"test": (x[150:], y[150:])}, C=1.0)
>>> res.accuracy["test"] > 0.9
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ProbeResult", "logistic_probe", "DEFAULT_CS"]

DEFAULT_CS: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)


@dataclass
class ProbeResult:
    """``accuracy``: split name -> top-1 accuracy in [0, 1]; ``C``: the regularisation used; ``cv_accuracy``:
    C -> mean cross-validated accuracy on the training split (empty when ``C`` was fixed)."""

    accuracy: dict[str, float]
    C: float
    train_accuracy: float
    cv_accuracy: dict[float, float] = field(default_factory=dict)
    model: Any = None  # the fitted sklearn Pipeline(StandardScaler, LogisticRegression)


def _as_array(name: str, value: Any, ndim: int) -> np.ndarray:
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = value.detach().to("cpu", torch.float64 if ndim == 2 else value.dtype).numpy()
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(value)
    if arr.ndim != ndim or arr.shape[0] == 0:
        kind = "(N, D) features" if ndim == 2 else "(N,) labels"
        raise ValueError(f"{name} must be non-empty {kind}, got shape {arr.shape}")
    if ndim == 2 and not np.isfinite(arr).all():
        raise ValueError(f"{name} holds non-finite values")
    return arr


def logistic_probe(
    train_features: Any,
    train_labels: Any,
    eval_sets: Mapping[str, tuple[Any, Any]],
    C: float | None = None,
    Cs: Sequence[float] = DEFAULT_CS,
    folds: int = 5,
    seed: int = 0,
    max_iter: int = 5000,
    groups: Sequence[Any] | None = None,
) -> ProbeResult:
    """Fit ``StandardScaler -> LogisticRegression`` on the training split and report accuracy on each eval split.

    Args:
        train_features, train_labels: ``(N, D)`` embeddings (tensor or array) and ``(N,)`` class labels.
        eval_sets: name -> ``(features, labels)``, scored with the final model only.
        C: fixed inverse L2 strength; ``None`` picks it from ``Cs`` by stratified ``folds``-fold CV on the
            training split (shuffled with ``seed``; the scaler is refit inside each fold), ties -> smaller C.
        max_iter: lbfgs iterations.
        groups: optional group of each training row (e.g. an original and its counterfactual share one): CV
            folds then keep a group together (stratified group k-fold), so near-copies never straddle a fold.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = _as_array("train_features", train_features, 2)
    y = _as_array("train_labels", train_labels, 1)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"train_labels has {y.shape[0]} entries for {x.shape[0]} training rows")
    if len(np.unique(y)) < 2:
        raise ValueError("train_labels must hold at least two classes")
    tests = {}
    for name, pair in eval_sets.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"eval_sets[{name!r}] must be a (features, labels) pair")
        fx, fy = _as_array(f"eval_sets[{name!r}] features", pair[0], 2), _as_array(f"eval_sets[{name!r}] labels", pair[1], 1)
        if fx.shape[1] != x.shape[1] or fy.shape[0] != fx.shape[0]:
            raise ValueError(f"eval_sets[{name!r}]: features {fx.shape} / labels {fy.shape} do not match D={x.shape[1]}")
        tests[name] = (fx, fy)

    def pipeline(c: float):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))

    cv_acc: dict[float, float] = {}
    if C is None:
        if not Cs or any(not c > 0 for c in Cs):
            raise ValueError(f"Cs must be a non-empty list of numbers > 0, got {Cs!r}")
        k = min(folds, int(np.bincount(np.unique(y, return_inverse=True)[1]).min()))
        if k < 2:
            raise ValueError("cross-validating C needs at least 2 training samples of every class; pass C=")
        cv_groups = None
        if groups is None:
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        else:
            from sklearn.model_selection import StratifiedGroupKFold

            if len(groups) != len(y):
                raise ValueError(f"groups has {len(groups)} entries for {len(y)} training rows")
            cv_groups = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)[1]
            k = min(k, len(np.unique(cv_groups)))
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        for c in sorted(float(c) for c in Cs):
            cv_acc[c] = float(cross_val_score(pipeline(c), x, y, cv=splitter, groups=cv_groups).mean())
        best = max(cv_acc.values())
        C = min(c for c, a in cv_acc.items() if a == best)
    elif not (isinstance(C, (int, float)) and C > 0):
        raise ValueError(f"C must be a number > 0 or None, got {C!r}")
    model = pipeline(float(C)).fit(x, y)
    accuracy = {name: float((model.predict(fx) == fy).mean()) for name, (fx, fy) in tests.items()}
    return ProbeResult(accuracy, float(C), float((model.predict(x) == y).mean()), cv_acc, model)
