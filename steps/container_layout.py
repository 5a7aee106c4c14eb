"""The SageMaker training container's directories, under /opt/ml or a local folder standing in for it.

    layout = TrainingLayout()                    # /opt/ml, as inside the container
    layout.hyperparameters                       # /opt/ml/input/config/hyperparameters.json
    TrainingLayout(job_dir).channel("train")     # <job_dir>/input/data/train, for a local job

SageMaker writes input/config/ and the channels before the algorithm starts, packs model/
into model.tar.gz and uploads output/data/ when it ends, reads output/failure as the job's
FailureReason, and syncs checkpoints/ with CheckpointConfig.S3Uri. steps/train.py reads the
layout from inside with this class; the definition names CHECKPOINTS in CheckpointConfig
and the local engine lays a job folder out with it (workflow/contracts/container.py).

In steps/ because the trainer ships into the container without workflow/; standard
library only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ML_ROOT = "/opt/ml"


@dataclass(frozen=True)
class TrainingLayout:
    root: Path = Path(ML_ROOT)

    @property
    def config_directory(self) -> Path:
        return self.root / "input" / "config"

    @property
    def hyperparameters(self) -> Path:
        return self.config_directory / "hyperparameters.json"

    @property
    def resource_config(self) -> Path:
        return self.config_directory / "resourceconfig.json"

    @property
    def input_data_config(self) -> Path:
        return self.config_directory / "inputdataconfig.json"

    def channel(self, name: str) -> Path:
        return self.root / "input" / "data" / name

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def output_data(self) -> Path:
        return self.root / "output" / "data"

    @property
    def metrics(self) -> Path:
        """steps/train.py's metrics.json; uploaded with output/data/ (as output.tar.gz on AWS)."""
        return self.output_data / "metrics.json"

    @property
    def failure(self) -> Path:
        return self.root / "output" / "failure"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def checkpoint(self) -> Path:
        """steps/train.py's resume state, synced with CheckpointConfig.S3Uri."""
        return self.checkpoints / "checkpoint.pt"
