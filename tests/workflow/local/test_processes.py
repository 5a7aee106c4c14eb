"""Nothing left running: a home's router, endpoint servers and job supervisors are real
processes, stopped by stop_all, by deleting the last endpoint, or by removing the home."""
from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from steps.export import export_model_archive
from steps.model import ResNet, ResNetConfig
from workflow.local.endpoints import LocalEndpoints
from workflow.local.instances import Instance, is_running
from workflow.local.jobs import JobSpec, JobStore
from workflow.local.processes import find_processes, stop_all
from workflow.local.runtime import ensure_runtime, read_record, runtime_file
from workflow.local.s3 import S3Root

NOTICE_SECONDS = 5.0  # "notices within a few seconds": the router checks every 1 s, servers every 2 s


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_model_archive(ResNet(ResNetConfig(num_layers=20, num_classes=4)), tmp_path_factory.mktemp("model"), (3, 32, 32))


@pytest.fixture()
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    yield home
    stop_all(home, grace=2.0)  # whatever a failing test left behind


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    """The pids still alive after `seconds` (an empty list: all exited in time)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if _alive(pid)]


def _deploy(endpoints: LocalEndpoints, name: str, model: Path) -> list[Instance]:
    endpoints.create_model(f"{name}-model", str(model))
    endpoints.create_endpoint_config(f"{name}-config", [{"VariantName": "AllTraffic", "ModelName": f"{name}-model",
                                                         "InitialInstanceCount": 1}])
    endpoints.create_endpoint(name, f"{name}-config")
    deadline = time.monotonic() + 60
    while endpoints.describe_endpoint(name)["EndpointStatus"] == "Creating" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert endpoints.describe_endpoint(name)["EndpointStatus"] == "InService"
    state = json.loads(endpoints.state_path(name).read_text())
    return [Instance.from_json(item) for item in state["instances"]]


def _router_pid(home: Path) -> int:
    record = read_record(runtime_file(home))
    assert record is not None, "no router record"
    return int(record["pid"])


def _long_job(home: Path, name: str) -> tuple[JobStore, int]:
    """A running training job (its process sleeps); returns the store and the job's pid."""
    store = JobStore("training", home, S3Root(home / "s3"))
    store.reserve(name, {"TrainingJobName": name})
    store.launch(name, JobSpec(command=[sys.executable, "-c", "import time; time.sleep(120)"]))
    deadline = time.monotonic() + 30
    while not store.status(name).get("pid") and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = store.status(name).get("pid")
    assert pid, store.status(name)
    return store, int(pid)


def test_stop_all_stops_router_endpoints_including_production_and_jobs(home: Path, model: Path) -> None:
    endpoints = LocalEndpoints(home, cpu_count=2)
    staging = _deploy(endpoints, "staging", model)
    production = _deploy(endpoints, "production", model)
    store, job_pid = _long_job(home, "train-1")
    router = _router_pid(home)
    supervisor = int((store.directory("train-1") / "supervisor.pid").read_text())

    stopped = stop_all(home, grace=10.0)

    assert f"runtime router (pid {router})" in stopped
    for name, instances in (("staging", staging), ("production", production)):
        assert f"endpoint {name} instance {instances[0].instance_id} (pid {instances[0].pid})" in stopped
    assert f"training job train-1 supervisor (pid {supervisor})" in stopped
    assert f"training job train-1 process group (pid {job_pid})" in stopped
    assert stopped[-1].startswith("runtime router")  # jobs and servers first, the router last
    assert _gone_within([router, supervisor, job_pid, staging[0].pid, production[0].pid], 2.0) == []
    assert find_processes(home) == []
    assert store.status("train-1")["status"] == "Stopped"  # the supervisor passed SIGTERM on to its job
    assert endpoints.describe_endpoint("production")["EndpointStatus"] == "Failed"  # state kept, says why
    assert read_record(runtime_file(home)) is None  # no dead address left for the next command
    assert stop_all(home) == []


def test_stop_all_leaves_another_homes_processes_alone(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-home"
    ensure_runtime(other)
    ensure_runtime(home)
    other_router, own_router = _router_pid(other), _router_pid(home)
    try:
        assert stop_all(home) == [f"runtime router (pid {own_router})"]
        assert _alive(other_router)
    finally:
        assert stop_all(other) == [f"runtime router (pid {other_router})"]


def test_deleting_the_last_endpoint_stops_the_router(home: Path, model: Path) -> None:
    endpoints = LocalEndpoints(home, cpu_count=2)
    _deploy(endpoints, "first", model)
    _deploy(endpoints, "second", model)
    router = _router_pid(home)
    endpoints.delete_endpoint("first")
    assert _alive(router) and _router_pid(home) == router  # still one endpoint to route to
    endpoints.delete_endpoint("second")
    assert _gone_within([router], NOTICE_SECONDS) == []
    assert read_record(runtime_file(home)) is None
    assert find_processes(home) == []


def test_removing_the_home_ends_its_router_and_servers(home: Path, model: Path) -> None:
    endpoints = LocalEndpoints(home, cpu_count=2)
    instances = _deploy(endpoints, "staging", model)
    router = _router_pid(home)
    assert all(is_running(instance) for instance in instances)
    shutil.rmtree(home)  # the README's reset: rm -rf .ddcicd
    started = time.monotonic()
    assert _gone_within([router, *(instance.pid for instance in instances)], NOTICE_SECONDS) == []
    print(f"router and server exited {time.monotonic() - started:.1f} s after the home was removed")


def test_stop_all_finds_a_job_whose_home_was_removed(home: Path) -> None:
    """Supervisors do not watch the home, so after `rm -rf` only stop_all can reach them: it
    finds them by command line, not by the (gone) state files."""
    store, job_pid = _long_job(home, "orphaned")
    supervisor = int((store.directory("orphaned") / "supervisor.pid").read_text())
    shutil.rmtree(home)
    stopped = stop_all(home, grace=5.0)
    assert f"training job orphaned supervisor (pid {supervisor})" in stopped
    assert _gone_within([supervisor, job_pid], 5.0) == []
