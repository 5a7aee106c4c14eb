"""Training job entry point with the SageMaker built-in Image Classification contract.

From outside this looks like the built-in algorithm: it reads the /opt/ml layout, takes the
built-in hyperparameter names (all strings), reads `train` and `validation` channels of
MXNet RecordIO, prints metric lines in the built-in algorithm's format, and on failure
writes a one-line reason to /opt/ml/output/failure and exits non-zero. Inside it is
PyTorch (CUDA when present) and the model leaves as ONNX.

    ROOT/input/config/hyperparameters.json   {"num_classes": "10", "epochs": "12", ...}
    ROOT/input/config/resourceconfig.json    optional; one host only
    ROOT/input/data/train/*.rec              RecordIO from the processing step (.idx optional)
    ROOT/input/data/validation/*.rec
    ROOT/input/data/model/                   optional: weights for use_pretrained_model=1
    ROOT/checkpoints/checkpoint.pt           resume state; a restarted job continues from it
    ROOT/model/{model.onnx,model.json,model.pt}   the best epoch (SageMaker tars this dir)
    ROOT/output/data/metrics.json            per-epoch metrics and the final validation metrics
    ROOT/output/failure                      "ClientError: ..." or "AlgorithmError: ..."

Run it (ROOT defaults to /opt/ml, as in a SageMaker container):

    python -m steps.train --root /tmp/job
    ddcicd train --data processed/ --out out/ --hp epochs=3 --hp num_layers=20

Exit codes: 0 done, 2 bad hyperparameters or data (ClientError), 1 anything else.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from steps.training_data import DataError, RecordImageDataset, RecordIndex, make_loader, scan_channel
from steps.atomic import write_atomically
from steps.container_layout import TrainingLayout
from steps.export import MODEL_FILES, write_model_dir
from steps.inference import CODE_FOLDER, write_serving_code
from steps.quantize import CALIBRATION_IMAGES
from steps.hyperparameters import HyperparameterError, TrainConfig, parse_hyperparameters
from steps.model import ModelError, ResNet, ResNetConfig, find_weights, load_pretrained, read_state_dict

log = logging.getLogger("steps.train")
LOG_FORMAT = "[%(asctime)s %(levelname)s %(thread)d] %(message)s"  # the built-in algorithm's
LOG_DATE_FORMAT = "%m/%d/%Y %H:%M:%S"
CHECKPOINT_FORMAT = 1


class ClientError(Exception):
    """The job's inputs are wrong (hyperparameters, channels, data): the caller can fix it."""


def read_config(paths: TrainingLayout, seed: int = 0, num_workers: int = 2) -> TrainConfig:
    """hyperparameters.json (+ resourceconfig.json) -> TrainConfig, or ClientError."""
    try:
        raw = json.loads(paths.hyperparameters.read_text())
    except FileNotFoundError:
        raise ClientError(f"no hyperparameters file at {paths.hyperparameters}") from None
    except json.JSONDecodeError as error:
        raise ClientError(f"{paths.hyperparameters} is not JSON: {error}") from None
    try:
        config = parse_hyperparameters(raw, seed=seed, num_workers=num_workers)
    except HyperparameterError as error:
        raise ClientError(str(error)) from None
    if paths.resource_config.is_file():
        hosts = json.loads(paths.resource_config.read_text()).get("hosts", [])
        if len(hosts) > 1:
            raise ClientError(f"resourceconfig.json lists {len(hosts)} hosts {hosts}: this trainer runs on one host")
    return config


