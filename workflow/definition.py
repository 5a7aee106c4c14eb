"""The pipeline as a Step Functions state machine, built with the Data Science SDK.

One `create_*_step()` per stage, `create_graph()` wires them, `render_definition()` gives
the ASL document both engines run unchanged. No AWS call happens here: the SDK objects get
an explicit region, role and output path, so building the definition works offline.

    Process -> ReadManifest -> SummariseDataset -> Train -> CreateModel -> CreateStagingEndpointConfig -> CreateStagingEndpoint
    -> (DescribeStagingEndpoint / WaitForStaging loop) -> Evaluate -> QualityGate
    -> PrepareLoadTest -> LoadTest (Map) -> MergeLoadTest -> SloGate
    -> CreateProductionEndpointConfig -> FindProductionEndpoint -> ProductionEndpointExists
       -> UpdateProductionEndpoint | CreateProductionEndpoint
    -> (production InService loop) -> RecordProductionMetrics -> [BatchScore -> AssembleSubmission]
    -> DeleteStagingEndpoint -> PipelineSucceeded

Everything after the staging endpoint exists is caught and routed through
CleanUpAfterFailure (delete staging) to PipelineFailed, which re-raises the original error.
Process and Train are not caught: a failure there stops the execution at that state, so
RedriveExecution resumes exactly there without redoing earlier work.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from workflow.config import PipelineConfig

if TYPE_CHECKING:
    from stepfunctions.inputs import ExecutionInput
    from stepfunctions.steps import State
    from stepfunctions.workflow import Workflow

# Transient errors worth a retry with backoff on every AWS call.
TRANSIENT_ERRORS = [
    "SageMaker.AmazonSageMakerException",
    "SageMaker.SageMakerException",
    "ThrottlingException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]

# The execution input, declared once. `workflow.naming.execution_input()` fills it.
EXECUTION_INPUT_SCHEMA: dict[str, type] = {
    "RawDataUri": str,  # s3 prefix of the Kaggle layout (imgs/train/c0.., driver_imgs_list.csv)
    "ProcessedDataUri": str,  # s3 prefix the processing job writes RecordIO + manifest.json to
    "ProcessedDataBucket": str,  # its bucket and the manifest's key, as S3 GetObject wants them
    "ManifestKey": str,
    "TrainChannelUri": str,  # ProcessedDataUri + train.rec
    "ValidationChannelUri": str,  # ProcessedDataUri + validation.rec
    "ModelOutputUri": str,
    "CheckpointUri": str,  # shared by retries and redrives, so a rerun resumes training
    "CodeUri": str,  # s3 prefix holding steps/ for the processing container
    "ProcessingJobName": str,
    "TrainingJobName": str,
    "ModelName": str,
    "StagingEndpointConfigName": str,
    "ProductionEndpointConfigName": str,
    "StagingEndpointName": str,
    "EvaluationUri": str,
    "EvaluationCopySource": str,  # EvaluationUri as S3 CopyObject wants it: bucket/key
    "LoadTestUri": str,
    "TestImagesUri": str,
    "TransformJobName": str,
    "TransformOutputUri": str,
    "SampleSubmissionUri": str,  # RawDataUri + sample_submission.csv: the submission's row order
    "SubmissionUri": str,
}


@dataclass(frozen=True)
class Resources:
    """What the definition refers to that is not per execution (from the config)."""

    production_metrics_uri: str
    lambda_arns: dict[str, str]


def _quiet_sdk_imports() -> None:
    """The SDKs print deprecation banners and config INFO lines on import; none is ours to act on."""
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    warnings.filterwarnings("ignore", module="sagemaker")
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)


@functools.lru_cache(maxsize=4)
def _partition(region: str) -> str:
    import boto3

    return boto3.session.Session().get_partition_for_region(region)


@contextlib.contextmanager
def _partition_of(config: PipelineConfig) -> Iterator[None]:
    """Make the SDK build ARNs in the configured region's partition.

    stepfunctions 2.3.0 derives the partition from the *environment's* default region on
    every step (0.2 s each, and wrong when the config names another partition).
    """
    from stepfunctions.steps import integration_resources

    original = integration_resources.get_aws_partition
    integration_resources.get_aws_partition = lambda: _partition(config.aws.region)
    try:
        yield
    finally:
        integration_resources.get_aws_partition = original


@functools.lru_cache(maxsize=4)
def _cached_sagemaker_session(region: str, bucket: str) -> Any:
    import boto3
    import sagemaker

    boto_session = boto3.Session(
        region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "offline"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "offline"),
    )
    return sagemaker.session.Session(boto_session=boto_session, default_bucket=bucket)


def _sagemaker_session(config: PipelineConfig) -> Any:
    """A session with an explicit region and dummy credentials: building never calls AWS."""
    return _cached_sagemaker_session(config.aws.region, config.aws.bucket)


def _set(step: State, **fields: Any) -> State:
    """Set ASL fields the SDK 2.3.0 predates (ResultSelector, ErrorPath, CausePath).

    The SDK serialises every entry of `step.fields` with its name in PascalCase, so
    `result_selector` becomes `ResultSelector`; it only refuses unknown names in __init__.
    """
    step.fields.update(fields)
    return step


def _retry(config: PipelineConfig, errors: list[str] | None = None) -> Any:
    from stepfunctions.steps import Retry

    return Retry(
        error_equals=errors or TRANSIENT_ERRORS,
        interval_seconds=config.retry.interval_seconds,
        max_attempts=config.retry.max_attempts,
        backoff_rate=config.retry.backoff_rate,
    )


def _unique_per_attempt(input_name: str) -> str:
    """A job name unique per redrive: SageMaker refuses to reuse one, Step Functions reruns with the same input."""
    return f"States.Format('{{}}-r{{}}', $$.Execution.Input.{input_name}, $$.Execution.RedriveCount)"


def _hyperparameters_as_strings(config: PipelineConfig) -> dict[str, str]:
    """SageMaker passes every hyperparameter as a string; say so in the definition too."""
    return {name: str(value) for name, value in config.training.hyperparameters.items()}


# ---------------------------------------------------------------- processing and training


def create_process_step(config: PipelineConfig, inputs: ExecutionInput) -> State:
    """A SageMaker Processing job running steps/process.py: raw images -> RecordIO + manifest."""
    from sagemaker.processing import Processor
    from stepfunctions.steps import ProcessingStep

    processing = config.processing
    processor = Processor(
        role=config.aws.sagemaker_role_arn,
        image_uri=processing.image_uri,
        instance_count=1,
        instance_type=processing.instance_type,
        sagemaker_session=_sagemaker_session(config),
    )
    arguments = [
        "--validation-drivers", str(processing.validation_drivers),
        "--resize", str(processing.resize),
        "--quality", str(processing.quality),
        "--seed", str(processing.seed),
    ]  # fmt: skip
    step = ProcessingStep(
        "Process",
        processor=processor,
        job_name=inputs["ProcessingJobName"],
        container_entrypoint=["python3", "-m", "steps.process"],
        container_arguments=arguments,
        parameters={
            "ProcessingInputs": [
                _processing_input("data", inputs["RawDataUri"], "/opt/ml/processing/input"),
                _processing_input("code", inputs["CodeUri"], "/opt/ml/processing/code"),
            ],
            "ProcessingOutputConfig": {
                "Outputs": [
                    {
                        "OutputName": "processed",
                        "S3Output": {
                            "S3Uri": inputs["ProcessedDataUri"],
                            "LocalPath": "/opt/ml/processing/output",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ]
            },
            "Environment": {"PYTHONPATH": "/opt/ml/processing/code"},
        },
        result_path="$.processing",
    )
    step.parameters["ProcessingJobName.$"] = _unique_per_attempt("ProcessingJobName")
    step.parameters.pop("ProcessingJobName", None)
    _set(step, result_selector={
        "ProcessingJobName.$": "$.ProcessingJobName",
        "ProcessingJobStatus.$": "$.ProcessingJobStatus",
    })  # fmt: skip
    step.add_retry(_retry(config))
    return step


def create_read_manifest_steps(config: PipelineConfig, inputs: ExecutionInput) -> tuple[State, State]:
    """Training needs the dataset's size: read manifest.json, keep the few numbers it needs.

    The built-in algorithm requires num_training_samples and num_classes; only the
    processing step knows them, so they reach Train through the state, not the config.
    """
    from stepfunctions.steps import Pass, Task

    read = Task(
        "ReadManifest",
        resource="arn:aws:states:::aws-sdk:s3:getObject",
        parameters={"Bucket": inputs["ProcessedDataBucket"], "Key": inputs["ManifestKey"]},
        result_path="$.dataset",
    )
    _set(read, result_selector={"manifest.$": "States.StringToJson($.Body)"})
    read.add_retry(_retry(config, ["S3.SdkClientException", "S3.S3Exception", "ThrottlingException"]))
    summarise = Pass(
        "SummariseDataset",
        parameters={
            "train_count.$": "$.dataset.manifest.splits.train.count",
            "validation_count.$": "$.dataset.manifest.splits.validation.count",
            "num_classes.$": "States.ArrayLength($.dataset.manifest.classes)",
            "classes.$": "$.dataset.manifest.classes",
        },
        result_path="$.dataset",
    )
    read.next(summarise)
    return read, summarise


def _processing_input(name: str, source: Any, destination: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": source,
            "LocalPath": destination,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
        },
    }


def _recordio_channel(name: str, uri: Any) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "ContentType": "application/x-recordio",
        "CompressionType": "None",
        "RecordWrapperType": "None",
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
        },
    }


def training_image_uri(config: PipelineConfig) -> str:
    """The built-in Image Classification image, or the PyTorch container running steps/train.py."""
    from sagemaker import image_uris

    if config.training.algorithm == "builtin":
        return image_uris.retrieve("image-classification", config.aws.region)
    return image_uris.retrieve(
        "pytorch", config.aws.region, version="2.3", py_version="py311",
        instance_type=config.training.instance_type, image_scope="training",
    )  # fmt: skip


def create_train_step(config: PipelineConfig, inputs: ExecutionInput) -> State:
    """A training job with the built-in Image Classification contract (RecordIO channels)."""
    from sagemaker.estimator import Estimator
    from stepfunctions.steps import TrainingStep

    training = config.training
    estimator = Estimator(
        image_uri=training_image_uri(config),
        role=config.aws.sagemaker_role_arn,
        instance_count=1,
        instance_type=training.instance_type,
        max_run=training.max_runtime_seconds,
        input_mode="File",
        output_path=f"s3://{config.aws.bucket}/{config.aws.prefix}/models",
        hyperparameters=_hyperparameters_as_strings(config),
        debugger_hook_config=False,  # the built-in algorithm has no Debugger hook
        sagemaker_session=_sagemaker_session(config),
    )
    step = TrainingStep(
        "Train",
        estimator=estimator,
        job_name=inputs["TrainingJobName"],
        output_data_config_path=inputs["ModelOutputUri"],
        parameters={
            "InputDataConfig": [
                _recordio_channel("train", inputs["TrainChannelUri"]),
                _recordio_channel("validation", inputs["ValidationChannelUri"]),
            ],
            "CheckpointConfig": {"S3Uri": inputs["CheckpointUri"], "LocalPath": "/opt/ml/checkpoints"},
        },
        result_path="$.training",
    )
    hyperparameters = step.parameters["HyperParameters"]
    for name in ("num_training_samples", "num_classes"):  # the data decides, not the config
        hyperparameters.pop(name, None)
    hyperparameters["num_training_samples.$"] = "States.Format('{}', $.dataset.train_count)"
    hyperparameters["num_classes.$"] = "States.Format('{}', $.dataset.num_classes)"
    if training.algorithm == "pytorch":  # script mode: the framework container runs steps/train.py from CodeUri
        hyperparameters["sagemaker_program"] = "steps/train.py"
        hyperparameters["sagemaker_region"] = config.aws.region
        hyperparameters["sagemaker_submit_directory.$"] = "States.Format('{}sourcedir.tar.gz', $$.Execution.Input.CodeUri)"
    step.parameters["TrainingJobName.$"] = _unique_per_attempt("TrainingJobName")
    step.parameters.pop("TrainingJobName", None)
    _set(step, result_selector={
        "TrainingJobName.$": "$.TrainingJobName",
        "ModelArtifacts.$": "$.ModelArtifacts",
        "FinalMetricDataList.$": "$.FinalMetricDataList",
    })  # fmt: skip
    step.add_retry(_retry(config))
    return step


# ---------------------------------------------------------------- model and staging endpoint


def create_model_step(config: PipelineConfig, inputs: ExecutionInput) -> State:
    """CreateModel from the training job's artifacts; the serving image is the training image."""
    from stepfunctions.steps import Task

    step = Task(
        "CreateModel",
        resource="arn:aws:states:::sagemaker:createModel",
        parameters={
            "ModelName": inputs["ModelName"],
            "ExecutionRoleArn": config.aws.sagemaker_role_arn,
            "PrimaryContainer": {
                "Image": training_image_uri(config),
                "ModelDataUrl.$": "$.training.ModelArtifacts.S3ModelArtifacts",
            },
        },
        result_path=None,
    )
    step.add_retry(_retry(config))
    return step


