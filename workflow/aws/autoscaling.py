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

from dataclasses import dataclass

from botocore.exceptions import ClientError

from workflow.aws.clients import AwsContext, AwsError

DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SCALE_IN_COOLDOWN_SECONDS = 300  # scale in slowly: a cold instance costs minutes to add back
SCALE_OUT_COOLDOWN_SECONDS = 60


@dataclass(frozen=True)
class ScalingOutcome:
    """What register_autoscaling did, for the command's report."""

    resource_id: str | None
    message: str

    @property
    def registered(self) -> bool:
        return self.message == "registered"


def production_variant(context: AwsContext) -> tuple[str, str] | None:
    """(variant name, deployed instance type) of the production endpoint, None while it does not exist."""
    sagemaker = context.client("sagemaker")
    try:
        endpoint = sagemaker.describe_endpoint(EndpointName=context.config.endpoint.production_name)
    except ClientError as error:
        if error.response["Error"]["Code"] == "ValidationException":  # SageMaker's "Could not find endpoint"
            return None
        raise
    configuration = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variant = configuration["ProductionVariants"][0]
    return variant["VariantName"], variant.get("InstanceType", "")


def register_autoscaling(context: AwsContext) -> ScalingOutcome:
    """Register the scalable target and its policy (an upsert) once the production endpoint exists.

    UpdateEndpoint refuses to change the instance type of a variant that is a scalable
    target; when the config names another type than the deployed one, the target is
    deregistered instead, so the next promotion can update the endpoint, after which
    `ddcicd aws start --wait` registers it again.
    """
    settings = context.config.endpoint
    if settings.autoscaling_max < settings.autoscaling_min:
        raise AwsError(
            f"endpoint.autoscaling_max ({settings.autoscaling_max}) is below endpoint.autoscaling_min ({settings.autoscaling_min})"
        )
    found = production_variant(context)
    if found is None:
        return ScalingOutcome(None, "waiting for the first promotion (no production endpoint yet)")
    variant, instance_type = found
    resource_id = f"endpoint/{settings.production_name}/variant/{variant}"
    scaling = context.client("application-autoscaling")
    if instance_type != settings.instance_type:
        targets = scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource_id], ScalableDimension=DIMENSION)
        if targets["ScalableTargets"]:
            scaling.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=DIMENSION)
        return ScalingOutcome(resource_id, f"released: {instance_type} deployed, {settings.instance_type} configured; "
                                           "registered again after the next promotion")  # fmt: skip
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
    return ScalingOutcome(resource_id, "registered")