def setup_logging() -> None:
    """The job's lines go to stdout (SageMaker ships stdout to CloudWatch); the root logger is left alone."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt=LOG_DATE_FORMAT))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def log_metric(epoch: int, name: str, value: float) -> None:
    """`Epoch[3] Train-accuracy=0.912000`: the lines SageMaker metric definitions match."""
    log.info("Epoch[%d] %s=%f", epoch, name, value)


def main(config: TrainConfig, paths: TrainingLayout) -> dict[str, Any]:
    """Train, keep the best epoch by validation accuracy, export it; returns metrics.json's content."""
    # -------------------------------------------------------------------------------
    # setup: threads, seeds, device
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(cpus)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    channels, height, width = config.image_shape
    log.info("hyperparameters: %s", json.dumps(config.hyperparameters(), sort_keys=True))
    log.info("device %s, %d torch threads, %d input workers", device, cpus, config.num_workers)

    # -------------------------------------------------------------------------------
    # data: scan both channels up front, so bad records fail the job before it trains
    try:
        train_index = scan_channel(paths.channel("train"), config.num_classes)
        validation_index = scan_channel(paths.channel("validation"), config.num_classes)
    except DataError as error:
        raise ClientError(str(error)) from None
    if len(train_index) != config.num_training_samples:
        log.warning(
            "num_training_samples is %d but the train channel holds %d records; using the records",
            config.num_training_samples,
            len(train_index),
        )
    if config.mini_batch_size > len(train_index):
        raise ClientError(f"mini_batch_size {config.mini_batch_size} is larger than the {len(train_index)} training records")
    classes = class_names(paths, config.num_classes)
    train_set = RecordImageDataset(train_index, config.image_shape, config.augmentation_type, config.resize, config.seed)
    validation_set = RecordImageDataset(validation_index, config.image_shape, None, config.resize, config.seed)
    # drop_last: a last batch of one or two images gives BatchNorm useless statistics
    train_loader, train_sampler = make_loader(train_set, config.mini_batch_size, True, config.num_workers, drop_last=True)
    validation_loader, _ = make_loader(validation_set, 2 * config.mini_batch_size, False, config.num_workers)
    log.info("train: %d records in %s; validation: %d records", len(train_index), paths.channel("train"), len(validation_index))

    # -------------------------------------------------------------------------------
    # model, loss, optimizer
    model = ResNet(ResNetConfig(num_layers=config.num_layers, num_classes=config.num_classes, in_channels=channels))
    if config.use_pretrained_model:
        load_user_weights(model, paths)
    model.to(device)
    class_weights = None
    if config.use_weighted_loss:
        counts = train_index.class_counts(config.num_classes).astype(np.float64)
        weights = np.where(counts > 0, counts.sum() / (config.num_classes * np.maximum(counts, 1)), 1.0)
        class_weights = torch.tensor(weights, dtype=torch.float32, device=device)
    optimizer = make_optimizer(model, config)
    autocast_dtype = None
    if config.precision_dtype == "float16":  # CPUs do bfloat16 well and float16 poorly
        autocast_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16)

    # -------------------------------------------------------------------------------
    # resume: a job restarted after a kill continues after its newest checkpoint
    state = {"next_epoch": 0, "history": [], "best": None, "since_improvement": 0, "stopping_best": None}
    checkpoint = read_checkpoint(paths, config)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        state = checkpoint["state"]
        log.info("resuming from %s after epoch %d", paths.checkpoint, state["next_epoch"] - 1)

    # -------------------------------------------------------------------------------
    # the training loop: one pass over `train`, one over `validation`, per epoch
    started = time.perf_counter()
    epoch = state["next_epoch"]
    while epoch < config.epochs:
        learning_rate = learning_rate_at(epoch, config)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        train_sampler.set_epoch(epoch)
        model.train()
        tick = time.perf_counter()
        seen, correct, loss_sum, top_k_hits = 0, 0, 0.0, 0
        for batch_number, (pixels, labels) in enumerate(train_loader):
            pixels = pixels.to(device, non_blocking=True).float()
            labels = labels.to(device, non_blocking=True)
            # forward, backward, step
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                logits = model(pixels)
                loss = F.cross_entropy(logits, labels, weight=class_weights)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            # running train metrics, as MXNet's metric objects accumulate them
            seen += len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            loss_sum += loss.item() * len(labels)
            if config.top_k:
                top_k_hits += int((logits.topk(config.top_k, 1).indices == labels[:, None]).any(1).sum())
            if (batch_number + 1) % 20 == 0:
                speed = seen / (time.perf_counter() - tick)
                log.info("Epoch[%d] Batch [%d]\tSpeed: %.2f samples/sec\taccuracy=%f", epoch, batch_number + 1, speed, correct / seen)
        if not math.isfinite(loss_sum):
            raise RuntimeError(f"training diverged in epoch {epoch}: loss is {loss_sum / seen} (try a lower learning_rate)")
        log_metric(epoch, "Train-accuracy", correct / seen)
        log_metric(epoch, "Train-cross-entropy", loss_sum / seen)
        if config.top_k:
            log_metric(epoch, f"Train-top_k_accuracy_{config.top_k}", top_k_hits / seen)
        log.info("Epoch[%d] Time cost=%.3f", epoch, time.perf_counter() - tick)

        validation = evaluate(model, validation_loader, device, config.top_k)
        log_metric(epoch, "Validation-accuracy", validation["accuracy"])
        log_metric(epoch, "Validation-cross-entropy", validation["loss"])
        if config.top_k:
            log_metric(epoch, f"Validation-top_k_accuracy_{config.top_k}", validation["top_k_accuracy"])
        state["history"].append(
            {
                "epoch": epoch,
                "learning_rate": learning_rate,
                "train_loss": loss_sum / seen,
                "train_accuracy": correct / seen,
                "validation_loss": validation["loss"],
                "validation_accuracy": validation["accuracy"],
                "validation_log_loss": validation["log_loss"],
                "seconds": time.perf_counter() - tick,
            }
        )

        # keep the best epoch (validation accuracy, then lower log loss), as the built-in does
        best = state["best"]
        if best is None or (validation["accuracy"], -validation["log_loss"]) > (best["accuracy"], -best["log_loss"]):
            state["best"] = {
                "epoch": epoch,
                "accuracy": validation["accuracy"],
                "log_loss": validation["log_loss"],
                "weights": {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()},
            }
            log.info("Storing the best model with validation accuracy: %f", validation["accuracy"])

        # early stopping: no relative improvement above tolerance for `patience` epochs
        stop = False
        if config.early_stopping:
            reference = state["stopping_best"]
            improved = reference is None or validation["accuracy"] > reference * (1 + config.early_stopping_tolerance)
            if improved:
                state["stopping_best"], state["since_improvement"] = validation["accuracy"], 0
            else:
                state["since_improvement"] += 1
            stop = epoch + 1 >= config.early_stopping_min_epochs and state["since_improvement"] >= config.early_stopping_patience
        epoch += 1
        state["next_epoch"] = config.epochs if stop else epoch

        # checkpoint every checkpoint_frequency epochs (every epoch when unset) and at the end
        frequency = config.checkpoint_frequency or 1
        if epoch % frequency == 0 or state["next_epoch"] >= config.epochs:
            write_checkpoint(paths, config, model, optimizer, state)
        if stop:
            log.info("Early stopping after epoch %d: no improvement for %d epochs", epoch - 1, state["since_improvement"])
            break
    log.info("trained %d epochs in %.1f s", len(state["history"]), time.perf_counter() - started)

    # -------------------------------------------------------------------------------
    # export the best epoch: model dir (SageMaker packs it) and metrics.json
    best = state["best"]
    model.load_state_dict(best["weights"])
    metrics = {
        "epochs": state["history"],
        "final": {
            "epoch": best["epoch"],
            "validation_accuracy": best["accuracy"],
            "validation_log_loss": best["log_loss"],
            "validation_samples": len(validation_index),
            "train_samples": len(train_index),
        },
    }
    calibration = calibration_images(train_index, config)
    write_model_dir(model, paths.model, config.image_shape, classes, config.hyperparameters(), metrics["final"],
                    calibration, f"{len(calibration)} training images, a seeded sample of the train channel")
    if config.extra.get("sagemaker_program"):  # script mode: served by a framework image that imports code/
        write_serving_code(paths.model)
    write_atomically(paths.metrics, (json.dumps(metrics, indent=2) + "\n").encode())
    log.info("best epoch %d: validation accuracy %.4f, log loss %.4f", best["epoch"], best["accuracy"], best["log_loss"])
    return metrics


