"""Local SageMaker models, endpoint configs and endpoints, with AWS's names and shapes.

    endpoints = LocalEndpoints()                      # state under ddcicd_home()/endpoints
    endpoints.create_model("m1", "model.tar.gz")
    endpoints.create_endpoint_config("c1", [{"VariantName": "AllTraffic", "ModelName": "m1",
                                             "InitialInstanceCount": 2}])
    endpoints.create_endpoint("staging", "c1")        # -> {"EndpointArn": ...}; Creating
    endpoints.describe_endpoint("staging")["EndpointStatus"]   # Creating ... InService
    url = ensure_runtime()                            # boto3 sagemaker-runtime endpoint_url

An endpoint is InitialInstanceCount real server processes (workflow/local/instances.py).
Its life, as DescribeEndpoint reports it:

    Creating --all instances answer /ping--> InService --update_endpoint--> Updating
      --new instances healthy, traffic moved, old ones stopped--> InService
    Creating --an instance exits or misses the deadline--> Failed (FailureReason)
    InService --an instance exits--> Failed (FailureReason names it and its log)
    Updating --new instances fail--> InService on the old config (FailureReason says why)
    any --delete_endpoint--> Deleting --> gone (describe raises ValidationError)

A model's PrimaryContainer.Image, when it names one, must be a serving image of
workflow/contracts/algorithms.py (or our own): an endpoint whose model names another image
(say a training-only one) fails to start, as it would on AWS.

Nothing runs in the background here: every describe/list (and the runtime router, every
half second) calls `refresh`, which moves endpoints along. State files are written
atomically, so the router reads them without a lock; changes take a file lock, so
several commands and the router can share one home.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from steps.atomic import write_atomically
from workflow.contracts.algorithms import serving_repositories
from workflow.home import ddcicd_home
from workflow.local.instances import (
    Instance,
    is_running,
    log_tail,
    ping,
    signal_instance,
    start_instance,
    stop_instances,
)
from workflow.local.fleet_metrics import read_metrics
from workflow.local.rollout import (DeploymentConfigError, advance, begin, finish, parse_deployment_config, pending_summary,
                                   roll_back, traffic)
from workflow.local.runtime import ensure_runtime, stop_runtime
from workflow.local.s3 import S3Root, S3UriError
from workflow.local.sagemaker_api import environment_region, runs_locally, sagemaker_arn

STARTUP_TIMEOUT = 120.0  # seconds for a new instance to answer /ping
DRAIN_SECONDS = 0.5  # old instances keep serving this long after traffic moved
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # SageMaker's constraint on model, config and endpoint names


class ValidationError(Exception):
    """The request names something missing or invalid; AWS answers these with ValidationException."""

    code = "ValidationException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def arn(kind: str, name: str) -> str:
    """The ARN SageMaker gives a model, endpoint config or endpoint, in the environment's region."""
    return sagemaker_arn(kind, name, environment_region())


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValidationError(f"{kind} name {name!r} must be 1-63 characters of a-z, A-Z, 0-9 and - "
                              "(not starting or ending with -)")


def _write_json(path: Path, document: dict[str, Any]) -> None:
    write_atomically(path, json.dumps(document, indent=1).encode(), fsync=False)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def resolve_local_uri(uri: str) -> Path:
    """ModelDataUrl -> a file: s3:// through the local S3 root (workflow/local/s3.py), file://
    URIs and plain paths as they are. Pass LocalEndpoints(resolve_uri=...) for anything else."""
    if uri.startswith("s3://"):
        try:
            return S3Root.default().path(uri)
        except S3UriError as error:
            raise ValidationError(f"ModelDataUrl {uri!r}: {error}") from error
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    elif "://" in uri:
        raise ValidationError(f"ModelDataUrl {uri!r} has a scheme local endpoints cannot read")
    return Path(uri).expanduser().resolve()


