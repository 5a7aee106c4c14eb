"""Metric definitions: Kaggle's log loss, sklearn-style per-class scores, the champion rule."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lambdas.errors import InvalidData
from lambdas.evaluate.invocations import parse_probabilities
from lambdas.evaluate.metrics import classification_metrics, compare_with_production, log_loss, production_scores


def test_log_loss_clips_a_zero_probability_at_1e_15() -> None:
    loss = log_loss(np.array([0]), np.array([[0.0, 1.0]]))
    assert loss == pytest.approx(-math.log(1e-15))


def test_log_loss_rescales_rows_that_do_not_sum_to_one() -> None:
    assert log_loss(np.array([1]), np.array([[2.0, 6.0]])) == pytest.approx(-math.log(0.75))
    assert log_loss(np.array([1]), np.array([[0.0, 0.0]])) == pytest.approx(-math.log(0.5))  # all-zero row: uniform


def test_per_class_scores_and_macro_averages_over_present_classes() -> None:
    # truth 0 0 1 1 ; predicted 0 1 1 1 ; class 2 never occurs
    probabilities = [[0.9, 0.1, 0], [0.4, 0.6, 0], [0.2, 0.8, 0], [0.1, 0.9, 0]]
    metrics = classification_metrics([0, 0, 1, 1], probabilities, ["a", "b", "c"])
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert metrics["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert metrics["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert metrics["macro_recall"] == pytest.approx(0.75)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert metrics["accuracy"] == 0.75


def test_production_scores_accept_both_stored_formats_and_reject_others() -> None:
    assert production_scores({"accuracy": 0.5, "log_loss": 1}, "u") == (0.5, 1.0)
    assert production_scores({"final": {"validation_accuracy": 0.6, "validation_log_loss": 2}}, "u") == (0.6, 2.0)
    with pytest.raises(InvalidData, match="s3://b/p.json has neither"):
        production_scores([1, 2], "s3://b/p.json")


def test_no_champion_means_the_challenger_wins_with_zero_deltas() -> None:
    fields = compare_with_production(0.1, 3.0, None, 0.0)
    assert fields == {"has_production": False, "better_than_production": True, "accuracy_delta": 0.0,
                      "log_loss_delta": 0.0, "production": None}


@pytest.mark.parametrize(
    ("body", "problem"),
    [(b"[0.5]", "list of 2"), (b'{"x": 1}', "list of 2"), (b"[0.5, -1]", ">= 0"), (b"[0.5, NaN]", "finite")],
)
def test_replies_that_are_not_probabilities_are_refused(body: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_probabilities(body, 2)
    assert parse_probabilities(b'{"predictions": [0.25, 0.75]}', 2) == [0.25, 0.75]
