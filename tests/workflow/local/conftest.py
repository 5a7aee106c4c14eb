"""Settings for end-to-end runs of the main job on a tiny dataset (fast, loose gates)."""
from __future__ import annotations

import pytest

# The point of these runs is the wiring, not accuracy (steps/train has its own test and benchmark).
TINY_RUN = [
    "data.images=160", "data.drivers=6", "data.test_images=4", "processing.validation_drivers=2",
    "processing.resize=40", "training.hyperparameters.epochs=1", "training.hyperparameters.image_shape=3,32,32",
    "training.hyperparameters.mini_batch_size=32", "endpoint.poll_seconds=1", "load_test.duration_seconds=1",
    "load_test.max_requests=100", "load_test.ramp_up_seconds=0", "load_test.p99_ms=5000",
    "quality_gate.min_accuracy=0", "quality_gate.max_log_loss=100",
]  # fmt: skip


def as_options(*pairs: str) -> list[str]:
    return [part for pair in pairs for part in ("--set", pair)]


@pytest.fixture(scope="session")
def tiny_run_options() -> list[str]:
    return as_options(*TINY_RUN)


@pytest.fixture(scope="session")
def tiny_run_settings() -> list[str]:
    return list(TINY_RUN)