def calibration_images(index: RecordIndex, config: TrainConfig) -> np.ndarray:
    """A seeded sample of training images as the server feeds them to the graph (no
    augmentation: the whole image fitted to image_shape, float32 0..255), to calibrate the
    int8 graph's activation ranges (steps/quantize.py)."""
    dataset = RecordImageDataset(index, config.image_shape, None, config.resize, config.seed)
    chosen = np.random.default_rng((config.seed, 8)).permutation(len(dataset))[:CALIBRATION_IMAGES]
    return np.stack([dataset[(0, int(position))][0].numpy() for position in chosen]).astype(np.float32)


def class_names(paths: TrainingLayout, num_classes: int) -> list[str]:
    """Class names from the processing step's manifest.json in the train channel, else c0..cN-1."""
    manifest = paths.channel("train") / "manifest.json"
    if not manifest.is_file():
        return [f"c{index}" for index in range(num_classes)]
    classes = json.loads(manifest.read_text()).get("classes")
    if not isinstance(classes, list) or len(classes) != num_classes:
        raise ClientError(f"{manifest} lists classes {classes}, but num_classes is {num_classes}")
    return [str(name) for name in classes]


def load_user_weights(model: ResNet, paths: TrainingLayout) -> None:
    """use_pretrained_model=1: weights from the `model` channel (there are no built-in ImageNet ones here)."""
    channel = paths.channel("model")
    if not channel.exists():
        raise ClientError(
            "use_pretrained_model=1 needs a `model` channel with model.tar.gz or model.pt "
            f"(nothing at {channel}); this trainer has no built-in pretrained weights"
        )
    try:
        weights = find_weights(channel)
        skipped = load_pretrained(model, read_state_dict(weights))
    except ModelError as error:
        raise ClientError(str(error)) from None
    log.info("loaded pretrained weights from %s; re-initialized %s", weights, ", ".join(skipped))


