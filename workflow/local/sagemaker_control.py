"""The local engine's SageMaker control plane: models, endpoint configs and endpoints.

    arn:aws:states:::sagemaker:createModel / createEndpointConfig / createEndpoint / updateEndpoint
    arn:aws:states:::aws-sdk:sagemaker:describeEndpoint / listEndpoints / deleteEndpoint

Each action is a method named after it (`createModel` -> `_create_model`) over LocalEndpoints,
which keeps AWS's shapes. A refused request is SageMaker.AmazonSageMakerException through an
optimized integration and SageMaker.SageMakerException through aws-sdk (an unmodelled error
there), as on AWS, so Retry and Catch match the same names.
"""
from __future__ import annotations

import re

from workflow.engine import StatesError, TaskContext
from workflow.engine.values import Json
from workflow.local.endpoints import LocalEndpoints, ValidationError
from workflow.local.sagemaker_errors import required, sagemaker_error, unmodelled_error

OPTIMIZED_ACTIONS = ("createModel", "createEndpointConfig", "createEndpoint", "updateEndpoint")
SDK_ACTIONS = ("describeEndpoint", "listEndpoints", "deleteEndpoint")
_ENDPOINT_SUMMARY = ("EndpointName", "EndpointArn", "CreationTime", "LastModifiedTime", "EndpointStatus")


class SageMakerControlPlane:
    """createModel, createEndpointConfig, createEndpoint, updateEndpoint and the aws-sdk reads."""

    def __init__(self, endpoints: LocalEndpoints) -> None:
        self.endpoints = endpoints

    def invoke(self, resource: str, parameters: Json, context: TaskContext) -> Json:
        sdk = ":aws-sdk:" in resource
        action = resource.rsplit(":", 1)[-1]
        handler = getattr(self, f"_{_snake(action)}", None)
        if handler is None:
            raise StatesError("States.Runtime", f"the local SageMaker integration does not implement {action}")
        try:
            return handler(parameters)
        except ValidationError as error:
            if sdk:
                raise unmodelled_error(str(error)) from error
            raise sagemaker_error("ValidationException", str(error)) from error

    def _create_model(self, parameters: Json) -> Json:
        return self.endpoints.create_model(required(parameters, "ModelName"), primary_container=parameters.get("PrimaryContainer"))

    def _create_endpoint_config(self, parameters: Json) -> Json:
        return self.endpoints.create_endpoint_config(required(parameters, "EndpointConfigName"), parameters.get("ProductionVariants") or [])

    def _create_endpoint(self, parameters: Json) -> Json:
        return self.endpoints.create_endpoint(required(parameters, "EndpointName"), required(parameters, "EndpointConfigName"))

    def _update_endpoint(self, parameters: Json) -> Json:
        return self.endpoints.update_endpoint(required(parameters, "EndpointName"), required(parameters, "EndpointConfigName"))

    def _describe_endpoint(self, parameters: Json) -> Json:
        return self.endpoints.describe_endpoint(required(parameters, "EndpointName"))

    def _delete_endpoint(self, parameters: Json) -> Json:
        self.endpoints.delete_endpoint(required(parameters, "EndpointName"))
        return {}

    def _list_endpoints(self, parameters: Json) -> Json:
        contains = (parameters or {}).get("NameContains", "")
        limit = int((parameters or {}).get("MaxResults", 10))
        summaries = [{key: item[key] for key in _ENDPOINT_SUMMARY if key in item}
                     for item in self.endpoints.list_endpoints() if contains in item["EndpointName"]]  # fmt: skip
        return {"Endpoints": summaries[:limit]}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


__all__ = ["OPTIMIZED_ACTIONS", "SDK_ACTIONS", "SageMakerControlPlane"]
