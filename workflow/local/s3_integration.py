"""The local engine's S3 integration: aws-sdk:s3 copyObject, getObject and putObject on the local S3 root.

    arn:aws:states:::aws-sdk:s3:copyObject   RecordProductionMetrics (evaluation.json -> production)
    arn:aws:states:::aws-sdk:s3:getObject    ReadManifest (small JSON, returned as Body text)
    arn:aws:states:::aws-sdk:s3:putObject

Errors carry the aws-sdk integration's names: S3.NoSuchKeyException, S3.S3Exception.
"""
from __future__ import annotations

import json
import uuid

from workflow.engine import StatesError, TaskContext
from workflow.engine.values import Json
from workflow.local.s3 import NoSuchKey, S3Root, S3UriError

ACTIONS = ("copyObject", "getObject", "putObject")


class S3Integration:
    """aws-sdk:s3:copyObject (and getObject/putObject for small JSON) on the local S3 root."""

    def __init__(self, s3: S3Root) -> None:
        self.s3 = s3

    def invoke(self, resource: str, parameters: Json, context: TaskContext) -> Json:
        action = resource.rsplit(":", 1)[-1]
        try:
            if action == "copyObject":
                source = _required(parameters, "CopySource").lstrip("/")
                self.s3.copy_object("s3://" + source, _object_uri(parameters))
                return {"CopyObjectResult": {"ETag": f'"{uuid.uuid4().hex}"'}}
            if action == "getObject":
                path = self.s3.path(_object_uri(parameters))
                if not path.is_file():
                    raise NoSuchKey(str(path))
                return {"Body": path.read_text(), "ContentLength": path.stat().st_size}
            if action == "putObject":
                body = parameters.get("Body", "")
                text = body if isinstance(body, str) else json.dumps(body)
                self.s3.put_bytes(text.encode(), _object_uri(parameters))
                return {"ETag": f'"{uuid.uuid4().hex}"'}
        except NoSuchKey as error:
            raise StatesError("S3.NoSuchKeyException", f"The specified key does not exist. ({error})") from error
        except S3UriError as error:
            raise StatesError("S3.S3Exception", str(error)) from error
        raise StatesError("States.Runtime", f"the local S3 integration does not implement {action}")


def _object_uri(parameters: Json) -> str:
    return f"s3://{_required(parameters, 'Bucket')}/{_required(parameters, 'Key')}"


def _required(parameters: Json, key: str) -> str:
    value = parameters.get(key) if isinstance(parameters, dict) else None
    if not isinstance(value, str) or not value:
        raise StatesError("S3.S3Exception", f"{key} is required")
    return value


__all__ = ["ACTIONS", "S3Integration"]
