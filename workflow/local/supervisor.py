"""Runs one local SageMaker-style job to its end and records how it ended.

    python -m workflow.local.supervisor JOB_DIR

JOB_DIR/spec.json says what to run (command, environment, working directory), which
directories to upload to the local S3 root when the command succeeds, and where the job
writes its failure reason (SageMaker's /opt/ml/output/failure). The supervisor is the
job's parent, so whoever describes the job (the engine, the CLI, the console, a
restarted engine after a crash) reads one file, JOB_DIR/status.json, written atomically:

    {"status": "InProgress" | "Completed" | "Failed" | "Stopped", "exit_code": ...,
     "failure_reason": "...", "started": epoch, "ended": epoch, "pid": ...}

SIGTERM (StopTrainingJob and friends) is forwarded to the job's process group; a stopped
job ends "Stopped", not "Failed", and uploads nothing.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from steps.atomic import write_atomically
from workflow.local.s3 import S3Root
from workflow.local.training_container import pack_model_directory

FAILURE_REASON_LIMIT = 1024  # DescribeTrainingJob's FailureReason is at most 1024 characters


def write_status(job_dir: Path, **fields: Any) -> None:
    path = job_dir / "status.json"
    current = read_status(job_dir)
    current.update(fields)
    write_atomically(path, json.dumps(current).encode(), fsync=False)


def read_status(job_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((job_dir / "status.json").read_text())
    except FileNotFoundError:
        return {}


def _failure_reason(spec: dict[str, Any], log_path: Path, exit_code: int) -> str:
    """The job's own words (its failure file), else the last line of its log."""
    failure_file = spec.get("failure_file")
    if failure_file and Path(failure_file).is_file():
        text = Path(failure_file).read_text(errors="replace").strip()
        if text:
            return text[:FAILURE_REASON_LIMIT]
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()] if log_path.exists() else []
    tail = lines[-1].strip() if lines else "no output"
    return f"AlgorithmError: exit code {exit_code}: {tail}"[:FAILURE_REASON_LIMIT]


def supervise(job_dir: Path) -> int:
    spec = json.loads((job_dir / "spec.json").read_text())
    log_path = job_dir / "job.log"
    stopped = False
    write_status(job_dir, status="InProgress", started=time.time())
    environment = {**os.environ, **spec.get("environment", {})}
    with open(log_path, "ab", buffering=0) as log:
        child = subprocess.Popen(
            spec["command"], cwd=spec.get("cwd") or job_dir, env=environment,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

        def stop(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
            nonlocal stopped
            stopped = True
            write_status(job_dir, status="Stopping")
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        write_status(job_dir, pid=child.pid)
        exit_code = child.wait()
    if stopped:
        write_status(job_dir, status="Stopped", exit_code=exit_code, ended=time.time())
        return 0
    if exit_code != 0:
        write_status(job_dir, status="Failed", exit_code=exit_code, ended=time.time(),
                     failure_reason=_failure_reason(spec, log_path, exit_code))  # fmt: skip
        return 0
    try:
        root = S3Root(Path(spec["s3_root"]))
        for upload in spec.get("uploads", []):
            source = Path(upload["directory"])
            if upload.get("tar"):  # SageMaker tars /opt/ml/model into model.tar.gz
                pack_model_directory(source, root.path(upload["uri"]))
            else:
                root.upload_directory(source, upload["uri"])
    except Exception as error:  # noqa: BLE001 - any upload failure fails the job with its reason
        write_status(job_dir, status="Failed", exit_code=exit_code, ended=time.time(),
                     failure_reason=f"InternalServerError: uploading outputs failed: {error}"[:FAILURE_REASON_LIMIT])  # fmt: skip
        return 0
    write_status(job_dir, status="Completed", exit_code=0, ended=time.time())
    return 0


if __name__ == "__main__":
    sys.exit(supervise(Path(sys.argv[1])))
