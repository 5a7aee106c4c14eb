"""The local engine's SageMaker control plane: models, endpoint configs and endpoints.

    arn:aws:states:::sagemaker:createModel / createEndpointConfig / createEndpoint / updateEndpoint
    arn:aws:states:::aws-sdk:sagemaker:describeEndpoint / listEndpoints / listModels / listEndpointConfigs / deleteEndpoint

Each action is a method named after it (`createModel` -> `_create_model`) over LocalEndpoints,
which keeps AWS's shapes. A refused request is SageMaker.AmazonSageMakerException through an
optimized integration and SageMaker.SageMakerException through aws-sdk (an unmodelled error
there), as on AWS, so Retry and Catch match the same names. An API fault experiment
(workflow/local/api_faults.py) answers the operations it names with its error instead.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from workflow.engine import StatesError, TaskContext
from workflow.engine.values import Json
from workflow.local.api_faults import injected_fault
from workflow.local.endpoints import LocalEndpoints, ValidationError
from workflow.local.sagemaker_errors import required, sagemaker_error, unmodelled_error

OPTIMIZED_ACTIONS = ("createModel", "createEndpointConfig", "createEndpoint", "updateEndpoint")
SDK_ACTIONS = ("describeEndpoint", "listEndpoints", "listModels", "listEndpointConfigs", "deleteEndpoint")
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
        fault = injected_fault(self.endpoints.root.parent, "sagemaker", action[0].upper() + action[1:])
        if fault is not None:
            code, message = fault
            raise unmodelled_error(f"{message} ({code})") if sdk else sagemaker_error(code, message)
        try:
            return handler(parameters)
        except ValidationError as error:
            if sdk:
                raise unmodelled_error(str(error)) from error
            raise sagemaker_error("ValidationException", str(error)) from error

    def call(self, action: str, parameters: Json) -> Json:
        """One action by its API name (`UpdateEndpoint`), outside any execution: what the CLI's commands
        use. A refused request raises ValidationError with SageMaker's message."""
        handler = getattr(self, f"_{_snake(action)}", None)
        if handler is None:
            raise ValidationError(f"the local SageMaker does not implement {action}")
        return handler(parameters)

    def _create_model(self, parameters: Json) -> Json:
        return self.endpoints.create_model(required(parameters, "ModelName"), primary_container=parameters.get("PrimaryContainer"))

    def _create_endpoint_config(self, parameters: Json) -> Json:
        return self.endpoints.create_endpoint_config(required(parameters, "EndpointConfigName"), parameters.get("ProductionVariants") or [])

    def _create_endpoint(self, parameters: Json) -> Json:
        return self.endpoints.create_endpoint(required(parameters, "EndpointName"), required(parameters, "EndpointConfigName"))

    def _update_endpoint(self, parameters: Json) -> Json:
        return self.endpoints.update_endpoint(required(parameters, "EndpointName"), required(parameters, "EndpointConfigName"),
                                              parameters.get("DeploymentConfig"))

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

    def _list_models(self, parameters: Json) -> Json:
        return {"Models": self._named("models", "ModelName", "ModelArn", parameters)}

    def _list_endpoint_configs(self, parameters: Json) -> Json:
        return {"EndpointConfigs": self._named("configs", "EndpointConfigName", "EndpointConfigArn", parameters)}

    def _named(self, kind: str, name_key: str, arn_key: str, parameters: Json) -> list[Json]:
        """ListModels / ListEndpointConfigs summaries (name, ARN, CreationTime), NameContains applied, by name.

        LocalEndpoints keeps one JSON document per model and per config under
        <home>/endpoints/<kind>/; reading them is what a list over its describes would do.
        """
        contains = (parameters or {}).get("NameContains", "")
        limit = int((parameters or {}).get("MaxResults", 10))
        folder = Path(self.endpoints.root) / kind
        summaries = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                document = json.loads(path.read_text())
            except (FileNotFoundError, ValueError):  # deleted, or being replaced, meanwhile
                continue
            if contains in document.get(name_key, ""):
                summaries.append({key: document[key] for key in (name_key, arn_key, "CreationTime") if key in document})
        return summaries[:limit]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


__all__ = ["OPTIMIZED_ACTIONS", "SDK_ACTIONS", "SageMakerControlPlane"]
