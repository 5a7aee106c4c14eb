"""`ddcicd run`'s view: progress lines while an execution runs, then the summary, from real histories."""
from __future__ import annotations

from pathlib import Path

import pytest

from workflow.config import load_config
from workflow.engine import Engine
from workflow.run_view import print_summary, watch_execution

RUN = "s3://ddcicd-local/ddcicd/runs/r1"
EVALUATION = {"accuracy": 0.41, "log_loss": 1.9, "evaluated": 8, "failed_invocations": 0, "has_production": False,
              "metrics_uri": f"{RUN}/evaluation/evaluation.json"}  # fmt: skip
MACHINE = {"StartAt": "Process", "States": {
    "Process": {"Type": "Pass", "Result": {"ProcessingJobStatus": "Completed"}, "ResultPath": "$.processing", "Next": "Hold"},
    "Hold": {"Type": "Wait", "Seconds": 1, "Next": "Train"},
    "Train": {"Type": "Pass", "Result": {"ModelArtifacts": {"S3ModelArtifacts": f"{RUN}/model/job/output/model.tar.gz"}},
              "ResultPath": "$.training", "Next": "Evaluate"},
    "Evaluate": {"Type": "Pass", "Result": {"Payload": EVALUATION}, "ResultPath": "$.evaluation", "Next": "QualityGate"},
    "QualityGate": {"Type": "Choice", "Choices": [{"Variable": "$.evaluation.Payload.accuracy", "NumericGreaterThanEquals": 0.9,
                                                   "Next": "Promote"}], "Default": "ModelRejected"},
    "ModelRejected": {"Type": "Fail", "Error": "QualityGateFailed", "Cause": "the model missed a threshold"},
    "Promote": {"Type": "Succeed"}}}  # fmt: skip


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("DDCICD_HOME", str(tmp_path / "home"))
    return Engine(tmp_path / "home" / "engine.sqlite3")


def test_off_a_terminal_each_finished_state_is_one_line(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    arn = engine.start_execution(engine.create_state_machine("view", MACHINE), {"ProcessedDataUri": f"{RUN}/processed/"})
    runs = watch_execution(engine, arn, live=True)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" in ")[0] for line in lines] == ["Process succeeded", "Hold succeeded", "Train succeeded", "Evaluate succeeded",
                                                         "QualityGate succeeded"]  # fmt: skip
    assert float(lines[1].split(" in ")[1].removesuffix(" s")) >= 0.9  # the Wait state's second
    assert runs["ModelRejected"].status == "failed"  # the Fail state, cut short by the end of the execution


def test_quiet_prints_nothing_while_running(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    arn = engine.start_execution(engine.create_state_machine("view", MACHINE), {})
    watch_execution(engine, arn, live=False)
    assert capsys.readouterr().err == ""


def test_the_summary_says_where_and_why_it_stopped(engine: Engine, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run_input = {"ProcessedDataUri": f"{RUN}/processed/", "LoadTestUri": f"{RUN}/load-test/load-test.json"}
    arn = engine.run_execution(engine.create_state_machine("view", MACHINE), run_input, name="rejected-run")["executionArn"]
    print_summary(engine, arn, load_config(None, ()))
    out = capsys.readouterr().out
    assert "rejected-run: FAILED in" in out
    assert "error in state ModelRejected: QualityGateFailed: the model missed a threshold" in out
    assert "validation: accuracy 0.4100, log loss 1.9000 on 8 images (0 failed invocations)" in out
    assert "gates: QualityGate rejected" in out
    assert "production endpoint" not in out and "load test" not in out
    s3 = tmp_path / "home" / "s3" / "ddcicd-local" / "ddcicd" / "runs" / "r1"
    assert f"model             {s3}/model/job/output/model.tar.gz" in out
    assert f"processed data    {s3}/processed" in out
    assert "time per state: Hold 1.0s" in out or "time per state: Hold 1.1s" in out
    assert "history: ddcicd executions history rejected-run" in out


def test_on_a_terminal_the_live_table_ends_with_every_state(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    screen = io.StringIO()
    monkeypatch.setattr("workflow.run_view.console", Console(file=screen, force_terminal=True, width=120, color_system=None))
    arn = engine.start_execution(engine.create_state_machine("view", MACHINE), {})
    watch_execution(engine, arn, live=True)
    final = screen.getvalue().rsplit("state", 1)[-1]  # the last table drawn
    for name, status in (("Process", "succeeded"), ("Hold", "succeeded"), ("QualityGate", "succeeded"), ("ModelRejected", "failed")):
        assert any(line.split()[:2] == [name, status] for line in final.splitlines() if line.strip()), (name, final)