def create_endpoint_config_step(
    config: PipelineConfig, inputs: ExecutionInput, state_id: str, name_input: str, instances: int
) -> State:
    from stepfunctions.steps import EndpointConfigStep

    step = EndpointConfigStep(
        state_id,
        endpoint_config_name=inputs[name_input],
        model_name=inputs["ModelName"],
        initial_instance_count=instances,
        instance_type=config.endpoint.instance_type,
        result_path=None,
    )
    step.add_retry(_retry(config))
    return step


def create_staging_endpoint_step(config: PipelineConfig, inputs: ExecutionInput) -> State:
    from stepfunctions.steps import EndpointStep

    step = EndpointStep(
        "CreateStagingEndpoint",
        endpoint_name=inputs["StagingEndpointName"],
        endpoint_config_name=inputs["StagingEndpointConfigName"],
        result_path=None,
    )
    step.add_retry(_retry(config))
    return step


def create_wait_until_in_service(
    config: PipelineConfig, label: str, endpoint_name: Any, then: State, failed: State
) -> State:
    """EndpointStep returns at once; poll DescribeEndpoint with a bounded number of Waits.

    Returns the first state of the loop: a Pass that resets the poll counter.
    """
    from stepfunctions.steps import Choice, ChoiceRule, Pass, Task, Wait

    start = Pass(f"Start{label}Polls", result={"count": 0}, result_path=f"$.polls")
    describe = Task(
        f"Describe{label}Endpoint",
        resource="arn:aws:states:::aws-sdk:sagemaker:describeEndpoint",
        parameters={"EndpointName": endpoint_name},
        result_path=f"$.endpoint_status",
    )
    # No ResultSelector: FailureReason is present only on failure, and a missing path is an error.
    describe.add_retry(_retry(config))
    wait = Wait(f"WaitFor{label}Endpoint", seconds=config.endpoint.poll_seconds)
    count = Pass(
        f"Count{label}Polls",
        parameters={"count.$": "States.MathAdd($.polls.count, 1)"},
        result_path="$.polls",
    )
    too_slow = _raise(
        f"{label}EndpointTooSlow",
        error="EndpointNotInService",
        cause=f"the {label.lower()} endpoint was not InService after {config.endpoint.max_polls} polls"
        f" of {config.endpoint.poll_seconds} s",
    )
    is_ready = Choice(f"Is{label}EndpointInService")
    is_ready.add_choice(ChoiceRule.StringEquals("$.endpoint_status.EndpointStatus", "InService"), then)
    is_ready.add_choice(ChoiceRule.StringEquals("$.endpoint_status.EndpointStatus", "Failed"), failed)
    is_ready.add_choice(ChoiceRule.NumericGreaterThanEquals("$.polls.count", config.endpoint.max_polls), too_slow)
    is_ready.default_choice(wait)
    start.next(describe)
    describe.next(is_ready)
    wait.next(count)
    count.next(describe)
    return start


