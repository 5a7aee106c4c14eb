"""`ddcicd data synth`: write a synthetic dataset in the Kaggle State Farm layout."""
from __future__ import annotations

import click

from workflow.commands._progress import terminal_progress
from workflow.errors import CliError

# mirrored from data.synth (importing it here would load OpenCV for `ddcicd --help`)
DEFAULT_IMAGES = 2600
DEFAULT_DRIVERS = 26
DEFAULT_TEST_IMAGES = 200


@click.group()
def data() -> None:
    """Datasets: generate the synthetic State Farm images."""


@data.command()
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder to write (created).")
@click.option("--images", default=DEFAULT_IMAGES, show_default=True, type=click.IntRange(min=1),
              help="Labelled training images (the real set has 22,424).")
@click.option("--drivers", default=DEFAULT_DRIVERS, show_default=True, type=click.IntRange(min=1),
              help="Drivers (subjects) in the training images.")
@click.option("--test-images", default=DEFAULT_TEST_IMAGES, show_default=True, type=click.IntRange(min=0),
              help="Unlabelled test images, of other drivers.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, byte-identical files.")
@click.option("--width", default=640, show_default=True, type=click.IntRange(min=32), help="Image width in pixels.")
@click.option("--height", default=480, show_default=True, type=click.IntRange(min=24), help="Image height in pixels.")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Processes [default: one per core].")
@click.option("--overwrite", is_flag=True, help="Replace OUT/imgs if it already holds images.")
def synth(out: str, images: int, drivers: int, test_images: int, seed: int, width: int, height: int,
          workers: int | None, overwrite: bool) -> None:
    """Write OUT/imgs/{train/c0..c9,test}, driver_imgs_list.csv and sample_submission.csv."""
    from data.synth import synthesize

    if drivers > images:
        raise CliError(f"--drivers {drivers} is more than --images {images}: every driver needs an image")
    try:
        with terminal_progress("rendering") as update:
            summary = synthesize(out, images, drivers, test_images, seed, width, height, workers, overwrite,
                                 progress=update)
    except (FileExistsError, ValueError) as error:
        raise CliError(str(error)) from None
    except OSError as error:  # e.g. an output folder that cannot be written
        raise CliError(f"cannot write the dataset to {out}: {error}") from None
    click.echo(f"wrote {summary.train_images} training images of {len(summary.drivers)} drivers and "
               f"{summary.test_images} test images of {summary.test_drivers} other drivers to {summary.out}")
