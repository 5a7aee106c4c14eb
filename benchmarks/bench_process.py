"""Benchmark: `ddcicd process` against the naive im2rec recipe, both as whole processes.

    .venv/bin/python benchmarks/bench_process.py [--images 2000] [--repeats 3]

Workload: 2,000 synthetic 640x480 JPEGs (data.synth, seed 0, cached in the temp folder),
shorter side resized to 256, re-encoded at JPEG quality 95.

Baseline, measured in the same run: a single process doing what MXNet's im2rec.py does per
image (cv2.imread, cv2.resize with INTER_LINEAR, cv2.imencode, write an IRHeader-prefixed
record), started as its own Python process so its start-up counts too, as ours does.

Both are timed wall-clock from process start to exit, best of `--repeats` runs each,
alternating, so a burst of load from something else on the machine hurts both alike.
Target: ddcicd process >= 1.8x the baseline's images per second on 2 cores.
The last line is `RESULT process <ratio>x target 1.8x PASS|FAIL`.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = 1.8

NAIVE = r'''
import os, struct, sys
import cv2
root, out = sys.argv[1], sys.argv[2]
train = os.path.join(root, "imgs", "train")
items = [(os.path.join(train, c, n), int(c[1:])) for c in sorted(os.listdir(train)) for n in sorted(os.listdir(os.path.join(train, c)))]
with open(out, "wb") as rec:
    for index, (path, label) in enumerate(items):
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        size = (256, h * 256 // w) if h > w else (w * 256 // h, 256)
        img = cv2.resize(img, size)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        payload = struct.pack("<IfQQ", 0, float(label), index, 0) + buf.tobytes()
        rec.write(struct.pack("<II", 0xCED7230A, len(payload)) + payload + b"\0" * (-len(payload) % 4))
print(len(items))
'''


def dataset(images: int) -> Path:
    """The benchmark's input, generated once and reused (generation is not what is measured)."""
    folder = Path(tempfile.gettempdir()) / f"ddcicd-bench-process-{images}"
    if not (folder / "driver_imgs_list.csv").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        print(f"generating {images} synthetic 640x480 images in {folder} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "data.synth", "--out", str(folder), "--images", str(images),
                        "--drivers", "26", "--test-images", "0"], cwd=REPO, check=True)
    return folder


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children) for one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = dataset(args.images)
    work = Path(tempfile.mkdtemp(prefix="bench-process-"))
    script = Path(sys.executable).parent / "ddcicd"  # the console script, exactly as a user starts it
    ddcicd = [str(script)] if script.is_file() else [sys.executable, "-m", "workflow.cli"]
    ours_command = [*ddcicd, "process", "--data", str(data), "--out", str(work / "ours"), "--resize", "256",
                    "--quality", "95"]
    naive_command = [sys.executable, "-c", NAIVE, str(data), str(work / "naive.rec")]
    print(f"{os.cpu_count()} cores; {args.images} images 640x480 -> shorter side 256, JPEG quality 95; "
          f"best of {args.repeats}", flush=True)
    ours: list[tuple[float, float]] = []
    naive: list[tuple[float, float]] = []
    try:
        for repeat in range(args.repeats):
            naive.append(timed(naive_command))
            ours.append(timed(ours_command))
            print(f"  run {repeat + 1}: naive im2rec loop {naive[-1][0]:.2f} s ({naive[-1][1]:.2f} CPU s), "
                  f"ddcicd process {ours[-1][0]:.2f} s ({ours[-1][1]:.2f} CPU s)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    naive_rate, ours_rate = args.images / min(naive)[0], args.images / min(ours)[0]
    ratio = ours_rate / naive_rate
    print(f"naive single-process OpenCV loop (whole process): {naive_rate:.0f} img/s, "
          f"{1000 * min(cpu for _, cpu in naive) / args.images:.2f} CPU ms/img")
    print(f"ddcicd process (whole process, {os.cpu_count()} workers): {ours_rate:.0f} img/s, "
          f"{1000 * min(cpu for _, cpu in ours) / args.images:.2f} CPU ms/img")
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        print(f"note: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: other work shared the CPU, "
              "so the wall-clock ratio understates the parallel speed-up")
    print(f"RESULT process {ratio:.2f}x target {TARGET}x {'PASS' if ratio >= TARGET else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
