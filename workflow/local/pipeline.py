"""The main job on the local engine: dataset -> local S3 -> state machine -> execution.

    run = start_pipeline(config, data=None)      # synthesises the default dataset if needed
    engine.wait(run.execution_arn)

Separate from the CLI so the console, the tests and `ddcicd run` start runs the same way.
What is staged where mirrors `ddcicd aws upload-data` and `ddcicd aws deploy`: the raw
dataset under s3://<bucket>/<prefix>/datasets/<name>/, the job code under
s3://<bucket>/<prefix>/code/ (the processing job imports `steps` from there, as the
SageMaker Processing container does).
"""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from workflow.config import PipelineConfig
from workflow.engine import Engine
from workflow.home import ddcicd_home
from workflow.local.alarms import put_rollout_alarms
from workflow.local.s3 import S3Root
from workflow.naming import execution_input, new_execution_name
from workflow.reaping import reap_before_new_run
from workflow.run_record import Outcome

STEPS_PACKAGE = Path(__file__).resolve().parents[2] / "steps"
DATASET_MARKERS = ("driver_imgs_list.csv", "sample_submission.csv")  # written last by data.synth


class DatasetError(ValueError):
    """The dataset folder is not in the Kaggle layout."""


@dataclass(frozen=True)
class StartedRun:
    execution_arn: str
    execution_name: str
    state_machine_arn: str
    input: dict[str, str]
    dataset: Path


def default_dataset(config: PipelineConfig, progress: Callable[[int, int], None] | None = None) -> Path:
    """The synthetic dataset for this config, rendered once and reused (keyed by its settings)."""
    settings = config.data
    folder = ddcicd_home() / "datasets" / (
        f"synthetic-{settings.images}img-{settings.drivers}drv-{settings.test_images}test-seed{settings.seed}"
    )
    if all((folder / marker).exists() for marker in DATASET_MARKERS):
        return folder
    from data.synth import synthesize

    synthesize(folder, images=settings.images, drivers=settings.drivers, test_images=settings.test_images,
               seed=settings.seed, overwrite=True, progress=progress)  # fmt: skip
    return folder


def check_dataset(folder: Path) -> None:
    if not (folder / "imgs" / "train").is_dir():
        raise DatasetError(f"{folder} has no imgs/train folder: expected the Kaggle layout (imgs/train/c0..c9)")


def stage_dataset(s3: S3Root, config: PipelineConfig, folder: Path) -> str:
    """Links the dataset into the local S3 root (no copy); returns its s3:// prefix."""
    digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:8]
    uri = f"s3://{config.aws.bucket}/{config.aws.prefix}/datasets/{folder.name}-{digest}/"
    target = s3.path(uri)
    for source in sorted(path for path in folder.rglob("*") if path.is_file() and not path.name.startswith(".")):
        destination = target / source.relative_to(folder)
        if destination.exists() and destination.stat().st_size == source.stat().st_size:
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            destination.unlink(missing_ok=True)
            destination.hardlink_to(source)
        except OSError:
            shutil.copyfile(source, destination)
    return uri


def stage_code(s3: S3Root, config: PipelineConfig) -> str:
    """Copies steps/ under the code prefix, as `ddcicd aws deploy` uploads it."""
    uri = f"s3://{config.aws.bucket}/{config.aws.prefix}/code/"
    for source in sorted(STEPS_PACKAGE.glob("*.py")):
        s3.put_file(source, f"{uri}steps/{source.name}")
    return uri


def start_pipeline(engine: Engine, config: PipelineConfig, data: Path | None = None,
                   progress: Callable[[int, int], None] | None = None) -> StartedRun:
    """Registers (or updates) the definition and starts an execution in the background."""
    from workflow.definition import render_definition

    folder = Path(data) if data is not None else default_dataset(config, progress)
    check_dataset(folder)
    s3 = S3Root.default()
    raw_uri = stage_dataset(s3, config, folder)
    stage_code(s3, config)
    definition = render_definition(config)
    put_rollout_alarms(ddcicd_home(), config)  # the alarms a guarded promotion names, as the stack makes them on AWS
    state_machine_arn = engine.create_state_machine(config.name, definition, role_arn=config.aws.stepfunctions_role_arn)
    reap_before_new_run(engine, state_machine_arn, config)  # abandoned faulted runs lose their staging resources
    name = new_execution_name(config)
    run_input = execution_input(config, name, raw_uri)
    execution_arn = engine.start_execution(state_machine_arn, run_input, name=name)
    return StartedRun(execution_arn, name, state_machine_arn, run_input, folder)



def kept_locally(outcome: Outcome, home: Path | None = None) -> list[str]:
    """Which of a faulted run's staging resources still exist on the local control plane, each
    described as its summary shows it (the endpoint with what it would cost per hour on AWS)."""
    from workflow.local.endpoints import LocalEndpoints, ValidationError
    from workflow.pricing import hourly_cost

    endpoints = LocalEndpoints(home)
    kept = []
    for kind, name in outcome.staging:
        try:
            if kind == "endpoint":
                status = endpoints.describe_endpoint(name)
                variants = endpoints.describe_endpoint_config(status["EndpointConfigName"])["ProductionVariants"]
                sizes = ", ".join(f"{variant['InitialInstanceCount']} x {variant['InstanceType']}" for variant in variants)
                costs = [hourly_cost(variant["InstanceType"], variant["InitialInstanceCount"]) for variant in variants]
                price = f"${sum(costs):.3f}/h on AWS" if None not in costs else "no price for this instance type"
                kept.append(f"staging endpoint {name} ({status['EndpointStatus']}; {sizes}: {price}, free locally)")
            elif kind == "endpoint config":
                endpoints.describe_endpoint_config(name)
                kept.append(f"endpoint config {name}")
            else:
                endpoints.describe_model(name)
                kept.append(f"model {name}")
        except ValidationError:  # not made before the fault, or deleted since
            continue
    return kept
