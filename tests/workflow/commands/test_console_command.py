"""`ddcicd console` and `ddcicd report` as real processes over a real store."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from workflow.engine import Engine

MACHINE = {"StartAt": "Only", "States": {"Only": {"Type": "Pass", "Result": {"ok": True}, "End": True}}}


@pytest.fixture()
def home(isolated_home: Path) -> Path:
    engine = Engine(isolated_home / "engine.sqlite3")
    arn = engine.create_state_machine("tiny", MACHINE)
    engine.run_execution(arn, {}, name="tiny-run")
    engine.create_state_machine("held", {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 600, "End": True}}})
    return isolated_home


def _ddcicd(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "workflow.cli", *arguments]


def _post(url: str, body: dict, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_console_prints_a_token_url_and_guards_actions(home: Path) -> None:
    process = subprocess.Popen(_ddcicd("console", "--port", "0"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "DDCICD_HOME": str(home)})  # fmt: skip
    try:
        line = process.stdout.readline().strip()  # type: ignore[union-attr]
        assert line.startswith("console: http://127.0.0.1:"), line
        url = line.split(" ", 1)[1]
        base, token = url.split("/?token=")
        with urllib.request.urlopen(f"{base}/api/executions", timeout=30) as response:
            assert [item["name"] for item in json.load(response)] == ["tiny-run"]
        arn = "arn:aws:states:us-east-1:000000000000:execution:tiny:tiny-run"
        assert _post(f"{base}/api/stop", {"arn": arn}, {}) == 403
        assert _post(f"{base}/api/stop", {"arn": arn}, {"X-Ddcicd-Token": token, "Origin": "http://attacker.example"}) == 403
        assert _post(f"{base}/api/stop", {"arn": arn}, {"X-Ddcicd-Token": token}) == 409  # allowed, but it is not running
        held = "arn:aws:states:us-east-1:000000000000:stateMachine:held"
        assert _post(f"{base}/api/start", {"stateMachineArn": held, "name": "held-run"}, {"X-Ddcicd-Token": token}) == 200
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    errors = process.stderr.read()  # type: ignore[union-attr]
    assert "stopped held-run (redrive to resume)" in errors and "console stopped" in errors
    assert process.returncode == 0
    description = Engine(home / "engine.sqlite3").describe_execution("held-run")
    assert description["status"] == "ABORTED" and description["error"] == "Console.Stopped"


def test_console_reports_a_busy_port(home: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(_ddcicd("console", "--port", str(port)), capture_output=True, text=True, timeout=60,
                                env={**os.environ, "DDCICD_HOME": str(home)})  # fmt: skip
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_report_command_writes_html(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = subprocess.run(_ddcicd("report", "tiny-run", "--out", str(out)), capture_output=True, text=True, timeout=120,
                            env={**os.environ, "DDCICD_HOME": str(home)})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert "tiny-run" in out.read_text() and "No processing manifest" in out.read_text()
    missing = subprocess.run(_ddcicd("report", "no-such-run"), capture_output=True, text=True, timeout=120,
                             env={**os.environ, "DDCICD_HOME": str(home)})  # fmt: skip
    assert missing.returncode == 2 and "no-such-run" in missing.stderr and missing.stderr.count("\n") == 1
