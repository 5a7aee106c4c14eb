"""The Lambda zips: self-contained code, deterministic bytes, and (slow) a full build that runs."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from workflow.aws.packaging import build_zip, compatible_platforms
from workflow.contracts.functions import PACKAGES, handlers_of

CHECK = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])  # the unzipped package first, as in a Lambda's /var/task
names = sys.argv[2].split(",")
modules = {name: importlib.import_module(name).__file__ for name in names}
checks = {}
if "lambdas.load_test.app" in names:
    shard = {"endpoint_name": "e", "shards": 1, "duration_seconds": 1.0, "errors_by_kind": {},
             "slo": {"p99_ms": 10, "max_error_rate": 0}, "histogram": {"precision_bits": 8, "count": 1,
             "min": 900, "max": 900, "sum": 900, "buckets": [[228, 1]]}}
    checks["merged_requests"] = importlib.import_module("lambdas.load_test.app").merge_handler(
        {"shards": [shard, shard]})["requests"]
if "lambdas.evaluate.app" in names:
    from lambdas.evaluate.plot import confusion_matrix_png
    checks["png"] = confusion_matrix_png([[1, 0], [0, 1]], ["a", "b"], "t")[:4].hex()
if "lambdas.reaper.app" in names:
    from lambdas.reaper.reaping import staging_resources
    checks["staging"] = [resource.kind for resource in staging_resources(
        {"StagingEndpointName": "e", "StagingEndpointConfigName": "c", "ModelName": "m"})]
if "lambdas.submission.app" in names:
    from steps.batch_score import submission_csv
    checks["csv"] = submission_csv({"x.jpg": [1.0, 0.0]}, ["c0", "c1"]).splitlines()[0]
print(json.dumps({"modules": modules, "checks": checks}))
"""


def run_from(directory: Path, modules: str) -> dict:
    """Import `modules` in a fresh interpreter with `directory` first on sys.path (boto3 comes from this venv,
    standing in for the Lambda runtime's)."""
    completed = subprocess.run(
        [sys.executable, "-I", "-c", CHECK, str(directory), modules],
        capture_output=True, text=True, timeout=120, cwd=directory,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_code_only_zip_holds_our_modules_and_recordio_and_imports_without_the_repository(name: str, tmp_path: Path) -> None:
    path = build_zip(name, tmp_path, with_dependencies=False)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("lambda-package.json"))
        archive.extractall(tmp_path / "unzipped")
    assert {f"lambdas/{name}/app.py", "lambdas/storage.py", "steps/recordio.py", "steps/__init__.py"} <= names
    assert not any(entry.startswith(("workflow/", "tests/")) or "__pycache__" in entry for entry in names)
    assert manifest["handlers"] == list(handlers_of(name))
    if name == "evaluate":  # the other function's code stays out
        assert not any(entry.startswith("lambdas/load_test/") for entry in names)
    # the handler imports and runs with our modules from the zip, not the repository
    result = run_from(tmp_path / "unzipped", f"lambdas,steps.recordio,lambdas.{name}.app")
    assert all(str(tmp_path) in location for location in result["modules"].values()), result["modules"]
    expected = {"load_test": {"merged_requests": 2}, "evaluate": {"png": "89504e47"}, "submission": {"csv": "img,c0,c1"},
                "reaper": {"staging": ["endpoint", "endpoint-config", "model"]}}
    assert result["checks"] == expected[name]


def test_the_module_runs_as_a_command(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "workflow.aws.packaging", "--code-only", "--out-dir", str(tmp_path), "submission"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith(f"submission: {tmp_path / 'submission.zip'} ")
    assert completed.stderr == ""  # e.g. no RuntimeWarning about the module being imported twice


def test_zips_are_deterministic(tmp_path: Path) -> None:
    first = build_zip("load_test", tmp_path / "a", with_dependencies=False).read_bytes()
    second = build_zip("load_test", tmp_path / "b", with_dependencies=False).read_bytes()
    assert first == second


def test_unknown_function_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown Lambda 'train'"):
        build_zip("train", tmp_path)


def test_platform_tags_cover_older_glibc_wheels() -> None:
    tags = compatible_platforms("manylinux_2_34_x86_64")
    assert tags[0] == "manylinux_2_34_x86_64" and "manylinux2014_x86_64" in tags and "manylinux_2_5_x86_64" in tags
    assert "manylinux_2_35_x86_64" not in tags


@pytest.mark.slow
def test_full_zips_run_their_code_and_packages_from_the_zip_alone(tmp_path: Path) -> None:
    """Built for this machine's Python (3.11, glibc 2.28 wheels) so the zip can be executed here."""
    for name in PACKAGES:
        path = build_zip(name, tmp_path, python_version="3.11", platform="manylinux_2_28_x86_64")
        assert path.stat().st_size < 50 * 1024 * 1024  # Lambda's direct-upload limit
        with zipfile.ZipFile(path) as archive:
            assert sum(info.file_size for info in archive.infolist()) < 250 * 1024 * 1024  # unzipped limit
            assert not any(entry.startswith(("boto3/", "botocore/")) for entry in archive.namelist())
            archive.extractall(tmp_path / "all")
    modules = "lambdas.evaluate.app,lambdas.load_test.app,numpy,pydantic,pydantic_core,matplotlib,PIL,httptools,uvloop"
    result = run_from(tmp_path / "all", modules)
    assert all(str(tmp_path) in location for location in result["modules"].values()), result["modules"]
    assert result["checks"] == {"merged_requests": 2, "png": "89504e47"}
