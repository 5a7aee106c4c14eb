"""Facts the local and the AWS side must agree on, each written once.

    workflow.contracts.functions   the Lambda functions: name, handler, zip, memory, timeout
    workflow.contracts.algorithms  per `training.algorithm`: training and serving images, entry points
    workflow.contracts.container   the SageMaker training container's /opt/ml layout

The definition, the config, `ddcicd aws deploy` and the local engine read them from here;
nothing here imports boto3, the SageMaker SDK or torch at import time, so the config and
the local engine stay light.
"""
