"""The SageMaker training container's layout, as the definition and the local engine name it.

The class lives in steps/container_layout.py (the trainer reads it inside the container,
where workflow/ is not shipped); this module adds the two paths the definition writes
into CreateTrainingJob and CreateProcessingJob.
"""
from __future__ import annotations

from steps.container_layout import ML_ROOT, TrainingLayout

__all__ = ["CHECKPOINTS", "FAILURE", "ML_ROOT", "TrainingLayout"]

CHECKPOINTS = TrainingLayout().checkpoints.as_posix()  # CheckpointConfig.LocalPath: SageMaker's default, named explicitly
FAILURE = TrainingLayout().failure.as_posix()  # every job kind (processing too) reports this file as FailureReason
