"""The local engine's SageMaker and S3 integrations: AWS request in, AWS response out.

    arn:aws:states:::sagemaker:createProcessingJob.sync -> steps/process.py in a local job
    arn:aws:states:::sagemaker:createTrainingJob.sync   -> steps/train.py in a local job
    arn:aws:states:::sagemaker:createModel / createEndpointConfig / createEndpoint / updateEndpoint
    arn:aws:states:::aws-sdk:sagemaker:describeEndpoint / listEndpoints / deleteEndpoint
    arn:aws:states:::aws-sdk:s3:copyObject

Requests keep SageMaker's shapes (the definition is the one AWS runs), so a job's
container paths (/opt/ml/...) are mapped into the job's directory, its S3 channels are
copied from the local S3 root, and its outputs go back there when it ends. Errors carry
the names AWS gives them, so Retry and Catch behave as on AWS:

    optimized integrations: SageMaker.AmazonSageMakerException (cause names the error code)
    aws-sdk integrations:   SageMaker.SageMakerException, S3.NoSuchKeyException
    a .sync job that ends Failed or Stopped: States.TaskFailed with the Describe* response
"""
from __future__ import annotations

import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

from workflow.engine import JobIntegration, StatesError, TaskContext
from workflow.local.endpoints import LocalEndpoints, ValidationError
from workflow.local.jobs import JobSpec, JobStore, ResourceInUse, iso
from workflow.local.s3 import NoSuchKey, S3Root, S3UriError

Json = Any
REGION = "us-east-1"
ACCOUNT = "000000000000"
# Images that mean "our trainer": the built-in algorithm's and PyTorch framework images.
TRAINING_IMAGE = re.compile(r"(image-classification|pytorch-training|ddcicd)", re.IGNORECASE)


def sagemaker_error(code: str, message: str) -> StatesError:
    """An error from a SageMaker optimized integration, worded like the Java SDK's."""
    return StatesError(
        "SageMaker.AmazonSageMakerException",
        f"{message} (Service: AmazonSageMaker; Status Code: 400; Error Code: {code}; Request ID: {uuid.uuid4()}; Proxy: null)",
    )


def _job_arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name.lower()}"


def _python(command: list[str]) -> list[str]:
    """The container's `python3` is this interpreter (with the project's packages)."""
    return [sys.executable if part in ("python", "python3") else part for part in command]


# ------------------------------------------------------------------ jobs


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

    def start(self, action: str, parameters: Json, context: TaskContext) -> Json:
        name = _required(parameters, self.name_key)
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
        return {self.name_key.replace("Name", "Arn"): _job_arn(self.arn_kind, name)}

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
            self.name_key.replace("Name", "Arn"): _job_arn(self.arn_kind, name),
            self.status_key: state,
            "CreationTime": iso(status.get("created")),
            self.time_keys[0]: iso(status.get("started")),
            self.time_keys[1]: iso(status.get("ended")),
            "LastModifiedTime": iso(status.get("ended") or status.get("started") or status.get("created")),
        }
        if status.get("failure_reason"):
            description["FailureReason"] = status["failure_reason"]
        description.update(self._describe_more(name, parameters, status))
        return _outcome(state), description

    def _describe_more(self, name: str, parameters: Json, status: dict[str, Any]) -> dict[str, Any]:
        """Hook: the fields only this kind of job reports."""
        return {}

    def stop(self, action: str, parameters: Json, started: Json, context: TaskContext) -> None:
        self.jobs.stop(parameters[self.name_key])


def _outcome(status: str) -> str:
    return {"Completed": "SUCCEEDED", "Failed": "FAILED", "Stopped": "STOPPED"}.get(status, "RUNNING")