def _raise(state_id: str, error: str, cause: str) -> State:
    """A Pass that records an error as if a task had raised it, then ends in the failure path.

    Choice branches cannot raise; this lets 'gate failed' and 'endpoint too slow' share the
    clean-up path with real task failures ($.error with Error and Cause).
    """
    from stepfunctions.steps import Pass

    return Pass(state_id, result={"Error": error, "Cause": cause}, result_path="$.error")


# ---------------------------------------------------------------- evaluation and gates


def _lambda_step(config: PipelineConfig, state_id: str, function: str, payload: dict[str, Any], result_path: str) -> State:
    from stepfunctions.steps import LambdaStep

    step = LambdaStep(
        state_id,
        parameters={"FunctionName": function, "Payload": payload},
        result_path=result_path,
        timeout_seconds=config.lambdas.timeout_seconds,
    )
    _set(step, result_selector={"Payload.$": "$.Payload"})
    step.add_retry(_retry(config))
    return step


def create_evaluate_step(config: PipelineConfig, inputs: ExecutionInput, resources: Resources) -> State:
    """The evaluate Lambda scores every validation image through the staging endpoint."""
    return _lambda_step(
        config,
        "Evaluate",
        resources.lambda_arns["evaluate"],
        {
            "endpoint_name": inputs["StagingEndpointName"],
            "data_uri": inputs["ProcessedDataUri"],
            "output_uri": inputs["EvaluationUri"],
            "production_metrics_uri": resources.production_metrics_uri,
            "min_log_loss_improvement": config.quality_gate.min_log_loss_improvement,
            "max_failure_share": config.quality_gate.max_failed_share,
        },
        "$.evaluation",
    )


