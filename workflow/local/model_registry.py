"""A local SageMaker Model Registry: model package groups and their versions, in SQLite.

    registry = ModelRegistry.default()          # $DDCICD_HOME/model_registry.sqlite3, beside the history
    registry.create_model_package_group({"ModelPackageGroupName": "ddcicd"})
    registry.create_model_package({"ModelPackageGroupName": "ddcicd", "InferenceSpecification": {...},
                                   "ModelApprovalStatus": "PendingManualApproval", ...})
    registry.update_model_package({"ModelPackageArn": arn, "ModelApprovalStatus": "Approved"})

Requests and responses keep SageMaker's shapes: every request is checked against botocore's
model of the operation (unknown members, types, lengths, required members), plus the enums
and name patterns botocore leaves to the service. SageMaker answers a missing group or
version with ValidationException (none of these operations models ResourceNotFound), and
so does this registry. Versions are numbered per group from 1 inside one write transaction,
so two runs registering at once never share a number.

`ModelRegistryIntegration` serves the `arn:aws:states:::aws-sdk:sagemaker:*ModelPackage*`
resources to the local engine (registered in services.py): a refused request is
SageMaker.SageMakerException there, as the aws-sdk integration names unmodelled errors.
"""
from __future__ import annotations

import base64
import json
import re
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from workflow.home import ddcicd_home
from workflow.local.sagemaker_api import ACCOUNT, environment_region

Json = Any
SDK_ACTIONS = ("createModelPackageGroup", "describeModelPackageGroup", "createModelPackage", "describeModelPackage",
               "listModelPackages", "updateModelPackage")  # fmt: skip
APPROVAL_STATUSES = ("PendingManualApproval", "Approved", "Rejected")
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_PACKAGE_ARN = re.compile(r"^arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:model-package/(?P<group>[^/]+)/(?P<version>[0-9]+)$")
_SUMMARY = ("ModelPackageName", "ModelPackageGroupName", "ModelPackageVersion", "ModelPackageArn", "ModelPackageDescription",
            "CreationTime", "ModelPackageStatus", "ModelApprovalStatus")  # fmt: skip
_SCHEMA = """
CREATE TABLE IF NOT EXISTS model_package_groups (
    name TEXT PRIMARY KEY, document TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS model_packages (
    group_name TEXT NOT NULL, version INTEGER NOT NULL, arn TEXT NOT NULL UNIQUE, created TEXT NOT NULL,
    approval TEXT NOT NULL, document TEXT NOT NULL, PRIMARY KEY (group_name, version));
"""


class RegistryError(Exception):
    """A refused request, with SageMaker's error code (ValidationException, ConflictException)."""

    def __init__(self, message: str, code: str = "ValidationException") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@lru_cache(maxsize=1)