class LocalEndpoints:
    """The local SageMaker control plane for models, endpoint configs and endpoints."""

    def __init__(self, home: Path | None = None, resolve_uri: Callable[[str], Path] = resolve_local_uri,
                 startup_timeout: float = STARTUP_TIMEOUT, cpu_count: int | None = None) -> None:
        self.root = (home or ddcicd_home()) / "endpoints"
        self.resolve_uri = resolve_uri
        self.startup_timeout = startup_timeout
        self.cpu_count = cpu_count or len(os.sched_getaffinity(0))

    # ------------------------------------------------------------------ files and lock

    def _path(self, kind: str, name: str) -> Path:
        return self.root / kind / f"{name}.json"

    def state_path(self, endpoint_name: str) -> Path:
        """The endpoint's state file (read by the runtime router)."""
        return self._path("endpoints", endpoint_name)

    @property
    def metrics_directory(self) -> Path:
        """Where the runtime router writes per-fleet metrics (workflow/local/fleet_metrics.py)."""
        return self.root / "metrics"

    def has_endpoints(self) -> bool:
        """Whether any endpoint exists, without locking or refreshing (the router's idle check)."""
        return any((self.root / "endpoints").glob("*.json"))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ models

    def create_model(self, model_name: str, model_data_url: str | None = None,
                     primary_container: dict[str, Any] | None = None) -> dict[str, str]:
        """CreateModel: the model archive is PrimaryContainer.ModelDataUrl (or model_data_url)."""
        _check_name("Model", model_name)
        container = dict(primary_container or {})
        if model_data_url is not None:
            container["ModelDataUrl"] = model_data_url
        if not container.get("ModelDataUrl"):
            raise ValidationError(f"Model {model_name!r} needs PrimaryContainer.ModelDataUrl")
        with self._locked():
            path = self._path("models", model_name)
            if path.exists():
                raise ValidationError(f'Cannot create already existing model "{arn("model", model_name)}".')
            document = {"ModelName": model_name, "ModelArn": arn("model", model_name),
                        "PrimaryContainer": container, "CreationTime": _now()}
            _write_json(path, document)
        return {"ModelArn": document["ModelArn"]}

    def describe_model(self, model_name: str) -> dict[str, Any]:
        document = _read_json(self._path("models", model_name))
        if document is None:
            raise ValidationError(f'Could not find model "{arn("model", model_name)}".')
        return document

    def model_archive(self, model_name: str) -> Path:
        """The model's archive as a local file, once its image is one the local servers stand in for.

        Raises ValidationError naming the model otherwise: an endpoint then fails to start and a
        transform job fails, as they would on AWS.
        """
        model = self.describe_model(model_name)
        container = model["PrimaryContainer"]
        image = container.get("Image")
        if image and not runs_locally(image, serving_repositories()):
            raise ValidationError(f"image {image!r} of model {model_name!r} cannot serve it: local endpoints run "
                                  f"steps/serve.py for the serving images ({', '.join(sorted(serving_repositories()))})")  # fmt: skip
        path = self.resolve_uri(container["ModelDataUrl"])
        if not path.exists():
            raise ValidationError(f"ModelDataUrl {container['ModelDataUrl']!r} of model {model_name!r} does not exist ({path})")
        return path

    def delete_model(self, model_name: str) -> None:
        try:
            self._path("models", model_name).unlink()
        except FileNotFoundError:
            raise ValidationError(f'Could not find model "{arn("model", model_name)}".') from None

    # ------------------------------------------------------------------ endpoint configs

    def create_endpoint_config(self, endpoint_config_name: str,
                               production_variants: list[dict[str, Any]]) -> dict[str, str]:
        """CreateEndpointConfig: each variant names a model and its InitialInstanceCount."""
        _check_name("EndpointConfig", endpoint_config_name)
        if not production_variants:
            raise ValidationError(f"EndpointConfig {endpoint_config_name!r} needs at least one ProductionVariant")
        variants = []
        for index, variant in enumerate(production_variants):
            where = f"ProductionVariants[{index}]"
            self.describe_model(str(variant.get("ModelName")))
            count = variant.get("InitialInstanceCount", 1)
            if not isinstance(count, int) or not 1 <= count <= 16:
                raise ValidationError(f"{where}.InitialInstanceCount {count!r} must be an integer from 1 to 16")
            variants.append({"VariantName": variant.get("VariantName") or f"Variant{index + 1}",
                             "ModelName": variant["ModelName"], "InitialInstanceCount": count,
                             "InstanceType": variant.get("InstanceType", "local"),
                             "InitialVariantWeight": float(variant.get("InitialVariantWeight", 1.0))})
        with self._locked():
            path = self._path("configs", endpoint_config_name)
            if path.exists():
                raise ValidationError('Cannot create already existing endpoint configuration '
                                      f'"{arn("endpoint-config", endpoint_config_name)}".')
            document = {"EndpointConfigName": endpoint_config_name,
                        "EndpointConfigArn": arn("endpoint-config", endpoint_config_name),
                        "ProductionVariants": variants, "CreationTime": _now()}
            _write_json(path, document)
        return {"EndpointConfigArn": document["EndpointConfigArn"]}

    def describe_endpoint_config(self, endpoint_config_name: str) -> dict[str, Any]:
        document = _read_json(self._path("configs", endpoint_config_name))
        if document is None:
            raise ValidationError('Could not find endpoint configuration '
                                  f'"{arn("endpoint-config", endpoint_config_name)}".')
        return document

    def delete_endpoint_config(self, endpoint_config_name: str) -> None:
        try:
            self._path("configs", endpoint_config_name).unlink()
        except FileNotFoundError:
            raise ValidationError('Could not find endpoint configuration '
                                  f'"{arn("endpoint-config", endpoint_config_name)}".') from None

    # ------------------------------------------------------------------ endpoints

    def create_endpoint(self, endpoint_name: str, endpoint_config_name: str) -> dict[str, str]:
        """CreateEndpoint: starts the instances and returns at once, in Creating."""
        _check_name("Endpoint", endpoint_name)
        config = self.describe_endpoint_config(endpoint_config_name)
        with self._locked():
            if self.state_path(endpoint_name).exists():
                raise ValidationError(f'Cannot create already existing endpoint "{arn("endpoint", endpoint_name)}".')
            now = _now()
            state: dict[str, Any] = {
                "EndpointName": endpoint_name, "EndpointArn": arn("endpoint", endpoint_name),
                "EndpointConfigName": endpoint_config_name, "EndpointStatus": "Creating",
                "CreationTime": now, "LastModifiedTime": now, "instances": [], "draining": [],
                "pending": None,
            }
            _write_json(self.state_path(endpoint_name), state)  # visible as Creating at once
            try:
                state["pending"] = self._start_config(endpoint_name, config)
            except ValidationError as error:
                state.update(EndpointStatus="Failed", FailureReason=error.message)
            _write_json(self.state_path(endpoint_name), state)
            # Under the lock: a concurrent delete of the last endpoint cannot stop the router
            # between this endpoint appearing and the router being (re)started for it.
            ensure_runtime(self.root.parent)  # the router serves traffic and moves endpoints along on its timer
        return {"EndpointArn": state["EndpointArn"]}

    def update_endpoint(self, endpoint_name: str, endpoint_config_name: str,
                        deployment_config: dict[str, Any] | None = None) -> dict[str, str]:
        """UpdateEndpoint, blue/green: the new instances start beside the old ones, traffic
        moves only when all of them answer /ping, then the old ones drain and stop. With a
        DeploymentConfig, traffic moves in steps and alarms roll it back (workflow/local/rollout.py)."""
        config = self.describe_endpoint_config(endpoint_config_name)
        plan = None
        if deployment_config is not None:
            try:
                plan = parse_deployment_config(self.root.parent, deployment_config)
            except DeploymentConfigError as error:
                raise ValidationError(str(error)) from None
        with self._locked():
            state = self._load(endpoint_name)
            if state["EndpointStatus"] != "InService":
                raise ValidationError(f'Cannot update in-progress endpoint "{state["EndpointArn"]}" '
                                      f'(status {state["EndpointStatus"]}).')
            state.pop("FailureReason", None)
            state.update(EndpointStatus="Updating", LastModifiedTime=_now(),
                         pending=dict(self._start_config(endpoint_name, config), deployment=plan))
            if plan is not None:
                state["LastDeploymentConfig"] = deployment_config
            _write_json(self.state_path(endpoint_name), state)
        return {"EndpointArn": state["EndpointArn"]}

    def describe_endpoint(self, endpoint_name: str) -> dict[str, Any]:
        """DescribeEndpoint's response shape (after moving the endpoint along)."""
        with self._locked():
            state = self._refresh(self._load(endpoint_name))
        return self._describe(state)

    def traffic(self, endpoint_name: str, window: float = 60.0) -> dict[str, Any]:
        """The traffic split and each fleet's error rate and p99 (the router's metrics), and the last rollout."""
        state = self._load(endpoint_name)
        return {"Fleets": traffic(state, read_metrics(self.metrics_directory, endpoint_name), window),
                "LastRollout": state.get("LastRollout")}

    def list_endpoints(self) -> list[dict[str, Any]]:
        """DescribeEndpoint for every endpoint, sorted by name, each with its instances' URLs."""
        return [dict(self._describe(state), Instances=[
            {"InstanceId": item["instance_id"], "Pid": item["pid"], "Port": item["port"],
             "VariantName": item["variant"], "ModelName": item["model_name"]} for item in state["instances"]])
            for state in self.refresh_all()]

    def delete_endpoint(self, endpoint_name: str) -> None:
        """DeleteEndpoint: Deleting while the processes stop, then gone; deleting the last
        endpoint also stops the runtime router (the next create_endpoint starts it again)."""
        with self._locked():
            state = self._load(endpoint_name)
            state.update(EndpointStatus="Deleting", LastModifiedTime=_now())
            _write_json(self.state_path(endpoint_name), state)
        everything = [Instance.from_json(item) for item in state["instances"] + state["draining"]
                      + ((state["pending"] or {}).get("instances") or []) + (state.get("rollout") or {}).get("instances", [])]
        stop_instances(everything)
        with self._locked():
            self.state_path(endpoint_name).unlink(missing_ok=True)
            if not self.has_endpoints():
                stop_runtime(self.root.parent)  # nothing left to route to: no router left running either

    def shutdown(self) -> list[str]:
        """Delete every endpoint and stop the runtime router: test teardown, `make clean`-like
        resets. Returns the deleted endpoint names."""
        names = [state["EndpointName"] for state in self.refresh_all()]
        for name in names:
            try:
                self.delete_endpoint(name)
            except ValidationError:  # deleted meanwhile by someone else
                pass
        stop_runtime(self.root.parent)
        return names

    def refresh_all(self) -> list[dict[str, Any]]:
        """Move every endpoint along; returns their states (the router calls this on a timer)."""
        directory = self.root / "endpoints"
        states = []
        with self._locked():
            for path in sorted(directory.glob("*.json")) if directory.exists() else []:
                state = _read_json(path)
                if state is not None:
                    states.append(self._refresh(state))
        return states

    # ------------------------------------------------------------------ internals

    def _load(self, endpoint_name: str) -> dict[str, Any]:
        state = _read_json(self.state_path(endpoint_name))
        if state is None:
            raise ValidationError(f'Could not find endpoint "{arn("endpoint", endpoint_name)}".')
        return state

    @staticmethod
    def _describe(state: dict[str, Any]) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for item in state["instances"]:
            counts[item["variant"]] = counts.get(item["variant"], 0) + 1
        description = {key: state[key] for key in ("EndpointName", "EndpointArn", "EndpointConfigName",
                                                   "EndpointStatus", "CreationTime", "LastModifiedTime")}
        weights = state.get("weights") or {}
        share = 1 - (state["rollout"]["percent"] / 100 if state.get("rollout") else 0)  # the old fleet's, mid-rollout
        description["ProductionVariants"] = [{"VariantName": name, "CurrentInstanceCount": count, "DesiredInstanceCount": count,
                                              "CurrentWeight": round(weights.get(name, 1.0) * share, 4),
                                              "DesiredWeight": weights.get(name, 1.0)} for name, count in counts.items()]
        if state.get("FailureReason"):
            description["FailureReason"] = state["FailureReason"]
        summary = pending_summary(state)
        if summary is not None:
            description["PendingDeploymentSummary"] = summary
        if state.get("LastDeploymentConfig"):
            description["LastDeploymentConfig"] = state["LastDeploymentConfig"]
        return description

    def _start_config(self, endpoint_name: str, config: dict[str, Any]) -> dict[str, Any]:
        """Start every instance of every variant; returns the `pending` record."""
        variants = config["ProductionVariants"]
        total = sum(variant["InitialInstanceCount"] for variant in variants)
        workers = max(1, self.cpu_count // total)  # one single-threaded worker per core, across instances
        directory = self.root / "endpoints" / endpoint_name
        instances = []
        for variant in variants:
            model_path = self.model_archive(variant["ModelName"])
            environment = self.describe_model(variant["ModelName"])["PrimaryContainer"].get("Environment") or {}
            for _ in range(variant["InitialInstanceCount"]):
                instances.append(start_instance(directory, variant["VariantName"], variant["ModelName"],
                                                model_path, workers, environment=environment).to_json())
        return {"EndpointConfigName": config["EndpointConfigName"], "instances": instances,
                "weights": {variant["VariantName"]: variant["InitialVariantWeight"] for variant in variants},
                "deadline": time.time() + self.startup_timeout}

    def _refresh(self, state: dict[str, Any]) -> dict[str, Any]:
        """One step of the life cycle in the module docstring; writes the state if it changed."""
        before = json.dumps(state, sort_keys=True)
        status = state["EndpointStatus"]
        if status in ("Creating", "Updating") and state.get("pending"):
            self._advance_pending(state)
        if state.get("rollout"):
            exited = next((Instance.from_json(item) for item in state["rollout"]["instances"]
                           if not is_running(Instance.from_json(item))), None)
            if exited is not None:
                state["rollout"]["reason"] = f"instance {exited.instance_id} of the new fleet exited: {log_tail(exited)}"
            step = "rollback" if exited is not None else advance(state, self.metrics_directory)
            if step == "rollback":
                roll_back(state, DRAIN_SECONDS, _now())
            elif step == "finish":
                finish(state, DRAIN_SECONDS, _now())
        if state["draining"]:
            self._advance_draining(state)
        if state["EndpointStatus"] == "InService":
            for item in state["instances"]:
                instance = Instance.from_json(item)
                if not is_running(instance):
                    state.update(EndpointStatus="Failed", LastModifiedTime=_now(),
                                 FailureReason=f"instance {instance.instance_id} (pid {instance.pid}) of variant "
                                               f"{instance.variant} exited: {log_tail(instance)}")
                    break
        if json.dumps(state, sort_keys=True) != before:
            _write_json(self.state_path(state["EndpointName"]), state)
        return state

    def _advance_pending(self, state: dict[str, Any]) -> None:
        pending = state["pending"]
        instances = [Instance.from_json(item) for item in pending["instances"]]
        problem = None
        for instance in instances:
            if not is_running(instance):
                problem = f"instance {instance.instance_id} exited while starting: {log_tail(instance)}"
                break
        healthy = problem is None and all(ping(instance) for instance in instances)
        pending["instances"] = [instance.to_json() for instance in instances]  # ports learnt from ready files
        if problem is None and not healthy and time.time() > pending["deadline"]:
            problem = f"instances did not answer /ping within {self.startup_timeout:g} s"
        if problem is not None:
            stop_instances(instances, grace=2.0)
            state["pending"] = None
            if state["EndpointStatus"] == "Creating":
                state.update(EndpointStatus="Failed", FailureReason=problem, LastModifiedTime=_now())
            else:  # a failed update leaves the endpoint serving its old config, as on AWS
                state.update(EndpointStatus="InService", LastModifiedTime=_now(),
                             FailureReason=f"update to {pending['EndpointConfigName']} failed: {problem}")
            return
        if not healthy:
            return
        if pending.get("deployment"):
            begin(state, pending)  # the new fleet's first share; `advance` takes it from there
            return
        # Traffic moves here: the router sees the new instance list on its next request.
        state["draining"] = state["draining"] + state["instances"]
        state["drain_after"] = time.time() + DRAIN_SECONDS
        state.update(instances=pending["instances"], weights=pending["weights"],
                     EndpointConfigName=pending["EndpointConfigName"], pending=None, LastModifiedTime=_now())
        if not state["draining"]:
            state["EndpointStatus"] = "InService"

    def _advance_draining(self, state: dict[str, Any]) -> None:
        if time.time() < state.get("drain_after", 0):
            return
        draining = [Instance.from_json(item) for item in state["draining"]]
        for instance in draining:
            signal_instance(instance)  # SIGTERM: in-flight requests finish, then it exits
        state["draining"] = [instance.to_json() for instance in draining if is_running(instance)]
        if (not state["draining"] and state["EndpointStatus"] == "Updating" and not state.get("pending")
                and not state.get("rollout")):
            state.update(EndpointStatus="InService", LastModifiedTime=_now())

