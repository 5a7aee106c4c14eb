"""The layout the platform side writes is the one steps/train.py reads from inside the container.

steps/ never imports workflow/, so the trainer keeps its own JobPaths; this test is what keeps
the two spellings of /opt/ml together.
"""
from __future__ import annotations

from pathlib import Path

from steps.train import JobPaths
from workflow.contracts.container import CHECKPOINTS, FAILURE, ML_ROOT, TrainingLayout


def test_the_trainer_reads_what_the_platform_writes(tmp_path: Path) -> None:
    layout, paths = TrainingLayout(tmp_path), JobPaths(tmp_path)
    assert layout.hyperparameters == paths.hyperparameters
    assert layout.resource_config == paths.resource_config
    assert layout.channel("train") == paths.channel("train")
    assert layout.model == paths.model_dir
    assert layout.checkpoints == paths.checkpoint.parent
    assert layout.metrics == paths.metrics
    assert layout.failure == paths.failure


def test_container_paths_are_sagemakers() -> None:
    assert (ML_ROOT, CHECKPOINTS, FAILURE) == ("/opt/ml", "/opt/ml/checkpoints", "/opt/ml/output/failure")
    assert JobPaths().root == Path(ML_ROOT)
