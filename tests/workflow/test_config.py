from pathlib import Path

import pytest

from workflow.config import ConfigError, load_config


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
