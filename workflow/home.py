"""Where local state lives: executions, endpoints, the local S3 root.

One directory for everything a local run leaves behind, so `rm -rf .ddcicd` resets it and
tests point DDCICD_HOME at a temporary directory to stay isolated.
"""
from __future__ import annotations

import os
from pathlib import Path


def ddcicd_home() -> Path:
    """$DDCICD_HOME, else ./.ddcicd (relative to the working directory), as an absolute path."""
    return Path(os.environ.get("DDCICD_HOME", ".ddcicd")).expanduser().resolve()


def engine_store_path() -> Path:
    """The local Step Functions engine's SQLite database: $DDCICD_HOME/engine.sqlite3."""
    return ddcicd_home() / "engine.sqlite3"
