"""Target-tracking autoscaling for the production endpoint (Application Auto Scaling).

Not a state in the state machine: the first execution creates the production endpoint,
every later one updates it in place (same name, same variant), and a scalable target
survives UpdateEndpoint as long as the variant name and instance type stay the same. So it
is registered once, idempotently, by whoever sees the endpoint first: `ddcicd aws deploy`
and `ddcicd aws start --wait` after a successful run. Both calls are upserts.

    endpoint/ddcicd-production/variant/AllTraffic   min..max instances from the config,
    target: SageMakerVariantInvocationsPerInstance = endpoint.autoscaling_invocations_per_instance
"""
from __future__ import annotations

from botocore.exceptions import ClientError

from workflow.aws.clients import AwsContext, AwsError

DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SCALE_IN_COOLDOWN_SECONDS = 300  # scale in slowly: a cold instance costs minutes to add back
SCALE_OUT_COOLDOWN_SECONDS = 60


def production_variant(context: AwsContext) -> str | None:
    """The production endpoint's first variant name, or None while it does not exist."""
    name = context.config.endpoint.production_name
    try:
        endpoint = context.client("sagemaker").describe_endpoint(EndpointName=name)
    except ClientError as error:
        if error.response["Error"]["Code"] == "ValidationException":  # SageMaker's "Could not find endpoint"
            return None
        raise
    variants = endpoint.get("ProductionVariants") or []
    if not variants:
        return None  # still Creating: variants appear once it is InService
    return variants[0]["VariantName"]


def register_autoscaling(context: AwsContext) -> str | None:
    """Register the scalable target and its policy; returns the resource id, None if no endpoint yet."""
    settings = context.config.endpoint
    if settings.autoscaling_max < settings.autoscaling_min:
        raise AwsError(
            f"endpoint.autoscaling_max ({settings.autoscaling_max}) is below endpoint.autoscaling_min ({settings.autoscaling_min})"
        )
    variant = production_variant(context)
    if variant is None:
        return None
    resource_id = f"endpoint/{settings.production_name}/variant/{variant}"
    scaling = context.client("application-autoscaling")
    scaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension=DIMENSION,
        MinCapacity=settings.autoscaling_min,
        MaxCapacity=settings.autoscaling_max,
    )
    scaling.put_scaling_policy(
        PolicyName=f"{settings.production_name}-invocations-per-instance",
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(settings.autoscaling_invocations_per_instance),
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleInCooldown": SCALE_IN_COOLDOWN_SECONDS,
            "ScaleOutCooldown": SCALE_OUT_COOLDOWN_SECONDS,
        },
    )
    return resource_id
