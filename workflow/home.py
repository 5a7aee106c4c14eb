"""Where local state lives: `.ddcicd/` under the current directory, or $DDCICD_HOME.

The engine's store, the console and the pipeline all use this one convention.
"""
from __future__ import annotations

import os
from pathlib import Path


def ddcicd_home() -> Path:
    """The local state folder (not created here)."""
    return Path(os.environ.get("DDCICD_HOME", ".ddcicd")).resolve()


def engine_store_path() -> Path:
    """The local Step Functions engine's SQLite database."""
    return ddcicd_home() / "engine.sqlite3"
