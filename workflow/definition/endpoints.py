"""Models and endpoints: staging, the InService poll loop, blue/green promotion, deletion."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workflow.config import PipelineConfig
from workflow.contracts.algorithms import ALGORITHMS

if TYPE_CHECKING:
    from stepfunctions.inputs import ExecutionInput
    from stepfunctions.steps import State

from workflow.definition.common import Resources, _retry, _set


def serving_container(config: PipelineConfig) -> dict[str, Any]:
    """CreateModel's PrimaryContainer (without ModelDataUrl): the serving image of the algorithm
    that trained the model, and the entry point that image needs to load it."""
    algorithm = ALGORITHMS[config.training.algorithm]
    container: dict[str, Any] = {"Image": algorithm.serving_image.uri(config.aws.region, config.endpoint.instance_type)}
    environment = algorithm.serving_environment(config.aws.region)
    if environment:
        container["Environment"] = environment
    return container


def create_model_step(config: PipelineConfig, inputs: ExecutionInput) -> State:
    """CreateModel from the training job's artifacts, served by the training algorithm's serving image."""
    from stepfunctions.steps import Task

    step = Task(
        "CreateModel",
        resource="arn:aws:states:::sagemaker:createModel",
        parameters={
            "ModelName": inputs["ModelName"],
            "ExecutionRoleArn": config.aws.sagemaker_role_arn,
            "PrimaryContainer": {
                **serving_container(config),
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

    start = Pass(f"Start{label}Polls", result={"count": 0}, result_path="$.polls")
    describe = Task(
        f"Describe{label}Endpoint",
        resource="arn:aws:states:::aws-sdk:sagemaker:describeEndpoint",
        parameters={"EndpointName": endpoint_name},
        result_path="$.endpoint_status",
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
