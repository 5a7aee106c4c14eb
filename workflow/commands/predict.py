"""`ddcicd predict`: score a folder of images with a model archive into Kaggle's submission CSV."""
from __future__ import annotations

from pathlib import Path

import click

from workflow.errors import CliError, RunFailed


@click.command("predict")
@click.option("--model", type=click.Path(exists=True, path_type=Path), required=True, help="model.tar.gz (or its unpacked folder)")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True, help="e.g. imgs/test")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("submission.csv"), show_default=True)
@click.option("--sample-submission", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Row order; default: sample_submission.csv two folders above --images, if there.")  # fmt: skip
def predict(model: Path, images: Path, out: Path, sample_submission: Path | None) -> None:
    """Batch-score images into `img,c0,...,c9` probabilities (the Kaggle submission format)."""
    from steps.batch_score import image_files, score_folder, write_submission
    from steps.predictor import ModelArchiveError
    from workflow.run_view import progress_bar

    if not image_files(images):
        raise CliError(f"--images {images}: no .jpg, .jpeg or .png files")
    guess = images.parent.parent / "sample_submission.csv"
    order = sample_submission or (guess if guess.is_file() else None)
    try:
        with progress_bar("scoring") as progress:
            report = score_folder(model, images, progress)
        write_submission(report, out, order)
    except (ModelArchiveError, ValueError) as error:
        raise CliError(str(error)) from error
    click.echo(f"wrote {out}: {len(report.scored)} images scored" + (f" in {order.name} order" if order else ""))
    for name, reason in sorted(report.failed.items())[:20]:
        click.echo(f"  skipped {name}: {reason}", err=True)
    if report.failed:
        raise RunFailed(f"{len(report.failed)} images could not be scored (listed above; any of them in the sample order got uniform probabilities)")
