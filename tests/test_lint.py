"""pyflakes over the project's own code: an unused import or an undefined name fails the build."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("workflow", "steps", "lambdas", "data", "benchmarks", "tests")


def test_pyflakes_finds_nothing() -> None:
    result = subprocess.run([sys.executable, "-m", "pyflakes", *SOURCES], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
