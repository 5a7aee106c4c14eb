"""The CLI's contract: light start-up, one-line errors, exit codes (workflow/errors.py) buildspec.yml relies on."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from workflow.cli import COMMANDS, cli
from workflow.engine import Engine
from workflow.errors import EXIT_INTERNAL_ERROR, EXIT_RUN_FAILED

REPO = Path(__file__).resolve().parents[2]

HEAVY = ("torch", "sagemaker", "stepfunctions", "cv2", "onnxruntime", "boto3", "matplotlib")


def test_start_up_imports_nothing_heavy() -> None:
    """Listing every command must not pay for torch, sagemaker or the Step Functions SDK."""
    code = (
        "import importlib, sys\n"
        "from workflow.cli import COMMANDS\n"
        "for target in COMMANDS.values(): importlib.import_module(target.split(':')[0])\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    for name in COMMANDS:
        assert name in result.output


def test_bad_input_is_one_line_on_stderr_with_exit_code_2() -> None:
    result = subprocess.run([sys.executable, "-m", "workflow.cli", "definition", "--set", "quality_gate.nope=1"],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == "error: quality_gate.nope: unknown key"
    assert result.stdout == ""


def test_unknown_command_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "workflow.cli", "frobnicate"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "No such command" in result.stderr


def _ddcicd(home: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DDCICD_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "workflow.cli", *arguments], cwd=home, env=environment,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_an_internal_error_exits_70_not_1_like_a_failed_run(tmp_path: Path) -> None:
    """An exception nobody explains is a bug (EX_SOFTWARE), told apart from a run that ended FAILED (1)."""
    (tmp_path / "engine.sqlite3").write_bytes(b"this is not an SQLite database" * 100)
    result = _ddcicd(tmp_path, "executions", "list")
    assert result.returncode == EXIT_INTERNAL_ERROR == 70, result.stderr
    assert result.stderr == ("error: unexpected DatabaseError: file is not a database"
                             " (an internal error; rerun with --verbose for a traceback)\n")  # fmt: skip
    assert result.stdout == ""


def test_verbose_shows_the_internal_error_traceback_and_keeps_exit_70(tmp_path: Path) -> None:
    (tmp_path / "engine.sqlite3").write_bytes(b"this is not an SQLite database" * 100)
    result = _ddcicd(tmp_path, "--verbose", "executions", "list")
    assert result.returncode == 70
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert "sqlite3.DatabaseError: file is not a database" in result.stderr
    assert result.stderr.splitlines()[-1] == "error: unexpected DatabaseError: file is not a database (an internal error)"


def test_a_run_that_ended_failed_exits_1(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3")
    machine = engine.create_state_machine("gate", {"StartAt": "Rejected", "States": {
        "Rejected": {"Type": "Fail", "Error": "QualityGateFailed", "Cause": "accuracy 0.41 < 0.90"}}})  # fmt: skip
    engine.run_execution(machine, {}, name="rejected")
    result = _ddcicd(tmp_path, "redrive", "rejected")
    assert result.returncode == EXIT_RUN_FAILED == 1, result.stderr
    assert result.stderr.splitlines()[-1] == ("error: execution rejected ended FAILED in state Rejected: QualityGateFailed:"
                                              " accuracy 0.41 < 0.90 (a decision: a redrive will not change it;"
                                              " inspect: ddcicd executions history rejected)")
    assert "a redrive ends the same way and promotes nothing" in result.stderr.splitlines()[0]
