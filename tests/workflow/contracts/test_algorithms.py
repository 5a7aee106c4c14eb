"""Each algorithm's images exist in the SDK's catalogue, in the repository the local engine recognises."""
from __future__ import annotations

import pytest

from workflow.contracts.algorithms import ALGORITHMS, serving_repositories, training_repositories


@pytest.fixture(autouse=True)
def quiet_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")  # the SDK's import-time banner


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_image_uris_name_the_declared_repository(name: str, region: str) -> None:
    algorithm = ALGORITHMS[name]
    training = algorithm.training_image.uri(region, "ml.p3.2xlarge")
    serving = algorithm.serving_image.uri(region, "ml.m5.large")
    assert f".{region}." in training and f".{region}." in serving
    assert f"/{algorithm.training_image.repository}:" in training
    assert f"/{algorithm.serving_image.repository}:" in serving


def test_script_mode_settings_are_the_same_on_both_sides() -> None:
    pytorch = ALGORITHMS["pytorch"]
    assert pytorch.training_hyperparameters("eu-west-1") == {"sagemaker_program": "steps/train.py", "sagemaker_region": "eu-west-1"}
    assert pytorch.serving_environment("eu-west-1")["SAGEMAKER_REGION"] == "eu-west-1"
    assert ALGORITHMS["builtin"].training_hyperparameters("eu-west-1") == {}
    assert ALGORITHMS["builtin"].serving_environment("eu-west-1") == {}


def test_no_training_only_image_is_listed_for_serving() -> None:
    assert "pytorch-training" not in serving_repositories()
    assert {"image-classification", "pytorch-training"} == training_repositories()
