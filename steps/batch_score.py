"""Batch scoring: a folder of images -> class probabilities, as Batch Transform or a Kaggle CSV.

    python -m steps.batch_score --model model.tar.gz --input imgs/test --output out/        # one .out per image
    python -m steps.batch_score --model model.tar.gz --input imgs/test --submission sub.csv \\
        [--sample-submission sample_submission.csv]                                      # Kaggle's format
    ddcicd predict --model model.tar.gz --images imgs/test --out submission.csv

The `.out` files are what SageMaker Batch Transform writes for `application/x-image`
input with `SplitType None`: for `img_1.jpg`, `img_1.jpg.out` holding the endpoint's JSON
answer (a list of probabilities). The local transform job runs this module that way, so
the state machine's BatchScore state behaves as on AWS; `submission_from_outputs` turns
either form into Kaggle's `img,c0,...,c9` CSV in sample_submission.csv's order.

Images that cannot be decoded are reported (path and reason) and, in a submission, get
the uniform distribution so the file stays complete and valid; the exit code is 0 only
when every image was scored.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from steps.atomic import write_atomically

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
BATCH_SIZE = 64


@dataclass
class ScoreReport:
    classes: list[str] = field(default_factory=list)
    scored: dict[str, list[float]] = field(default_factory=dict)  # image name -> probabilities
    failed: dict[str, str] = field(default_factory=dict)  # image name -> reason


def image_files(folder: Path) -> list[Path]:
    return sorted(path for path in Path(folder).rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def score_folder(model: Path, folder: Path, progress: Callable[[int, int], None] | None = None) -> ScoreReport:
    """Scores every image under `folder` in batches with the model's own preprocessing."""
    from steps.predictor import InvalidImage, Predictor

    predictor = Predictor(model)
    files = image_files(folder)
    report = ScoreReport(classes=predictor.classes)
    for start in range(0, len(files), BATCH_SIZE):
        chunk = files[start : start + BATCH_SIZE]
        results = predictor.run_batch([path.read_bytes() for path in chunk])
        for path, result in zip(chunk, results):
            if isinstance(result, InvalidImage):
                report.failed[path.name] = str(result)
            else:
                report.scored[path.name] = [float(value) for value in result]
        if progress is not None:
            progress(min(start + BATCH_SIZE, len(files)), len(files))
    return report


def write_transform_outputs(report: ScoreReport, output: Path) -> None:
    """`<image>.out` per scored image, as Batch Transform writes them (each write atomic)."""
    output.mkdir(parents=True, exist_ok=True)
    for name, probabilities in report.scored.items():
        write_atomically(output / f"{name}.out", json.dumps(probabilities).encode(), fsync=False)


def read_transform_outputs(folder: Path) -> dict[str, list[float]]:
    """The reverse: `img_1.jpg.out` -> {"img_1.jpg": [...]} (Batch Transform's output folder)."""
    scores = {}
    for path in sorted(Path(folder).rglob("*.out")):
        scores[path.name.removesuffix(".out")] = json.loads(path.read_text())
    return scores


def submission_csv(scores: dict[str, list[float]], classes: list[str], order: Iterable[str] | None = None) -> str:
    """Kaggle's `img,c0,...,c9` rows in `order` (sample_submission.csv's), uniform where unscored.

    Probabilities are clipped to [1e-15, 1] and renormalised, as the log-loss metric does,
    so a row never scores infinite loss.
    """
    names = list(order) if order is not None else sorted(scores)
    uniform = [1.0 / len(classes)] * len(classes)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["img", *classes])
    for name in names:
        row = np.clip(np.asarray(scores.get(name, uniform), dtype=np.float64), 1e-15, 1.0)
        row = row / row.sum()
        writer.writerow([name, *(f"{value:.8g}" for value in row)])
    return buffer.getvalue()


def sample_order(sample_submission: Path) -> list[str]:
    with open(sample_submission, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or header[0] != "img":
            raise ValueError(f"{sample_submission}: expected a header starting with 'img', got {header}")
        return [row[0] for row in reader if row]


def write_submission(report: ScoreReport, out: Path, sample_submission: Path | None = None) -> None:
    order = sample_order(sample_submission) if sample_submission else None
    write_atomically(out, submission_csv(report.scored, report.classes, order).encode(), fsync=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(os.environ.get("DDCICD_ML_ROOT", "/opt/ml"))
    parser.add_argument("--model", type=Path, default=root / "model")
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, help="folder for Batch Transform style .out files")
    parser.add_argument("--submission", type=Path, help="write Kaggle's submission CSV here")
    parser.add_argument("--sample-submission", type=Path, help="row order for the submission")
    arguments = parser.parse_args(argv)
    if arguments.output is None and arguments.submission is None:
        parser.error("give --output and/or --submission")
    report = score_folder(arguments.model, arguments.input)
    if arguments.output is not None:
        write_transform_outputs(report, arguments.output)
    if arguments.submission is not None:
        write_submission(report, arguments.submission, arguments.sample_submission)
    for name, reason in sorted(report.failed.items()):
        print(f"skipped {name}: {reason}", file=sys.stderr)
    print(f"scored {len(report.scored)} images, {len(report.failed)} failed", file=sys.stderr)
    return 0 if not report.failed else 1


if __name__ == "__main__":
    sys.exit(main())
