"""Finding the labelled images of a Kaggle-layout dataset and splitting them by driver.

Accepted layouts (the first that exists wins), DIR being the input folder::

    DIR/imgs/train/c0..c9/*.jpg   DIR/driver_imgs_list.csv     (Kaggle, unzipped)
    DIR/train/c0..c9/*.jpg        DIR/driver_imgs_list.csv
    DIR/c0..c9/*.jpg                                           (class folders, as im2rec)
    DIR/<one folder>/...          any of the above one level down

Everything odd about the input is kept as a `Skip` (path relative to DIR, reason) rather
than raised, so one bad file never stops a job; only an input with no usable image at
all is an `InputError`.
"""
from __future__ import annotations

import csv
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
CSV_NAME = "driver_imgs_list.csv"
CSV_COLUMNS = ("subject", "classname", "img")
DEFAULT_CLASSES = tuple(f"c{index}" for index in range(10))
_SPLIT_ATTEMPTS = 5000


class InputError(ValueError):
    """The input as a whole cannot be used (no images, no classes, unreadable CSV)."""


@dataclass(frozen=True)
class Item:
    """One usable-looking image file: where it is, its class and driver."""

    path: str  # relative to the input folder, '/'-separated, e.g. imgs/train/c3/img_9.jpg
    label: int
    driver: str | None


@dataclass(frozen=True)
class Skip:
    path: str
    reason: str


@dataclass
class Inventory:
    """What was found under the input folder."""

    root: Path
    train_dir: str  # relative to root
    csv_path: str | None
    classes: list[str]
    items: list[Item] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


