"""What every part of the local SageMaker shares: the account, the region, ARNs, and the images it stands in for.

    sagemaker_arn("training-job", "Run-1-Train", "eu-west-1")
        # arn:aws:sagemaker:eu-west-1:000000000000:training-job/run-1-train
    runs_locally(image, serving_repositories())     # True for image-classification, pytorch-inference

Jobs, endpoints and the runtime router read these, so an ARN reads the same whichever part
produced it. Nothing here imports the engine: the router and `ddcicd endpoints` stay light
(the integrations' errors are in sagemaker_errors.py).
"""
from __future__ import annotations

import os
import re
from typing import Iterable

ACCOUNT = "000000000000"  # the local account in every ARN (the engine's default too)
DEFAULT_REGION = "us-east-1"
# Any image whose name contains this runs our code as well: an image built from this repository.
OWN_IMAGE = "ddcicd"


def environment_region() -> str:
    """AWS_REGION, then AWS_DEFAULT_REGION, as the SDKs pick it; us-east-1 without either."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def sagemaker_arn(kind: str, name: str, region: str) -> str:
    """arn:aws:sagemaker:<region>:<account>:<kind>/<name in lower case>, as SageMaker writes it."""
    return f"arn:aws:sagemaker:{region}:{ACCOUNT}:{kind}/{name.lower()}"


def runs_locally(image: str, repositories: Iterable[str]) -> bool:
    """Whether the local engine stands in for `image`: one of `repositories` (from
    workflow/contracts/algorithms.py) or an image of our own, anywhere in the URI."""
    names = [*repositories, OWN_IMAGE]
    return re.search("|".join(re.escape(name) for name in names), image, re.IGNORECASE) is not None
