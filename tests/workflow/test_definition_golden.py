"""`ddcicd definition` prints the same ASL, byte for byte, as the files in golden/.

Refactoring must not change what either engine runs. When a change to the state machine is
intended, regenerate the files with `ddcicd definition [--set ...] > tests/workflow/golden/NAME.asl.json`
and let the diff show what changed in review.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from workflow.cli import cli

GOLDEN = Path(__file__).parent / "golden"

CONFIGS = {
    "default": [],
    "batch_score": ["batch_score.enabled=true"],
    "pytorch": ["training.algorithm=pytorch"],
    "pytorch_batch_score": ["training.algorithm=pytorch", "batch_score.enabled=true"],
    "approval": ["approval.required=true"],
    "canary": ["endpoint.rollout.mode=CANARY"],
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_definition_prints_the_golden_asl(name: str) -> None:
    arguments = ["definition"]
    for override in CONFIGS[name]:
        arguments += ["--set", override]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    assert result.output == (GOLDEN / f"{name}.asl.json").read_text()
