import subprocess
import sys
from pathlib import Path

import pytest

from workflow.config import ConfigError, load_config
from workflow.contracts.functions import FUNCTIONS


def test_defaults_need_no_file() -> None:
    config = load_config()
    assert config.training.hyperparameters["image_shape"] == "3,48,64"
    assert config.quality_gate.min_accuracy <= 1


def test_file_and_overrides_merge_with_overrides_winning(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text("quality_gate:\n  min_accuracy: 0.8\nload_test:\n  shards: 3\n")
    config = load_config(path, ["quality_gate.min_accuracy=0.85", "training.hyperparameters.epochs=2"])
    assert config.quality_gate.min_accuracy == 0.85
    assert config.load_test.shards == 3
    assert config.training.hyperparameters["epochs"] == 2
    assert config.training.hyperparameters["num_layers"] == 20  # merged over the defaults


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text("quality_gate:\n  min_acuracy: 0.8\n")
    with pytest.raises(ConfigError, match=r"quality_gate\.min_acuracy: unknown key"):
        load_config(path)


def test_out_of_range_value_is_named_with_its_value() -> None:
    with pytest.raises(ConfigError, match=r"quality_gate\.min_accuracy: .*less than or equal to 1 \(got 1\.5\)"):
        load_config(None, ["quality_gate.min_accuracy=1.5"])


@pytest.mark.parametrize("text", ["[1, 2]", "a: [unclosed"])
def test_malformed_yaml_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="pipeline.yaml"):
        load_config(path)


def test_override_without_equals_is_refused() -> None:
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["quality_gate.min_accuracy"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.hyperparameters.epoch=3", 'training.hyperparameters.epoch: unknown hyperparameter "epoch" \\(did you mean "epochs"\\?\\)'),
        ("training.hyperparameters.learning_rat=0.1", 'training.hyperparameters.learning_rat: .*did you mean "learning_rate"'),
        ("training.hyperparameters.zzz=1", 'training.hyperparameters.zzz: unknown hyperparameter "zzz"$'),
    ],
)
def test_an_unknown_hyperparameter_is_refused_at_load_with_a_suggestion(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_a_hyperparameter_typo_in_a_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text("training:\n  hyperparameters:\n    mini_batch: 16\n")
    with pytest.raises(ConfigError, match=r'pipeline.yaml: training.hyperparameters.mini_batch: .*did you mean "mini_batch_size"'):
        load_config(path)


def test_known_hyperparameters_and_the_names_sagemaker_adds_are_accepted() -> None:
    config = load_config(None, ["training.hyperparameters.augmentation_type=crop", "training.hyperparameters.sagemaker_program=x"])
    assert config.training.hyperparameters["augmentation_type"] == "crop"


def test_loading_the_config_does_not_import_torch_or_the_sdks() -> None:
    """The names come from steps/hyperparameters.py, which must stay importable without torch."""
    code = "import sys, workflow.config; print(sorted({'torch', 'sagemaker', 'boto3', 'stepfunctions'} & set(sys.modules)))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_lambda_names_are_one_field_per_catalogued_function() -> None:
    config = load_config(None, ["lambdas.submission=my-submission", "lambdas.timeout_seconds=60"])
    assert [config.lambdas.name_of(function) for function in FUNCTIONS] == [
        "ddcicd-evaluate", "ddcicd-load-test", "ddcicd-load-test-merge", "my-submission", "ddcicd-reaper"]  # fmt: skip
    assert {config.lambdas.timeout_of(function) for function in FUNCTIONS} == {60}
    assert load_config().lambdas.timeout_of(FUNCTIONS[0]) == FUNCTIONS[0].timeout_seconds


def test_the_default_hyperparameters_are_known_names() -> None:
    from steps.hyperparameters import check_name
    from workflow.config import DEFAULT_HYPERPARAMETERS

    for name in DEFAULT_HYPERPARAMETERS:
        check_name(name)


def test_approval_is_off_by_default_and_checks_its_topic() -> None:
    approval = load_config().approval
    assert (approval.required, approval.timeout_seconds, approval.topic_arn) == (False, 24 * 3600, None)
    configured = load_config(None, ["approval.required=true", "approval.timeout_seconds=600",
                                    "approval.topic_arn=arn:aws:sns:eu-west-1:123456789012:approvals"]).approval  # fmt: skip
    assert configured.required and configured.timeout_seconds == 600
    with pytest.raises(ConfigError, match="approval.topic_arn: String should match pattern"):
        load_config(None, ["approval.topic_arn=my-topic"])
    with pytest.raises(ConfigError, match="approval.timeout_seconds"):
        load_config(None, ["approval.timeout_seconds=0"])