def create_quality_gate(config: PipelineConfig, passed: State, failed: State) -> State:
    """Thresholds always; against production only when a production model exists."""
    from stepfunctions.steps import Choice, ChoiceRule

    gate = config.quality_gate
    metrics = "$.evaluation.Payload"
    rule = ChoiceRule.And([
        ChoiceRule.NumericGreaterThanEquals(f"{metrics}.accuracy", gate.min_accuracy),
        ChoiceRule.NumericLessThanEquals(f"{metrics}.log_loss", gate.max_log_loss),
        ChoiceRule.Or([
            ChoiceRule.BooleanEquals(f"{metrics}.has_production", False),
            ChoiceRule.BooleanEquals(f"{metrics}.better_than_production", True),
        ]),
    ])  # fmt: skip
    choice = Choice("QualityGate")
    choice.add_choice(rule, passed)
    choice.default_choice(failed)
    return choice


def create_load_test_steps(config: PipelineConfig, inputs: ExecutionInput, resources: Resources, then: State) -> State:
    """PrepareLoadTest -> LoadTest (Map over shards, one Lambda each) -> MergeLoadTest -> then."""
    from stepfunctions.steps import Map, Pass

    load = config.load_test
    prepare = Pass(
        "PrepareLoadTest",
        result=[{"shard": index} for index in range(load.shards)],
        result_path="$.load_test_shards",
    )
    shard = _lambda_step(
        config,
        "LoadTestShard",
        resources.lambda_arns["load_test"],
        {
            "endpoint_name.$": "$.endpoint_name",
            "data_uri.$": "$.data_uri",
            "shard.$": "$.shard",
            "concurrency": load.concurrency,
            "duration_seconds": load.duration_seconds,
            "max_requests": load.max_requests,
            "ramp_up_seconds": load.ramp_up_seconds,
            "sample_size": load.sample_images,
            "slo": {"p99_ms": load.p99_ms, "max_error_rate": load.max_error_rate},
        },
        "$",
    )
    _set(shard, output_path="$.Payload")
    fan_out = Map(
        "LoadTest",
        items_path="$.load_test_shards",
        max_concurrency=load.shards,
        parameters={
            "shard.$": "$$.Map.Item.Value.shard",
            "endpoint_name": inputs["StagingEndpointName"],
            "data_uri": inputs["ProcessedDataUri"],
        },
        iterator=shard,
        result_path="$.load_test_shards",
    )
    merge = _lambda_step(
        config,
        "MergeLoadTest",
        resources.lambda_arns["load_test_merge"],
        {
            "shards.$": "$.load_test_shards",
            "output_uri": inputs["LoadTestUri"],
            "slo": {"p99_ms": load.p99_ms, "max_error_rate": load.max_error_rate},
        },
        "$.load_test",
    )
    prepare.next(fan_out)
    fan_out.next(merge)
    merge.next(then)
    return prepare


