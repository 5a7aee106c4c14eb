"""The views' one door into local state: definition versions, artifacts, executions run here."""
from __future__ import annotations

import os
import time
from pathlib import Path

from workflow.engine import Engine
from workflow.local.reader import Artifacts, executed_definition, executed_definition_text, running_here
from workflow.local.s3 import S3Root


def test_an_execution_reads_the_definition_version_it_ran(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3")
    machine = engine.create_state_machine("m", {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
    first = engine.run_execution(machine, {})["executionArn"]
    engine.update_state_machine(machine, {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": True}}})
    second = engine.run_execution(machine, {})["executionArn"]
    assert list(executed_definition(engine, first)["States"]) == ["A"]
    assert list(executed_definition(engine, second)["States"]) == ["B"]
    assert executed_definition_text(engine, first)[0] == (machine, 1)
    assert executed_definition_text(engine, second)[0] == (machine, 2)


def test_artifacts_read_what_is_there_and_none_otherwise(tmp_path: Path) -> None:
    root = S3Root(tmp_path / "s3")
    files = Artifacts(root)
    root.put_bytes(b'{"accuracy": 0.9}', "s3://b/run/evaluation.json")
    root.put_bytes(b"[1, 2]", "s3://b/run/list.json")
    root.put_bytes(b"not json", "s3://b/run/broken.json")
    assert files.json("s3://b/run/evaluation.json") == {"accuracy": 0.9}
    assert files.json("s3://b/run/list.json") is None  # not an object
    assert files.json("s3://b/run/broken.json") is None
    assert files.json("s3://b/run/missing.json") is None and files.json(None) is None
    assert files.text("s3://b/../../etc/passwd") is None  # outside the root
    assert files.path("s3://b/run/evaluation.json") == tmp_path / "s3" / "b" / "run" / "evaluation.json"
    assert files.path("https://example.invalid/x") is None


def test_newest_lists_matches_newest_first(tmp_path: Path) -> None:
    root = S3Root(tmp_path / "s3")
    for index, job in enumerate(("job-a", "job-b")):
        root.put_bytes(b"{}", f"s3://b/model/{job}/output/data/metrics.json")
        path = root.path(f"s3://b/model/{job}/output/data/metrics.json")
        os.utime(path, (time.time() - 100 + index, time.time() - 100 + index))
    files = Artifacts(root)
    assert files.newest("s3://b/model/", "*/output/data/metrics.json") == [
        "s3://b/model/job-b/output/data/metrics.json", "s3://b/model/job-a/output/data/metrics.json"]
    assert files.newest("s3://b/nothing/", "*") == []


def test_running_here_lists_only_this_process_executions(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3")
    machine = engine.create_state_machine("w", {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 60, "End": True}}})
    arn = engine.start_execution(machine, {})
    try:
        assert running_here(engine) == [arn]
    finally:
        engine.stop_execution(arn)
        engine.wait(arn, timeout=30)
    assert running_here(engine) == []
