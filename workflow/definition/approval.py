"""The optional manual approval before promotion: an SNS message, then a wait for a task token.

    RequestApproval (sns:publish.waitForTaskToken, TimeoutSeconds = approval.timeout_seconds)
      --SendTaskSuccess--------------------------------> promotion
      --SendTaskFailure(error="ApprovalRejected")------> clean-up, PipelineFailed: ApprovalRejected (cause: the reason)
      --States.Timeout----> ApprovalTimedOut ----------> clean-up, PipelineFailed: ApprovalTimedOut

The message carries what a person needs to decide (the evaluation's and the load test's
figures), the execution, the commands that decide, and `$$.Task.Token` (what those
commands send back). Any other error (SNS refused the publish) is a fault: the execution
stops at RequestApproval and a redrive publishes a new request with a new token.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from workflow.config import PipelineConfig
from workflow.definition.common import Resources, _retry
from workflow.definition.endpoints import decision

if TYPE_CHECKING:
    from stepfunctions.steps import State

APPROVAL_REJECTED = "ApprovalRejected"  # the error SendTaskFailure sends for a rejection
APPROVAL_TIMED_OUT = "ApprovalTimedOut"
SNS_ERRORS = ["SNS.SdkClientException", "SNS.AmazonSNSException", "SNS.ThrottledException", "ThrottlingException"]


def approval_message() -> dict[str, object]:
    """The SNS message (Step Functions serialises it as JSON): the figures, the execution, the commands, the token."""
    evaluation = "$.evaluation.Payload"
    load = "$.load_test.Payload"
    return {
        "subject": "ddcicd: a model waits for approval before promotion",
        "execution_arn.$": "$$.Execution.Id",
        "execution_name.$": "$$.Execution.Name",
        "requested_at.$": "$$.State.EnteredTime",
        "evaluation": {
            "accuracy.$": f"{evaluation}.accuracy",
            "log_loss.$": f"{evaluation}.log_loss",
            "evaluated.$": f"{evaluation}.evaluated",
            "has_production.$": f"{evaluation}.has_production",
            "better_than_production.$": f"{evaluation}.better_than_production",
            "metrics_uri.$": f"{evaluation}.metrics_uri",
        },
        "load_test": {
            "requests.$": f"{load}.requests",
            "throughput_rps.$": f"{load}.throughput_rps",
            "p50_ms.$": f"{load}.p50_ms",
            "p99_ms.$": f"{load}.p99_ms",
            "error_rate.$": f"{load}.error_rate",
            "slo_met.$": f"{load}.slo_met",
        },
        "commands": {
            "approve.$": "States.Format('ddcicd approve {}', $$.Execution.Name)",
            "reject.$": "States.Format('ddcicd approve {} --reject --reason TEXT', $$.Execution.Name)",
            "approve_on_aws.$": "States.Format('ddcicd aws approve {}', $$.Execution.Name)",
        },
        "task_token.$": "$$.Task.Token",
    }


def create_approval_steps(config: PipelineConfig, resources: Resources, then: State, decided: State) -> State:
    """RequestApproval -> then; a rejection or a timeout -> `decided` (the clean-up) with $.error set."""
    from stepfunctions.steps import Catch, SnsPublishStep

    request = SnsPublishStep(
        "RequestApproval",
        wait_for_callback=True,
        parameters={"TopicArn": resources.approval_topic_arn, "Message": approval_message()},
        timeout_seconds=config.approval.timeout_seconds,
        result_path="$.approval",
    )
    request.add_retry(_retry(config, SNS_ERRORS))
    timed_out = decision("ApprovalTimedOut", APPROVAL_TIMED_OUT,
                         f"nobody approved or rejected the promotion within {config.approval.timeout_seconds} s")  # fmt: skip
    request.add_catch(Catch(error_equals=[APPROVAL_REJECTED], next_step=decided, result_path="$.error"))
    request.add_catch(Catch(error_equals=["States.Timeout"], next_step=timed_out, result_path="$.error"))
    timed_out.next(decided)
    request.next(then)
    return request
