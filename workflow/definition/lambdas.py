"""The Lambda states and the gates that read their results."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workflow.config import PipelineConfig
from workflow.contracts.functions import EVALUATE, LOAD_TEST, LOAD_TEST_MERGE, SUBMISSION, LambdaFunction

if TYPE_CHECKING:
    from stepfunctions.inputs import ExecutionInput
    from stepfunctions.steps import State

from workflow.definition.common import Resources, _retry, _set


def _lambda_step(config: PipelineConfig, resources: Resources, state_id: str, function: LambdaFunction,
                 payload: dict[str, Any], result_path: str) -> State:  # fmt: skip
    from stepfunctions.steps import LambdaStep

    step = LambdaStep(
        state_id,
        parameters={"FunctionName": resources.lambda_arns[function.key], "Payload": payload},
        result_path=result_path,
        timeout_seconds=config.lambdas.timeout_of(function),
    )
    _set(step, result_selector={"Payload.$": "$.Payload"})
    step.add_retry(_retry(config))
    return step


def create_evaluate_step(config: PipelineConfig, inputs: ExecutionInput, resources: Resources) -> State:
    """The evaluate Lambda scores every validation image through the staging endpoint."""
    return _lambda_step(
        config,
        resources,
        "Evaluate",
        EVALUATE,
        {
            "endpoint_name": inputs["StagingEndpointName"],
            "data_uri": inputs["ProcessedDataUri"],
            "output_uri": inputs["EvaluationUri"],
            "production_metrics_uri.$": "$.champion.metrics_uri",  # the champion's evaluation (registry.py)
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
        resources,
        "LoadTestShard",
        LOAD_TEST,
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
        resources,
        "MergeLoadTest",
        LOAD_TEST_MERGE,
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


def create_submission_step(config: PipelineConfig, inputs: ExecutionInput, resources: Resources) -> State:
    """Batch Transform writes one .out per image; this Lambda assembles Kaggle's submission.csv."""
    return _lambda_step(
        config,
        resources,
        "AssembleSubmission",
        SUBMISSION,
        {
            "transform_output_uri": inputs["TransformOutputUri"],
            "sample_submission_uri": inputs["SampleSubmissionUri"],
            "output_uri": inputs["SubmissionUri"],
        },
        "$.submission",
    )
