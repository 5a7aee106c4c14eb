"""The inference server's request checks: everything a request must pass before any image
in it is decoded, each failure a JSON 4xx naming what and where (steps/serve.py routes).

In the order a request meets them:

1. `check_host`: the Host header names this server (127.0.0.1, localhost or [::1] with the
   bound port), so a DNS-rebinding page (evil.example resolving to 127.0.0.1) cannot call a
   local endpoint and read the answer: 403, as the console's guard answers the same attack.
   Off when the server binds a non-loopback address on purpose (--allow-any-host, as in a
   container, where SageMaker's own front end is what clients reach).
2. `check_accept`, the Content-Type (406, 415).
3. `read_body`: the payload cap (413, 6 MB like SageMaker) and the body timeout (408).
4. `parse_instances` for application/json: JSON nested too deep (400, not a RecursionError
   500), more than `max_instances` images (413), wrong types or empty strings (400), all
   before one base64 string is decoded; then bad base64 (400).
5. The server then checks every image's header (format, full size, decoder memory) before
   it decodes any: steps/predictor.py `Predictor.check`.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import json
from typing import Any

from aiohttp import web

JSON_TYPE = "application/json"
ACCEPTABLE = frozenset({JSON_TYPE, "application/*", "*/*"})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
# Images per application/json request. A typical 640x480 camera frame is ~66 kB, ~88 kB in
# base64: 64 of them is 5.6 MB, what the 6 MB body cap carries. More can only be tiny images
# sent to make the server work (2,000 PNGs of 70 bytes: 8 s of CPU), so 64 is the default.
DEFAULT_MAX_INSTANCES = 64


class RequestError(Exception):
    """A client error turned into a JSON 4xx response."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def json_response(document: Any, status: int = 200) -> web.Response:
    """Content-Type exactly application/json (no charset parameter), as the built-in algorithm answers."""
    return web.Response(body=json.dumps(document).encode(), status=status, content_type=JSON_TYPE)


def error_response(status: int, error: str, message: str) -> web.Response:
    return json_response({"error": error, "message": message}, status=status)


# ---------------------------------------------------------------------------- 1. Host


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: an address only this machine reaches."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(bound: str, port: int) -> frozenset[str]:
    """Host header values naming this server: the loopback names (and the bound address) with the port."""
    names = {*LOOPBACK_NAMES, f"[{bound}]" if ":" in bound else bound}
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:  # the default port may be left out
        hosts |= names
    return frozenset(host.lower() for host in hosts)


def check_host(header: str | None, allowed: frozenset[str]) -> None:
    if not header:
        raise RequestError(400, "MissingHost", "the request has no Host header (HTTP/1.1 requires one)")
    if header.lower() not in allowed:
        raise RequestError(403, "ForbiddenHost",
                           f"Host {header[:100]!r} is not this server's address ({', '.join(sorted(allowed))}); "
                           "serving a non-loopback address on purpose (a container)? start it with "
                           "--allow-any-host or DDCICD_ALLOW_ANY_HOST=1")


# ---------------------------------------------------------------------------- 2-3. type and body


def media_type(header: str | None) -> str:
    """'image/jpeg; q=1' -> 'image/jpeg' (lower case, parameters dropped)."""
    return (header or "").split(";", 1)[0].strip().lower()


def check_accept(header: str | None) -> None:
    """We only produce application/json; '*/*', 'application/*' or no header also accept it."""
    if not header:
        return
    offered = {media_type(part) for part in header.split(",")}
    if offered & ACCEPTABLE:
        return
    raise RequestError(406, "NotAcceptable", f"Accept {header!r} does not allow {JSON_TYPE}, the only response type")


async def read_body(request: web.Request, max_payload: int, timeout: float) -> bytes:
    """The whole body, refusing early when Content-Length is over the cap and counting bytes
    when it is absent (chunked uploads); a client stalling longer than `timeout` gets 408."""
    if request.content_length is not None and request.content_length > max_payload:
        raise RequestError(413, "PayloadTooLarge",
                           f"body of {request.content_length} bytes is over the limit of {max_payload}")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > max_payload:
                    raise RequestError(413, "PayloadTooLarge", f"body is over the limit of {max_payload} bytes")
                chunks.append(chunk)
    except TimeoutError as error:
        raise RequestError(408, "RequestTimeout", f"body not received within {timeout:g} s") from error
    if not size:
        raise RequestError(400, "EmptyBody", "request body is empty; send an image")
    return b"".join(chunks)


# ---------------------------------------------------------------------------- 4. JSON batches

_SHAPE = 'application/json body must be {"instances": ["<base64 image>", ...]} with at least one image'


def parse_instances(body: bytes, max_instances: int = DEFAULT_MAX_INSTANCES) -> list[bytes]:
    """{"instances": ["<base64>" or {"b64": "<base64>"}, ...]} -> image bytes. The whole shape
    is checked before any base64 is decoded; errors name the first bad entry."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(400, "InvalidJson", f"application/json body is not JSON: {error}") from error
    except RecursionError as error:  # the C parser's own guard against [[[[...]]]]
        raise RequestError(400, "InvalidJson", "application/json body is nested too deeply") from error
    instances = document.get("instances") if isinstance(document, dict) else None
    if not isinstance(instances, list) or not instances:
        raise RequestError(400, "InvalidJson", _SHAPE)
    if len(instances) > max_instances:
        raise RequestError(413, "TooManyInstances", f"{len(instances)} instances in one request; the limit is "
                                                    f"{max_instances}: send them in several requests")
    texts = [_instance_text(index, item) for index, item in enumerate(instances)]
    images = []
    for index, text in enumerate(texts):
        try:
            images.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError) as error:
            raise RequestError(400, "InvalidBase64", f"instances[{index}] is not valid base64: {error}") from error
    return images


def _instance_text(index: int, item: Any) -> str:
    if isinstance(item, dict):  # also {"b64": "..."}, the TF-Serving spelling
        if set(item) != {"b64"}:
            raise RequestError(400, "InvalidJson", f'instances[{index}] is an object without exactly one key "b64"')
        item = item["b64"]
    if not isinstance(item, str):
        raise RequestError(400, "InvalidJson", f"instances[{index}] is {type(item).__name__}, not a base64 string")
    if not item:
        raise RequestError(400, "InvalidJson", f"instances[{index}] is an empty string, not a base64 image")
    return item
