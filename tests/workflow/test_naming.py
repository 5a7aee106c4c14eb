from datetime import datetime, timezone

import pytest

from workflow.config import load_config
from workflow.naming import MAX_EXECUTION_NAME, execution_input, new_execution_name


def test_execution_names_are_sortable_unique_and_short() -> None:
    config = load_config()
    moment = datetime(2026, 11, 24, 6, 15, 2, tzinfo=timezone.utc)
    first, second = new_execution_name(config, moment), new_execution_name(config, moment)
    assert first.startswith("ddcicd-20261124-061502-")
    assert first != second
    assert len(first) <= MAX_EXECUTION_NAME


def test_every_sagemaker_name_fits_63_characters() -> None:
    config = load_config(None, ["name=" + "x" * 64])
    name = new_execution_name(config)
    names = execution_input(config, name, "s3://b/raw")
    for key in ("ProcessingJobName", "TrainingJobName", "StagingEndpointName", "ProductionEndpointConfigName"):
        assert len(names[key] + "-r99") <= 63, key


def test_bad_execution_names_are_refused() -> None:
    with pytest.raises(ValueError, match="at most"):
        execution_input(load_config(), "has spaces", "s3://b/raw")
