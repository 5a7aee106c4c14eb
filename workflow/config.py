"""The pipeline's typed configuration: one YAML file for the local and the AWS run.

Defaults serve the local run, so `ddcicd run` needs no file at all. A file overrides any
subset; `--set section.key=value` on the command line overrides the file. Unknown keys are
refused (a typo must not silently fall back to a default), and every error names the key:

    quality_gate.min_accuracy: Input should be less than or equal to 1 (got 1.5)
    training.hyperparameters.epoch: unknown hyperparameter "epoch" (did you mean "epochs"?)

Hyperparameter names are the built-in algorithm's, checked by steps/hyperparameters.py (the
training job's own parser); the Lambda function names and the algorithms come from
workflow/contracts, so the config offers exactly what the definition and `aws deploy` know.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
from pydantic_core import PydanticCustomError

from steps.hyperparameters import HyperparameterError, check_name
from workflow.contracts.algorithms import ALGORITHMS
from workflow.contracts.functions import FUNCTIONS, MAX_TIMEOUT_SECONDS, LambdaFunction


class Section(BaseModel):
    """Every section refuses unknown keys and is immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AwsSettings(Section):
    region: str = "us-east-1"
    bucket: str = "ddcicd-local"  # local run: a folder under the S3 root
    prefix: str = "ddcicd"
    # Placeholders are fine locally; `ddcicd aws deploy` needs real ones (infra/ creates them).
    sagemaker_role_arn: str = "arn:aws:iam::000000000000:role/ddcicd-sagemaker"
    stepfunctions_role_arn: str = "arn:aws:iam::000000000000:role/ddcicd-stepfunctions"
    lambda_role_arn: str = "arn:aws:iam::000000000000:role/ddcicd-lambda"
    # Step Functions at another endpoint, e.g. `ddcicd engine serve`'s http://127.0.0.1:8083 (None: AWS's)
    stepfunctions_endpoint_url: str | None = None


class DataSettings(Section):
    """The synthetic dataset `ddcicd run` writes when no --data is given."""

    images: int = Field(2600, ge=20)
    drivers: int = Field(26, ge=4)
    test_images: int = Field(200, ge=0)
    seed: int = 0


class ProcessingSettings(Section):
    validation_drivers: int = Field(5, ge=1)
    resize: int = Field(72, ge=8)  # shorter side in pixels, before training's random crop
    quality: int = Field(95, ge=1, le=100)
    seed: int = 0
    instance_type: str = "ml.m5.xlarge"
    # A SageMaker Processing container with Python, OpenCV and numpy (AWS only).
    image_uri: str = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.3.0-cpu-py311-ubuntu20.04-sagemaker"


# ResNet-20 on 48x64 (the frames' 3:4 shape, small enough for 2 cores) with Adam: on the default
# synthetic data, drivers held out, 0.976 accuracy and 0.109 log loss in about 5 minutes. No
# augmentation_type: the built-in `crop` mirrors images, which swaps texting right/left (c1/c3, c2/c4).
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {
    "num_layers": 20,
    "image_shape": "3,48,64",
    "mini_batch_size": 32,
    "epochs": 13,
    "optimizer": "adam",
    "learning_rate": 0.002,
    "lr_scheduler_step": "9,12",
    "lr_scheduler_factor": 0.1,
    "weight_decay": 0.0005,
    "checkpoint_frequency": 1,
}


