"""What SageMaker does around a training container, done on a local folder laid out like /opt/ml.

    layout = TrainingLayout(job_dir)
    write_input_config(layout, {"epochs": 13, ...}, {"train": "application/x-recordio", ...})
    ... python -m steps.train --root job_dir ...
    pack_model_directory(layout.model, out / "model.tar.gz")
    final_metric_data_list(layout.metrics, ended)      # DescribeTrainingJob's FinalMetricDataList

Before the algorithm starts SageMaker writes input/config/ (every hyperparameter a string,
resourceconfig.json for one host, inputdataconfig.json per channel); when it ends it tars
model/ into model.tar.gz and reports the algorithm's final metrics. Both local paths to a
training job use these: the engine's createTrainingJob integration (sagemaker_jobs.py, with
the supervisor packing) and `ddcicd train` (training_jobs.py).
"""
from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any, Mapping

from steps.atomic import replacing, write_atomically
from steps.hyperparameters import as_strings
from workflow.contracts.container import TrainingLayout

HOST = "algo-1"  # SageMaker's name for the first (here: only) host
# The built-in algorithm's metric names -> the keys of steps/train.py's metrics.json "final" object.
FINAL_METRICS = {"validation:accuracy": "validation_accuracy", "validation:log_loss": "validation_log_loss"}


def _write_json(path: Path, document: Any) -> None:
    write_atomically(path, (json.dumps(document, indent=1) + "\n").encode())


def write_input_config(layout: TrainingLayout, hyperparameters: Mapping[str, Any], channels: Mapping[str, str]) -> None:
    """input/config/ as SageMaker writes it, and the empty model/ and output/data/ the algorithm fills.

    `channels`: channel name -> ContentType (the channel's files are placed by the caller).
    """
    _write_json(layout.hyperparameters, as_strings(hyperparameters))
    _write_json(layout.resource_config, {"current_host": HOST, "hosts": [HOST]})
    _write_json(layout.input_data_config, {name: {"ContentType": content_type, "TrainingInputMode": "File"}
                                           for name, content_type in channels.items()})  # fmt: skip
    for folder in (layout.model, layout.output_data):
        folder.mkdir(parents=True, exist_ok=True)


def pack_model_directory(model_dir: Path, archive: Path) -> Path:
    """model/ -> model.tar.gz as SageMaker packs it: every file, by its path below model/."""
    with replacing(archive, fsync=False) as handle, tarfile.open(fileobj=handle, mode="w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(model_dir).as_posix())
    return archive


def final_metric_data_list(metrics: Path, timestamp: str | None) -> list[dict[str, Any]]:
    """DescribeTrainingJob's FinalMetricDataList from the job's metrics.json ([] when it has none)."""
    try:
        final = json.loads(metrics.read_text())["final"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [{"MetricName": metric, "Value": float(final[key]), "Timestamp": timestamp}
            for metric, key in FINAL_METRICS.items() if key in final]  # fmt: skip