def make_optimizer(model: ResNet, config: TrainConfig) -> torch.optim.Optimizer:
    """The built-in's optimizers; weight decay applies to sgd and nag only, as there."""
    parameters = model.parameters()
    if config.optimizer in ("sgd", "nag"):
        return torch.optim.SGD(
            parameters,
            lr=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.optimizer == "nag" and config.momentum > 0,
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.learning_rate, betas=(config.beta_1, config.beta_2), eps=config.eps)
    return torch.optim.RMSprop(parameters, lr=config.learning_rate, alpha=config.gamma, eps=config.eps)


def learning_rate_at(epoch: int, config: TrainConfig) -> float:
    """Step schedule: multiply by lr_scheduler_factor after each epoch listed in lr_scheduler_step.

    With lr_scheduler_step "8,11", epochs 0-7 use learning_rate, 8-10 ten times less, 11+ a hundred.
    """
    drops = sum(1 for step in config.lr_scheduler_step if epoch >= step)
    return config.learning_rate * config.lr_scheduler_factor**drops


@torch.no_grad()
def evaluate(model: ResNet, loader: torch.utils.data.DataLoader, device: torch.device, top_k: int | None) -> dict[str, float]:
    """Accuracy, mean cross-entropy and Kaggle's multi-class log loss (probabilities clipped at 1e-15)."""
    model.eval()
    probabilities, labels = [], []
    for pixels, batch_labels in loader:
        logits = model(pixels.to(device).float())
        probabilities.append(torch.softmax(logits.float(), 1).cpu().double())
        labels.append(batch_labels)
    p = torch.cat(probabilities).numpy()
    y = torch.cat(labels).numpy()
    picked = p[np.arange(len(y)), y]
    clipped = np.clip(p, 1e-15, 1 - 1e-15)
    clipped /= clipped.sum(axis=1, keepdims=True)  # Kaggle rescales each row after clipping
    result = {
        "accuracy": float((p.argmax(1) == y).mean()),
        "loss": float(-np.log(np.maximum(picked, np.finfo(np.float64).tiny)).mean()),
        "log_loss": float(-np.log(clipped[np.arange(len(y)), y]).mean()),
    }
    if top_k:
        top = np.argsort(-p, axis=1)[:, :top_k]
        result["top_k_accuracy"] = float((top == y[:, None]).any(1).mean())
    return result


def write_checkpoint(
    paths: TrainingLayout, config: TrainConfig, model: ResNet, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Everything needed to continue, in one file replaced atomically (a kill mid-write loses nothing)."""
    buffer = io.BytesIO()
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "hyperparameters": config.hyperparameters(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "state": state,
        },
        buffer,
    )
    write_atomically(paths.checkpoint, buffer.getvalue())
    log.info('Saved checkpoint to "%s" after epoch %d', paths.checkpoint, state["next_epoch"] - 1)


def read_checkpoint(paths: TrainingLayout, config: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None; one from different hyperparameters is ignored."""
    if not paths.checkpoint.is_file():
        return None
    checkpoint = torch.load(paths.checkpoint, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT or checkpoint.get("hyperparameters") != config.hyperparameters():
        log.warning("ignoring %s: written by a job with other hyperparameters", paths.checkpoint)
        return None
    return checkpoint


def write_failure(paths: TrainingLayout, reason: str) -> None:
    """One line in output/failure, which SageMaker reports as the job's FailureReason."""
    line = " ".join(reason.split())[:1000]
    write_atomically(paths.failure, (line + "\n").encode())


def run(argv: list[str] | None = None) -> int:
    """Parse the command line, run the job, turn errors into output/failure and an exit code."""
    parser = argparse.ArgumentParser(description="SageMaker-style image classification training job")
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("DDCICD_ML_ROOT", "/opt/ml")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("DDCICD_SEED", "0")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("DDCICD_WORKERS", "2")))
    # SageMaker also passes "train" (built-in containers) or the hyperparameters as flags
    # (script mode); hyperparameters.json holds the same values, so the rest is ignored.
    arguments, ignored = parser.parse_known_args(argv)
    setup_logging()
    if ignored:
        log.info("ignoring command-line arguments %s (hyperparameters come from hyperparameters.json)", ignored)
    paths = TrainingLayout(arguments.root)
    try:
        config = read_config(paths, seed=arguments.seed, num_workers=max(0, arguments.workers))
        main(config, paths)
    except ClientError as error:
        log.error("ClientError: %s", error)
        write_failure(paths, f"ClientError: {error}")
        return 2
    except Exception as error:  # noqa: BLE001 - any other failure must still leave a reason
        log.exception("AlgorithmError")
        for name in MODEL_FILES:  # never leave a partial model behind
            (paths.model / name).unlink(missing_ok=True)
        shutil.rmtree(paths.model / CODE_FOLDER, ignore_errors=True)
        write_failure(paths, f"AlgorithmError: {type(error).__name__}: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
