"""Labels from the user's data are text: a `$` in a state, class or driver name is drawn as it is.

matplotlib parses `$...$` as mathtext unless told not to; before plots.py turned that off, a
state named `$\\undefinedmacro{$` made `ddcicd report` exit 1 and the console's report page 500.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from workflow.console import plots
from workflow.console.report import render_report
from workflow.engine import Engine

HOSTILE = "$\\undefinedmacro{$"


def test_every_chart_draws_a_dollar_label_as_text() -> None:
    charts = [
        plots.grouped_bars([HOSTILE, "c1"], {"train": [3, 4], "validation": [1, 2]}, "images", f"per class {HOSTILE}"),
        plots.grouped_bars(["$p002$", "p012"], {"c0": [1, 0], HOSTILE: [0, 2]}, "images", "per driver", stacked=True),
        plots.confusion_matrix([[2, 0], [1, 1]], [HOSTILE, "c1"]),
        plots.state_times([HOSTILE, "Train"], [0.5, 1.0], ["succeeded", "failed"]),
    ]
    for svg in charts:
        assert svg.startswith("<svg")
        assert "\\undefinedmacro{" in svg  # the label itself, not a rendered formula


def _slow(event: Any, context: Any) -> dict[str, Any]:
    time.sleep(0.2)  # long enough for a bar in "Time per state"
    return {}


def _hostile_execution(store: Path) -> tuple[Engine, str]:
    engine = Engine(store, functions={"slow": _slow})
    machine = engine.create_state_machine("labels", {"StartAt": HOSTILE, "States": {
        HOSTILE: {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                  "Parameters": {"FunctionName": "slow", "Payload": {}}, "End": True}}})
    result = engine.run_execution(machine, {}, name="dollars")
    assert result["status"] == "SUCCEEDED", result
    return engine, result["executionArn"]


def test_report_with_a_dollar_state_name_renders(tmp_path: Path) -> None:
    engine, arn = _hostile_execution(tmp_path / "engine.sqlite3")
    html = render_report(engine, arn)
    assert "Time per state" in html and "\\undefinedmacro{" in html
    assert "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';" in html  # also when opened as a file


def test_report_command_with_a_dollar_state_name_exits_0(tmp_path: Path, monkeypatch: Any) -> None:
    from workflow.cli import cli

    monkeypatch.setenv("DDCICD_HOME", str(tmp_path / "home"))
    _hostile_execution(tmp_path / "home" / "engine.sqlite3")
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", "dollars", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "\\undefinedmacro{" in out.read_text()


def test_the_consoles_report_page_with_a_dollar_state_name_is_200(setup: Any, console: str, http: Any) -> None:
    from urllib.parse import quote

    _, arn = _hostile_execution(setup.engine.store.path)
    reply = http(console, "GET", f"/report?arn={quote(arn)}")
    assert reply.status == 200 and b"\\undefinedmacro{" in reply.body
