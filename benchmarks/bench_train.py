"""Does the training input pipeline keep the model busy?

Measured in one run, with the default local hyperparameters (workflow/config.py) on a
synthetic dataset processed as the pipeline does it:

1. input pipeline: images/s the DataLoader delivers (RecordIO read, JPEG decode,
   augmentation_type, batching; its worker processes), with no model attached;
2. model: images/s of forward + backward + optimizer step at the same batch size, on a
   batch already in memory (the pure compute rate);
3. a real training epoch (pipeline feeding the model) against the pure compute time for
   the same number of batches; the difference is time the model waited or was slowed.

Targets: pipeline >= 3x the model's rate, and time outside forward/backward/step <= 15%
of the epoch. The RESULT line reports the pipeline/model ratio; PASS needs both targets.

    .venv/bin/python benchmarks/bench_train.py [--data PROCESSED_DIR] [--images 1000]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PIPELINE_TARGET = 3.0  # pipeline images/s over model images/s
OVERHEAD_TARGET = 0.15  # share of an epoch outside forward/backward/step


def make_dataset(directory: Path, images: int) -> Path:
    """Synthetic frames -> `ddcicd process` with the pipeline's default resize (shorter side 72)."""
    from workflow.config import ProcessingSettings

    raw, processed = directory / "raw", directory / "processed"
    cli = [sys.executable, "-m", "workflow.cli"]
    subprocess.run([*cli, "data", "synth", "--out", str(raw), "--images", str(images), "--test-images", "0"], check=True, cwd=REPO)
    subprocess.run([*cli, "process", "--data", str(raw), "--out", str(processed),
                    "--resize", str(ProcessingSettings().resize)], check=True, cwd=REPO)  # fmt: skip
    return processed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a processed folder (default: synthesize one)")
    parser.add_argument("--images", type=int, default=1000, help="synthetic images when --data is not given")
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()

    import os

    import torch
    import torch.nn.functional as F

    from steps.training_data import RecordImageDataset, make_loader, scan_channel
    from steps.hyperparameters import parse_hyperparameters
    from steps.model import ResNet, ResNetConfig
    from workflow.config import DEFAULT_HYPERPARAMETERS

    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        data = arguments.data or make_dataset(Path(scratch), arguments.images)
        channel = Path(scratch) / "train"
        channel.mkdir()
        (channel / "train.rec").symlink_to((data / "train.rec").resolve())
        train_index = scan_channel(channel, 10)
        config = parse_hyperparameters(
            {**{name: str(value) for name, value in DEFAULT_HYPERPARAMETERS.items()},
             "num_classes": "10", "num_training_samples": str(len(train_index))},
            num_workers=arguments.workers,
        )  # fmt: skip
        cpus = len(os.sched_getaffinity(0))
        torch.set_num_threads(cpus)
        batch = config.mini_batch_size
        print(f"data {data}: {len(train_index)} training records; ResNet-{config.num_layers} at {config.image_shape}, "
              f"batch {batch}, augmentation {config.augmentation_type}, {config.num_workers} workers, {cpus} cores")  # fmt: skip

        # 1. the input pipeline alone (second epoch: workers already started, as in training)
        dataset = RecordImageDataset(train_index, config.image_shape, config.augmentation_type, config.resize, seed=0)
        loader, sampler = make_loader(dataset, batch, shuffle=True, num_workers=config.num_workers, drop_last=True)
        sampler.set_epoch(0)
        for _ in loader:
            pass
        sampler.set_epoch(1)
        tick = time.perf_counter()
        delivered = sum(len(labels) for _, labels in loader)
        pipeline_rate = delivered / (time.perf_counter() - tick)
        print(f"input pipeline: {pipeline_rate:8.1f} images/s ({delivered} images decoded and augmented)")

        # 2. pure compute: forward + backward + step on a batch already in memory
        model = ResNet(ResNetConfig(num_layers=config.num_layers, num_classes=10))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
        pixels, labels = next(iter(loader))
        model.train()

        def step(pixels: torch.Tensor, labels: torch.Tensor) -> None:
            loss = F.cross_entropy(model(pixels.float()), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(3):  # warm-up
            step(pixels, labels)
        steps = len(loader)
        tick = time.perf_counter()
        for _ in range(steps):
            step(pixels, labels)
        compute_seconds = time.perf_counter() - tick
        model_rate = steps * batch / compute_seconds
        print(f"model forward+backward+step: {model_rate:8.1f} images/s ({steps} batches in {compute_seconds:.1f} s)")

        # 3. a real epoch: the pipeline feeding the model
        sampler.set_epoch(2)
        tick = time.perf_counter()
        for pixels, labels in loader:
            step(pixels, labels)
        epoch_seconds = time.perf_counter() - tick
        overhead = max(0.0, (epoch_seconds - compute_seconds) / epoch_seconds)
        print(f"epoch: {epoch_seconds:.1f} s against {compute_seconds:.1f} s of pure compute: "
              f"{overhead:.1%} outside forward/backward/step (target <= {OVERHEAD_TARGET:.0%})")  # fmt: skip

    ratio = pipeline_rate / model_rate
    passed = ratio >= PIPELINE_TARGET and overhead <= OVERHEAD_TARGET
    print(f"pipeline/model: {ratio:.2f}x (target >= {PIPELINE_TARGET}x); overhead {overhead:.1%} (target <= {OVERHEAD_TARGET:.0%})")
    print(f"RESULT train {ratio:.2f}x target {PIPELINE_TARGET:.1f}x {'PASS' if passed else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
