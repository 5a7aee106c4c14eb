"""The local engine's SageMaker job integrations: processing, training and transform jobs as local processes.

    arn:aws:states:::sagemaker:createProcessingJob.sync -> the container command (steps/process.py)
    arn:aws:states:::sagemaker:createTrainingJob.sync   -> steps/train.py in a folder laid out like /opt/ml
    arn:aws:states:::sagemaker:createTransformJob.sync  -> steps/batch_score.py over the input prefix

Requests keep SageMaker's shapes (the definition is the one AWS runs), so a job's container
paths (/opt/ml/...) are mapped into the job's directory, its S3 inputs are copied from the
local S3 root, and its outputs go back there when it ends (workflow/local/supervisor.py).
A .sync job that ends Failed or Stopped becomes States.TaskFailed with the Describe*
response (the engine's JobIntegration); a bad request is SageMaker.AmazonSageMakerException.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from workflow.contracts.algorithms import training_repositories
from workflow.contracts.container import CHECKPOINTS, FAILURE, ML_ROOT, TrainingLayout
from workflow.engine import TaskContext
from workflow.engine.values import Json
from workflow.local.endpoints import LocalEndpoints, ValidationError
from workflow.local.jobs import JobSpec, JobStore, ResourceInUse, iso
from workflow.local.s3 import NoSuchKey, S3Root, S3UriError
from workflow.local.sagemaker_api import runs_locally, sagemaker_arn
from workflow.local.sagemaker_errors import required, sagemaker_error
from workflow.local.training_container import final_metric_data_list, write_input_config

# Describe*'s status -> how the engine's .sync integration sees it.
_OUTCOMES = {"Completed": "SUCCEEDED", "Failed": "FAILED", "Stopped": "STOPPED"}


def _python(command: list[str]) -> list[str]:
    """The container's `python3` is this interpreter (with the project's packages)."""
    return [sys.executable if part in ("python", "python3") else part for part in command]


class LocalJobAdapter:
    """What every local SageMaker job shares: unique names, set-up failures as the job's own
    failure (as SageMaker reports a bad channel), the Describe* timestamps, stop.

    Subclasses name their API's fields (`name_key`, `status_key`, ...) and build the
    supervisor's JobSpec in `_spec`; a set-up error there fails the job with a ClientError
    reason instead of failing the API call, which is what SageMaker does for bad inputs.
    """

    poll_seconds = 1.0
    kind = ""  # jobs/<kind>/ under the ddcicd home
    name_key = ""  # e.g. TrainingJobName
    arn_kind = ""  # e.g. training-job
    status_key = ""  # e.g. TrainingJobStatus
    time_keys = ("", "")  # (start, end) timestamp keys, e.g. TrainingStartTime, TrainingEndTime
    setup_errors: tuple[type[Exception], ...] = (NoSuchKey, S3UriError, KeyError, TypeError, ValueError, ValidationError)

    def __init__(self, s3: S3Root, home: Path | None = None) -> None:
        self.s3 = s3
        self.jobs = JobStore(self.kind, home, s3)

    @property
    def arn_key(self) -> str:
        return self.name_key.replace("Name", "Arn")

    def start(self, action: str, parameters: Json, context: TaskContext) -> Json:
        name = required(parameters, self.name_key)
        self._before_start(parameters)
        try:
            self.jobs.reserve(name, parameters)
        except ResourceInUse as error:
            raise sagemaker_error("ResourceInUse", str(error)) from error
        try:
            spec = self._spec(name, parameters)
        except self.setup_errors as error:
            self.jobs.fail(name, f"ClientError: {error}")
        else:
            self.jobs.launch(name, spec)
        return {self.arn_key: sagemaker_arn(self.arn_kind, name, context.region)}

    def _before_start(self, parameters: Json) -> None:
        """Hook: anything to settle before a new job starts."""

    def _spec(self, name: str, parameters: Json) -> JobSpec:
        raise NotImplementedError

    def describe(self, action: str, parameters: Json, started: Json, context: TaskContext) -> tuple[str, Json]:
        name = parameters[self.name_key]
        status = self.jobs.status(name)
        state = status.get("status", "InProgress")
        description = {
            **parameters,
            self.arn_key: sagemaker_arn(self.arn_kind, name, context.region),
            self.status_key: state,
            "CreationTime": iso(status.get("created")),
            self.time_keys[0]: iso(status.get("started")),
            self.time_keys[1]: iso(status.get("ended")),
            "LastModifiedTime": iso(status.get("ended") or status.get("started") or status.get("created")),
        }
        if status.get("failure_reason"):
            description["FailureReason"] = status["failure_reason"]
        description.update(self._describe_more(name, parameters, status))
        return _OUTCOMES.get(state, "RUNNING"), description

    def _describe_more(self, name: str, parameters: Json, status: dict[str, Any]) -> dict[str, Any]:
        """Hook: the fields only this kind of job reports."""
        return {}

    def stop(self, action: str, parameters: Json, started: Json, context: TaskContext) -> None:
        self.jobs.stop(parameters[self.name_key])

    def progress(self, action: str, parameters: Json, started: Json, context: TaskContext) -> tuple[str, int]:
        """HeartbeatSeconds' sign of life (workflow/engine/jobs.py): the job's status and the
        size of its log, which every epoch, shard or batch a working job finishes grows."""
        name = parameters[self.name_key]
        log = self.jobs.directory(name) / "job.log"
        size = log.stat().st_size if log.exists() else 0
        return str(self.jobs.status(name).get("status")), size


class ProcessingJobs(LocalJobAdapter):
    """createProcessingJob: run the container command with its inputs mapped into the job dir."""

    kind, name_key, arn_kind = "processing", "ProcessingJobName", "processing-job"
    status_key, time_keys = "ProcessingJobStatus", ("ProcessingStartTime", "ProcessingEndTime")

    def _spec(self, name: str, parameters: Json) -> JobSpec:
        def local(path: str) -> str:
            return str(self.jobs.container_path(name, path))

        for item in parameters.get("ProcessingInputs", []):
            source = item["S3Input"]
            self.s3.download_prefix(source["S3Uri"], Path(local(source["LocalPath"])))
        uploads = []
        for output in parameters.get("ProcessingOutputConfig", {}).get("Outputs", []):
            target = output["S3Output"]
            Path(local(target["LocalPath"])).mkdir(parents=True, exist_ok=True)
            uploads.append({"directory": local(target["LocalPath"]), "uri": target["S3Uri"]})
        app = parameters["AppSpecification"]
        command = _python(list(app.get("ContainerEntrypoint") or ["python3"]) + list(app.get("ContainerArguments") or []))
        environment = {key: _remap(value, local) for key, value in (parameters.get("Environment") or {}).items()}
        environment["DDCICD_ML_ROOT"] = local(ML_ROOT)
        return JobSpec(command=[_remap(part, local) for part in command], environment=environment,
                       cwd=local("/"), uploads=uploads, failure_file=local(FAILURE))  # fmt: skip

    def _describe_more(self, name: str, parameters: Json, status: dict[str, Any]) -> dict[str, Any]:
        return {"ExitMessage": f"exit code {status['exit_code']}"} if status.get("exit_code") is not None else {}


def _remap(value: str, local: Callable[[str], str]) -> str:
    """Container paths in arguments and environment (`/opt/ml/processing/code`) -> the job dir."""
    if isinstance(value, str) and value.startswith(ML_ROOT):
        return ":".join(local(part) if part.startswith(ML_ROOT) else part for part in value.split(":"))
    return value


class TrainingJobs(LocalJobAdapter):
    """createTrainingJob: steps/train.py in a job directory laid out like /opt/ml.

    Channels are copied from the local S3 root into input/data/<channel>; the checkpoint
    directory (CheckpointConfig.LocalPath) *is* the CheckpointConfig prefix in the local S3
    root (SageMaker syncs it continuously), so a job started after a failed or killed one
    resumes from its newest checkpoint; model/ is tarred to <S3OutputPath>/<job>/output/model.tar.gz
    as SageMaker does.
    """

    kind, name_key, arn_kind = "training", "TrainingJobName", "training-job"
    status_key, time_keys = "TrainingJobStatus", ("TrainingStartTime", "TrainingEndTime")

    def _spec(self, name: str, parameters: Json) -> JobSpec:
        image = parameters["AlgorithmSpecification"].get("TrainingImage", "")
        if not runs_locally(image, training_repositories()):
            raise ValueError(f"training image {image!r} has no local equivalent; the local engine runs steps/train.py "
                             f"for the training images of {', '.join(sorted(training_repositories()))}")  # fmt: skip
        layout = TrainingLayout(self.jobs.container_path(name, ML_ROOT))
        channels = {}
        for channel in parameters.get("InputDataConfig") or []:
            source = channel["DataSource"]["S3DataSource"]
            self.s3.download_prefix(source["S3Uri"], layout.channel(channel["ChannelName"]))
            channels[channel["ChannelName"]] = channel.get("ContentType", "")
        write_input_config(layout, parameters.get("HyperParameters") or {}, channels)
        checkpoints = parameters.get("CheckpointConfig") or {}
        if checkpoints.get("S3Uri"):
            shared = self.s3.path(checkpoints["S3Uri"].rstrip("/") + "/")
            shared.mkdir(parents=True, exist_ok=True)
            local = self.jobs.container_path(name, checkpoints.get("LocalPath") or CHECKPOINTS)
            local.parent.mkdir(parents=True, exist_ok=True)
            local.symlink_to(shared, target_is_directory=True)
        output = self._output_prefix(name, parameters)
        return JobSpec(
            command=[sys.executable, "-m", "steps.train", "--root", str(layout.root)],
            environment={"DDCICD_ML_ROOT": str(layout.root), "PYTHONUNBUFFERED": "1"},
            cwd=str(layout.root),
            uploads=[
                {"directory": str(layout.model), "uri": f"{output}/output/model.tar.gz", "tar": True},
                {"directory": str(layout.output_data), "uri": f"{output}/output/data/"},
            ],
            failure_file=str(layout.failure),
        )

    def _before_start(self, parameters: Json) -> None:
        """One writer per checkpoint prefix: a job left running by a killed engine is stopped
        before its redriven successor resumes from the same checkpoints (and both fight for
        the same two cores)."""
        prefix = (parameters.get("CheckpointConfig") or {}).get("S3Uri")
        if not prefix:
            return
        for other in self.jobs.names():
            if self.jobs.status(other).get("status") not in ("InProgress", "Stopping"):
                continue
            if (self.jobs.request(other).get("CheckpointConfig") or {}).get("S3Uri") == prefix:
                self.jobs.stop(other)
                self.jobs.wait(other, timeout=30)

    @staticmethod
    def _output_prefix(name: str, parameters: Json) -> str:
        return parameters["OutputDataConfig"]["S3OutputPath"].rstrip("/") + "/" + name

    def _describe_more(self, name: str, parameters: Json, status: dict[str, Any]) -> dict[str, Any]:
        state = status.get("status", "InProgress")
        more: dict[str, Any] = {
            "SecondaryStatus": {"InProgress": "Training" if status.get("pid") else "Starting"}.get(state, state)
        }
        if state == "Completed":
            output = self._output_prefix(name, parameters)
            more["ModelArtifacts"] = {"S3ModelArtifacts": f"{output}/output/model.tar.gz"}
            metrics = self.s3.path(f"{output}/output/data/metrics.json")  # output/data/metrics.json, uploaded
            more["FinalMetricDataList"] = final_metric_data_list(metrics, iso(status.get("ended")))
            if status.get("started") and status.get("ended"):
                seconds = max(1, round(status["ended"] - status["started"]))
                more["TrainingTimeInSeconds"] = more["BillableTimeInSeconds"] = seconds
        return more


class TransformJobs(LocalJobAdapter):
    """createTransformJob: steps/batch_score.py over the input prefix, one `<file>.out` per image.

    Batch Transform runs the model's serving container over every object; locally the
    model's archive is scored in-process with the same preprocessing (steps/predictor.py).
    """

    kind, name_key, arn_kind = "transform", "TransformJobName", "transform-job"
    status_key, time_keys = "TransformJobStatus", ("TransformStartTime", "TransformEndTime")

    def __init__(self, s3: S3Root, endpoints: LocalEndpoints, home: Path | None = None) -> None:
        super().__init__(s3, home)
        self.endpoints = endpoints

    def _spec(self, name: str, parameters: Json) -> JobSpec:
        archive = self.endpoints.model_archive(required(parameters, "ModelName"))
        source = parameters["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
        inputs = self.jobs.container_path(name, f"{ML_ROOT}/input/data")
        outputs = self.jobs.container_path(name, f"{ML_ROOT}/output/transform")
        self.s3.download_prefix(source, inputs)
        outputs.mkdir(parents=True, exist_ok=True)
        return JobSpec(
            command=[sys.executable, "-m", "steps.batch_score", "--model", str(archive), "--input", str(inputs),
                     "--output", str(outputs)],  # fmt: skip
            uploads=[{"directory": str(outputs), "uri": parameters["TransformOutput"]["S3OutputPath"]}],
        )


__all__ = ["LocalJobAdapter", "ProcessingJobs", "TrainingJobs", "TransformJobs"]
