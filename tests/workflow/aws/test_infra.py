"""infra/: cfn-lint finds nothing, and the roles allow what the deployed pipeline calls."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

from workflow.config import PipelineConfig
from workflow.definition import render_definition

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = sorted((ROOT / "infra").glob("*.yaml"))
CFN_LINT = Path(sys.executable).with_name("cfn-lint")
# API calls whose IAM actions have other names.
IAM_ACTIONS = {"s3:CopyObject": {"s3:GetObject", "s3:PutObject"}, "lambda:Invoke": {"lambda:InvokeFunction"}}


def test_cfn_lint_finds_nothing() -> None:
    assert TEMPLATES
    result = subprocess.run([str(CFN_LINT), *map(str, TEMPLATES)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def role_actions(template: dict[str, Any], role: str) -> set[str]:
    actions: set[str] = set()
    for policy in template["Resources"][role]["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow":
                listed = statement["Action"]
                actions.update([listed] if isinstance(listed, str) else listed)
    return actions


def test_state_machine_role_allows_every_task_the_definition_calls() -> None:
    """Each Task Resource (sagemaker:createTrainingJob.sync, aws-sdk:s3:getObject, lambda:invoke)
    needs its IAM action on the Step Functions role, and nothing is granted by wildcard."""
    template, _ = decode(str(TEMPLATES[0]))
    allowed = role_actions(template, "StepFunctionsRole")
    assert not any(action.endswith("*") for action in allowed)
    definition = render_definition(PipelineConfig(batch_score={"enabled": True}))
    needed = set()
    for resource in task_resources(definition):
        service, _, call = resource.removeprefix("arn:aws:states:::").removeprefix("aws-sdk:").partition(":")
        call = call.removesuffix(".sync")
        api = f"{service}:{call[0].upper()}{call[1:]}"
        needed |= IAM_ACTIONS.get(api, {api})
        if resource.endswith(".sync"):  # .sync polls Describe* and stops the job when the execution stops
            needed |= {f"sagemaker:Describe{call.removeprefix('create')}", f"sagemaker:Stop{call.removeprefix('create')}"}
    assert needed - allowed == set(), json.dumps(sorted(needed - allowed))


def task_resources(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if node.get("Type") == "Task":
            found.add(node["Resource"])
        for value in node.values():
            found |= task_resources(value)
    elif isinstance(node, list):
        for value in node:
            found |= task_resources(value)
    return found
