"""The Lambda functions of the pipeline: one catalogue every side reads.

    for function in FUNCTIONS:                      # evaluate, load_test, load_test_merge, submission, reaper
        function.key                                # config.lambdas.<key> holds its deployed name
        function.handler                            # "lambdas.evaluate.app.handler": Lambda's Handler setting
        function.import_path                        # "lambdas.evaluate.app:handler": the local engine's
    PACKAGES["load_test"].requirements               # what its zip needs besides our code

Read by workflow/config.py (the names' defaults), workflow/definition (the ARNs the Task
states call), workflow/aws/deploy.py (what `ddcicd aws deploy` creates), workflow/aws/packaging.py
(what goes in each zip) and workflow/local/services.py (what the local engine calls).
`ddcicd aws deploy` deploys every function listed here, so whatever the definition calls
in any configuration exists on AWS.
"""
from __future__ import annotations

from dataclasses import dataclass

RUNTIME = "python3.12"  # Lambda's runtime; the zips' wheels are built for it (see workflow/aws/packaging.py)
MAX_TIMEOUT_SECONDS = 900  # Lambda's limit


@dataclass(frozen=True)
class LambdaPackage:
    """One function folder under lambdas/, deployed as one zip (`<name>.zip`)."""

    name: str
    requirements: tuple[str, ...]  # top-level PyPI names; pip adds their dependencies. boto3 comes with the runtime.


@dataclass(frozen=True)
class LambdaFunction:
    """One deployed function: a handler in a package's zip, with its memory and timeout."""

    key: str  # the config field (config.lambdas.<key>) and the definition's name for it
    package: str  # a PACKAGES key
    module: str
    attribute: str
    memory_mb: int
    timeout_seconds: int = MAX_TIMEOUT_SECONDS
    # Its IAM role: "pipeline" (config aws.lambda_role_arn, the functions the state machine calls)
    # or "reaper" (config cleanup.reaper_role_arn: may delete staging endpoints, nothing else).
    role: str = "pipeline"
    # EventBridge rules (infra/pipeline.yaml) that invoke it, named `<config name>-<trigger>`;
    # `ddcicd aws deploy` lets each of them invoke the function.
    triggers: tuple[str, ...] = ()

    @property
    def default_name(self) -> str:
        """`ddcicd-load-test-merge` for load_test_merge."""
        return "ddcicd-" + self.key.replace("_", "-")

    @property
    def handler(self) -> str:
        """Lambda's Handler setting: `module.attribute`."""
        return f"{self.module}.{self.attribute}"

    @property
    def import_path(self) -> str:
        """The local engine's FunctionRegistry form: `module:attribute`."""
        return f"{self.module}:{self.attribute}"


PACKAGES: dict[str, LambdaPackage] = {
    package.name: package
    for package in (
        LambdaPackage("evaluate", ("pydantic", "numpy", "matplotlib")),
        LambdaPackage("load_test", ("pydantic", "numpy", "httptools", "uvloop")),
        LambdaPackage("submission", ("pydantic", "numpy")),
        LambdaPackage("reaper", ("pydantic",)),
    )
}

# Memory: evaluate decodes and plots (1.5 GB); a load-test shard mostly waits on sockets.
EVALUATE = LambdaFunction("evaluate", "evaluate", "lambdas.evaluate.app", "handler", memory_mb=1536)
LOAD_TEST = LambdaFunction("load_test", "load_test", "lambdas.load_test.app", "handler", memory_mb=1024)
LOAD_TEST_MERGE = LambdaFunction("load_test_merge", "load_test", "lambdas.load_test.app", "merge_handler", memory_mb=512)
# submission reads one small .out per test image and writes a CSV (called when batch_score.enabled).
SUBMISSION = LambdaFunction("submission", "submission", "lambdas.submission.app", "handler", memory_mb=512)
# reaper: EventBridge calls it, not the state machine, when a run faults and hourly (lambdas/reaper/app.py).
REAPER = LambdaFunction("reaper", "reaper", "lambdas.reaper.app", "handler", memory_mb=256, timeout_seconds=300,
                        role="reaper", triggers=("reaper-on-fault", "reaper-hourly"))
FUNCTIONS: tuple[LambdaFunction, ...] = (EVALUATE, LOAD_TEST, LOAD_TEST_MERGE, SUBMISSION, REAPER)


def handlers_of(package: str) -> tuple[str, ...]:
    """The Handler settings deployed from one zip, in catalogue order."""
    return tuple(function.handler for function in FUNCTIONS if function.package == package)