def create_slo_gate(passed: State, failed: State) -> State:
    from stepfunctions.steps import Choice, ChoiceRule

    choice = Choice("SloGate")
    choice.add_choice(ChoiceRule.BooleanEquals("$.load_test.Payload.slo_met", True), passed)
    choice.default_choice(failed)
    return choice


# ---------------------------------------------------------------- promotion and clean-up


def create_promote_steps(
    config: PipelineConfig, inputs: ExecutionInput, resources: Resources, then: State, failed: State
) -> State:
    """Blue/green: update production to the new endpoint config, or create it the first time."""
    from stepfunctions.steps import Choice, ChoiceRule, EndpointStep, Task

    production = config.endpoint.production_name
    endpoint_config = create_endpoint_config_step(
        config, inputs, "CreateProductionEndpointConfig", "ProductionEndpointConfigName",
        config.endpoint.production_instances,
    )  # fmt: skip
    # ListEndpoints, not DescribeEndpoint: a missing endpoint is an unmodelled error on AWS
    # (SageMaker.SageMakerException), the same name throttling gets; a list is unambiguous.
    find = Task(
        "FindProductionEndpoint",
        resource="arn:aws:states:::aws-sdk:sagemaker:listEndpoints",
        parameters={"NameContains": production, "MaxResults": 100},
        result_path="$.production",
    )
    _set(find, result_selector={
        "exists.$": f"States.ArrayContains($.Endpoints[*].EndpointName, '{production}')",
    })  # fmt: skip
    exists = Choice("ProductionEndpointExists")
    update = EndpointStep(
        "UpdateProductionEndpoint",
        endpoint_name=production,
        endpoint_config_name=inputs["ProductionEndpointConfigName"],
        update=True,
        result_path=None,
    )
    create = EndpointStep(
        "CreateProductionEndpoint",
        endpoint_name=production,
        endpoint_config_name=inputs["ProductionEndpointConfigName"],
        result_path=None,
    )
    record = Task(
        "RecordProductionMetrics",
        resource="arn:aws:states:::aws-sdk:s3:copyObject",
        parameters={
            "Bucket": _bucket(resources.production_metrics_uri),
            "Key": _key(resources.production_metrics_uri),
            "CopySource": inputs["EvaluationCopySource"],
        },
        result_path=None,
    )
    for step in (find, update, create, record):
        step.add_retry(_retry(config))
    wait_production = create_wait_until_in_service(config, "Production", production, record, failed)
    exists.add_choice(ChoiceRule.BooleanEquals("$.production.exists", True), update)
    exists.default_choice(create)
    endpoint_config.next(find)
    find.next(exists)
    update.next(wait_production)
    create.next(wait_production)
    record.next(then)
    return endpoint_config