def _service_model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def validate_request(operation: str, parameters: Json) -> None:
    """Checks `parameters` against botocore's input shape of `operation`; RegistryError naming each problem."""
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(parameters, _service_model().operation_model(operation).input_shape)
    if report.has_errors():
        raise RegistryError(f"{operation}: {report.generate_report()}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _group_arn(name: str) -> str:
    return f"arn:aws:sagemaker:{environment_region()}:{ACCOUNT}:model-package-group/{name.lower()}"


def _package_arn(group: str, version: int) -> str:
    return f"arn:aws:sagemaker:{environment_region()}:{ACCOUNT}:model-package/{group.lower()}/{version}"


def _check_name(what: str, name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise RegistryError(f"1 validation error detected: Value '{name}' at '{what}' failed to satisfy constraint: "
                            f"Member must satisfy regular expression pattern: {NAME_PATTERN.pattern}")  # fmt: skip


def _check_approval(status: str | None) -> None:
    if status is not None and status not in APPROVAL_STATUSES:
        raise RegistryError(f"1 validation error detected: Value '{status}' at 'modelApprovalStatus' failed to satisfy "
                            f"constraint: Member must satisfy enum value set: [{', '.join(APPROVAL_STATUSES)}]")  # fmt: skip


class ModelRegistry:
    """Model package groups and versioned model packages in one SQLite file (atomic, bound parameters)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def default(cls, home: Path | None = None) -> "ModelRegistry":
        return cls((home or ddcicd_home()) / "model_registry.sqlite3")

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            connection.executescript(_SCHEMA)
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()

    # --- groups -----------------------------------------------------------------------------------

    def create_model_package_group(self, parameters: Json) -> Json:
        validate_request("CreateModelPackageGroup", parameters)
        name = parameters["ModelPackageGroupName"]
        _check_name("modelPackageGroupName", name)
        document = {"ModelPackageGroupName": name, "ModelPackageGroupArn": _group_arn(name), "CreationTime": _now(),
                    "CreatedBy": {}, "ModelPackageGroupStatus": "Completed"}  # fmt: skip
        if parameters.get("ModelPackageGroupDescription"):
            document["ModelPackageGroupDescription"] = parameters["ModelPackageGroupDescription"]
        with self._transaction(write=True) as connection:
            if connection.execute("SELECT 1 FROM model_package_groups WHERE name = ?", (name,)).fetchone():
                raise RegistryError(f"Model Package Group already exists: {document['ModelPackageGroupArn']}")
            connection.execute("INSERT INTO model_package_groups (name, document) VALUES (?, ?)", (name, json.dumps(document)))
        return {"ModelPackageGroupArn": document["ModelPackageGroupArn"]}

    def describe_model_package_group(self, parameters: Json) -> Json:
        validate_request("DescribeModelPackageGroup", parameters)
        with self._transaction() as connection:
            return self._group(connection, parameters["ModelPackageGroupName"])

    def _group(self, connection: sqlite3.Connection, name_or_arn: str) -> Json:
        name = name_or_arn.rsplit("/", 1)[-1] if name_or_arn.startswith("arn:") else name_or_arn
        row = connection.execute("SELECT document FROM model_package_groups WHERE lower(name) = lower(?)", (name,)).fetchone()
        if row is None:
            raise RegistryError(f"ModelPackageGroup {name} does not exist.")
        return json.loads(row[0])

    # --- versions ---------------------------------------------------------------------------------

    def create_model_package(self, parameters: Json) -> Json:
        """Registers the next version of a group; the local registry keeps versioned packages only."""
        validate_request("CreateModelPackage", parameters)
        group_name = parameters.get("ModelPackageGroupName")
        if not group_name:
            raise RegistryError("the local model registry keeps versioned model packages only: ModelPackageGroupName is required")
        if "InferenceSpecification" not in parameters:
            raise RegistryError("InferenceSpecification is required for a model package version")
        status = parameters.get("ModelApprovalStatus", "PendingManualApproval")
        _check_approval(status)
        with self._transaction(write=True) as connection:
            group = self._group(connection, group_name)
            group_name = group["ModelPackageGroupName"]
            (latest,) = connection.execute("SELECT coalesce(max(version), 0) FROM model_packages WHERE group_name = ?",
                                           (group_name,)).fetchone()  # fmt: skip
            version = latest + 1
            now = _now()
            document = {
                "ModelPackageName": group_name, "ModelPackageGroupName": group_name, "ModelPackageVersion": version,
                "ModelPackageArn": _package_arn(group_name, version), "CreationTime": now, "LastModifiedTime": now,
                "ModelPackageStatus": "Completed", "ModelApprovalStatus": status, "CertifyForMarketplace": False,
                "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
            }  # fmt: skip
            for key in ("ModelPackageDescription", "InferenceSpecification", "ModelMetrics", "CustomerMetadataProperties",
                        "MetadataProperties", "Domain", "Task", "SamplePayloadUrl", "SourceUri"):  # fmt: skip
                if key in parameters:
                    document[key] = parameters[key]
            connection.execute(
                "INSERT INTO model_packages (group_name, version, arn, created, approval, document) VALUES (?, ?, ?, ?, ?, ?)",
                (group_name, version, document["ModelPackageArn"], now, status, json.dumps(document)),
            )
        return {"ModelPackageArn": document["ModelPackageArn"]}

    def describe_model_package(self, parameters: Json) -> Json:
        """ModelPackageName is the version's ARN (or `<group>/<version>`), as for any versioned package."""
        validate_request("DescribeModelPackage", parameters)
        with self._transaction() as connection:
            return self._package(connection, parameters["ModelPackageName"])

    def _package(self, connection: sqlite3.Connection, reference: str) -> Json:
        match = _PACKAGE_ARN.match(reference) or re.match(r"^(?P<group>[^/:]+)/(?P<version>[0-9]+)$", reference)
        if match is None:
            raise RegistryError(f"ModelPackage {reference} does not exist: name a version by its ARN or as <group>/<version>.")
        row = connection.execute("SELECT document FROM model_packages WHERE lower(group_name) = lower(?) AND version = ?",
                                 (match["group"], int(match["version"]))).fetchone()  # fmt: skip
        if row is None:
            raise RegistryError(f"ModelPackage {reference} does not exist.")
        return json.loads(row[0])

    def list_model_packages(self, parameters: Json | None = None) -> Json:
        """Summaries, filtered by group, approval status, name and creation time; sorted; paginated by NextToken."""
        parameters = parameters or {}
        validate_request("ListModelPackages", parameters)
        _check_approval(parameters.get("ModelApprovalStatus"))
        sort_by, order = parameters.get("SortBy", "CreationTime"), parameters.get("SortOrder", "Ascending")
        if sort_by not in ("Name", "CreationTime") or order not in ("Ascending", "Descending"):
            raise RegistryError(f"SortBy must be Name or CreationTime and SortOrder Ascending or Descending, not {sort_by}/{order}")
        package_type = parameters.get("ModelPackageType", "Unversioned" if "ModelPackageGroupName" not in parameters else "Versioned")
        if package_type == "Unversioned":  # no unversioned packages here
            return {"ModelPackageSummaryList": []}
        query, arguments = "SELECT document FROM model_packages WHERE 1 = 1", []
        if "ModelPackageGroupName" in parameters:
            query, arguments = query + " AND lower(group_name) = lower(?)", [parameters["ModelPackageGroupName"].rsplit("/", 1)[-1]]
        if "ModelApprovalStatus" in parameters:
            query, arguments = query + " AND approval = ?", [*arguments, parameters["ModelApprovalStatus"]]
        with self._transaction() as connection:
            documents = [json.loads(row[0]) for row in connection.execute(query + " ORDER BY created, version", arguments)]
        documents = [document for document in documents if _created_within(document, parameters)
                     and parameters.get("NameContains", "") in document["ModelPackageName"]]  # fmt: skip
        key = (lambda d: (d["ModelPackageName"], d["ModelPackageVersion"])) if sort_by == "Name" else (lambda d: (d["CreationTime"], d["ModelPackageVersion"]))
        documents.sort(key=key, reverse=order == "Descending")
        start = _decode_token(parameters.get("NextToken"))
        limit = parameters.get("MaxResults", 100)
        page = documents[start:start + limit]
        response: Json = {"ModelPackageSummaryList": [{k: d[k] for k in _SUMMARY if k in d} for d in page]}
        if start + limit < len(documents):
            response["NextToken"] = base64.urlsafe_b64encode(json.dumps({"offset": start + limit}).encode()).decode()
        return response

    def update_model_package(self, parameters: Json) -> Json:
        """Approval status, its description and customer metadata, as UpdateModelPackage changes them."""
        validate_request("UpdateModelPackage", parameters)
        _check_approval(parameters.get("ModelApprovalStatus"))
        unsupported = set(parameters) - {"ModelPackageArn", "ModelApprovalStatus", "ApprovalDescription",
                                         "CustomerMetadataProperties", "CustomerMetadataPropertiesToRemove"}  # fmt: skip
        if unsupported:
            raise RegistryError(f"the local model registry does not update {', '.join(sorted(unsupported))}")
        with self._transaction(write=True) as connection:
            document = self._package(connection, parameters["ModelPackageArn"])
            for key in ("ModelApprovalStatus", "ApprovalDescription"):
                if key in parameters:
                    document[key] = parameters[key]
            metadata = {**document.get("CustomerMetadataProperties", {}), **parameters.get("CustomerMetadataProperties", {})}
            for key in parameters.get("CustomerMetadataPropertiesToRemove", []):
                metadata.pop(key, None)
            if metadata:
                document["CustomerMetadataProperties"] = metadata
            document["LastModifiedTime"] = _now()
            connection.execute("UPDATE model_packages SET approval = ?, document = ? WHERE arn = ?",
                               (document["ModelApprovalStatus"], json.dumps(document), document["ModelPackageArn"]))  # fmt: skip
        return {"ModelPackageArn": document["ModelPackageArn"]}


def _created_within(document: Json, parameters: Json) -> bool:
    created = datetime.fromisoformat(document["CreationTime"])
    for key, inside in (("CreationTimeAfter", lambda t: created > t), ("CreationTimeBefore", lambda t: created < t)):
        if key in parameters:
            bound = parameters[key]
            bound = bound if isinstance(bound, datetime) else datetime.fromisoformat(str(bound).replace("Z", "+00:00"))
            if not inside(bound if bound.tzinfo else bound.replace(tzinfo=timezone.utc)):
                return False
    return True


def _decode_token(token: str | None) -> int:
    if token is None:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError):
        pass
    raise RegistryError(f"Invalid pagination token: {token}")


class ModelRegistryIntegration:
    """The local engine's `aws-sdk:sagemaker:*ModelPackage*` Task resources over a ModelRegistry."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def invoke(self, resource: str, parameters: Json, context: Any) -> Json:
        from workflow.local.sagemaker_errors import unmodelled_error

        action = resource.rsplit(":", 1)[-1]
        if action not in SDK_ACTIONS:
            from workflow.engine import StatesError

            raise StatesError("States.Runtime", f"the local model registry does not implement {action}")
        method = getattr(self.registry, re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower())
        try:
            return method(parameters or {})
        except RegistryError as error:
            raise unmodelled_error(error.message) from error


__all__ = ["APPROVAL_STATUSES", "SDK_ACTIONS", "ModelRegistry", "ModelRegistryIntegration", "RegistryError", "validate_request"]
