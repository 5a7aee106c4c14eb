"""Injected API errors for the local stand-ins, in the manner of AWS FIS's `aws:fis:inject-api-*-error` actions.

An experiment is a file under the ddcicd home naming a service, the API operations it
affects and the error they answer with, until the file is removed:

    $DDCICD_HOME/fis/sagemaker.json   {"operations": ["CreateEndpoint"], "fault": "throttle"}

    start_experiment(home, "sagemaker", ["UpdateEndpoint"], "internal")
    stop_experiment(home, "sagemaker")

It is how to see what the pipeline does when AWS refuses a call (the fault matrix in
tests/workflow/local uses it): the engine gets the same error name and cause shape the
Step Functions integration would report, retries it with the state's Retry policy and,
once the retries are spent, the execution stops at that Task, ready to be redriven.
"""
from __future__ import annotations

import json
from pathlib import Path

from steps.atomic import write_atomically

# fault -> (error code, message), as AWS FIS's throttle / internal / unavailable API actions answer
FAULTS = {
    "throttle": ("ThrottlingException", "Rate exceeded"),
    "internal": ("InternalFailure", "The request processing has failed because of an unknown error."),
    "unavailable": ("ServiceUnavailable", "The service is unavailable. Please try again later."),
}


class ExperimentError(ValueError):
    """An experiment file that cannot be used; the message names the file."""


def _path(home: Path, service: str) -> Path:
    return Path(home) / "fis" / f"{service}.json"


def start_experiment(home: Path, service: str, operations: list[str], fault: str) -> Path:
    """Makes `operations` (API names, e.g. CreateEndpoint) of `service` answer with `fault`."""
    if fault not in FAULTS:
        raise ExperimentError(f"fault {fault!r} is not one of {', '.join(FAULTS)}")
    path = _path(home, service)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps({"operations": list(operations), "fault": fault}).encode(), fsync=False)
    return path


def stop_experiment(home: Path, service: str) -> None:
    _path(home, service).unlink(missing_ok=True)


def injected_fault(home: Path, service: str, operation: str) -> tuple[str, str] | None:
    """(error code, message) when a running experiment affects `operation`, else None."""
    path = _path(home, service)
    try:
        experiment = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as error:
        raise ExperimentError(f"{path} is not JSON: {error}") from error
    if not isinstance(experiment, dict) or experiment.get("fault") not in FAULTS:
        raise ExperimentError(f"{path}: expected {{\"operations\": [...], \"fault\": one of {', '.join(FAULTS)}}}")
    if operation in (experiment.get("operations") or []):
        return FAULTS[experiment["fault"]]
    return None
