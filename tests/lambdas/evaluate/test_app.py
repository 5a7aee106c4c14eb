"""The evaluate handler against a real local HTTP runtime whose answers are known by construction."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest

from lambdas.errors import InvalidData, InvalidEvent, ObjectNotFound, TooManyFailedInvocations
from lambdas.evaluate.app import handler

RIGHT = -math.log(0.7)  # log loss term of an image the endpoint gets right (0.7 on the true class)
WRONG = -math.log(0.3 / 9)  # ... and of one it gets wrong


def cases() -> list[tuple[int, int | None]]:
    """20 images, 2 per class; the endpoint gets c1's second image wrong (says c2) and c3's second (says c0)."""
    result = [(label, label) for label in range(10) for _ in range(2)]
    result[3] = (1, 2)
    result[7] = (3, 0)
    return result


def event(kit: Any, data_uri: str, **overrides: Any) -> dict[str, Any]:
    base = {
        "endpoint_name": "classifier",
        "data_uri": data_uri,
        "output_uri": f"s3://{kit.bucket}/runs/r1/evaluation.json",
        "max_concurrency": 4,
    }
    base.update(overrides)
    return base


def test_metrics_match_the_known_answers_and_are_stored_with_a_png(runtime, kit) -> None:
    result = handler(event(kit, kit.write_processed(cases())))
    assert result["images"] == result["evaluated"] == 20 and result["failed_invocations"] == 0
    assert result["accuracy"] == pytest.approx(18 / 20)
    assert result["log_loss"] == pytest.approx((18 * RIGHT + 2 * WRONG) / 20)
    matrix = np.asarray(result["confusion_matrix"])
    assert matrix.sum() == 20 and matrix[1, 2] == 1 and matrix[3, 0] == 1 and np.trace(matrix) == 18
    assert result["per_class"]["c1"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert result["per_class"]["c0"]["precision"] == pytest.approx(2 / 3)
    assert result["per_class"]["c2"]["precision"] == pytest.approx(2 / 3)
    assert (result["has_production"], result["better_than_production"]) == (False, True)
    assert result["accuracy_delta"] == 0.0 and result["log_loss_delta"] == 0.0
    assert runtime.requests == 20

    stored = json.loads((kit.root / kit.bucket / "runs/r1/evaluation.json").read_text())
    assert stored == json.loads(json.dumps(result))
    png = (kit.root / kit.bucket / "runs/r1/evaluation-confusion-matrix.png").read_bytes()
    assert result["confusion_matrix_uri"] == f"s3://{kit.bucket}/runs/r1/evaluation-confusion-matrix.png"
    picture = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None and picture.shape[0] > 200 and picture.shape[1] > 200


def test_some_failed_invocations_are_counted_within_the_allowed_share(runtime, kit) -> None:
    data = cases()
    data[5] = (2, None)  # the endpoint fails on this image with a ModelError
    result = handler(event(kit, kit.write_processed(data), max_failure_share=0.1))
    assert result["failed_invocations"] == 1 and result["failures_by_kind"] == {"ModelError": 1}
    assert result["evaluated"] == 19 and result["failure_share"] == pytest.approx(0.05)
    assert result["accuracy"] == pytest.approx(17 / 19)


def test_too_many_failures_fail_the_evaluation_with_a_catchable_error(runtime, kit) -> None:
    data = cases()
    data[5] = (2, None)
    with pytest.raises(TooManyFailedInvocations, match=r"1 of 20 invocations .* failed .*'ModelError': 1"):
        handler(event(kit, kit.write_processed(data), max_failure_share=0.0))
    assert not (kit.root / kit.bucket / "runs/r1/evaluation.json").exists()


def test_a_missing_endpoint_fails_fast_with_the_boto3_error_code(runtime, kit) -> None:
    with pytest.raises(TooManyFailedInvocations, match=r"'NotSent': \d+, 'ValidationError': \d+"):
        handler(event(kit, kit.write_processed(cases()), endpoint_name="absent", max_concurrency=1, max_failure_share=0.1))
    assert runtime.requests == 3  # two failures are allowed out of 20; the third ends the run


def test_nothing_is_sent_once_the_lambda_is_about_to_time_out(runtime, kit) -> None:
    context = SimpleNamespace(get_remaining_time_in_millis=lambda: 1_000)
    with pytest.raises(TooManyFailedInvocations, match="DeadlineReached"):
        handler(event(kit, kit.write_processed(cases())), context)
    assert runtime.requests == 0


def test_the_event_time_limit_bounds_a_run_with_no_lambda_context(runtime, kit) -> None:
    with pytest.raises(TooManyFailedInvocations, match="'DeadlineReached': 20"):
        handler(event(kit, kit.write_processed(cases()), time_limit_seconds=1e-9))


OUR_LOG_LOSS = (18 * RIGHT + 2 * WRONG) / 20  # about 0.98


@pytest.mark.parametrize(
    ("production", "better", "accuracy_delta"),
    [
        ({"accuracy": 0.95, "log_loss": 2.0}, True, -0.05),  # lower log loss wins despite the accuracy
        ({"accuracy": 0.5, "log_loss": 0.5}, False, 0.4),
        ({"accuracy": 0.9, "log_loss": OUR_LOG_LOSS}, False, 0.0),  # a tie keeps the champion
        ({"final": {"validation_accuracy": 0.5, "validation_log_loss": 1.5}}, True, 0.4),  # training metrics.json
    ],
)
def test_champion_challenger_against_stored_production_metrics(
    runtime, kit, production: dict[str, Any], better: bool, accuracy_delta: float
) -> None:
    uri = kit.put("production/evaluation.json", json.dumps(production).encode())
    result = handler(event(kit, kit.write_processed(cases()), production_metrics_uri=uri))
    assert result["has_production"] is True
    assert result["better_than_production"] is better
    assert result["accuracy_delta"] == pytest.approx(accuracy_delta)
    champion_loss = production.get("log_loss", 1.5)
    assert result["log_loss_delta"] == pytest.approx(result["log_loss"] - champion_loss)


def test_min_log_loss_improvement_demands_a_real_gain(runtime, kit) -> None:
    uri = kit.put("production/evaluation.json", json.dumps({"accuracy": 0.9, "log_loss": OUR_LOG_LOSS + 0.05}).encode())
    data_uri = kit.write_processed(cases())
    assert handler(event(kit, data_uri, production_metrics_uri=uri, min_log_loss_improvement=0.1))["better_than_production"] is False
    assert handler(event(kit, data_uri, production_metrics_uri=uri, min_log_loss_improvement=0.04))["better_than_production"] is True


def test_absent_production_metrics_mean_no_champion(runtime, kit) -> None:
    result = handler(event(kit, kit.write_processed(cases()), production_metrics_uri=f"s3://{kit.bucket}/production/none.json"))
    assert result["has_production"] is False and result["better_than_production"] is True


def test_a_null_champion_uri_means_no_champion(runtime, kit) -> None:
    """What the state machine sends before any model version is approved (NoChampion)."""
    result = handler(event(kit, kit.write_processed(cases()), production_metrics_uri=None))
    assert result["has_production"] is False and result["production"] is None


def test_unreadable_production_metrics_are_invalid_data(runtime, kit) -> None:
    uri = kit.put("production/evaluation.json", b'{"accuracy": "high"}')
    with pytest.raises(InvalidData, match="production/evaluation.json"):
        handler(event(kit, kit.write_processed(cases()), production_metrics_uri=uri))
    kit.put("production/evaluation.json", b"not json")
    with pytest.raises(InvalidData, match="is not JSON"):
        handler(event(kit, kit.write_processed(cases()), production_metrics_uri=uri))


def test_missing_or_broken_validation_data(runtime, kit) -> None:
    with pytest.raises(ObjectNotFound, match=f"s3://{kit.bucket}/nowhere/manifest.json"):
        handler(event(kit, f"s3://{kit.bucket}/nowhere"))
    data_uri = kit.write_processed([(12, 1)])
    with pytest.raises(InvalidData, match="label 12.0, outside 0..9"):
        handler(event(kit, data_uri))
    kit.put("processed/validation.rec", b"\x00" * 12)
    with pytest.raises(InvalidData, match="not valid RecordIO"):
        handler(event(kit, data_uri))
    kit.put("processed/manifest.json", b'{"classes": []}')
    with pytest.raises(InvalidData, match="no usable 'classes'"):
        handler(event(kit, data_uri))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"output_uri": None}, "output_uri: Field required"),
        ({"max_concurrency": 500}, "max_concurrency: Input should be less than or equal to 64 (got 500)"),
        ({"max_failure_share": 1.5}, "max_failure_share"),
        ({"data_uri": "file:///tmp/x"}, "data_uri: String should match pattern"),
        ({"endpoint": "x"}, "endpoint: Extra inputs are not permitted"),
    ],
)
def test_bad_events_are_invalid_event(kit, change: dict[str, Any], message: str) -> None:
    base = event(kit, f"s3://{kit.bucket}/processed")
    base.update(change)
    with pytest.raises(InvalidEvent, match="^evaluate: bad event: ") as caught:
        handler({key: value for key, value in base.items() if value is not None})
    assert message in str(caught.value)


def test_a_non_object_event_is_invalid() -> None:
    with pytest.raises(InvalidEvent, match="must be a JSON object, got list"):
        handler([1, 2])