def _bucket(uri: str) -> str:
    return uri.removeprefix("s3://").split("/", 1)[0]


def _key(uri: str) -> str:
    return uri.removeprefix("s3://").split("/", 1)[1]


def create_batch_score_step(config: PipelineConfig, inputs: ExecutionInput) -> State:
    """Batch Transform over imgs/test with the promoted model (one .out per image)."""
    from stepfunctions.steps import Task

    step = Task(
        "BatchScore",
        resource="arn:aws:states:::sagemaker:createTransformJob.sync",
        parameters={
            "TransformJobName.$": _unique_per_attempt("TransformJobName"),
            "ModelName": inputs["ModelName"],
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": inputs["TestImagesUri"]}},
                "ContentType": "application/x-image",
                "SplitType": "None",
            },
            "TransformOutput": {"S3OutputPath": inputs["TransformOutputUri"], "Accept": "application/json"},
            "TransformResources": {"InstanceCount": 1, "InstanceType": config.batch_score.instance_type},
        },
        result_path=None,
    )
    step.add_retry(_retry(config))
    return step


def create_submission_step(config: PipelineConfig, inputs: ExecutionInput, resources: Resources) -> State:
    """Batch Transform writes one .out per image; this Lambda assembles Kaggle's submission.csv."""
    return _lambda_step(
        config,
        "AssembleSubmission",
        resources.lambda_arns["submission"],
        {
            "transform_output_uri": inputs["TransformOutputUri"],
            "sample_submission_uri": inputs["SampleSubmissionUri"],
            "output_uri": inputs["SubmissionUri"],
        },
        "$.submission",
    )


