"""The local engine with every AWS stand-in plugged in: what `ddcicd run`, `redrive` and the console use.

    engine = local_engine(config)      # $DDCICD_HOME/engine.sqlite3, SageMaker + S3 + Lambdas local

One factory, so an execution started by `ddcicd run` can be redriven by `ddcicd redrive`
or the console with exactly the same integrations behind its Task states:

    arn:aws:states:::lambda:invoke                      the catalogue's handlers (workflow/contracts/functions.py)
    arn:aws:states:::sagemaker:create*Job[.sync]        sagemaker_jobs.py
    arn:aws:states:::sagemaker:createModel, ...         sagemaker_control.py (over endpoints.py)
    arn:aws:states:::aws-sdk:s3:copyObject, ...         s3_integration.py
    arn:aws:states:::sns:publish[.waitForTaskToken]      sns_integration.py ($DDCICD_HOME/sns/<topic>/)
    arn:aws:states:::aws-sdk:sagemaker:*ModelPackage*    model_registry.py ($DDCICD_HOME/model_registry.sqlite3)
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable

from lambdas.runtime import RUNTIME_URL_VARIABLE  # the variable the handlers read the router's URL from
from workflow.config import PipelineConfig, load_config
from workflow.contracts.functions import FUNCTIONS
from workflow.engine import Engine, FunctionRegistry, JobIntegration
from workflow.home import ddcicd_home
from workflow.local.endpoints import LocalEndpoints
from workflow.local.runtime import ensure_runtime
from workflow.local.model_registry import SDK_ACTIONS as REGISTRY_ACTIONS
from workflow.local.model_registry import ModelRegistry, ModelRegistryIntegration
from workflow.local.s3 import S3_ROOT_VARIABLE, S3Root
from workflow.local.s3_integration import ACTIONS as S3_ACTIONS
from workflow.local.s3_integration import S3Integration
from workflow.local.sagemaker_api import ACCOUNT
from workflow.local.sagemaker_control import OPTIMIZED_ACTIONS, SDK_ACTIONS, SageMakerControlPlane
from workflow.local.sagemaker_jobs import ProcessingJobs, TrainingJobs, TransformJobs
from workflow.local.sns_integration import SnsIntegration


def _with_local_environment(handler_path: str, s3: S3Root) -> Callable[[Any, Any], Any]:
    """Run a handler as the local 'Lambda runtime' would: S3 root and runtime URL in its environment.

    The runtime router stops when idle, so its URL is looked up (and the router started)
    on every invocation rather than once.
    """
    module_name, _, attribute = handler_path.partition(":")

    def invoke(event: Any, context: Any) -> Any:
        os.environ[S3_ROOT_VARIABLE] = str(s3.directory)
        os.environ[RUNTIME_URL_VARIABLE] = ensure_runtime()
        handler = getattr(importlib.import_module(module_name), attribute)
        return handler(event, context)

    invoke.__name__ = attribute
    return invoke


def local_functions(config: PipelineConfig, s3: S3Root) -> FunctionRegistry:
    """Every function of the catalogue under its configured name, as `ddcicd aws deploy` creates them."""
    return FunctionRegistry(
        {config.lambdas.name_of(function): _with_local_environment(function.import_path, s3) for function in FUNCTIONS},
        region=config.aws.region,
        account=ACCOUNT,
    )


def register_local_aws(registry: Any, s3: S3Root | None = None, home: Path | None = None) -> None:
    """Registers every local AWS integration the pipeline uses on an engine's registry."""
    s3 = s3 or S3Root.default()
    endpoints = LocalEndpoints(home, resolve_uri=s3.path)
    control = SageMakerControlPlane(endpoints)
    for action in OPTIMIZED_ACTIONS:
        registry.register(rf"arn:[^:]+:states:::sagemaker:{action}", control, label=f"arn:aws:states:::sagemaker:{action}")
    for action in SDK_ACTIONS:
        registry.register(rf"arn:[^:]+:states:::aws-sdk:sagemaker:{action}", control,
                          label=f"arn:aws:states:::aws-sdk:sagemaker:{action}")  # fmt: skip
    registry.register(rf"arn:[^:]+:states:::aws-sdk:sagemaker:({'|'.join(REGISTRY_ACTIONS)})",
                      ModelRegistryIntegration(ModelRegistry.default(home)),
                      label="arn:aws:states:::aws-sdk:sagemaker:*ModelPackage*")  # fmt: skip
    registry.register(rf"arn:[^:]+:states:::aws-sdk:s3:({'|'.join(S3_ACTIONS)})", S3Integration(s3),
                      label=f"arn:aws:states:::aws-sdk:s3:{'|'.join(S3_ACTIONS)}")  # fmt: skip
    registry.register(r"arn:[^:]+:states:::sns:publish(\.waitForTaskToken)?", SnsIntegration(home or ddcicd_home()),
                      label="arn:aws:states:::sns:publish[.waitForTaskToken]")  # fmt: skip
    jobs = {"createProcessingJob": ProcessingJobs(s3, home), "createTrainingJob": TrainingJobs(s3, home),
            "createTransformJob": TransformJobs(s3, endpoints, home)}  # fmt: skip
    for action, adapter in jobs.items():
        registry.register(rf"arn:[^:]+:states:::sagemaker:{action}(\.sync)?", JobIntegration(adapter),
                          label=f"arn:aws:states:::sagemaker:{action}[.sync]")  # fmt: skip


def local_engine(config: PipelineConfig | None = None, **engine_options: Any) -> Engine:
    """The engine over $DDCICD_HOME/engine.sqlite3 with local SageMaker, S3 and Lambda."""
    config = config or load_config()
    home = ddcicd_home()
    home.mkdir(parents=True, exist_ok=True)
    s3 = S3Root.default()
    engine = Engine(
        home / "engine.sqlite3",
        functions=local_functions(config, s3),
        region=config.aws.region,
        account=ACCOUNT,
        **engine_options,
    )
    register_local_aws(engine.integrations, s3, home)
    return engine
