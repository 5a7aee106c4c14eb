"""`ddcicd train`: one local training job on a folder written by `ddcicd process`."""
from __future__ import annotations

from pathlib import Path

import click

from workflow.errors import CliError, RunFailed


def _parse_overrides(pairs: tuple[str, ...]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name.strip():
            raise CliError(f"--hp {pair!r} is not NAME=VALUE (e.g. --hp epochs=3)")
        overrides[name.strip()] = value.strip()
    return overrides


@click.command()
@click.option("--data", "data", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Processed folder: train/validation .rec/.idx and manifest.json.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for model.tar.gz, metrics.json, train.log (and job/ with checkpoints).")
@click.option("--hp", "hyperparameters", multiple=True, metavar="NAME=VALUE",
              help="A built-in Image Classification hyperparameter over the local defaults; repeatable.")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Input-pipeline processes [default: 2].")
@click.option("--quiet", is_flag=True, help="Do not echo the training log.")
def train(data: Path, out: Path, hyperparameters: tuple[str, ...], workers: int | None, quiet: bool) -> None:
    """Train the classifier as a local SageMaker-style training job.

    Running the same command again after an interruption resumes from OUT/job/checkpoints.
    """
    from workflow.config import DEFAULT_HYPERPARAMETERS
    from workflow.local.training_jobs import TrainingInputError, job_hyperparameters, train_local

    if not data.is_dir():
        raise CliError(f"--data {data} is not a directory")
    overrides = _parse_overrides(hyperparameters)
    try:
        values = job_hyperparameters(data, DEFAULT_HYPERPARAMETERS, overrides)
        result = train_local(data, out, values, echo=None if quiet else lambda line: click.echo(line, err=True),
                             workers=workers)  # fmt: skip
    except TrainingInputError as error:
        raise CliError(str(error)) from None
    if result.status != "Completed":
        reason = f"training failed: {result.failure_reason} (details in {out / 'train.log'})"
        raise CliError(reason) if result.client_error else RunFailed(reason)
    final = result.metrics["final"] if result.metrics else {}
    click.echo(
        f"wrote {result.model_artifact} (epoch {final.get('epoch')}: validation accuracy "
        f"{final.get('validation_accuracy', float('nan')):.4f}, log loss {final.get('validation_log_loss', float('nan')):.4f}) "
        f"and {out / 'metrics.json'}"
    )
