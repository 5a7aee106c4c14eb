"""The console under hostile input: every malformed request is a 4xx with a JSON error, every
response carries the browser-side defences, and the token URL is no redirect at all."""
from __future__ import annotations

import json
import socket
from typing import Any, Callable
from urllib.parse import quote

import pytest

from workflow.console.guard import PAGE_POLICY, REPORT_POLICY

TOKEN = "test-token-0123456789"  # conftest.TOKEN
Http = Callable[..., Any]
AUTH = {"X-Ddcicd-Token": TOKEN}


def _raw(base: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Bytes on the wire, for what http.client refuses to send (non-UTF-8 headers, bad JSON)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _request(base: str, method: str, path: bytes, headers: dict[str, bytes] | None = None, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    host = base.removeprefix("http://").encode()
    sent = {b"Host": host, b"Connection": b"close", **{key.encode(): value for key, value in (headers or {}).items()}}
    if body is not None:
        sent.setdefault(b"Content-Type", b"application/json")
        sent[b"Content-Length"] = str(len(body)).encode()
    head = b"".join(key + b": " + value + b"\r\n" for key, value in sent.items())
    return _raw(base, method.encode() + b" " + path + b" HTTP/1.1\r\n" + head + b"\r\n" + (body or b""))


def _error(status: int, headers: dict[str, str], body: bytes) -> str:
    assert headers["content-type"].startswith("application/json"), (status, headers, body[:200])
    return json.loads(body)["error"]


@pytest.mark.parametrize(("path", "status", "message"), [
    (b"/api/history?arn=x&after=abc", 400, "'after' must be a non-negative integer, not 'abc'"),
    (b"/api/history?arn=x&after=-1", 400, "'after' must be a non-negative integer"),
    (b"/api/history?arn=x&after=99999999999999999999999", 400, "'after' must be a non-negative integer"),
    (b"/api/history", 400, "missing query parameter 'arn'"),
    (b"/api/execution?arn=%00", 404, "does not exist"),
    (b"/api/execution?arn=%ff%fe", 404, "does not exist"),
    (b"/api/execution?arn=" + b"a" * 5000, 400, "longer than 2048 characters"),
    (b"/api/executions?status=NOPE", 400, "status must be one of"),
    (b"/api/executions?stateMachineArn=nope", 404, "does not exist"),
    (b"/api/graph", 400, "missing query parameter 'stateMachineArn'"),
    (b"/api/graph?arn=nope", 404, "does not exist"),
    (b"/api/state-machine", 400, "missing query parameter 'stateMachineArn'"),
    (b"/report", 400, "missing query parameter 'arn'"),
    (b"/report?arn=nope", 404, "does not exist"),
    (b"/nope", 404, "Not Found"),
    (b"/static/nope.js", 404, "no static file 'nope.js'"),
    (b"/static/../guard.py", 404, "Not Found"),
    (b"/static/%2e%2e/guard.py", 404, "Not Found"),
    (b"//evil.example/x?token=" + TOKEN.encode(), 404, "Not Found"),  # was a 302 to //evil.example/x
    (b"/?token=guess", 403, "wrong token"),
])  # fmt: skip
def test_malformed_reads_are_json_4xx(console: str, path: bytes, status: int, message: str) -> None:
    got, headers, body = _request(console, "GET", path)
    assert got == status and message in _error(got, headers, body), (got, body[:200])
    assert "location" not in headers


@pytest.mark.parametrize(("route", "body", "status", "message"), [
    ("/api/start", b"not json", 400, "request body is not JSON"),
    ("/api/start", b"\xff\xfe", 400, "request body is not UTF-8"),
    ("/api/start", b"[1, 2]", 400, "must be a JSON object, not list"),
    ("/api/start", b"{}", 400, "stateMachineArn is required"),
    ("/api/start", b'{"stateMachineArn": 5}', 400, "stateMachineArn must be a string, not int"),
    ("/api/start", b'{"stateMachineArn": "nope"}', 404, "does not exist"),
    ("/api/start", b'{"stateMachineArn": "nope", "name": 7}', 400, "name must be a string, not int"),
    ("/api/start", b'{"stateMachineArn": "x", "input": "{not json"}', 400, "execution input is not valid JSON"),
    ("/api/start", b"[" * 100_000 + b"]" * 100_000, 400, "request body is not JSON"),
    ("/api/start", b'{"stateMachineArn": "x", "input": "' + b"[" * 100_000 + b'"}', 400, "execution input is not valid JSON"),
    ("/api/start", b'{"a": "' + b"x" * 2_000_000 + b'"}', 413, "exceeded"),
    ("/api/start", b'{"a": ' + b"9" * 5000 + b"}", 400, "request body is not JSON"),
    ("/api/start", b'{"stateMachineArn": "' + b"a" * 3000 + b'"}', 400, "longer than 2048 characters"),
    ("/api/stop", b'{"arn": null}', 400, "arn is required"),
    ("/api/stop", b'{"arn": ["x"]}', 400, "arn must be a string, not list"),
    ("/api/stop", b'{"arn": "nope"}', 404, "does not exist"),
    ("/api/redrive", b'{"arn": "\\ud800"}', 400, "unpaired surrogates"),
    ("/api/redrive", b'{"arn": "a\\u0000b"}', 400, "control characters"),
    ("/api/redrive", b'{"arn": "nope"}', 404, "does not exist"),
    ("/api/nope", b"{}", 404, "Not Found"),
])  # fmt: skip
def test_malformed_actions_are_json_4xx(console: str, route: str, body: bytes, status: int, message: str) -> None:
    headers = {key: value.encode() for key, value in AUTH.items()}
    got, response_headers, answer = _request(console, "POST", route.encode(), headers, body)
    assert got == status and message in _error(got, response_headers, answer), (got, answer[:200])


@pytest.mark.parametrize(("headers", "status", "message"), [
    ({"X-Ddcicd-Token": b"\xff\xfe"}, 400, "X-Ddcicd-Token header is not ASCII"),
    ({"X-Ddcicd-Token": "é".encode("latin-1")}, 400, "X-Ddcicd-Token header is not ASCII"),
    ({"X-Ddcicd-Token": b"wrong"}, 403, "missing or wrong token"),
    ({"Cookie": b"ddcicd_token=" + TOKEN.encode()}, 403, "missing or wrong token"),  # cookies are not credentials
    ({"X-Ddcicd-Token": TOKEN.encode(), "Content-Type": b"text/plain"}, 415, "must be application/json"),
    ({"X-Ddcicd-Token": TOKEN.encode(), "Origin": b"http://127.0.0.1:1"}, 403, "cross-origin"),
    ({"X-Ddcicd-Token": TOKEN.encode(), "Sec-Fetch-Site": b"same-site"}, 403, "same-site page"),
])  # fmt: skip
def test_hostile_headers_on_an_action_are_json_4xx(setup: Any, console: str, fail: Callable[..., str], headers: dict[str, bytes], status: int, message: str) -> None:
    arn = fail()
    got, response_headers, body = _request(console, "POST", b"/api/redrive", headers, json.dumps({"arn": arn}).encode())
    assert got == status and message in _error(got, response_headers, body), (got, body)
    assert setup.engine.describe_execution(arn)["redriveCount"] == 0


def test_a_non_utf8_cookie_is_ignored_not_a_500(console: str) -> None:
    """Cookies for 127.0.0.1 may come from any other local service: the console reads none."""
    got, headers, body = _request(console, "GET", b"/api/session", {"Cookie": b"ddcicd_token=\xff\xfe; other=\x80"})
    assert got == 200 and json.loads(body) == {"actions": False}


def test_a_malformed_request_line_is_4xx(console: str) -> None:
    """Answered by aiohttp's parser before any console code runs: 400, but as text/plain."""
    got, _, _ = _raw(console, b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert got == 400
    got, _, _ = _raw(console, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-" + b"a" * 20_000 + b": 1\r\n\r\n")
    assert 400 <= got < 500


@pytest.mark.parametrize("path", ["/", "/api/session", "/static/console.js", "/nope", "/api/history?arn=x&after=abc"])
def test_every_response_carries_the_defences(console: str, http: Http, path: str) -> None:
    headers = http(console, "GET", path).headers
    assert headers["content-security-policy"] == PAGE_POLICY
    assert "frame-ancestors 'none'" in PAGE_POLICY and "'unsafe-inline'" not in PAGE_POLICY
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cross-origin-resource-policy"] == "same-origin"
    assert "set-cookie" not in headers


def test_the_run_report_is_sandboxed(console: str, http: Http, fail: Callable[..., str]) -> None:
    """Rendered from run data: no script may run in it and it has no origin, so no console rights."""
    reply = http(console, "GET", f"/report?arn={quote(fail())}")
    assert reply.status == 200
    policy = reply.headers["content-security-policy"]
    assert policy == REPORT_POLICY and policy.startswith("sandbox;") and "script-src" not in policy
    assert "allow-scripts" not in policy and "allow-same-origin" not in policy
    assert reply.headers["x-frame-options"] == "DENY"


def test_the_page_has_no_inline_script_or_style(console: str, http: Http) -> None:
    page = http(console, "GET", "/").body.decode()
    assert "<script>" not in page and "<style" not in page and " on" not in page.replace(" one", "")
    assert page.count("<script src=") == 2
