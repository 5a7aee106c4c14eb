"""Classification metrics of the endpoint's replies, and the champion/challenger comparison.

Definitions follow scikit-learn's so numbers can be cross-checked there:
- accuracy: share of images whose highest probability is the true class;
- log loss: the Kaggle State Farm metric: each row rescaled to sum to 1, clipped to
  [1e-15, 1 - 1e-15], then the mean of -log p(true class);
- per class: precision = TP / predicted, recall = TP / actual, F1 their harmonic mean (0
  when undefined), support = actual count; macro averages over the classes that occur
  among the true or predicted labels (sklearn's default label set);
- confusion matrix: rows are true classes, columns predicted ones.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lambdas.errors import InvalidData

LOG_LOSS_EPSILON = 1e-15
TIE = 1e-12  # log losses closer than this are equal: the champion stays


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Multi-class log loss, Kaggle-style (rows rescaled, then clipped at 1e-15)."""
    sums = probabilities.sum(axis=1, keepdims=True)
    class_count = probabilities.shape[1]
    rescaled = np.where(sums > 0, probabilities / np.where(sums > 0, sums, 1), 1.0 / class_count)
    clipped = np.clip(rescaled, LOG_LOSS_EPSILON, 1 - LOG_LOSS_EPSILON)
    return float(-np.mean(np.log(clipped[np.arange(len(labels)), labels])))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, class_count: int) -> np.ndarray:
    matrix = np.zeros((class_count, class_count), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def classification_metrics(labels: Sequence[int], probabilities: Sequence[Sequence[float]], classes: Sequence[str]) -> dict[str, Any]:
    """The metrics block of the evaluation result, for at least one scored image."""
    truth = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(probabilities, dtype=np.float64)
    class_count = len(classes)
    predictions = scores.argmax(axis=1)
    matrix = confusion_matrix(truth, predictions, class_count)
    true_positives = np.diag(matrix).astype(np.float64)
    actual = matrix.sum(axis=1).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positives / predicted, 0.0)
        recall = np.where(actual > 0, true_positives / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (actual > 0) | (predicted > 0)
    return {
        "accuracy": float(np.mean(predictions == truth)),
        "log_loss": log_loss(truth, scores),
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "per_class": {
            name: {
                "precision": float(precision[index]),
                "recall": float(recall[index]),
                "f1": float(f1[index]),
                "support": int(actual[index]),
            }
            for index, name in enumerate(classes)
        },
        "confusion_matrix": matrix.tolist(),
    }


def production_scores(document: Any, uri: str) -> tuple[float, float]:
    """(accuracy, log loss) of the champion, from its stored evaluation result or its training metrics.json."""
    if isinstance(document, dict) and "accuracy" in document and "log_loss" in document:
        values = (document["accuracy"], document["log_loss"])
    elif isinstance(document, dict) and isinstance(document.get("final"), dict):
        final = document["final"]
        values = (final.get("validation_accuracy"), final.get("validation_log_loss"))
    else:
        raise InvalidData(f"{uri} has neither 'accuracy'/'log_loss' nor 'final.validation_accuracy'/'validation_log_loss'")
    try:
        accuracy, loss = float(values[0]), float(values[1])
    except (TypeError, ValueError):
        raise InvalidData(f"{uri}: production accuracy/log loss {values!r} are not numbers") from None
    return accuracy, loss


def compare_with_production(
    accuracy: float, loss: float, production: tuple[float, float] | None, min_log_loss_improvement: float
) -> dict[str, Any]:
    """The champion/challenger fields a Choice state gates on.

    The challenger is better when its log loss (the Kaggle metric, which also rewards
    calibrated confidence) is strictly lower than the champion's, by at least
    `min_log_loss_improvement`; a tie keeps the champion. With no champion yet the
    challenger is better by definition and the deltas are 0.0, so the fields are always
    numbers. Deltas are challenger minus champion: a positive accuracy_delta and a
    negative log_loss_delta are improvements.
    """
    if production is None:
        return {"has_production": False, "better_than_production": True, "accuracy_delta": 0.0,
                "log_loss_delta": 0.0, "production": None}  # fmt: skip
    production_accuracy, production_loss = production
    improvement = production_loss - loss
    return {
        "has_production": True,
        "better_than_production": bool(improvement > TIE and improvement >= min_log_loss_improvement),
        "accuracy_delta": accuracy - production_accuracy,
        "log_loss_delta": loss - production_loss,
        "production": {"accuracy": production_accuracy, "log_loss": production_loss},
    }
