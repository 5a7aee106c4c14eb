"""The local SageMaker Runtime, from the caller's side: find the router process, start or stop it.

    url = ensure_runtime()      # starts the router if it is not running; e.g. http://127.0.0.1:41234
    boto3.client("sagemaker-runtime", endpoint_url=url).invoke_endpoint(
        EndpointName="staging", ContentType="application/x-image", Body=jpeg_bytes)
    stop_runtime()              # endpoints keep running

The router itself (`python -m workflow.local.router`: InvokeEndpoint in front of every
local endpoint) is in router.py. Its address lives in <home>/runtime.json, written by the
router once it listens and read here; this module owns that record's format. It imports
nothing else of the local SageMaker, so endpoints.py can start the router when the first
endpoint is created without an import cycle.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from steps.atomic import write_atomically
from workflow.home import ddcicd_home

ROUTER_MODULE = "workflow.local.router"


def runtime_file(home: Path) -> Path:
    """{"pid", "port", "url"} of the running router."""
    return home / "runtime.json"


# ---------------------------------------------------------------------------- client side


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def runtime_url(home: Path | None = None) -> str | None:
    """The running router's URL, or None when none answers."""
    record = read_record(runtime_file(home or ddcicd_home()))
    if record and _healthy(record["url"]):
        return record["url"]
    return None


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_record(home: Path, record: dict[str, Any]) -> None:
    """The router announces itself (atomically: a reader never sees half a record)."""
    write_atomically(runtime_file(home), json.dumps(record).encode(), fsync=False)


def ensure_runtime(home: Path | None = None, port: int | None = None, timeout: float = 30.0) -> str:
    """Return the local runtime's URL, starting the router process first if needed.

    The port is $DDCICD_RUNTIME_PORT when set, else any free one (the URL is recorded).
    """
    home = home or ddcicd_home()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".runtime.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        url = runtime_url(home)
        if url:
            return url
        runtime_file(home).unlink(missing_ok=True)
        port = port if port is not None else int(os.environ.get("DDCICD_RUNTIME_PORT", "0"))
        command = [sys.executable, "-m", ROUTER_MODULE, "--home", str(home), "--port", str(port)]
        with open(home / "runtime.log", "ab") as out:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True, close_fds=True, env=_environment())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = read_record(runtime_file(home))
            if record and record.get("pid") == process.pid:
                return record["url"]
            if process.poll() is not None:
                break
            time.sleep(0.05)
        process.kill()
        tail = (home / "runtime.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"the local runtime did not start within {timeout:g} s: {' | '.join(tail)}")


def stop_runtime(home: Path | None = None) -> bool:
    """Stop the router (endpoints keep running); True if one was running."""
    path = runtime_file(home or ddcicd_home())
    record = read_record(path)
    path.unlink(missing_ok=True)
    if not record:
        return False
    try:
        os.kill(record["pid"], signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def _environment() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    existing = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not existing else f"{root}{os.pathsep}{existing}"}
