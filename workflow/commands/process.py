"""`ddcicd process`: the processing step on this machine (steps/process.py with a progress bar)."""
from __future__ import annotations

import click

from workflow.commands._progress import terminal_progress
from workflow.errors import CliError


@click.command()
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False),
              help="Input: Kaggle layout (imgs/train/c0..c9 + driver_imgs_list.csv) or class folders.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder (created).")
@click.option("--validation-drivers", default="0.2", show_default=True,
              help="Drivers held out for validation: a count N, or a fraction like 0.2.")
@click.option("--resize", default=None,
              help="Shorter side N pixels (like im2rec), WxH, or an image_shape like 3,48,64 [default: keep size].")
@click.option("--quality", default=95, show_default=True, type=click.IntRange(1, 100), help="JPEG quality.")
@click.option("--pass-through", is_flag=True, help="Store each valid JPEG's bytes unchanged (no --resize).")
@click.option("--workers", default=0, type=click.IntRange(min=0), help="Processes [default: one per core].")
@click.option("--seed", default=0, show_default=True, type=int, help="Chooses the validation drivers and record order.")
def process(data_dir: str, out_dir: str, validation_drivers: str, resize: str | None, quality: int,
            pass_through: bool, workers: int, seed: int) -> None:
    """Split by driver and write OUT/{train,validation}.{rec,idx,lst} and OUT/manifest.json."""
    import argparse

    from steps import process as step

    try:
        settings = step.Settings(step.parse_validation(validation_drivers), step.Target.parse(resize), quality,
                                 pass_through, seed, workers)
        settings.check()
    except (argparse.ArgumentTypeError, ValueError) as error:
        raise CliError(str(error)) from None

    try:
        with terminal_progress("processing") as update:
            manifest = step.process(data_dir, out_dir, settings, progress=update)
    except step.InputError as error:
        raise CliError(str(error)) from None
    except OSError as error:  # e.g. an output folder that cannot be written
        raise CliError(f"cannot process {data_dir} into {out_dir}: {error}") from None
    for line in step.summary_lines(manifest):
        click.echo(line, err=line.startswith("WARNING"))