def _required(parameters: Json, key: str) -> str:
    value = parameters.get(key) if isinstance(parameters, dict) else None
    if not isinstance(value, str) or not value:
        raise sagemaker_error("ValidationException", f"1 validation error detected: Value null at '{key}' failed to satisfy constraint: Member must not be null")
    return value


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
        environment["DDCICD_ML_ROOT"] = local("/opt/ml")
        return JobSpec(command=[_remap(part, local) for part in command], environment=environment,
                       cwd=local("/"), uploads=uploads, failure_file=local("/opt/ml/output/failure"))  # fmt: skip

    def _describe_more(self, name: str, parameters: Json, status: dict[str, Any]) -> dict[str, Any]:
        return {"ExitMessage": f"exit code {status['exit_code']}"} if status.get("exit_code") is not None else {}


def _remap(value: str, local: Any) -> str:
    """Container paths in arguments and environment (`/opt/ml/processing/code`) -> the job dir."""
    if isinstance(value, str) and value.startswith("/opt/ml"):
        return ":".join(local(part) if part.startswith("/opt/ml") else part for part in value.split(":"))
    return value


class TrainingJobs(LocalJobAdapter):
    """createTrainingJob: steps/train.py in a job directory laid out like /opt/ml.

    Channels are copied from the local S3 root into input/data/<channel>; the checkpoint
    directory *is* the CheckpointConfig prefix in the local S3 root (SageMaker syncs it
    continuously), so a job started after a failed or killed one resumes from its newest
    checkpoint; model/ is tarred to <S3OutputPath>/<job>/output/model.tar.gz as SageMaker does.
    """

    kind, name_key, arn_kind = "training", "TrainingJobName", "training-job"
    status_key, time_keys = "TrainingJobStatus", ("TrainingStartTime", "TrainingEndTime")

    def _spec(self, name: str, parameters: Json) -> JobSpec:
        image = parameters["AlgorithmSpecification"].get("TrainingImage", "")
        if not TRAINING_IMAGE.search(image):
            raise ValueError(f"training image {image!r} has no local equivalent; the local engine runs "
                             "steps/train.py for the image-classification and PyTorch training images")
        root = self.jobs.container_path(name, "/opt/ml")
        config = root / "input" / "config"
        config.mkdir(parents=True)
        hyperparameters = {key: str(value) for key, value in (parameters.get("HyperParameters") or {}).items()}
        (config / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=1))
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
        channels = {}
        for channel in parameters.get("InputDataConfig") or []:
            source = channel["DataSource"]["S3DataSource"]
            self.s3.download_prefix(source["S3Uri"], root / "input" / "data" / channel["ChannelName"])
            channels[channel["ChannelName"]] = {"ContentType": channel.get("ContentType", ""), "TrainingInputMode": "File"}
        (config / "inputdataconfig.json").write_text(json.dumps(channels, indent=1))
        checkpoint_uri = (parameters.get("CheckpointConfig") or {}).get("S3Uri")
        if checkpoint_uri:
            shared = self.s3.path(checkpoint_uri.rstrip("/") + "/")
            shared.mkdir(parents=True, exist_ok=True)
            (root / "checkpoints").symlink_to(shared, target_is_directory=True)
        for folder in ("model", "output/data"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        output = self._output_prefix(name, parameters)
        return JobSpec(
            command=[sys.executable, "-m", "steps.train", "--root", str(root)],
            environment={"DDCICD_ML_ROOT": str(root), "PYTHONUNBUFFERED": "1"},
            cwd=str(root),
            uploads=[
                {"directory": str(root / "model"), "uri": f"{output}/output/model.tar.gz", "tar": True},
                {"directory": str(root / "output" / "data"), "uri": f"{output}/output/data/"},
            ],
            failure_file=str(root / "output" / "failure"),
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
            more["FinalMetricDataList"] = self._final_metrics(f"{output}/output/data/metrics.json", status)
            if status.get("started") and status.get("ended"):
                seconds = max(1, round(status["ended"] - status["started"]))
                more["TrainingTimeInSeconds"] = more["BillableTimeInSeconds"] = seconds
        return more

    def _final_metrics(self, uri: str, status: dict[str, Any]) -> list[dict[str, Any]]:
        """The built-in algorithm's metric names, from the job's metrics.json."""
        try:
            final = json.loads(self.s3.path(uri).read_text())["final"]
        except (OSError, ValueError, KeyError):
            return []
        timestamp = iso(status.get("ended"))
        names = {"validation:accuracy": "validation_accuracy", "validation:log_loss": "validation_log_loss"}
        return [{"MetricName": metric, "Value": float(final[key]), "Timestamp": timestamp}
                for metric, key in names.items() if key in final]  # fmt: skip


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
        model = self.endpoints.describe_model(_required(parameters, "ModelName"))
        archive = self.s3.path(model["PrimaryContainer"]["ModelDataUrl"])
        source = parameters["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
        inputs = self.jobs.container_path(name, "/opt/ml/input/data")
        outputs = self.jobs.container_path(name, "/opt/ml/output/transform")
        self.s3.download_prefix(source, inputs)
        outputs.mkdir(parents=True, exist_ok=True)
        return JobSpec(
            command=[sys.executable, "-m", "steps.batch_score", "--model", str(archive), "--input", str(inputs),
                     "--output", str(outputs)],  # fmt: skip
            uploads=[{"directory": str(outputs), "uri": parameters["TransformOutput"]["S3OutputPath"]}],
        )


# ------------------------------------------------------------------ models and endpoints


class SageMakerControlPlane:
    """createModel, createEndpointConfig, createEndpoint, updateEndpoint and the aws-sdk reads."""

    def __init__(self, endpoints: LocalEndpoints) -> None:
        self.endpoints = endpoints

    def invoke(self, resource: str, parameters: Json, context: TaskContext) -> Json:
        sdk = ":aws-sdk:" in resource
        action = resource.rsplit(":", 1)[-1]
        handler = getattr(self, f"_{_snake(action)}", None)
        if handler is None:
            raise StatesError("States.Runtime", f"the local SageMaker integration does not implement {action}")
        try:
            return handler(parameters)
        except ValidationError as error:
            if sdk:  # an unmodelled error through the aws-sdk integration
                raise StatesError("SageMaker.SageMakerException", f"{error} (Service: SageMaker, Status Code: 400, Request ID: {uuid.uuid4()})") from error
            raise sagemaker_error("ValidationException", str(error)) from error

    def _create_model(self, parameters: Json) -> Json:
        return self.endpoints.create_model(_required(parameters, "ModelName"), primary_container=parameters.get("PrimaryContainer"))

    def _create_endpoint_config(self, parameters: Json) -> Json:
        return self.endpoints.create_endpoint_config(_required(parameters, "EndpointConfigName"), parameters.get("ProductionVariants") or [])

    def _create_endpoint(self, parameters: Json) -> Json:
        return self.endpoints.create_endpoint(_required(parameters, "EndpointName"), _required(parameters, "EndpointConfigName"))

    def _update_endpoint(self, parameters: Json) -> Json:
        return self.endpoints.update_endpoint(_required(parameters, "EndpointName"), _required(parameters, "EndpointConfigName"))

    def _describe_endpoint(self, parameters: Json) -> Json:
        return self.endpoints.describe_endpoint(_required(parameters, "EndpointName"))

    def _delete_endpoint(self, parameters: Json) -> Json:
        self.endpoints.delete_endpoint(_required(parameters, "EndpointName"))
        return {}

    def _list_endpoints(self, parameters: Json) -> Json:
        contains = (parameters or {}).get("NameContains", "")
        limit = int((parameters or {}).get("MaxResults", 10))
        summaries = [
            {key: item[key] for key in ("EndpointName", "EndpointArn", "CreationTime", "LastModifiedTime", "EndpointStatus") if key in item}
            for item in self.endpoints.list_endpoints()
            if contains in item["EndpointName"]
        ]
        return {"Endpoints": summaries[:limit]}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class S3Integration:
    """aws-sdk:s3:copyObject (and getObject/putObject for small JSON) on the local S3 root."""

    def __init__(self, s3: S3Root) -> None:
        self.s3 = s3

    def invoke(self, resource: str, parameters: Json, context: TaskContext) -> Json:
        action = resource.rsplit(":", 1)[-1]
        try:
            if action == "copyObject":
                source = _required_s3(parameters, "CopySource").lstrip("/")
                target = f"s3://{_required_s3(parameters, 'Bucket')}/{_required_s3(parameters, 'Key')}"
                self.s3.copy_object("s3://" + source, target)
                return {"CopyObjectResult": {"ETag": f'"{uuid.uuid4().hex}"'}}
            if action == "getObject":
                path = self.s3.path(f"s3://{_required_s3(parameters, 'Bucket')}/{_required_s3(parameters, 'Key')}")
                if not path.is_file():
                    raise NoSuchKey(str(path))
                return {"Body": path.read_text(), "ContentLength": path.stat().st_size}
            if action == "putObject":
                body = parameters.get("Body", "")
                text = body if isinstance(body, str) else json.dumps(body)
                self.s3.put_bytes(text.encode(), f"s3://{_required_s3(parameters, 'Bucket')}/{_required_s3(parameters, 'Key')}")
                return {"ETag": f'"{uuid.uuid4().hex}"'}
        except NoSuchKey as error:
            raise StatesError("S3.NoSuchKeyException", f"The specified key does not exist. ({error})") from error
        except S3UriError as error:
            raise StatesError("S3.S3Exception", str(error)) from error
        raise StatesError("States.Runtime", f"the local S3 integration does not implement {action}")


def _required_s3(parameters: Json, key: str) -> str:
    value = parameters.get(key) if isinstance(parameters, dict) else None
    if not isinstance(value, str) or not value:
        raise StatesError("S3.S3Exception", f"{key} is required")
    return value


# ------------------------------------------------------------------ wiring


def register_local_aws(registry: Any, s3: S3Root | None = None, home: Path | None = None) -> None:
    """Registers every local AWS integration the pipeline uses on an engine's registry."""
    s3 = s3 or S3Root.default()
    endpoints = LocalEndpoints(home, resolve_uri=s3.path)
    control = SageMakerControlPlane(endpoints)
    for action in ("createModel", "createEndpointConfig", "createEndpoint", "updateEndpoint"):
        registry.register(rf"arn:[^:]+:states:::sagemaker:{action}", control, label=f"arn:aws:states:::sagemaker:{action}")
    for action in ("describeEndpoint", "listEndpoints", "deleteEndpoint"):
        registry.register(rf"arn:[^:]+:states:::aws-sdk:sagemaker:{action}", control,
                          label=f"arn:aws:states:::aws-sdk:sagemaker:{action}")  # fmt: skip
    registry.register(r"arn:[^:]+:states:::aws-sdk:s3:(copyObject|getObject|putObject)", S3Integration(s3),
                      label="arn:aws:states:::aws-sdk:s3:copyObject|getObject|putObject")  # fmt: skip
    registry.register(r"arn:[^:]+:states:::sagemaker:createProcessingJob(\.sync)?", JobIntegration(ProcessingJobs(s3, home)),
                      label="arn:aws:states:::sagemaker:createProcessingJob[.sync]")  # fmt: skip
    registry.register(r"arn:[^:]+:states:::sagemaker:createTrainingJob(\.sync)?", JobIntegration(TrainingJobs(s3, home)),
                      label="arn:aws:states:::sagemaker:createTrainingJob[.sync]")  # fmt: skip
    registry.register(r"arn:[^:]+:states:::sagemaker:createTransformJob(\.sync)?",
                      JobIntegration(TransformJobs(s3, endpoints, home)),
                      label="arn:aws:states:::sagemaker:createTransformJob[.sync]")  # fmt: skip


__all__ = ["ProcessingJobs", "S3Integration", "SageMakerControlPlane", "TrainingJobs", "TransformJobs", "register_local_aws"]
