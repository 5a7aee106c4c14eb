"""The training container's surroundings, written once for the engine's jobs and `ddcicd train`."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

from workflow.contracts.container import TrainingLayout
from workflow.local.training_container import final_metric_data_list, pack_model_directory, write_input_config


def test_input_config_is_written_as_sagemaker_writes_it(tmp_path: Path) -> None:
    layout = TrainingLayout(tmp_path / "opt" / "ml")
    write_input_config(layout, {"epochs": 13, "learning_rate": 0.002, "image_shape": "3,48,64"},
                       {"train": "application/x-recordio", "validation": "application/x-recordio"})  # fmt: skip
    config = tmp_path / "opt" / "ml" / "input" / "config"
    assert json.loads((config / "hyperparameters.json").read_text()) == {"epochs": "13", "learning_rate": "0.002",
                                                                        "image_shape": "3,48,64"}  # fmt: skip
    assert json.loads((config / "resourceconfig.json").read_text()) == {"current_host": "algo-1", "hosts": ["algo-1"]}
    assert json.loads((config / "inputdataconfig.json").read_text())["validation"] == {
        "ContentType": "application/x-recordio", "TrainingInputMode": "File"}  # fmt: skip
    assert layout.model.is_dir() and layout.output_data.is_dir()
    assert sorted(path.name for path in config.iterdir()) == ["hyperparameters.json", "inputdataconfig.json",
                                                              "resourceconfig.json"]  # fmt: skip


def test_the_model_directory_is_packed_with_paths_below_it(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "model.onnx").write_bytes(b"onnx")
    (model / "code" / "x.py").write_text("x = 1\n")
    archive = pack_model_directory(model, tmp_path / "s3" / "out" / "model.tar.gz")
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["code/x.py", "model.onnx"]
        assert tar.extractfile("model.onnx").read() == b"onnx"  # type: ignore[union-attr]
    assert [path.name for path in archive.parent.iterdir()] == ["model.tar.gz"]  # no temporary left


def test_final_metrics_are_the_built_in_algorithms_names(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"final": {"validation_accuracy": 0.98, "validation_log_loss": 0.07, "epoch": 12}}))
    assert final_metric_data_list(metrics, "2026-01-01T00:00:00+00:00") == [
        {"MetricName": "validation:accuracy", "Value": 0.98, "Timestamp": "2026-01-01T00:00:00+00:00"},
        {"MetricName": "validation:log_loss", "Value": 0.07, "Timestamp": "2026-01-01T00:00:00+00:00"},
    ]
    assert final_metric_data_list(tmp_path / "absent.json", None) == []
