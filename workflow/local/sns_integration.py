"""The local engine's SNS integration: `arn:aws:states:::sns:publish` (and `.waitForTaskToken`).

    arn:aws:states:::sns:publish   {"TopicArn", "Message", "Subject"?, "MessageAttributes"?}
        -> $DDCICD_HOME/sns/<topic name>/<MessageId>.json, written atomically
        -> {"MessageId": ..., "SdkHttpMetadata": ..., "SdkResponseMetadata": ...} as Step Functions returns it

Each file is the message as a subscriber would receive it (Message as text: an object in
Parameters is sent as its JSON, as Step Functions does). With `.waitForTaskToken` the engine
publishes through here and then waits for the token the message carries; whoever reads the
message (a person, `ddcicd approve`, the console) sends it back.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

from steps.atomic import write_atomically
from workflow.engine import StatesError, TaskContext
from workflow.engine.values import Json

_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:([A-Za-z0-9_-]{1,256})$")
MESSAGE_LIMIT_BYTES = 256 * 1024  # SNS's message size limit


def topic_folder(home: Path, topic_arn: str) -> Path:
    """Where the messages of one topic are written: <home>/sns/<topic name>/."""
    match = _TOPIC_ARN.match(topic_arn or "")
    if not match:
        raise ValueError(f"{topic_arn!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")
    return Path(home) / "sns" / match.group(1)


def read_messages(home: Path, topic_arn: str) -> list[dict[str, object]]:
    """The messages published to a topic, oldest first (tests, `ddcicd approve`'s hints)."""
    folder = topic_folder(home, topic_arn)
    documents = [json.loads(path.read_text()) for path in folder.glob("*.json")] if folder.is_dir() else []
    return sorted(documents, key=lambda document: str(document.get("Timestamp")))


class SnsIntegration:
    """sns:publish onto files under the ddcicd home."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)

    def invoke(self, resource: str, parameters: Json, context: TaskContext) -> Json:
        action = resource.rsplit(":", 1)[-1].removesuffix(".waitForTaskToken")
        if action != "publish":
            raise StatesError("States.Runtime", f"the local SNS integration does not implement {action}")
        if not isinstance(parameters, dict):
            raise StatesError("SNS.InvalidParameterException", "Parameters must be an object")
        try:
            folder = topic_folder(self.home, str(parameters.get("TopicArn") or ""))
        except ValueError as error:
            raise StatesError("SNS.InvalidParameterException", f"Invalid parameter: TopicArn ({error})") from error
        message = parameters.get("Message")
        if message is None:
            raise StatesError("SNS.InvalidParameterException", "Invalid parameter: Message must not be empty")
        text = message if isinstance(message, str) else json.dumps(message)
        if len(text.encode()) > MESSAGE_LIMIT_BYTES:
            raise StatesError("SNS.InvalidParameterException", f"Invalid parameter: Message too long ({len(text.encode())} bytes)")
        message_id = str(uuid.uuid4())
        document = {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": parameters["TopicArn"],
            "Subject": parameters.get("Subject"),
            "Message": text,
            "Timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "MessageAttributes": parameters.get("MessageAttributes") or {},
        }
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / f"{message_id}.json", json.dumps(document, indent=1).encode(), fsync=False)
        request_id = str(uuid.uuid4())
        return {
            "MessageId": message_id,
            "SdkHttpMetadata": {"HttpHeaders": {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, "HttpStatusCode": 200},
            "SdkResponseMetadata": {"RequestId": request_id},
        }


__all__ = ["SnsIntegration", "read_messages", "topic_folder"]
