"""The Lambda catalogue names real handlers in real packages."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from workflow.contracts.functions import FUNCTIONS, MAX_TIMEOUT_SECONDS, PACKAGES, handlers_of

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda function: function.key)
def test_every_function_names_a_callable_handler_in_its_package(function) -> None:  # noqa: ANN001
    assert function.package in PACKAGES
    assert function.module.startswith(f"lambdas.{function.package}.")
    handler = getattr(importlib.import_module(function.module), function.attribute)
    assert callable(handler)
    assert 128 <= function.memory_mb <= 10240 and 1 <= function.timeout_seconds <= MAX_TIMEOUT_SECONDS


def test_every_package_is_a_folder_of_lambdas_with_its_handlers() -> None:
    folders = {path.parent.name for path in (ROOT / "lambdas").glob("*/app.py")}
    assert set(PACKAGES) == folders
    assert handlers_of("load_test") == ("lambdas.load_test.app.handler", "lambdas.load_test.app.merge_handler")


def test_names_and_handler_spellings() -> None:
    merge = next(function for function in FUNCTIONS if function.key == "load_test_merge")
    assert merge.default_name == "ddcicd-load-test-merge"
    assert (merge.handler, merge.import_path) == ("lambdas.load_test.app.merge_handler", "lambdas.load_test.app:merge_handler")
    assert len({function.key for function in FUNCTIONS}) == len(FUNCTIONS)
