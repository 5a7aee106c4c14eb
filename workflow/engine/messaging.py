"""Local SNS topics and SQS queues: `sns:publish` and `sqs:sendMessage` Tasks, kept in the engine's store.

The callback pattern's usual carriers (an approval request published to a topic, a work
item with its task token put on a queue) run locally without AWS: a published or sent
message is a row of the `messages` table in the engine's SQLite database, and whoever
plays the subscriber or the queue consumer, in any process, reads it with `Mailbox`:

    Mailbox(".ddcicd/engine.sqlite3").receive("https://sqs.us-east-1.amazonaws.com/000000000000/work")
    # -> [{"MessageId": ..., "Body": '{"TaskToken": "..."}', "MessageAttributes": {...}, ...}]

Responses keep the shapes Step Functions returns for the optimized integrations
(`arn:aws:states:::sns:publish`: MessageId and the SDK metadata; `...:sqs:sendMessage`:
MD5OfMessageBody, MessageId and the SDK metadata) and for the AWS SDK ones
(`arn:aws:states:::aws-sdk:sns:publish`, `...:aws-sdk:sqs:sendMessage`). A JSON (non-string)
Message or MessageBody is sent as its JSON text, as Step Functions does. Any of them may
carry `.waitForTaskToken` (callbacks.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
import weakref
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from workflow.engine.errors import ErrorName, StatesError
from workflow.engine.history import HistoryStore
from workflow.engine.values import Json

if TYPE_CHECKING:
    from workflow.engine.integrations import IntegrationRegistry, TaskContext

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    destination TEXT NOT NULL,
    body TEXT NOT NULL,
    attributes TEXT NOT NULL,
    subject TEXT,
    sent REAL NOT NULL,
    received REAL
)"""
_PREPARED: "weakref.WeakSet[HistoryStore]" = weakref.WeakSet()
_PREPARED_LOCK = threading.Lock()


def _prepare(store: HistoryStore) -> HistoryStore:
    with _PREPARED_LOCK:
        if store not in _PREPARED:
            with store.transaction() as connection:
                connection.execute(_SCHEMA)
            _PREPARED.add(store)
    return store


class LocalMessaging:
    """The integration behind sns:publish and sqs:sendMessage (optimized and aws-sdk)."""

    def invoke(self, resource: str, parameters: Json, context: "TaskContext") -> Json:
        if context.store is None:
            raise StatesError(ErrorName.RUNTIME, f"{resource} needs the engine's store to keep its messages")
        if not isinstance(parameters, dict):
            raise StatesError(ErrorName.RUNTIME, f"{resource} needs an object of Parameters, got {json.dumps(parameters)}")
        sdk = ":aws-sdk:" in resource
        if resource.endswith("sns:publish"):
            return self._publish(parameters, context, sdk)
        return self._send_message(parameters, context, sdk)

    def _publish(self, parameters: dict[str, Json], context: "TaskContext", sdk: bool) -> Json:
        destination = parameters.get("TopicArn") or parameters.get("TargetArn") or parameters.get("PhoneNumber")
        if not isinstance(destination, str) or not destination:
            raise _error("SNS", "InvalidParameterException", "Invalid parameter: TopicArn or TargetArn Reason: no value"
                         " for required parameter", sdk)
        if parameters.get("Message") is None:
            raise _error("SNS", "InvalidParameterException", "Invalid parameter: Message Reason: no value for required"
                         " parameter", sdk)
        message_id = _store(context, "sns", destination, _text(parameters["Message"]), parameters.get("MessageAttributes"),
                            parameters.get("Subject"))
        return {"MessageId": message_id} if sdk else {"MessageId": message_id, **_metadata(context, "text/xml")}

    def _send_message(self, parameters: dict[str, Json], context: "TaskContext", sdk: bool) -> Json:
        queue_url = parameters.get("QueueUrl")
        if not isinstance(queue_url, str) or not queue_url:
            raise _error("SQS", "MissingParameter", "The request must contain the parameter QueueUrl.", sdk)
        if parameters.get("MessageBody") is None:
            raise _error("SQS", "MissingParameter", "The request must contain the parameter MessageBody.", sdk)
        body = _text(parameters["MessageBody"])
        message_id = _store(context, "sqs", queue_url, body, parameters.get("MessageAttributes"), None)
        digest = hashlib.md5(body.encode()).hexdigest()  # noqa: S324 - SQS's own checksum of the body, not security
        if sdk:
            return {"Md5OfMessageBody": digest, "MessageId": message_id}
        return {"MD5OfMessageBody": digest, "MessageId": message_id, **_metadata(context, "application/x-amz-json-1.0")}