def create_delete_endpoint_step(config: PipelineConfig, state_id: str, endpoint_name: Any) -> State:
    from stepfunctions.steps import Task

    step = Task(
        state_id,
        resource="arn:aws:states:::aws-sdk:sagemaker:deleteEndpoint",
        parameters={"EndpointName": endpoint_name},
        result_path=None,
    )
    step.add_retry(_retry(config))
    return step


# ---------------------------------------------------------------- the graph


def create_execution_input() -> ExecutionInput:
    from stepfunctions.inputs import ExecutionInput

    return ExecutionInput(schema=EXECUTION_INPUT_SCHEMA)


def resources_for(config: PipelineConfig, account: str = "000000000000") -> Resources:
    region = config.aws.region
    arn = f"arn:aws:lambda:{region}:{account}:function:"
    return Resources(
        production_metrics_uri=f"s3://{config.aws.bucket}/{config.aws.prefix}/production/metrics.json",
        lambda_arns={
            "evaluate": arn + config.lambdas.evaluate,
            "load_test": arn + config.lambdas.load_test,
            "load_test_merge": arn + config.lambdas.load_test_merge,
            "submission": arn + config.lambdas.submission,
        },
    )


def create_graph(config: PipelineConfig, resources: Resources) -> State:
    """Wire every stage; returns the first state."""
    _quiet_sdk_imports()
    from stepfunctions.steps import Catch, Fail, Succeed

    inputs = create_execution_input()

    succeeded = Succeed("PipelineSucceeded")
    failed = _set(Fail("PipelineFailed"), error_path="$.error.Error", cause_path="$.error.Cause")
    clean_up = create_delete_endpoint_step(config, "CleanUpAfterFailure", inputs["StagingEndpointName"])
    clean_up.add_catch(Catch(error_equals=["States.ALL"], next_step=failed, result_path="$.cleanup_error"))
    clean_up.next(failed)

    delete_staging = create_delete_endpoint_step(config, "DeleteStagingEndpoint", inputs["StagingEndpointName"])
    delete_staging.next(succeeded)
    after_promotion = delete_staging
    if config.batch_score.enabled:
        batch = create_batch_score_step(config, inputs)
        submission = create_submission_step(config, inputs, resources)
        batch.next(submission)
        submission.next(delete_staging)
        after_promotion = batch

    promote = create_promote_steps(config, inputs, resources, after_promotion, clean_up)
    slo_failed = _raise("SloNotMet", "SloNotMet", "the load test missed the latency or error-rate SLO")
    slo_failed.next(clean_up)
    slo_gate = create_slo_gate(promote, slo_failed)
    load_test = create_load_test_steps(config, inputs, resources, slo_gate)
    gate_failed = _raise("ModelRejected", "QualityGateFailed", "the model missed a threshold or did not beat production")
    gate_failed.next(clean_up)
    quality_gate = create_quality_gate(config, load_test, gate_failed)
    evaluate = create_evaluate_step(config, inputs, resources)
    evaluate.next(quality_gate)
    staging_failed = _raise("StagingEndpointFailed", "EndpointFailed",
                            "the staging endpoint failed to start: its FailureReason is in DescribeStagingEndpoint's output")
    staging_failed.next(clean_up)
    wait_staging = create_wait_until_in_service(
        config, "Staging", inputs["StagingEndpointName"], evaluate, staging_failed
    )

    process = create_process_step(config, inputs)
    train = create_train_step(config, inputs)
    model = create_model_step(config, inputs)
    staging_config = create_endpoint_config_step(
        config, inputs, "CreateStagingEndpointConfig", "StagingEndpointConfigName", config.endpoint.staging_instances
    )
    staging = create_staging_endpoint_step(config, inputs)
    read_manifest, summarise = create_read_manifest_steps(config, inputs)
    process.next(read_manifest)
    summarise.next(train)
    train.next(model)
    model.next(staging_config)
    staging_config.next(staging)
    staging.next(wait_staging)

    catch_all = Catch(error_equals=["States.ALL"], next_step=clean_up, result_path="$.error")
    for state in _states_after_staging_exists(wait_staging, evaluate, load_test, promote, after_promotion):
        state.add_catch(catch_all)
    return process