def _display(path: str) -> str:
    """A path safe to print and to put in JSON: undecodable bytes shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def find_train_dir(root: Path, classes: tuple[str, ...] = DEFAULT_CLASSES) -> Path:
    """The folder holding the class folders (see the module docstring for the layouts tried)."""
    if not root.is_dir():
        raise InputError(f"input folder {root} does not exist")
    bases = [root] + sorted((child for child in root.iterdir() if child.is_dir() and not child.name.startswith(".")),
                            key=lambda child: child.name)
    for base in bases:
        for candidate in (base / "imgs" / "train", base / "train", base):
            if candidate.is_dir() and any((candidate / name).is_dir() for name in classes):
                return candidate
    raise InputError(f"no class folders ({classes[0]}..{classes[-1]}) under {root}, {root}/train or {root}/imgs/train")


def scan(root: Path, classes: tuple[str, ...] = DEFAULT_CLASSES) -> Inventory:
    """List the images and match them with driver_imgs_list.csv when there is one."""
    train_dir = find_train_dir(root, classes)
    relative_train = train_dir.relative_to(root).as_posix()
    prefix = "" if relative_train == "." else relative_train + "/"
    csv_file = next((folder / CSV_NAME for folder in (train_dir, *train_dir.parents)
                     if (folder / CSV_NAME).is_file() and (folder == root or root in folder.parents)), None)
    inventory = Inventory(root, relative_train, csv_file.relative_to(root).as_posix() if csv_file else None,
                          list(classes))
    label_of = {name: index for index, name in enumerate(classes)}
    found: dict[tuple[str, str], str] = {}  # (class, file name) -> relative path
    rejected: set[tuple[str, str]] = set()  # files already skipped for their name or kind
    for entry in sorted(os.scandir(train_dir), key=lambda entry: entry.name):
        relative = prefix + entry.name
        if not _is_utf8(entry.name):
            inventory.skipped.append(Skip(_display(relative), "name is not valid UTF-8"))
        elif entry.is_dir():
            if entry.name in label_of:
                _scan_class(entry.path, relative, entry.name, found, rejected, inventory.skipped)
            elif not entry.name.startswith("."):
                inventory.skipped.append(Skip(relative + "/", f"unknown class folder (classes are {', '.join(classes)})"))
        elif entry.name != CSV_NAME and not entry.name.startswith("."):
            inventory.skipped.append(Skip(relative, "not inside a class folder"))
    if csv_file is None:
        inventory.items = [Item(path, label_of[key[0]], None) for key, path in sorted(found.items(), key=_by_path)]
    else:
        _match_csv(csv_file, prefix, found, rejected, label_of, inventory)
    return inventory


def _by_path(pair: tuple[tuple[str, str], str]) -> str:
    return pair[1]


def _scan_class(folder: str, relative: str, class_name: str, found: dict[tuple[str, str], str],
                rejected: set[tuple[str, str]], skipped: list[Skip]) -> None:
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        path = f"{relative}/{entry.name}"
        if not _is_utf8(entry.name):
            skipped.append(Skip(_display(path), "name is not valid UTF-8"))
        elif entry.name.startswith("."):
            continue
        elif entry.is_dir():
            skipped.append(Skip(path + "/", "folder inside a class folder (not searched)"))
            rejected.add((class_name, entry.name))
        elif Path(entry.name).suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append(Skip(path, f"not an image file name (extension {Path(entry.name).suffix or 'none'})"))
            rejected.add((class_name, entry.name))
        else:
            found[(class_name, entry.name)] = path


def _match_csv(csv_file: Path, prefix: str, found: dict[tuple[str, str], str], rejected: set[tuple[str, str]],
               label_of: dict[str, int], inventory: Inventory) -> None:
    """Files need a row and rows need a file; each mismatch is a Skip."""
    where = inventory.csv_path
    try:
        text = csv_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(f"{where} is not UTF-8 text: {error}") from None
    reader = csv.reader(text.splitlines())
    header = [column.strip() for column in next(reader, [])]
    if not set(CSV_COLUMNS) <= set(header):
        raise InputError(f"{where} has columns {header}; expected {','.join(CSV_COLUMNS)}")
    columns = [header.index(name) for name in CSV_COLUMNS]
    driver_of: dict[tuple[str, str], str] = {}
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            inventory.skipped.append(Skip(f"{where}:{line}", f"row has {len(row)} fields, expected {len(header)}"))
            continue
        subject, class_name, name = (row[index].strip() for index in columns)
        path = f"{prefix}{class_name}/{name}"
        if not subject or not name:
            inventory.skipped.append(Skip(f"{where}:{line}", "row without subject or img"))
        elif class_name not in label_of:
            inventory.skipped.append(Skip(f"{where}:{line}", f"unknown class {class_name!r} in driver_imgs_list.csv"))
        elif (class_name, name) in driver_of:
            inventory.skipped.append(Skip(f"{where}:{line}", f"duplicate row for {path}"))
        elif (class_name, name) in rejected:
            driver_of[(class_name, name)] = subject  # the file's own skip says why
        elif (class_name, name) not in found:
            inventory.skipped.append(Skip(path, f"listed in {CSV_NAME} but there is no such image file"))
            driver_of[(class_name, name)] = subject
        else:
            driver_of[(class_name, name)] = subject
    items = []
    for key, path in sorted(found.items(), key=_by_path):
        if key in driver_of:
            items.append(Item(path, label_of[key[0]], driver_of[key]))
        else:
            inventory.skipped.append(Skip(path, f"no row in {CSV_NAME}, so its driver is unknown"))
    inventory.items = items


# ---------------------------------------------------------------------------------------
# splitting


@dataclass(frozen=True)
class Split:
    train: list[Item]
    validation: list[Item]
    validation_drivers: list[str]
    by: str  # "driver" or "random"
    warnings: list[str]


def validation_count(setting: float, population: int) -> int:
    """How many of `population` drivers to hold out: N as given, or a fraction (0 < x < 1)."""
    if 0 < setting < 1:
        return min(population - 1, max(1, round(setting * population)))
    return min(population - 1, int(setting))


def split(items: list[Item], validation: float, seed: int, num_classes: int) -> Split:
    """Hold out whole drivers, every class present on both sides when any choice allows it."""
    drivers = sorted({item.driver for item in items if item.driver is not None})
    if len(drivers) < 2 or any(item.driver is None for item in items):
        reason = ("there is no driver_imgs_list.csv" if not drivers else f"only {len(drivers)} driver is listed")
        return _random_split(items, validation, seed, num_classes, reason)
    rng = random.Random(seed)
    count = validation_count(validation, len(drivers))
    classes_of: dict[str, set[int]] = {driver: set() for driver in drivers}
    for item in items:
        classes_of[item.driver].add(item.label)  # type: ignore[index]
    present = set().union(*classes_of.values())
    best: tuple[int, list[str]] | None = None
    for _ in range(_SPLIT_ATTEMPTS):
        chosen = sorted(rng.sample(drivers, count))
        held = set().union(*(classes_of[driver] for driver in chosen))
        kept = set().union(*(classes_of[driver] for driver in drivers if driver not in chosen))
        missing = len(present - held) + len(present - kept)
        if best is None or missing < best[0]:
            best = (missing, chosen)
        if missing == 0:
            break
    assert best is not None
    chosen_set = set(best[1])
    warnings = []
    if best[0]:
        warnings.append(f"no choice of {count} validation drivers puts every class on both sides; "
                        f"{best[0]} class/side pairs are empty")
    train = [item for item in items if item.driver not in chosen_set]
    held_out = [item for item in items if item.driver in chosen_set]
    rng.shuffle(train)
    rng.shuffle(held_out)
    return Split(train, held_out, best[1], "driver", warnings)


def _random_split(items: list[Item], validation: float, seed: int, num_classes: int, reason: str) -> Split:
    """A stratified random split, for inputs without driver ids (loudly: it leaks drivers)."""
    fraction = validation if 0 < validation < 1 else 0.2
    rng = random.Random(seed)
    train: list[Item] = []
    held_out: list[Item] = []
    for label in range(num_classes):
        members = [item for item in items if item.label == label]
        rng.shuffle(members)
        take = min(len(members) - 1, max(1, round(fraction * len(members)))) if len(members) > 1 else 0
        held_out.extend(members[:take])
        train.extend(members[take:])
    rng.shuffle(train)
    rng.shuffle(held_out)
    warning = (f"split at random ({fraction:.0%} of each class held out) because {reason}: the same drivers are "
               "in training and validation, so validation accuracy will be optimistic")
    return Split(train, held_out, [], "random", [warning])