def _text(value: Json) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _error(service: str, code: str, message: str, sdk: bool) -> StatesError:
    """The error a Task sees: `SNS.InvalidParameterException` (optimized) or `Sns.InvalidParameterException` (SDK)."""
    prefix = service.capitalize() if sdk else service
    return StatesError(f"{prefix}.{code}", f"{message} (Service: {service}; Status Code: 400; Error Code: {code})")


def _store(context: "TaskContext", service: str, destination: str, body: str, attributes: Json, subject: Json) -> str:
    message_id = str(uuid.uuid4())
    with _prepare(context.store).transaction() as connection:
        connection.execute("INSERT INTO messages (id, service, destination, body, attributes, subject, sent)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (message_id, service, destination, body, json.dumps(attributes or {}),
                            subject if isinstance(subject, str) else None, context.clock.now()))
    return message_id


def _metadata(context: "TaskContext", content_type: str) -> dict[str, Json]:
    """SdkHttpMetadata/SdkResponseMetadata as the optimized integrations add them."""
    request_id = str(uuid.uuid4())
    headers = {"Content-Type": content_type, "Date": formatdate(context.clock.now(), usegmt=True),
               "x-amzn-RequestId": request_id}
    return {"SdkHttpMetadata": {"AllHttpHeaders": {key: [value] for key, value in headers.items()},
                                "HttpHeaders": headers, "HttpStatusCode": 200},
            "SdkResponseMetadata": {"RequestId": request_id}}


class Mailbox:
    """The reading side: the messages sent to a topic or queue, for subscribers and consumers in any process."""

    def __init__(self, store: HistoryStore | str | os.PathLike[str]) -> None:
        self.store = _prepare(store if isinstance(store, HistoryStore) else HistoryStore(store))

    def receive(self, destination: str, max_messages: int = 10) -> list[dict[str, Json]]:
        """Takes up to `max_messages` messages not yet received, oldest first (a queue's ReceiveMessage + DeleteMessage)."""
        with self.store.transaction() as connection:
            rows = connection.execute(
                "SELECT id, service, destination, body, attributes, subject, sent FROM messages"
                " WHERE destination = ? AND received IS NULL ORDER BY sent, rowid LIMIT ?",
                (destination, max_messages)).fetchall()
            connection.executemany("UPDATE messages SET received = ? WHERE id = ?", [(time.time(), row[0]) for row in rows])
        return [_message(row) for row in rows]

    def messages(self, destination: str) -> list[dict[str, Json]]:
        """Every message sent to the destination, received or not (what a topic's subscribers saw)."""
        rows = self.store.query("SELECT id, service, destination, body, attributes, subject, sent FROM messages"
                                " WHERE destination = ? ORDER BY sent, rowid", (destination,))
        return [_message(row) for row in rows]


def _message(row: tuple[Any, ...]) -> dict[str, Json]:
    message_id, service, destination, body, attributes, subject, sent = row
    message: dict[str, Json] = {"MessageId": message_id, "Body": body, "MessageAttributes": json.loads(attributes),
                                "Destination": destination, "Service": service, "SentTimestamp": sent}
    if subject is not None:
        message["Subject"] = subject
    return message


def register_messaging(registry: "IntegrationRegistry") -> None:
    """sns:publish and sqs:sendMessage, optimized and aws-sdk, on an engine's registry."""
    messaging = LocalMessaging()
    for pattern, label in ((r"arn:[^:]+:states:::(aws-sdk:)?sns:publish", "arn:aws:states:::[aws-sdk:]sns:publish"),
                           (r"arn:[^:]+:states:::(aws-sdk:)?sqs:sendMessage", "arn:aws:states:::[aws-sdk:]sqs:sendMessage")):
        registry.register(pattern, messaging, label=label)
