"""Build each Lambda's deployment zip: its code plus its third-party packages, nothing else.

    from workflow.aws.packaging import build_zip
    path = build_zip("evaluate")        # build/lambdas/evaluate.zip

    .venv/bin/python -m workflow.aws.packaging evaluate load_test      # prints paths and sizes

Which zips exist, their handlers and their packages come from workflow/contracts/functions.py.
Build tooling, not a handler: it lives beside `ddcicd aws deploy`, which uploads the zips.

What goes in:
- the shared modules of `lambdas/` and the function's own folder;
- `steps/recordio.py` (with `steps/__init__.py`), copied unchanged under its own import
  path: the processing job writes validation.rec with that module, so the Lambda reads it
  with the very same code instead of a copy that could drift; likewise `steps/atomic.py`
  (local writes in storage.py) and `steps/batch_score.py` (the submission CSV);
- the function's third-party packages, installed for the Lambda platform (below) by pip
  with the project's constraints.txt, so the versions are the ones the tests ran against.
  boto3 and botocore are not included: every Lambda Python runtime provides them.

Platform: compiled wheels must match the Lambda runtime, not this machine. numpy >= 2.3,
pillow and contourpy need glibc >= 2.27/2.28, which rules out python3.11's Amazon Linux 2
(glibc 2.26); so the zips target the catalogue's RUNTIME (python3.12 on Amazon Linux 2023,
glibc 2.34, x86_64). The handlers' code runs unchanged on 3.11 (tests) and 3.12 (Lambda).

The zip is deterministic (sorted entries, fixed timestamps), so an unchanged function
rebuilds to the same bytes and its CodeSha256 tells whether an update is needed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from workflow.contracts.functions import PACKAGES, RUNTIME, handlers_of

ROOT = Path(__file__).resolve().parents[2]
PYTHON_VERSION = RUNTIME.removeprefix("python")
PLATFORM = "manylinux_2_34_x86_64"  # Amazon Linux 2023's glibc; wheels for any older glibc also fit
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
SHARED_MODULES = ("__init__.py", "errors.py", "events.py", "storage.py", "runtime.py", "dataset.py")
VENDORED = ("steps/__init__.py", "steps/atomic.py", "steps/recordio.py", "steps/batch_score.py")
SKIPPED_PARTS = {"__pycache__", "tests"}



def source_files(name: str) -> list[tuple[Path, str]]:
    """(file, path inside the zip) for the function's own code."""
    if name not in PACKAGES:
        raise ValueError(f"unknown Lambda {name!r}; known: {sorted(PACKAGES)}")
    files = [(ROOT / "lambdas" / module, f"lambdas/{module}") for module in SHARED_MODULES]
    folder = ROOT / "lambdas" / name
    files += [(path, path.relative_to(ROOT).as_posix()) for path in sorted(folder.rglob("*.py")) if "__pycache__" not in path.parts]
    files += [(ROOT / relative, relative) for relative in VENDORED]
    return files


def compatible_platforms(platform: str) -> list[str]:
    """`manylinux_2_34_x86_64` -> every manylinux tag a glibc 2.34 system runs, newest first.

    pip matches `--platform` literally, so a wheel built for an older glibc (matplotlib's
    manylinux2014) would be missed unless each older tag is listed too.
    """
    prefix, _, architecture = platform.partition("_2_")
    if prefix != "manylinux" or "_" not in architecture:
        return [platform]
    minor_text, _, architecture = architecture.partition("_")
    tags = [f"manylinux_2_{minor}_{architecture}" for minor in range(int(minor_text), 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    return tags + [f"{name}_{architecture}" for minor, name in legacy.items() if minor <= int(minor_text)]


def install_requirements(name: str, target: Path, python_version: str, platform: str) -> None:
    """pip-install the function's packages for the Lambda platform into `target` (wheels only)."""
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--target", str(target), "--only-binary=:all:", "--implementation", "cp",
        "--python-version", python_version,
        *(option for tag in compatible_platforms(platform) for option in ("--platform", tag)),
        "-c", str(ROOT / "constraints.txt"), *PACKAGES[name].requirements,
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if completed.returncode != 0:
        raise RuntimeError(f"pip could not install {PACKAGES[name].requirements} for cp{python_version} {platform}: {completed.stderr.strip()[-2000:]}")


def _entries(directory: Path) -> list[tuple[Path, str]]:
    entries = []
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if path.is_file() and not SKIPPED_PARTS.intersection(relative.parts) and relative.parts[0] != "bin":
            entries.append((path, relative.as_posix()))
    return entries


def write_zip(entries: list[tuple[Path, str]], manifest: dict, destination: Path) -> Path:
    """A deterministic zip of `entries` plus `lambda-package.json`, written atomically."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=destination.parent, prefix=f".{destination.name}.", delete=False) as handle:
        temporary = Path(handle.name)
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for path, arcname in sorted(entries, key=lambda entry: entry[1]):
                info = zipfile.ZipInfo(arcname, date_time=ZIP_EPOCH)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
            info = zipfile.ZipInfo("lambda-package.json", date_time=ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, json.dumps(manifest, indent=2, sort_keys=True), compress_type=zipfile.ZIP_DEFLATED)
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)
    return destination


def build_zip(
    name: str,
    out_dir: Path | None = None,
    with_dependencies: bool = True,
    python_version: str = PYTHON_VERSION,
    platform: str = PLATFORM,
) -> Path:
    """Build `<out_dir>/<name>.zip` (default build/lambdas/) and return its path.

    `with_dependencies=False` packs only our code (what a Lambda layer would complement).
    `python_version`/`platform` choose the wheels; the defaults are the catalogue RUNTIME's. A
    package index without those wheels (an offline mirror of this machine's cp311 wheels)
    can still build `python_version="3.11", platform="manylinux_2_28_x86_64"` zips, which
    are the same size but only run where glibc >= 2.28 and Python is 3.11.
    """
    destination = (out_dir or ROOT / "build" / "lambdas") / f"{name}.zip"
    entries = source_files(name)  # refuses an unknown name first
    with tempfile.TemporaryDirectory(prefix=f"lambda-{name}-") as staging:
        distributions: list[str] = []
        if with_dependencies:
            install_requirements(name, Path(staging), python_version, platform)
            entries += _entries(Path(staging))
            distributions = sorted(path.name.removesuffix(".dist-info") for path in Path(staging).glob("*.dist-info"))
        manifest = {
            "function": name,
            "handlers": list(handlers_of(name)),
            "runtime": f"python{python_version}",
            "architecture": "x86_64",
            "platform": platform if with_dependencies else "any",
            "distributions": distributions,
        }
        return write_zip(entries, manifest, destination)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.aws.packaging", description="Build Lambda deployment zips.")
    parser.add_argument("names", nargs="*", default=sorted(PACKAGES), help=f"functions to build (default: all: {sorted(PACKAGES)})")
    parser.add_argument("--out-dir", type=Path, default=None, help="where the zips go (default: build/lambdas)")
    parser.add_argument("--code-only", action="store_true", help="leave out third-party packages")
    parser.add_argument("--python-version", default=PYTHON_VERSION, help=f"wheels for this Python (default {PYTHON_VERSION})")
    parser.add_argument("--platform", default=PLATFORM, help=f"wheels for this platform tag (default {PLATFORM})")
    options = parser.parse_args(argv)
    for name in options.names:
        path = build_zip(name, options.out_dir, not options.code_only, options.python_version, options.platform)
        with zipfile.ZipFile(path) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
        print(f"{name}: {path} {path.stat().st_size / 1e6:.1f} MB zipped, {unzipped / 1e6:.1f} MB unzipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
