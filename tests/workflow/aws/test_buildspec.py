"""buildspec.yml runs only commands and options that exist, with settings the stack provides."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import yaml
from cfnlint.decode import decode

from workflow.cli import cli

ROOT = Path(__file__).resolve().parents[3]
BUILDSPEC = yaml.safe_load((ROOT / "buildspec.yml").read_text())
PROVIDED_BY_CODEBUILD = {"AWS_REGION"}


def build_commands() -> list[str]:
    return [command for phase in BUILDSPEC["phases"].values() for command in phase.get("commands", [])]


def ddcicd_invocations() -> list[list[str]]:
    found = []
    for command in build_commands():
        words = shlex.split(command)
        if words and Path(words[0]).name == "ddcicd":
            found.append(words[1:])
    return found


def resolve(arguments: list[str]) -> tuple[click.Command, list[str], str]:
    """Walk the group tree like click does: ['aws', 'deploy', '--x'] -> (deploy, ['--x'], 'aws deploy')."""
    command: click.Command = cli
    path: list[str] = []
    remaining = list(arguments)
    while isinstance(command, click.Group):
        assert remaining, f"buildspec calls the group `ddcicd {' '.join(path)}` without a subcommand"
        name = remaining.pop(0)
        child = command.get_command(click.Context(command), name)
        assert child is not None, f"buildspec runs `ddcicd {' '.join([*path, name])}`, which the CLI does not have"
        command, path = child, [*path, name]
    return command, remaining, " ".join(path)


def test_build_deploys_then_runs_and_waits() -> None:
    paths = [resolve(arguments)[2] for arguments in ddcicd_invocations()]
    assert paths == ["aws deploy", "aws start"]
    start = ddcicd_invocations()[1]
    assert "--wait" in start and "--summary-out" in start


def test_every_ddcicd_command_and_option_in_buildspec_parses() -> None:
    for arguments in ddcicd_invocations():
        command, options, path = resolve(arguments)
        try:
            command.make_context(f"ddcicd {path}", list(options))
        except click.UsageError as error:
            raise AssertionError(f"buildspec: `ddcicd {path}` does not accept {options}: {error}") from error


def test_artifacts_are_what_the_commands_write() -> None:
    written = {words[words.index(flag) + 1] for words in ddcicd_invocations() for flag in ("--definition-out", "--summary-out") if flag in words}
    assert set(BUILDSPEC["artifacts"]["files"]) == written


def test_make_targets_used_by_buildspec_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-zA-Z][\w-]*):", makefile, flags=re.MULTILINE))
    used = {shlex.split(command)[1] for command in build_commands() if command.startswith("make ")}
    assert used and used <= targets


def test_every_variable_buildspec_reads_is_set_by_the_codebuild_project() -> None:
    template, problems = decode(str(ROOT / "infra" / "pipeline.yaml"))
    assert not problems
    variables = template["Resources"]["BuildProject"]["Properties"]["Environment"]["EnvironmentVariables"]
    provided = {variable["Name"] for variable in variables} | PROVIDED_BY_CODEBUILD | set(BUILDSPEC["env"]["variables"])
    used = {name for command in build_commands() for name in re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", command)}
    assert used, "buildspec reads no settings from the environment"
    assert used <= provided, f"not set by infra/pipeline.yaml: {sorted(used - provided)}"
