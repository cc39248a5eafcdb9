"""Labels of every kind are one label (issue 17 item 4): ``1``, ``1.0``, ``True``, numpy and tensor scalars are
checked and flipped the same way, and come back in the kind they came in; ``1.5`` is an error naming ``labels``.

Regression: with ``labels=[1.0]`` the polarity check (ints only) was skipped while the label map (``1.0 == 1``)
still flipped, so the counterfactual flipped the *negative* clause too and was labelled 0 anyway.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nda.base import canonical_label, label_list
from nda.compose import RandomChoice
from nda.text import Counterfactual

REVIEW = "The acting was bad, but the plot was great and I loved it."
FLIPPED = "The acting was bad, and the plot was terrible and I hated it."  # what labels=[1] gives


@pytest.mark.parametrize(
    "labels",
    [[1], [1.0], [True], [np.int64(1)], [np.float32(1.0)], [torch.tensor(1.0)], np.array([1.0]), np.array([1]),
     torch.tensor([1.0]), torch.tensor([1]), torch.tensor([True]), (1.0,)],
    ids=lambda x: f"{type(x).__name__}:{x!r}"[:40],
)
def test_every_kind_of_positive_label_gives_the_same_counterfactual(labels):
    r = Counterfactual()([REVIEW], labels=labels)
    assert r.texts == [FLIPPED] and r.flipped == [True] and r.valid == [True]


def test_flipped_labels_come_back_in_the_kind_they_came_in():
    cf = Counterfactual()
    texts = [REVIEW, "Hmm."]  # the second cannot be flipped: its label comes back as given
    out = cf(texts, labels=[1.0, 0.0]).labels
    assert out == [0.0, 0.0] and all(type(v) is float for v in out)
    out = cf(texts, labels=[True, False]).labels
    assert out == [False, False] and all(type(v) is bool for v in out)
    out = cf(texts, labels=[np.int64(1), np.int64(0)]).labels
    assert out == [0, 0] and all(type(v) is np.int64 for v in out)
    arr = cf(texts, labels=np.array([1.0, 0.0], dtype=np.float32)).labels
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float32 and arr.tolist() == [0.0, 0.0]
    ten = cf(texts, labels=torch.tensor([1.0, 0.0], dtype=torch.float64)).labels
    assert isinstance(ten, torch.Tensor) and ten.dtype == torch.float64 and ten.tolist() == [0.0, 0.0]
    assert cf(texts, labels=["Positive", "negative"]).labels == ["Negative", "negative"]


@pytest.mark.parametrize("bad", [[1.5], [float("nan")], np.array([0.5]), torch.tensor([1.5])], ids=str)
def test_a_label_that_is_not_a_whole_number_is_a_one_line_error_naming_labels(bad):
    with pytest.raises(ValueError, match=r"^labels must be whole numbers") as err:
        Counterfactual()([REVIEW], labels=bad)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="label_map"):
        Counterfactual(label_map={1.5: 0})


def test_custom_label_maps_with_float_or_bool_keys_match_int_labels():
    cf = Counterfactual(label_map={1.0: 0.0, 0.0: 1.0}, strategy="rules")
    out = cf(["Good movie.", "Good movie."], labels=[1, True]).labels
    assert out == [0, False] and [type(v) for v in out] == [int, bool]  # the map's 0.0 in the labels' kind


def test_random_choice_gives_labels_back_in_their_kind():
    """RandomChoice had its own copy of the label normalisation: numpy labels came back as a list and float
    labels were flipped without the polarity check."""
    choice = RandomChoice([Counterfactual(), Counterfactual()])
    g = torch.Generator().manual_seed(0)
    r = choice([REVIEW, REVIEW], labels=np.array([1.0, 1.0]), generator=g)
    assert r.texts == [FLIPPED, FLIPPED]
    assert isinstance(r.labels, np.ndarray) and r.labels.dtype == np.float64 and r.labels.tolist() == [0.0, 0.0]
    r = choice([REVIEW, REVIEW], labels=[1.0, True], generator=g)
    assert r.labels == [0.0, False] and [type(v) for v in r.labels] == [float, bool]


def test_canonical_label_is_the_one_normalisation():
    assert [canonical_label(v) for v in (1, 1.0, True, np.int64(1), np.bool_(True), torch.tensor(1.0))] == [1] * 6
    assert canonical_label("pos") == "pos" and canonical_label(None) is None
    values, restore = label_list(torch.tensor([1, 0], dtype=torch.uint8), 2)
    assert values == [1, 0] and restore([0, 1]).dtype == torch.uint8
    with pytest.raises(ValueError, match="one label per text"):
        label_list([1, 0], 3)
    with pytest.raises(TypeError, match="labels"):
        label_list("10", 2)
