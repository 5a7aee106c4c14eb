"""The reaper's view of AWS: Step Functions executions and SageMaker resources over boto3.

    executions = StepFunctionsExecutions(boto3.client("stepfunctions"), state_machine_arn)
    sagemaker = SageMakerResources(boto3.client("sagemaker"))

Both implement the protocols of lambdas/reaper/reaping.py. SageMaker answers a missing
resource with ValidationException ("Could not find ..."), which counts as already gone.
To keep a sweep cheap however long the history (Step Functions lists closed executions for
90 days), the names that exist are listed once per sweep (ListEndpoints, ListEndpointConfigs,
ListModels) and only those are deleted.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from lambdas.reaper.reaping import FAULTED, EndedExecution, Resource, parse_input

_LISTINGS = {  # kind -> (paginated List call, its result key, the name field)
    "endpoint": ("list_endpoints", "Endpoints", "EndpointName"),
    "endpoint-config": ("list_endpoint_configs", "EndpointConfigs", "EndpointConfigName"),
    "model": ("list_models", "Models", "ModelName"),
}
_DELETES = {
    "endpoint": ("delete_endpoint", "EndpointName"),
    "endpoint-config": ("delete_endpoint_config", "EndpointConfigName"),
    "model": ("delete_model", "ModelName"),
}


def is_not_found(error: Exception) -> bool:
    """SageMaker's answer for a name that does not exist (a ValidationException, not a 404)."""
    response = getattr(error, "response", None) or {}
    detail = response.get("Error", {})
    return detail.get("Code") == "ValidationException" and "could not find" in str(detail.get("Message", "")).lower()


class StepFunctionsExecutions:
    """ListExecutions and DescribeExecution of one state machine."""

    def __init__(self, client: Any, state_machine_arn: str) -> None:
        self.client = client
        self.state_machine_arn = state_machine_arn

    def ended_faulted(self) -> list[EndedExecution]:
        found = []
        paginator = self.client.get_paginator("list_executions")
        for status in FAULTED:
            for page in paginator.paginate(stateMachineArn=self.state_machine_arn, statusFilter=status):
                for item in page["executions"]:
                    if item.get("stopDate") is not None:
                        found.append(EndedExecution(item["executionArn"], item["name"], item["status"],
                                                    item["startDate"], item["stopDate"]))
        return found

    def latest_start(self) -> datetime | None:
        """ListExecutions lists the most recent first; the first page is enough."""
        page = self.client.list_executions(stateMachineArn=self.state_machine_arn, maxResults=100)
        starts = [item["startDate"] for item in page["executions"]]
        return max(starts) if starts else None

    def execution_input(self, execution: EndedExecution) -> dict[str, Any]:
        return parse_input(self.client.describe_execution(executionArn=execution.arn).get("input"))


class SageMakerResources:
    """DeleteEndpoint, DeleteEndpointConfig, DeleteModel; DescribeEndpoint(Config) for what production serves."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._existing: dict[str, set[str]] = {}

    def _names(self, kind: str) -> set[str]:
        if kind not in self._existing:
            call, key, field = _LISTINGS[kind]
            names: set[str] = set()
            for page in self.client.get_paginator(call).paginate():
                names.update(item[field].lower() for item in page[key])
            self._existing[kind] = names
        return self._existing[kind]

    def delete(self, resource: Resource) -> bool:
        names = self._names(resource.kind)
        if resource.name.lower() not in names:
            return False
        call, parameter = _DELETES[resource.kind]
        try:
            getattr(self.client, call)(**{parameter: resource.name})
        except Exception as error:
            if not is_not_found(error):
                raise
            return False
        finally:
            names.discard(resource.name.lower())
        return True

    def serving(self, endpoint_name: str) -> set[Resource]:
        try:
            endpoint = self.client.describe_endpoint(EndpointName=endpoint_name)
        except Exception as error:
            if not is_not_found(error):
                raise
            return set()
        configs = {endpoint.get("EndpointConfigName"),
                   (endpoint.get("PendingDeploymentSummary") or {}).get("EndpointConfigName")} - {None}
        used = {Resource("endpoint", endpoint_name)}
        for config in configs:
            used.add(Resource("endpoint-config", config))
            try:
                variants = self.client.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
            except Exception as error:
                if not is_not_found(error):
                    raise
                continue
            used.update(Resource("model", variant["ModelName"]) for variant in variants if variant.get("ModelName"))
        return used
