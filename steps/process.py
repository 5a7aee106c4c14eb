"""The processing job: labelled driver images -> train/validation MXNet RecordIO + manifest.

    python -m steps.process                      # SageMaker Processing: /opt/ml/processing/{input,output}
    python -m steps.process --input DIR --output DIR --validation-drivers 5 --resize 72
    ddcicd process --data DIR --out DIR ...      # the same through the CLI, with a progress bar

Writes to the output folder::

    train.rec  train.idx  train.lst              im2rec's files: records, key<TAB>offset, index<TAB>label<TAB>path
    validation.rec  validation.idx  validation.lst
    manifest.json                                classes, splits, skipped, converted, settings, outputs

Whole drivers are held out for validation (chosen with the seed so every class is on both
sides), because a model that has seen a driver scores far better on that driver's other
frames than on a stranger's. Records are in a seeded random order, like `im2rec --shuffle`.

Images are read, checked, decoded, resized and re-encoded (steps/conversion.py) by a pool
of processes, one per core, forked after the imports so they start working at once; the
parent only writes records, in a fixed order, so the output is byte-identical for the same
input and seed whatever the number of workers. Nothing in the output folder changes until
every file is complete: they are written to a hidden staging folder and renamed into
place, manifest.json last. Bad files are skipped or converted with a reason; the job fails
(exit 2) only when nothing usable is left. This module needs numpy, OpenCV and simplejpeg,
nothing from `workflow/`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2

if __package__ in (None, ""):  # run as `python steps/process.py`: make the `steps` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steps.atomic import write_atomically
from steps.conversion import Outcome, Target, convert
from steps.inventory import DEFAULT_CLASSES, InputError, Item, Skip, scan, split
from steps.recordio import IndexedRecordIO, IRHeader, pack, write_lst_line

SPLITS = ("train", "validation")
OUTPUT_FILES = tuple(f"{name}.{ext}" for name in SPLITS for ext in ("rec", "idx", "lst"))
_CHUNK = 8  # images per task sent to a worker: small enough to start at once, big enough to amortise the pipe


@dataclass(frozen=True)
class Settings:
    """What the job does; recorded in the manifest (except `workers`, which cannot change the output)."""

    validation_drivers: float = 0.2  # drivers held out: a count N >= 1, or a fraction 0 < x < 1
    resize: Target = field(default_factory=Target.keep)
    quality: int = 95  # JPEG quality of re-encoded images, like im2rec's default
    pass_through: bool = False  # store each valid JPEG's bytes unchanged
    seed: int = 0
    workers: int = 0  # processes; 0 = one per core

    def check(self) -> None:
        if not 1 <= self.quality <= 100:
            raise InputError(f"quality {self.quality} is outside 1..100")
        if self.validation_drivers <= 0 or (self.validation_drivers >= 1 and self.validation_drivers != int(self.validation_drivers)):
            raise InputError(f"validation drivers {self.validation_drivers} must be a count >= 1 or a fraction 0 < x < 1")
        if self.pass_through and self.resize.mode != "keep":
            raise InputError("pass-through stores the original bytes, so it cannot be combined with resize")

    def as_manifest(self) -> dict[str, Any]:
        return {
            "validation_drivers": self.validation_drivers,
            "resize": self.resize.describe(),
            "quality": self.quality,
            "pass_through": self.pass_through,
            "seed": self.seed,
        }


Progress = Callable[[int, int], None]  # (images done, images in total)


# ---------------------------------------------------------------------------------------
# worker side

_job: dict[str, Any] = {}  # set once per worker process


def _init_worker(root: str, target: Target, quality: int, pass_through: bool) -> None:
    cv2.setNumThreads(1)  # one process per core already
    _job.update(root=root, target=target, quality=quality, pass_through=pass_through)


def _work(relative_path: str) -> Outcome:
    try:
        with open(os.path.join(_job["root"], relative_path), "rb") as image_file:
            data = image_file.read()
    except OSError as error:
        return Outcome(reason=f"cannot read: {error.strerror or error}")
    return convert(data, _job["target"], _job["quality"], _job["pass_through"])


def _outcomes(root: Path, paths: list[str], settings: Settings) -> Iterator[Outcome]:
    """Outcomes in the order of `paths`, computed by a process pool."""
    initargs = (str(root), settings.resize, settings.quality, settings.pass_through)
    workers = max(1, min(settings.workers or os.cpu_count() or 1, -(-len(paths) // _CHUNK)))
    if workers == 1:
        _init_worker(*initargs)
        yield from map(_work, paths)
        return
    # fork: workers inherit the imported modules and start in milliseconds
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
        yield from pool.imap(_work, paths, chunksize=_CHUNK)


# ---------------------------------------------------------------------------------------
# the job


def process(input_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str], settings: Settings,
            progress: Progress | None = None) -> dict[str, Any]:
    """Run the processing step; returns the manifest it wrote. Raises InputError for unusable input."""
    settings.check()
    root, output = Path(input_dir), Path(output_dir)
    inventory = scan(root, DEFAULT_CLASSES)
    if not inventory.items:
        detail = (f"{len(inventory.skipped)} entries skipped, e.g. {_first_reasons(inventory.skipped)}"
                  if inventory.skipped else "the class folders are empty")
        raise InputError(f"no usable images under {root / inventory.train_dir} ({detail})")
    chosen = split(inventory.items, settings.validation_drivers, settings.seed, len(inventory.classes))
    plan: list[tuple[str, Item]] = [("train", item) for item in chosen.train]
    plan += [("validation", item) for item in chosen.validation]

    output.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(output)
    staging = output / f".process.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        digests: dict[str, str] = {}
        written, skipped, converted = _write_records(root, staging, plan, settings, progress, digests)
        skipped = inventory.skipped + skipped
        if not written["train"]:
            raise InputError(f"none of the {len(chosen.train)} training images under {root} could be used "
                             f"(e.g. {_first_reasons(skipped)})")
        warnings = list(chosen.warnings)
        if not written["validation"]:
            warnings.append("the validation split is empty")
        manifest = {
            "classes": inventory.classes,
            "splits": {
                name: {
                    "count": len(written[name]),
                    "per_class": {inventory.classes[label]: count
                                  for label, count in sorted(Counter(written[name]).items())},
                    "drivers": sorted({item.driver for split_name, item in plan
                                       if split_name == name and item.driver is not None}),
                }
                for name in SPLITS
            },
            "split_by": chosen.by,
            "validation_drivers": chosen.validation_drivers,
            "source": {"train_dir": inventory.train_dir, "csv": inventory.csv_path, "images_found": len(plan)},
            "skipped": [asdict(entry) for entry in skipped],
            "converted": [asdict(entry) for entry in converted],
            "warnings": warnings,
            "settings": settings.as_manifest(),
            "outputs": {name: _describe_file(staging / name, digests.get(name)) for name in OUTPUT_FILES},
        }
        write_atomically(staging / "manifest.json", (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode(), fsync=False)
        _publish(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _write_records(root: Path, staging: Path, plan: list[tuple[str, Item]], settings: Settings,
                   progress: Progress | None, digests: dict[str, str]) -> tuple[dict[str, list[int]], list[Skip], list[Skip]]:
    """Encode every planned image into its split's .rec/.idx/.lst; labels written per split.

    The .rec files' SHA-256 is computed while writing (into `digests`), not by reading them back.
    """
    writers = {name: IndexedRecordIO(staging / f"{name}.idx", staging / f"{name}.rec", "w") for name in SPLITS}
    lists: dict[str, list[str]] = {name: [] for name in SPLITS}
    written: dict[str, list[int]] = {name: [] for name in SPLITS}
    skipped: list[Skip] = []
    converted: list[Skip] = []
    outcomes = _outcomes(root, [item.path for _, item in plan], settings)
    try:
        for done, ((name, item), outcome) in enumerate(zip(plan, outcomes), start=1):
            if outcome.payload is None:
                skipped.append(Skip(item.path, outcome.reason or "unusable"))
            else:
                index = len(written[name])
                writers[name].write_idx(index, pack(IRHeader(0, float(item.label), index, 0), outcome.payload))
                lists[name].append(write_lst_line(index, item.label, item.path))
                written[name].append(item.label)
                if outcome.note:
                    converted.append(Skip(item.path, outcome.note))
            if progress is not None and (done % 64 == 0 or done == len(plan)):
                progress(done, len(plan))
    except BaseException:
        outcomes.close()  # stops the pool now, not when the traceback is collected
        for writer in writers.values():
            writer.abort()
        raise
    for name in SPLITS:
        record_digest = writers[name].sha256()
        writers[name].close()
        write_atomically(staging / f"{name}.lst", "".join(lists[name]).encode(), fsync=False)
        digests[f"{name}.rec"] = record_digest
    return written, skipped, converted


def _publish(staging: Path, output: Path) -> None:
    """Rename the finished files into place: the old manifest goes first, the new one last."""
    (output / "manifest.json").unlink(missing_ok=True)
    for name in OUTPUT_FILES:
        os.replace(staging / name, output / name)
    os.replace(staging / "manifest.json", output / "manifest.json")


def _remove_stale_staging(output: Path) -> None:
    """Staging folders left by runs that were killed (their process is gone)."""
    for folder in output.glob(".process.tmp-*"):
        try:
            os.kill(int(folder.name.rsplit("-", 1)[1]), 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # alive, someone else's
            continue


def _describe_file(path: Path, sha256: str | None = None) -> dict[str, Any]:
    if sha256 is None:
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"sha256": sha256, "bytes": path.stat().st_size}


def _first_reasons(skipped: list[Skip], count: int = 2) -> str:
    return "; ".join(f"{entry.path}: {entry.reason}" for entry in skipped[:count]) or "nothing found"


def summary_lines(manifest: dict[str, Any]) -> list[str]:
    """What a person wants to read after a run: the split, then what was skipped or converted and why."""
    train, validation = manifest["splits"]["train"], manifest["splits"]["validation"]
    lines = [f"WARNING: {warning}" for warning in manifest["warnings"]]
    held = f" ({len(validation['drivers'])} held-out drivers)" if manifest["split_by"] == "driver" else " (random split)"
    lines.append(f"wrote {train['count']} training and {validation['count']} validation images{held}")
    for key, verb in (("skipped", "skipped"), ("converted", "converted")):
        reasons = Counter(_reason_kind(entry["reason"]) for entry in manifest[key])
        if reasons:
            detail = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
            lines.append(f"{verb} {sum(reasons.values())}: {detail} (details in manifest.json)")
    return lines


def _reason_kind(reason: str) -> str:
    """The general part of a reason ('corrupt JPEG: ...' -> 'corrupt JPEG')."""
    return reason.split(":")[0].split(" (")[0]


# ---------------------------------------------------------------------------------------
# entry point (SageMaker Processing and `python -m steps.process`)


def _ml_root() -> Path:
    return Path(os.environ.get("DDCICD_ML_ROOT", "/opt/ml"))


def parse_validation(text: str) -> float:
    """'5' -> 5 drivers, '0.2' -> a fifth of them."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"validation drivers {text!r} is not a number") from None
    return int(value) if value >= 1 and value == int(value) else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m steps.process", description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=_ml_root() / "processing" / "input")
    parser.add_argument("--output", type=Path, default=_ml_root() / "processing" / "output")
    parser.add_argument("--validation-drivers", type=parse_validation, default=Settings.validation_drivers)
    parser.add_argument("--resize", default=None, help="N (shorter side), WxH, or an image_shape like 3,48,64")
    parser.add_argument("--quality", type=int, default=Settings.quality)
    parser.add_argument("--pass-through", action="store_true")
    parser.add_argument("--seed", type=int, default=Settings.seed)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        settings = Settings(args.validation_drivers, Target.parse(args.resize), args.quality, args.pass_through,
                            args.seed, args.workers)
        printed = [-1]

        def report(done: int, count: int) -> None:  # a line per 10%: readable in CloudWatch logs
            if done * 10 // count > printed[0]:
                printed[0] = done * 10 // count
                print(f"processed {done}/{count} images", file=sys.stderr, flush=True)

        manifest = process(args.input, args.output, settings, progress=report)
    except (InputError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        failure = _ml_root() / "output" / "failure"
        if failure.parent.parent.is_dir():
            failure.parent.mkdir(parents=True, exist_ok=True)
            failure.write_text(f"ClientError: {error}\n")
        return 2
    for line in summary_lines(manifest):
        print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
