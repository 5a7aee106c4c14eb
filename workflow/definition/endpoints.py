"""Models and endpoints: staging, the InService poll loop, blue/green promotion, deletion.

Every state a redrive can re-enter is safe to run twice. A create whose resource exists
already (made by an attempt the engine never heard back from, or by a retried call whose
first response was lost) is refused by SageMaker with a ValidationException, which the
optimized integration names SageMaker.AmazonSageMakerException like any other refusal;
so a refused create is caught, the resource looked up by name (ListModels,
ListEndpointConfigs, ListEndpoints), and only a missing one is created again, by a
second Task without a Catch: a real fault ends the execution at that Task, where a
redrive resumes (`create_idempotently`).
"""
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


def create_model_step(config: PipelineConfig, inputs: ExecutionInput, state_id: str = "CreateModel") -> State:
    """CreateModel from the training job's artifacts, served by the training algorithm's serving image."""
    from stepfunctions.steps import Task

    step = Task(
        state_id,
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


def create_staging_endpoint_step(config: PipelineConfig, inputs: ExecutionInput, state_id: str = "CreateStagingEndpoint") -> State:
    from stepfunctions.steps import EndpointStep

    step = EndpointStep(
        state_id,
        endpoint_name=inputs["StagingEndpointName"],
        endpoint_config_name=inputs["StagingEndpointConfigName"],
        result_path=None,
    )
    step.add_retry(_retry(config))
    return step


# create action -> (the list action that finds its resource, the list's key, the name field)
_FINDERS = {
    "createModel": ("listModels", "Models", "ModelName"),
    "createEndpointConfig": ("listEndpointConfigs", "EndpointConfigs", "EndpointConfigName"),
    "createEndpoint": ("listEndpoints", "Endpoints", "EndpointName"),
}


def create_idempotently(config: PipelineConfig, create: State, again: State, action: str, name_input: str,
                        then: State) -> State:  # fmt: skip
    """`create` -> then, safe to run twice (see the module docstring); returns `create`.

        Create<X> --refused--> Find<X> -> <X>Exists? --yes--> then
                                                     --no---> Create<X>Again -> then

    `again` is the same request as `create` under another name, without a Catch. The
    name is looked up from the execution input (`name_input`), which is what both
    requests name the resource with.
    """
    from stepfunctions.steps import Catch, Choice, ChoiceRule, Task

    label = create.state_id.removeprefix("Create")
    list_action, items, name_key = _FINDERS[action]
    name = f"$$.Execution.Input.{name_input}"
    find = Task(
        f"Find{label}",
        resource=f"arn:aws:states:::aws-sdk:sagemaker:{list_action}",
        parameters={"NameContains.$": name, "MaxResults": 100},
        result_path="$.existing",
    )
    _set(find, result_selector={"exists.$": f"States.ArrayContains($.{items}[*].{name_key}, {name})"})
    find.add_retry(_retry(config))
    exists = Choice(f"{label}Exists")
    exists.add_choice(ChoiceRule.BooleanEquals("$.existing.exists", True), then)
    exists.default_choice(again)
    create.add_catch(Catch(error_equals=["SageMaker.AmazonSageMakerException"], next_step=find, result_path="$.existing"))
    create.next(then)
    find.next(exists)
    again.next(then)
    return create


def create_wait_until_in_service(
    config: PipelineConfig, label: str, endpoint_name: Any, then: State, decided: State, expected_config: str | None = None,
    rolled_back: str | None = None,
) -> State:
    """EndpointStep returns at once; poll DescribeEndpoint with a bounded number of Waits.

    An endpoint that reaches Failed, or is not InService after `endpoint.max_polls`, is a
    decision (`decided`, the clean-up): its error is `<label>EndpointFailed` or
    `<label>EndpointNotInService`. With `expected_config` (an execution input name), an
    endpoint InService on another config is an update that rolled back, as SageMaker
    leaves a failed UpdateEndpoint: `<label>UpdateRolledBack` (or `rolled_back`: a guarded
    rollout's alarms moved traffic back), not a promotion.
    Returns the first state of the loop: a Pass that resets the poll counter (and, with
    `expected_config`, notes the config to expect, since a Choice compares paths of the input only).
    """
    from stepfunctions.steps import Choice, ChoiceRule, Pass, Task, Wait

    polls: dict[str, Any] = {"count": 0}
    counted: dict[str, Any] = {"count.$": "States.MathAdd($.polls.count, 1)"}
    if expected_config is not None:
        polls = {"count": 0, "config.$": f"$$.Execution.Input.{expected_config}"}
        counted["config.$"] = "$.polls.config"
    start = Pass(f"Start{label}Polls", parameters=polls, result_path="$.polls")
    describe = Task(
        f"Describe{label}Endpoint",
        resource="arn:aws:states:::aws-sdk:sagemaker:describeEndpoint",
        parameters={"EndpointName": endpoint_name},
        result_path="$.endpoint_status",
    )
    # No ResultSelector: FailureReason is present only on failure, and a missing path is an error.
    describe.add_retry(_retry(config))
    wait = Wait(f"WaitFor{label}Endpoint", seconds=config.endpoint.poll_seconds)
    count = Pass(f"Count{label}Polls", parameters=counted, result_path="$.polls")
    failed = decision(f"{label}EndpointFailed", f"{label}EndpointFailed",
                      f"the {label.lower()} endpoint reached Failed: its FailureReason is in Describe{label}Endpoint's output")
    too_slow = decision(f"{label}EndpointTooSlow", f"{label}EndpointNotInService",
                        f"the {label.lower()} endpoint was not InService after {config.endpoint.max_polls} polls"
                        f" of {config.endpoint.poll_seconds} s")  # fmt: skip
    status = "$.endpoint_status.EndpointStatus"
    is_ready = Choice(f"Is{label}EndpointInService")
    if expected_config is None:
        is_ready.add_choice(ChoiceRule.StringEquals(status, "InService"), then)
    else:
        on_config = ChoiceRule.StringEqualsPath("$.endpoint_status.EndpointConfigName", "$.polls.config")
        is_ready.add_choice(ChoiceRule.And([ChoiceRule.StringEquals(status, "InService"), on_config]), then)
        name = rolled_back or f"{label}UpdateRolledBack"
        back = decision(name, name, f"the {label.lower()} endpoint is InService on its previous config: the update failed"
                                    f" and was rolled back (FailureReason in Describe{label}Endpoint's output)")  # fmt: skip
        is_ready.add_choice(ChoiceRule.StringEquals(status, "InService"), back)
        back.next(decided)
    is_ready.add_choice(ChoiceRule.StringEquals(status, "Failed"), failed)
    is_ready.add_choice(ChoiceRule.NumericGreaterThanEquals("$.polls.count", config.endpoint.max_polls), too_slow)
    is_ready.default_choice(wait)
    failed.next(decided)
    too_slow.next(decided)
    start.next(describe)
    describe.next(is_ready)
    wait.next(count)
    count.next(describe)
    return start


def rollout_alarms(config: PipelineConfig) -> list[dict[str, Any]]:
    """The PutMetricAlarm documents of the alarms a guarded promotion rolls back on.

    On the production endpoint's AllTraffic variant: the share of 5xx answers
    (Invocation5XXErrors' Average) and ModelLatency's p99 (microseconds). `ddcicd run` puts
    them in the local alarm store (workflow/local/alarms.py); on AWS they must exist under
    these names before a promotion (the definition only names them).
    """
    rollout = config.endpoint.rollout
    dimensions = [{"Name": "EndpointName", "Value": config.endpoint.production_name},
                  {"Name": "VariantName", "Value": "AllTraffic"}]
    alarms = []
    for suffix, metric, statistic, settings, scale in (
            ("errors", "Invocation5XXErrors", {"Statistic": "Average"}, rollout.error_rate, 1.0),
            ("p99", "ModelLatency", {"ExtendedStatistic": "p99"}, rollout.p99_latency_ms, 1000.0)):
        alarms.append({"AlarmName": f"{config.name}-rollout-{suffix}", "Namespace": "AWS/SageMaker",
                       "MetricName": metric, **statistic, "Dimensions": dimensions,
                       "Threshold": settings.threshold * scale, "Period": settings.period_seconds,
                       "EvaluationPeriods": settings.evaluation_periods,
                       "DatapointsToAlarm": settings.datapoints_to_alarm,
                       "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching"})
    return alarms


def deployment_config(config: PipelineConfig) -> dict[str, Any] | None:
    """UpdateEndpoint's DeploymentConfig for `endpoint.rollout`; None for ALL_AT_ONCE, which
    keeps SageMaker's default blue/green update (and the ASL it always had)."""
    rollout = config.endpoint.rollout
    if rollout.mode == "ALL_AT_ONCE":
        return None
    routing: dict[str, Any] = {"Type": rollout.mode, "WaitIntervalInSeconds": rollout.bake_seconds}
    if rollout.mode == "CANARY":
        routing["CanarySize"] = {"Type": "CAPACITY_PERCENT", "Value": rollout.canary_percent}
    else:
        routing["LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": rollout.step_percent}
    return {
        "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing,
                                  "TerminationWaitInSeconds": rollout.termination_wait_seconds,
                                  "MaximumExecutionTimeoutInSeconds": rollout.max_seconds},
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm["AlarmName"]} for alarm in rollout_alarms(config)]},
    }


