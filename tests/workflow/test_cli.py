"""The CLI's contract: light start-up, one-line errors, exit codes buildspec.yml relies on."""
from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from workflow.cli import COMMANDS, cli

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
