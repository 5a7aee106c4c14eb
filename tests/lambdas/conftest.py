"""Fixtures for the Lambda tests: a local S3 root with processed data, and a real HTTP runtime.

`runtime` is a real aiohttp server on 127.0.0.1 speaking the SageMaker Runtime API path
(`POST /endpoints/<name>/invocations`) with SageMaker's error replies. It stands in for the
serving engineer's local runtime router in fast tests. Its endpoints:

- `classifier`: decodes the PNG it is sent and answers the built-in algorithm's JSON list of
  probabilities, 0.7 on the class written in the image's pixels (see `encode_case`), the
  rest shared; pixel value 255 makes it fail with a 424 ModelError, like a crashing model;
- `fixed`: answers a fixed reply to anything (the load-test target);
- `slow`: sleeps `slow_seconds` before answering;
- `chunked`: the fixed reply with chunked transfer encoding;
- `closing`: the fixed reply, then closes the connection (`Connection: close`);
- any other name: 400 ValidationError "Endpoint ... not found", as SageMaker replies.

Unlike the real local router it checks SigV4 signatures (with the local dummy credentials):
a request whose bytes do not match what was signed gets 403 InvalidSignatureException, so
every test also proves that the load test's hand-built requests carry valid signatures.
"""
from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
from aiohttp import web

from steps import recordio

CLASSES = [f"c{index}" for index in range(10)]
FAILING_PIXEL = 255
BUCKET = "ddcicd-test"


def encode_case(predicted: int | None) -> bytes:
    """A tiny PNG whose pixels say which class the `classifier` endpoint predicts (None: it fails)."""
    value = FAILING_PIXEL if predicted is None else predicted * 10
    ok, buffer = cv2.imencode(".png", np.full((4, 4, 3), value, dtype=np.uint8))
    assert ok
    return buffer.tobytes()


def probabilities_for(predicted: int, class_count: int = len(CLASSES)) -> list[float]:
    rest = 0.3 / (class_count - 1)
    return [0.7 if index == predicted else rest for index in range(class_count)]


@dataclass
class Runtime:
    """Handle on the running server: its base URL and what it received."""

    url: str = ""
    requests: int = 0
    authorizations: list[str] = field(default_factory=list)
    slow_seconds: float = 2.0


RUNTIME_KEY = web.AppKey("runtime", Runtime)
LOCAL_SECRET = "ddcicd-local"  # lambdas.runtime.LOCAL_CREDENTIALS


