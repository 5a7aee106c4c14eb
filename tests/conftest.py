"""Shared fixtures: every test gets its own DDCICD_HOME so nothing leaks between tests."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("ddcicd-home")
    monkeypatch.setenv("DDCICD_HOME", str(home))
    return home