def _states_after_staging_exists(*entries: State) -> list[State]:
    """Every Task and Map reachable from these entries, stopping at the clean-up states."""
    from stepfunctions.steps import Map, Task

    seen: dict[str, State] = {}
    stack = list(entries)
    while stack:
        state = stack.pop()
        if state.state_id in seen or state.state_id in {"CleanUpAfterFailure", "PipelineFailed"}:
            continue
        seen[state.state_id] = state
        following = [state.next_step] if getattr(state, "next_step", None) else []
        following += [choice_next for _, choice_next in getattr(state, "choices", None) or []]
        if getattr(state, "default", None) is not None:
            following.append(state.default)
        stack.extend(step for step in following if step is not None)
    return [state for state in seen.values() if isinstance(state, (Task, Map)) and not state.fields.get("catch")]


def build_workflow(config: PipelineConfig, account: str = "000000000000", client: Any = None) -> Workflow:
    """The SDK Workflow object (what `ddcicd aws deploy` creates or updates)."""
    _quiet_sdk_imports()
    from stepfunctions.workflow import Workflow

    resources = resources_for(config, account)
    with _partition_of(config):
        graph = create_graph(config, resources)
    return Workflow(
        name=config.name,
        definition=graph,
        role=config.aws.stepfunctions_role_arn,
        execution_input=create_execution_input(),
        client=client or _offline_sfn_client(config),
    )


def _offline_sfn_client(config: PipelineConfig) -> Any:
    import boto3

    return boto3.client(
        "stepfunctions",
        region_name=config.aws.region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "offline"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "offline"),
    )


def render_definition(config: PipelineConfig, account: str = "000000000000") -> dict[str, Any]:
    """The ASL document as a dict: what both engines run."""
    workflow = build_workflow(config, account)
    return json.loads(workflow.definition.to_json())
