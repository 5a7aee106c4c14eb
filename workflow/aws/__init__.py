"""The AWS side of the pipeline: deploy the same definition and run it on Step Functions.

    context = AwsContext.from_config(config)
    deploy(context, lambda_zips)                     # code, Lambdas, state machine, autoscaling
    started = start_execution(context, raw_data_uri)
    description = wait_for_execution(context, started.execution_arn)

Every call goes through boto3 clients made by one `AwsContext`, created after any test mock
is in place; nothing account-specific is written here: region, bucket, prefix and role
ARNs come from the pipeline config (or `--set` overrides fed from the environment).
"""
from workflow.aws.clients import AwsContext, AwsError
from workflow.aws.deploy import deploy
from workflow.aws.executions import start_execution, wait_for_execution
from workflow.aws.upload import upload_data

__all__ = ["AwsContext", "AwsError", "deploy", "start_execution", "upload_data", "wait_for_execution"]
