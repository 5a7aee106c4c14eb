"""What a kept SageMaker endpoint costs on AWS per hour, from its instance type and count.

A faulted run keeps its staging endpoint for a redrive; its summary says what keeping it
costs, so nobody leaves one running by accident. The table is a small, dated snapshot:

    Source: Amazon SageMaker AI pricing page (aws.amazon.com/sagemaker/pricing), "Real-Time
    Inference", On-Demand, region US East (N. Virginia), USD per instance-hour, read in 2024.

Other regions and later price changes differ; an instance type not listed has no estimate
(None), and the summary says so rather than guessing.
"""
from __future__ import annotations

PRICE_SOURCE = "SageMaker real-time inference on-demand prices, us-east-1, 2024 (aws.amazon.com/sagemaker/pricing)"

HOURLY_USD: dict[str, float] = {
    "ml.t2.medium": 0.056,
    "ml.m5.large": 0.115,
    "ml.m5.xlarge": 0.23,
    "ml.m5.2xlarge": 0.461,
    "ml.m5.4xlarge": 0.922,
    "ml.c5.large": 0.102,
    "ml.c5.xlarge": 0.204,
    "ml.c5.2xlarge": 0.408,
    "ml.g4dn.xlarge": 0.7364,
    "ml.p3.2xlarge": 3.825,
}


def hourly_cost(instance_type: str, count: int = 1) -> float | None:
    """USD per hour for `count` instances of `instance_type`, or None when the table has no price."""
    price = HOURLY_USD.get(instance_type)
    return None if price is None else round(price * count, 4)
