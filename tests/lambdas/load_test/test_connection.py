"""The load generator's HTTP connection: URL handling, and replies that are not plain keep-alive ones."""
from __future__ import annotations

from typing import Any

import pytest

from lambdas.load_test.app import handler
from lambdas.load_test.connection import Origin

SLO = {"p99_ms": 60_000, "max_error_rate": 0.0}


@pytest.mark.parametrize(
    ("url", "host_header", "port", "tls"),
    [
        ("https://runtime.sagemaker.eu-west-1.amazonaws.com/endpoints/x/invocations", "runtime.sagemaker.eu-west-1.amazonaws.com", 443, True),
        ("http://127.0.0.1:8080/endpoints/x/invocations", "127.0.0.1:8080", 8080, False),
        ("http://localhost:80/endpoints/x/invocations", "localhost", 80, False),
    ],
)
def test_origin_matches_the_host_sigv4_signs(url: str, host_header: str, port: int, tls: bool) -> None:
    origin = Origin.from_url(url)
    assert (origin.host_header, origin.port, origin.tls, origin.path) == (host_header, port, tls, "/endpoints/x/invocations")


def test_request_bytes_carry_signed_headers_and_the_length() -> None:
    request = Origin.from_url("http://h:1/p").request({"Authorization": "AWS4 x", "Content-Length": "999"}, b"body")
    assert request == b"POST /p HTTP/1.1\r\nHost: h:1\r\nAuthorization: AWS4 x\r\nContent-Length: 4\r\n\r\nbody"


def test_non_http_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="expected an http"):
        Origin.from_url("ftp://h/p")


@pytest.mark.parametrize("endpoint", ["chunked", "closing"])
def test_chunked_replies_and_server_closed_connections_still_succeed(runtime: Any, kit: Any, endpoint: str) -> None:
    uri = kit.put("payload.bin", b"x" * 100)
    result = handler({"endpoint_name": endpoint, "payload_uri": uri, "max_requests": 30, "concurrency": 3, "slo": SLO})
    assert result["successes"] == 30 and result["errors"] == 0


def test_the_runtime_rejects_a_request_whose_body_differs_from_the_signed_one(runtime: Any) -> None:
    """Guards the check every other test relies on: signatures are really verified."""
    import asyncio

    from lambdas.load_test.connection import Connection
    from lambdas.load_test.driver import ErrorClassifier, RequestSigner
    from lambdas.runtime import invocation_target

    target = invocation_target("fixed")
    origin = Origin.from_url(target.url)
    headers = RequestSigner(target, "application/x-image").sign(b"signed body")

    async def send(body: bytes) -> Any:
        replied: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        connection = await Connection.open(origin, None, 5.0, lambda reply, error: replied.set_result(reply or error))
        try:
            connection.send(origin.request(headers, body))
            return await asyncio.wait_for(replied, 5.0)
        finally:
            connection.close()

    assert asyncio.run(send(b"signed body")).status == 200
    tampered = asyncio.run(send(b"other body!"))
    assert tampered.status == 403
    assert ErrorClassifier(target).kind(tampered.status, tampered.headers, tampered.body) == "InvalidSignatureException"
