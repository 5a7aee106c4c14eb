"""The layout the platform side writes is the one steps/train.py reads from inside the container."""
from __future__ import annotations

from pathlib import Path

import steps.train
from workflow.contracts.container import CHECKPOINTS, FAILURE, ML_ROOT, TrainingLayout


def test_the_trainer_reads_the_class_the_platform_writes_with() -> None:
    assert steps.train.TrainingLayout is TrainingLayout


def test_container_paths_are_sagemakers(tmp_path: Path) -> None:
    assert (ML_ROOT, CHECKPOINTS, FAILURE) == ("/opt/ml", "/opt/ml/checkpoints", "/opt/ml/output/failure")
    assert TrainingLayout().hyperparameters == Path("/opt/ml/input/config/hyperparameters.json")
    layout = TrainingLayout(tmp_path)
    assert layout.channel("train") == tmp_path / "input" / "data" / "train"
    assert layout.checkpoint == tmp_path / "checkpoints" / "checkpoint.pt"
    assert layout.metrics == tmp_path / "output" / "data" / "metrics.json"