class TrainingSettings(Section):
    # builtin: SageMaker Image Classification on AWS; pytorch: steps/train.py in the PyTorch container
    algorithm: Literal[tuple(ALGORITHMS)] = "builtin"  # type: ignore[valid-type]  # the names in workflow/contracts/algorithms.py
    instance_type: str = "ml.p3.2xlarge"
    max_runtime_seconds: int = Field(4 * 3600, ge=60)
    # The built-in algorithm's names; values as SageMaker passes them (strings are fine).
    # num_classes and num_training_samples come from the processed data at run time.
    # Given ones are merged over these defaults: `--set training.hyperparameters.epochs=3`.
    hyperparameters: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_HYPERPARAMETERS))

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _merge_over_defaults(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for name in value:
            if not isinstance(name, str) or not name:
                raise ValueError(f"hyperparameter names must be non-empty strings, got {name!r}")
            try:
                check_name(name)
            except HyperparameterError as error:
                raise PydanticCustomError("unknown_hyperparameter", "{message}", {"name": name, "message": str(error)}) from None
        return {**DEFAULT_HYPERPARAMETERS, **value}


class RolloutAlarmSettings(Section):
    """One alarm that rolls a deployment back, counted as CloudWatch counts: the alarm fires when
    `datapoints_to_alarm` of the last `evaluation_periods` periods of `period_seconds` breach
    `threshold` (M of N). AWS accepts periods of 10, 30 or a multiple of 60 seconds."""

    threshold: float = Field(1.0, gt=0)
    period_seconds: int = Field(60, ge=1, le=86400)
    evaluation_periods: int = Field(1, ge=1, le=100)
    datapoints_to_alarm: int = Field(1, ge=1, le=100)

    @model_validator(mode="after")
    def _m_of_n(self) -> RolloutAlarmSettings:
        if self.datapoints_to_alarm > self.evaluation_periods:
            raise ValueError(f"datapoints_to_alarm ({self.datapoints_to_alarm}) must not exceed "
                             f"evaluation_periods ({self.evaluation_periods})")
        return self

    @property
    def window_seconds(self) -> int:
        return self.period_seconds * self.evaluation_periods


class ErrorRateAlarmSettings(RolloutAlarmSettings):
    threshold: float = Field(0.01, gt=0, le=1)  # share of 5xx answers


class LatencyAlarmSettings(RolloutAlarmSettings):
    threshold: float = Field(1000.0, gt=0)  # milliseconds


class RolloutSettings(Section):
    """How the promotion shifts production traffic (SageMaker deployment guardrails).

    ALL_AT_ONCE moves all traffic when the new fleet is healthy (no DeploymentConfig: the
    update SageMaker does by default); CANARY sends `canary_percent` first and the rest after
    `bake_seconds`; LINEAR adds `step_percent` every `bake_seconds`. Until the old fleet is
    stopped (`termination_wait_seconds` after all traffic moved), either alarm on the new
    fleet moves all traffic back: `error_rate` on the share of 5xx answers
    (Invocation5XXErrors' Average), `p99_latency_ms` on ModelLatency's p99.
    """

    mode: Literal["ALL_AT_ONCE", "CANARY", "LINEAR"] = "ALL_AT_ONCE"
    canary_percent: int = Field(10, ge=1, le=100)
    step_percent: int = Field(20, ge=1, le=100)
    bake_seconds: int = Field(300, ge=0, le=3600)
    termination_wait_seconds: int = Field(0, ge=0, le=3600)
    max_seconds: int = Field(3600, ge=1, le=28800)  # AWS: 600 to 28800
    error_rate: ErrorRateAlarmSettings = ErrorRateAlarmSettings()
    p99_latency_ms: LatencyAlarmSettings = LatencyAlarmSettings()


class EndpointSettings(Section):
    production_name: str = "ddcicd-production"
    instance_type: str = "ml.m5.large"
    staging_instances: int = Field(1, ge=1)
    production_instances: int = Field(1, ge=1)
    poll_seconds: int = Field(10, ge=1)  # between DescribeEndpoint calls while Creating/Updating
    max_polls: int = Field(180, ge=1)  # 30 minutes at 10 s: SageMaker endpoints take 5-15
    # AWS only: target tracking on invocations per instance for the production variant.
    autoscaling_min: int = Field(1, ge=1)
    autoscaling_max: int = Field(4, ge=1)
    autoscaling_invocations_per_instance: int = Field(1000, ge=1)
    rollout: RolloutSettings = RolloutSettings()


class QualityGate(Section):
    min_accuracy: float = Field(0.90, ge=0, le=1)
    max_log_loss: float = Field(0.35, gt=0)
    # A challenger must beat production's log loss by at least this much.
    min_log_loss_improvement: float = Field(0.0, ge=0)
    max_failed_share: float = Field(0.01, ge=0, le=1)  # share of failed invocations tolerated


class LoadTestSettings(Section):
    shards: int = Field(2, ge=1, le=40)  # Map fan-out: one Lambda per shard
    concurrency: int = Field(8, ge=1, le=256)  # per shard
    duration_seconds: float = Field(5.0, gt=0, le=900)
    max_requests: int = Field(2000, ge=1)  # per shard; whichever bound comes first
    ramp_up_seconds: float = Field(0.5, ge=0)
    sample_images: int = Field(32, ge=1)
    p99_ms: float = Field(250.0, gt=0)  # the SLO gate
    max_error_rate: float = Field(0.001, ge=0, le=1)


class _LambdaSettings(Section):
    """The deployed name of every function in workflow/contracts/functions.py (one field per
    function, e.g. `load_test_merge: ddcicd-load-test-merge`), and their timeout."""

    # Seconds for every function; unset, each has its own from the catalogue (Lambda's 900 s limit today).
    timeout_seconds: int | None = Field(None, ge=1, le=MAX_TIMEOUT_SECONDS)

    def name_of(self, function: LambdaFunction) -> str:
        return getattr(self, function.key)

    def timeout_of(self, function: LambdaFunction) -> int:
        return self.timeout_seconds or function.timeout_seconds


LambdaSettings = create_model(
    "LambdaSettings",
    __base__=_LambdaSettings,
    __module__=__name__,
    **{function.key: (str, function.default_name) for function in FUNCTIONS},  # type: ignore[call-overload]
)


class RetrySettings(Section):
    """Backoff for transient AWS errors (throttling, service exceptions)."""

    interval_seconds: int = Field(5, ge=1)
    max_attempts: int = Field(4, ge=0)
    backoff_rate: float = Field(2.0, ge=1)


class ApprovalSettings(Section):
    """A person approves each promotion (a `.waitForTaskToken` Task before production is touched).

    The run waits with the evaluation and load-test figures attached; `ddcicd approve`
    (or the console, or `ddcicd aws approve`) decides. No decision within `timeout_seconds`
    counts as a rejection (ApprovalTimedOut). On AWS the request is published to `topic_arn`
    (default: the `<name>-approval` topic the stack creates); locally it is written under
    $DDCICD_HOME/sns/<topic>/.
    """

    required: bool = False
    timeout_seconds: int = Field(24 * 3600, ge=1, le=365 * 24 * 3600)  # Step Functions' own limit: one year
    topic_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")


class BatchScoreSettings(Section):
    enabled: bool = False
    instance_type: str = "ml.m5.xlarge"


class CleanupSettings(Section):
    """Staging resources of faulted runs: kept for a redrive, reaped once abandoned (workflow/reaping.py)."""

    # Hours a faulted run keeps its staging endpoint (unless a newer run starts first); 0 reaps at once.
    retention_hours: float = Field(24.0, ge=0)
    # AWS only: the reaper Lambda's role (infra/pipeline.yaml's ReaperRole; may delete staging resources).
    reaper_role_arn: str = "arn:aws:iam::000000000000:role/ddcicd-reaper"


class PipelineConfig(Section):
    name: str = Field("ddcicd", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    aws: AwsSettings = AwsSettings()
    data: DataSettings = DataSettings()
    processing: ProcessingSettings = ProcessingSettings()
    training: TrainingSettings = TrainingSettings()
    endpoint: EndpointSettings = EndpointSettings()
    quality_gate: QualityGate = QualityGate()
    load_test: LoadTestSettings = LoadTestSettings()
    lambdas: LambdaSettings = LambdaSettings()
    retry: RetrySettings = RetrySettings()
    batch_score: BatchScoreSettings = BatchScoreSettings()
    cleanup: CleanupSettings = CleanupSettings()
    approval: ApprovalSettings = ApprovalSettings()


class ConfigError(ValueError):
    """The configuration file or an override is wrong; the message names the key."""


def load_config(path: Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Read YAML (optional), apply `section.key=value` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as error:
            raise ConfigError(f"cannot read config {path}: {error.strerror}") from error
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from error
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping, got {type(loaded).__name__}")
        raw = loaded or {}
    for override in overrides:
        _apply_override(raw, override)
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as error:
        where = f"{path}: " if path else ""
        raise ConfigError(where + "; ".join(_describe(problem) for problem in error.errors())) from error


def _apply_override(raw: dict[str, Any], override: str) -> None:
    """`training.hyperparameters.epochs=3` -> raw["training"]["hyperparameters"]["epochs"] = 3."""
    key, separator, text = override.partition("=")
    if not separator or not key:
        raise ConfigError(f"override {override!r} must look like section.key=value")
    value = yaml.safe_load(text) if text else ""
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part} is not a section")
        node = child
    node[leaf] = value


def _describe(problem: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in problem["loc"])
    if problem["type"] == "extra_forbidden":
        return f"{location}: unknown key"
    if problem["type"] == "unknown_hyperparameter":
        return f"{location}.{problem['ctx']['name']}: {problem['msg']}"
    return f"{location}: {problem['msg']} (got {problem.get('input')!r})"
