"""The whole graph, and the SDK Workflow / ASL document built from it."""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from workflow.config import PipelineConfig
from workflow.contracts.functions import FUNCTIONS
from workflow.definition.common import EXECUTION_INPUT_SCHEMA, Resources, _partition_of, _quiet_sdk_imports, _set
from workflow.definition.endpoints import (
    _raise,
    create_delete_endpoint_step,
    create_endpoint_config_step,
    create_model_step,
    create_promote_steps,
    create_staging_endpoint_step,
    create_wait_until_in_service,
)
from workflow.definition.jobs import (
    create_batch_score_step,
    create_process_step,
    create_read_manifest_steps,
    create_train_step,
)
from workflow.definition.lambdas import (
    create_evaluate_step,
    create_load_test_steps,
    create_quality_gate,
    create_slo_gate,
    create_submission_step,
)

if TYPE_CHECKING:
    from stepfunctions.inputs import ExecutionInput
    from stepfunctions.steps import State
    from stepfunctions.workflow import Workflow


def create_execution_input() -> ExecutionInput:
    from stepfunctions.inputs import ExecutionInput

    return ExecutionInput(schema=EXECUTION_INPUT_SCHEMA)


def resources_for(config: PipelineConfig, account: str = "000000000000") -> Resources:
    """Every function of the catalogue by its configured name: the ARNs `ddcicd aws deploy` creates."""
    arn = f"arn:aws:lambda:{config.aws.region}:{account}:function:"
    return Resources(
        production_metrics_uri=f"s3://{config.aws.bucket}/{config.aws.prefix}/production/metrics.json",
        lambda_arns={function.key: arn + config.lambdas.name_of(function) for function in FUNCTIONS},
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
