"""hyperparameters.json (all strings) -> TrainConfig, with the built-in algorithm's names and defaults."""
from __future__ import annotations

import pytest

from steps.hyperparameters import HyperparameterError, as_strings, check_name, parse_hyperparameters

REQUIRED = {"num_classes": "10", "num_training_samples": "800"}


def test_defaults_are_the_built_in_algorithms() -> None:
    config = parse_hyperparameters(REQUIRED)
    assert (config.num_layers, config.image_shape, config.epochs, config.mini_batch_size) == (152, (3, 224, 224), 30, 32)
    assert (config.learning_rate, config.optimizer, config.momentum, config.weight_decay) == (0.1, "sgd", 0.9, 0.0001)
    assert (config.early_stopping, config.early_stopping_min_epochs, config.early_stopping_patience) == (False, 10, 5)
    assert config.augmentation_type is None and config.lr_scheduler_step == () and config.precision_dtype == "float32"


def test_string_values_are_parsed_to_their_types() -> None:
    config = parse_hyperparameters(
        {**REQUIRED, "image_shape": "3, 48, 64", "lr_scheduler_step": "8,11", "early_stopping": "True", "top_k": "3"}
    )
    assert config.image_shape == (3, 48, 64) and config.lr_scheduler_step == (8, 11)
    assert config.early_stopping is True and config.top_k == 3


def test_a_config_round_trips_through_its_hyperparameter_strings() -> None:
    config = parse_hyperparameters({**REQUIRED, "num_layers": "20", "lr_scheduler_step": "8,11", "top_k": "3",
                                    "augmentation_type": "crop", "early_stopping": "True"})
    assert parse_hyperparameters(config.hyperparameters()) == config


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"epoch": "3"}, 'unknown hyperparameter "epoch" \\(did you mean "epochs"\\?\\)'),
        ({"num_layers": "19"}, "invalid value '19' for hyperparameter num_layers: must be one of 18, 34"),
        ({"optimizer": "adamw"}, "invalid value 'adamw' for hyperparameter optimizer: must be one of sgd, adam"),
        ({"learning_rate": "fast"}, "invalid value 'fast' for hyperparameter learning_rate: not a number"),
        ({"learning_rate": "2"}, "learning_rate: must be a number in \\[0, 1\\]"),
        ({"image_shape": "48,64"}, 'image_shape: must be "channels,height,width"'),
        ({"lr_scheduler_step": "20,10"}, "lr_scheduler_step: must be increasing positive epochs"),
        ({"top_k": "1"}, "top_k: must be an integer greater than 1"),
        ({"epochs": 3}, "hyperparameter epochs must be a string, as SageMaker passes it, got int 3"),
        ({"epochs": "2", "checkpoint_frequency": "3"}, "must not be greater than epochs \\(2\\)"),
        ({"multi_label": "1"}, "multi-label training is not supported"),
    ],
)
def test_invalid_hyperparameters_fail_with_one_line_naming_them(extra: dict[str, object], message: str) -> None:
    with pytest.raises(HyperparameterError, match=message) as caught:
        parse_hyperparameters({**REQUIRED, **extra})
    assert "\n" not in str(caught.value)


def test_missing_required_hyperparameters_are_named() -> None:
    with pytest.raises(HyperparameterError, match="missing required hyperparameter num_training_samples"):
        parse_hyperparameters({"num_classes": "10"})


def test_names_sagemaker_adds_in_script_mode_are_accepted() -> None:
    config = parse_hyperparameters({**REQUIRED, "sagemaker_program": "train.py", "sagemaker_region": "eu-west-1"})
    assert config.extra == {"sagemaker_program": "train.py", "sagemaker_region": "eu-west-1"}


def test_check_name_accepts_known_and_passed_through_names_and_suggests_for_typos() -> None:
    for name in ("epochs", "num_layers", "sagemaker_program", "_tuning_objective_metric"):
        check_name(name)
    with pytest.raises(HyperparameterError, match='unknown hyperparameter "optimiser" \\(did you mean "optimizer"\\?\\)'):
        check_name("optimiser")


def test_values_are_written_as_the_strings_sagemaker_passes() -> None:
    strings = as_strings({"epochs": 13, "learning_rate": 0.002, "image_shape": "3,48,64", "early_stopping": True})
    assert strings == {"epochs": "13", "learning_rate": "0.002", "image_shape": "3,48,64", "early_stopping": "True"}
    assert parse_hyperparameters({**REQUIRED, **strings}).early_stopping is True