def signature_matches(request: web.Request, body: bytes) -> bool:
    """Recompute the SigV4 signature of the received request, as AWS would, and compare."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    authorization = request.headers.get("Authorization", "")
    fields = dict(part.strip().split("=", 1) for part in authorization.removeprefix("AWS4-HMAC-SHA256 ").split(","))
    access_key, date, region, service, _ = fields["Credential"].split("/")
    signed = fields["SignedHeaders"].split(";")
    headers = {name: request.headers[name] for name in signed if name != "host"}
    url = f"http://{request.headers['Host']}{request.raw_path}"
    rebuilt = AWSRequest(method=request.method, url=url, data=body, headers=headers)
    rebuilt.context["timestamp"] = request.headers["X-Amz-Date"]
    auth = SigV4Auth(Credentials(access_key, LOCAL_SECRET), service, region)
    canonical = auth.canonical_request(rebuilt)
    return auth.signature(auth.string_to_sign(rebuilt, canonical), rebuilt) == fields["Signature"]


def _not_found(name: str) -> web.Response:
    body = {"message": f"Endpoint {name} of account 000000000000 not found."}
    return web.json_response(body, status=400, headers={"x-amzn-ErrorType": "ValidationError:"})


async def _invocations(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    name = request.match_info["name"]
    body = await request.read()
    runtime.requests += 1
    if len(runtime.authorizations) < 50:
        runtime.authorizations.append(request.headers.get("Authorization", ""))
    if not signature_matches(request, body):
        message = "The request signature we calculated does not match the signature you provided."
        return web.json_response({"message": message}, status=403, headers={"x-amzn-ErrorType": "InvalidSignatureException:"})
    if name == "fixed":
        return web.Response(body=b"[0.5, 0.5]", content_type="application/json")
    if name == "chunked":
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for piece in (b"[0.5,", b" 0.5]"):
            await response.write(piece)
        await response.write_eof()
        return response
    if name == "closing":
        response = web.Response(body=b"[0.5, 0.5]", content_type="application/json")
        response.force_close()
        return response
    if name == "slow":
        await asyncio.sleep(runtime.slow_seconds)
        return web.Response(body=b"[0.5, 0.5]", content_type="application/json")
    if name != "classifier":
        return _not_found(name)
    image = cv2.imdecode(np.frombuffer(body, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return web.json_response({"message": "cannot decode image"}, status=400, headers={"x-amzn-ErrorType": "ValidationError:"})
    pixel = int(image[0, 0, 0])
    if pixel == FAILING_PIXEL:
        body = {"ErrorCode": "CLIENT_ERROR_FROM_MODEL", "OriginalStatusCode": 500, "message": "model crashed"}
        return web.json_response(body, status=424, headers={"x-amzn-ErrorType": "ModelError:"})
    return web.json_response(probabilities_for(pixel // 10))


@pytest.fixture(scope="session")
def runtime_server() -> Iterator[Runtime]:
    """The server, on its own event loop in a daemon thread, for the whole session."""
    runtime = Runtime()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    app = web.Application()
    app[RUNTIME_KEY] = runtime
    app.router.add_post("/endpoints/{name}/invocations", _invocations)
    runner = web.AppRunner(app, access_log=None)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - the bound ephemeral port
        runtime.url = f"http://127.0.0.1:{port}"
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True, name="fake-runtime")
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    assert ready.wait(10)
    yield runtime
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


@pytest.fixture
def runtime(runtime_server: Runtime, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    """The server, with the environment pointing the handlers at it (as the local engine does)."""
    from lambdas import runtime as runtime_module

    monkeypatch.setenv("DDCICD_SAGEMAKER_RUNTIME_URL", runtime_server.url)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    runtime_module.session.cache_clear()
    runtime_module.sagemaker_runtime.cache_clear()
    runtime_server.requests = 0
    runtime_server.authorizations.clear()
    yield runtime_server
    runtime_module.session.cache_clear()
    runtime_module.sagemaker_runtime.cache_clear()


@pytest.fixture
def s3_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local S3 root (DDCICD_S3_ROOT), with the bucket directory created."""
    root = tmp_path / "s3"
    (root / BUCKET).mkdir(parents=True)
    monkeypatch.setenv("DDCICD_S3_ROOT", str(root))
    return root


def write_processed(root: Path, prefix: str, cases: list[tuple[int, int | None]], classes: list[str] = CLASSES) -> str:
    """Write manifest.json and validation.rec/.idx for (true label, predicted class or None) cases.

    Returns the data URI (s3://bucket/prefix).
    """
    directory = root / BUCKET / prefix
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_text(json.dumps({"classes": classes}))
    with recordio.IndexedRecordIO(str(directory / "validation.idx"), str(directory / "validation.rec"), "w") as writer:
        for key, (label, predicted) in enumerate(cases):
            writer.write_idx(key, recordio.pack(recordio.IRHeader(0, float(label), key, 0), encode_case(predicted)))
    return f"s3://{BUCKET}/{prefix}"


@dataclass(frozen=True)
class Kit:
    """The helpers above for test modules (importlib mode cannot import conftest by name)."""

    root: Path
    bucket: str = BUCKET
    classes: tuple[str, ...] = tuple(CLASSES)

    def encode_case(self, predicted: int | None) -> bytes:
        return encode_case(predicted)

    def probabilities_for(self, predicted: int) -> list[float]:
        return probabilities_for(predicted)

    def write_processed(self, cases: list[tuple[int, int | None]], prefix: str = "processed", classes: list[str] = CLASSES) -> str:
        return write_processed(self.root, prefix, cases, classes)

    def put(self, key: str, data: bytes) -> str:
        """Store an object in the local S3 root; returns its s3:// URI."""
        path = self.root / BUCKET / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return f"s3://{BUCKET}/{key}"


@pytest.fixture
def kit(s3_root: Path) -> Kit:
    return Kit(s3_root)
