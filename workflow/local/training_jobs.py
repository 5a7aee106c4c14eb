"""One local training job on a processed folder, in the foreground (`ddcicd train`).

The engine's createTrainingJob.sync integration (workflow/local/sagemaker_jobs.py) starts
jobs from S3 channels under a supervisor; this module is the direct path for a folder the
processing step wrote, with the same container layout, written by the same code
(training_container.py), and the same entry point:

    DATA/{train,validation}.{rec,idx,lst}, DATA/manifest.json
      -> OUT/job/input/config/*.json                 (hyperparameters as strings; num_classes etc. from the manifest)
         OUT/job/input/data/{train,validation}/      (links to DATA's files)
      -> python -m steps.train --root OUT/job          (log: OUT/train.log)
      -> OUT/model.tar.gz (OUT/job/model packed as SageMaker does), OUT/metrics.json
         or OUT/failure

The job directory stays in OUT, so running the same command again after a kill resumes
from OUT/job/checkpoints instead of starting over.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from steps.atomic import write_atomically
from steps.hyperparameters import as_strings
from workflow.contracts.container import TrainingLayout
from workflow.local.training_container import pack_model_directory, write_input_config

CHANNEL_FILES = {"train": ("train.rec", "train.idx", "train.lst", "manifest.json"),
                 "validation": ("validation.rec", "validation.idx", "validation.lst")}  # fmt: skip
CHANNEL_CONTENT_TYPE = "application/x-recordio"  # as the definition declares both channels
EXIT_CLIENT_ERROR = 2  # steps/train.py's exit code for bad hyperparameters or data


class TrainingInputError(ValueError):
    """The processed folder or the hyperparameters cannot make a training job."""


@dataclass(frozen=True)
class TrainingResult:
    """How a local job ended, in DescribeTrainingJob's words."""

    status: str  # Completed, Failed or Stopped
    failure_reason: str | None
    exit_code: int
    started: float
    ended: float
    model_artifact: Path | None
    metrics: dict[str, Any] | None

    @property
    def client_error(self) -> bool:
        return self.exit_code == EXIT_CLIENT_ERROR


def job_hyperparameters(data: Path, defaults: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    """defaults < values from the manifest (num_classes, num_training_samples) < overrides; all strings.

    An override with an empty value removes the name (`augmentation_type=` means no augmentation).
    """
    manifest_path = data / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        from_data = {
            "num_classes": str(len(manifest["classes"])),
            "num_training_samples": str(manifest["splits"]["train"]["count"]),
        }
    except FileNotFoundError:
        raise TrainingInputError(f"{data} has no manifest.json: is it a folder written by `ddcicd process`?") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise TrainingInputError(f"{manifest_path} lacks classes or splits.train.count ({error})") from None
    merged = {**as_strings(defaults), **from_data, **dict(overrides)}
    return {name: value for name, value in merged.items() if value != ""}


def prepare_job(data: Path, root: Path, hyperparameters: Mapping[str, str]) -> None:
    """Lay out ROOT like /opt/ml: config files, and channels linking to DATA's files."""
    layout = TrainingLayout(root)
    for channel, names in CHANNEL_FILES.items():
        if not (data / names[0]).is_file():
            raise TrainingInputError(f"{data} has no {names[0]}: run `ddcicd process` first")
        directory = layout.channel(channel)
        if directory.exists():
            shutil.rmtree(directory)  # relinked every run: DATA may have been processed again
        directory.mkdir(parents=True)
        for name in names:
            if (data / name).is_file():
                (directory / name).symlink_to((data / name).resolve())
    write_input_config(layout, hyperparameters, {channel: CHANNEL_CONTENT_TYPE for channel in CHANNEL_FILES})
    layout.checkpoints.mkdir(parents=True, exist_ok=True)  # kept between runs: a rerun resumes
    # outputs of an earlier run must not pass for this one's
    layout.failure.unlink(missing_ok=True)
    for stale in layout.model.iterdir():
        stale.unlink()


def run_job(root: Path, log_path: Path, echo: Callable[[str], None] | None = None, workers: int | None = None) -> int:
    """Run steps/train.py on ROOT in its own process group; every output line goes to the log (and echo).

    Ctrl-C or SIGTERM stops the whole group (the trainer and its input workers) and is re-raised.
    """
    command = [sys.executable, "-m", "steps.train", "--root", str(root)]
    if workers is not None:
        command += ["--workers", str(workers)]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=environment, start_new_session=True,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                log.flush()
                if echo is not None:
                    echo(line.decode(errors="replace").rstrip("\n"))
            return process.wait()
        except BaseException:
            _stop_group(process)
            raise


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the job's process group, then SIGKILL what is left after a few seconds."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def train_local(
    data: Path,
    out: Path,
    hyperparameters: Mapping[str, str],
    echo: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> TrainingResult:
    """The whole local job: prepare OUT/job, run it, publish OUT/model.tar.gz + metrics.json or OUT/failure."""
    root = out / "job"
    layout = TrainingLayout(root)
    prepare_job(data, root, hyperparameters)
    for stale in ("model.tar.gz", "metrics.json", "failure"):
        (out / stale).unlink(missing_ok=True)
    started = time.time()
    exit_code = run_job(root, out / "train.log", echo, workers)
    ended = time.time()
    if exit_code != 0:
        reason = layout.failure.read_text().strip() if layout.failure.is_file() else ""
        reason = reason or f"AlgorithmError: exit code {exit_code}; see {out / 'train.log'}"
        write_atomically(out / "failure", (reason + "\n").encode())
        return TrainingResult("Failed", reason, exit_code, started, ended, None, None)
    archive = pack_model_directory(layout.model, out / "model.tar.gz")
    metrics_text = layout.metrics.read_text()
    write_atomically(out / "metrics.json", metrics_text.encode())
    return TrainingResult("Completed", None, 0, started, ended, archive, json.loads(metrics_text))
