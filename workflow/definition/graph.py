"""The whole graph, and the SDK Workflow / ASL document built from it."""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from workflow.config import PipelineConfig
from workflow.contracts.functions import FUNCTIONS
from workflow.definition.common import EXECUTION_INPUT_SCHEMA, Resources, _partition_of, _quiet_sdk_imports, _set
from workflow.definition.approval import create_approval_steps
from workflow.definition.registry import create_approve_step, create_champion_steps, create_register_steps, create_reject_steps
from workflow.definition.endpoints import (
    create_delete_endpoint_step,
    create_endpoint_config_step,
    create_idempotently,
    create_model_step,
    create_promote_steps,
    create_staging_endpoint_step,
    create_wait_until_in_service,
    decision,
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


def approval_topic_arn(config: PipelineConfig, account: str = "000000000000") -> str:
    """`approval.topic_arn`, else the `<name>-approval` topic in the configured region (the stack creates it)."""
    from workflow.definition.common import _partition

    if config.approval.topic_arn:
        return config.approval.topic_arn
    return f"arn:{_partition(config.aws.region)}:sns:{config.aws.region}:{account}:{config.name}-approval"


def resources_for(config: PipelineConfig, account: str = "000000000000") -> Resources:
    """Every function of the catalogue by its configured name: the ARNs `ddcicd aws deploy` creates."""
    arn = f"arn:aws:lambda:{config.aws.region}:{account}:function:"
    return Resources(
        production_metrics_uri=f"s3://{config.aws.bucket}/{config.aws.prefix}/production/metrics.json",
        lambda_arns={function.key: arn + config.lambdas.name_of(function) for function in FUNCTIONS},
        approval_topic_arn=approval_topic_arn(config, account),
    )


def create_graph(config: PipelineConfig, resources: Resources) -> State:
    """Wire every stage; returns the first state.

    No Catch routes a fault anywhere: a Task's error after its retries ends the execution
    at that Task, with everything made so far kept, so a redrive resumes there. Decisions
    (a gate's Default, an endpoint that failed, an approval refused or timed out) set
    $.error and go through DecisionCleanUp (delete staging; production is never touched)
    to PipelineFailed, which names the decision's error.
    """
    _quiet_sdk_imports()
    from stepfunctions.steps import Catch, Fail, Succeed

    inputs = create_execution_input()

    succeeded = Succeed("PipelineSucceeded")
    failed = _set(Fail("PipelineFailed"), error_path="$.error.Error", cause_path="$.error.Cause")
    clean_up = create_delete_endpoint_step(config, "DecisionCleanUp", inputs["StagingEndpointName"])
    # A clean-up that fails still ends with the decision's error; the staging endpoint it
    # left is reaped like a faulted run's (`ddcicd cleanup`).
    clean_up.add_catch(Catch(error_equals=["States.ALL"], next_step=failed, result_path="$.cleanup_error"))
    clean_up.next(failed)
    clean_up = create_reject_steps(config, clean_up)  # a registered candidate a decision turns down is Rejected

    delete_staging = create_delete_endpoint_step(config, "DeleteStagingEndpoint", inputs["StagingEndpointName"])
    delete_staging.next(succeeded)
    after_promotion = delete_staging
    if config.batch_score.enabled:
        batch = create_batch_score_step(config, inputs)
        submission = create_submission_step(config, inputs, resources)
        batch.next(submission)
        submission.next(delete_staging)
        after_promotion = batch

    after_promotion = create_approve_step(config, after_promotion)
    promote = create_promote_steps(config, inputs, resources, after_promotion, clean_up)
    if config.approval.required:
        promote = create_approval_steps(config, resources, promote, clean_up)
    slo_failed = decision("SloNotMet", "SloNotMet", "the load test missed the latency or error-rate SLO")
    slo_failed.next(clean_up)
    slo_gate = create_slo_gate(promote, slo_failed)
    load_test = create_load_test_steps(config, inputs, resources, slo_gate)
    gate_failed = decision("ModelRejected", "QualityGateFailed", "the model missed a threshold or did not beat production")
    gate_failed.next(clean_up)
    quality_gate = create_quality_gate(config, create_register_steps(config, inputs, load_test), gate_failed)
    evaluate = create_evaluate_step(config, inputs, resources)
    evaluate.next(quality_gate)
    wait_staging = create_wait_until_in_service(config, "Staging", inputs["StagingEndpointName"],
                                               create_champion_steps(config, evaluate), clean_up)  # fmt: skip

    process = create_process_step(config, inputs)
    train = create_train_step(config, inputs)
    staging_instances = config.endpoint.staging_instances
    read_manifest, summarise = create_read_manifest_steps(config, inputs)
    process.next(read_manifest)
    summarise.next(train)
    staging = create_idempotently(
        config, create_staging_endpoint_step(config, inputs), create_staging_endpoint_step(config, inputs, "CreateStagingEndpointAgain"),
        "createEndpoint", "StagingEndpointName", wait_staging,
    )  # fmt: skip
    staging_config = create_idempotently(
        config,
        create_endpoint_config_step(config, inputs, "CreateStagingEndpointConfig", "StagingEndpointConfigName", staging_instances),
        create_endpoint_config_step(config, inputs, "CreateStagingEndpointConfigAgain", "StagingEndpointConfigName", staging_instances),
        "createEndpointConfig", "StagingEndpointConfigName", staging,
    )  # fmt: skip
    model = create_idempotently(config, create_model_step(config, inputs), create_model_step(config, inputs, "CreateModelAgain"),
                                "createModel", "ModelName", staging_config)  # fmt: skip
    train.next(model)
    return process


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