def decision(state_id: str, error: str, cause: str) -> State:
    """A Pass that records a decision as $.error {Error, Cause}, for the clean-up and PipelineFailed.

    Choice branches cannot raise; this lets every decision (a gate's Default, an endpoint
    that failed) share one clean-up path, and PipelineFailed names the decision's error.
    """
    from stepfunctions.steps import Pass

    return Pass(state_id, result={"Error": error, "Cause": cause}, result_path="$.error")


def create_promote_steps(
    config: PipelineConfig, inputs: ExecutionInput, resources: Resources, then: State, decided: State
) -> State:
    """Blue/green: update production to the new endpoint config, or create it the first time.

    UpdateEndpoint can safely run twice. A refused update (SageMaker refuses one while an
    update is in progress, and AWS updates take minutes, longer than any Retry here) is
    caught and production described: already Updating, or already on this execution's
    config, means a first call went through, so the poll loop takes over; otherwise
    UpdateProductionEndpointAgain (no Catch) tries once more, and a real fault stops the
    run there. The poll loop promotes only when production is InService on this
    execution's config.
    """
    from stepfunctions.steps import Catch, Choice, ChoiceRule, EndpointStep, Task

    production = config.endpoint.production_name
    config_args = (config, inputs)
    endpoint_config = create_endpoint_config_step(*config_args, "CreateProductionEndpointConfig",
                                                  "ProductionEndpointConfigName", config.endpoint.production_instances)
    endpoint_config_again = create_endpoint_config_step(*config_args, "CreateProductionEndpointConfigAgain",
                                                        "ProductionEndpointConfigName", config.endpoint.production_instances)
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
    update, update_again = (EndpointStep(
        state_id,
        endpoint_name=production,
        endpoint_config_name=inputs["ProductionEndpointConfigName"],
        update=True,
        result_path=None,
    ) for state_id in ("UpdateProductionEndpoint", "UpdateProductionEndpointAgain"))
    guarded = deployment_config(config)
    if guarded is not None:  # canary or linear traffic shifting, rolled back by the alarms
        for step in (update, update_again):
            step.parameters["DeploymentConfig"] = guarded
    check = Task(
        "CheckProductionUpdate",
        resource="arn:aws:states:::aws-sdk:sagemaker:describeEndpoint",
        parameters={"EndpointName": production},
        result_path="$.production_update",
    )
    _set(check, result_selector={
        "status.$": "$.EndpointStatus",
        "on_this_config.$": "States.ArrayContains(States.Array($.EndpointConfigName),"
                            " $$.Execution.Input.ProductionEndpointConfigName)",
    })  # fmt: skip
    updated = Choice("ProductionUpdateStarted")
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
    for step in (find, update, update_again, check, create, record):
        step.add_retry(_retry(config))
    wait_production = create_wait_until_in_service(config, "Production", production, record, decided,
                                                   expected_config="ProductionEndpointConfigName",
                                                   rolled_back=None if guarded is None else "PromotionRolledBack")  # fmt: skip
    update.add_catch(Catch(error_equals=["SageMaker.AmazonSageMakerException"], next_step=check,
                           result_path="$.production_update"))  # fmt: skip
    updated.add_choice(ChoiceRule.Or([ChoiceRule.StringEquals("$.production_update.status", "Updating"),
                                      ChoiceRule.BooleanEquals("$.production_update.on_this_config", True)]),
                       wait_production)  # fmt: skip
    updated.default_choice(update_again)
    check.next(updated)
    update_again.next(wait_production)
    exists.add_choice(ChoiceRule.BooleanEquals("$.production.exists", True), update)
    exists.default_choice(create)
    create_idempotently(config, endpoint_config, endpoint_config_again, "createEndpointConfig",
                        "ProductionEndpointConfigName", find)  # fmt: skip
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
