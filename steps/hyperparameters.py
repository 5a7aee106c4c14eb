"""Hyperparameters of the SageMaker built-in Image Classification algorithm -> TrainConfig.

SageMaker hands a training job `/opt/ml/input/config/hyperparameters.json`, a JSON object
whose values are all strings. This module knows the built-in algorithm's names, defaults and
valid values, and turns such an object into a typed, validated `TrainConfig`:

    >>> config = parse_hyperparameters({"num_classes": "10", "num_training_samples": "800",
    ...                                 "num_layers": "20", "image_shape": "3,48,64"})
    >>> config.num_layers, config.image_shape, config.mini_batch_size
    (20, (3, 48, 64), 32)
    >>> parse_hyperparameters({"num_classes": "10", "num_training_samples": "8", "epoch": "3"})
    Traceback (most recent call last):
    HyperparameterError: unknown hyperparameter "epoch" (did you mean "epochs"?)

Everything wrong is found before training starts, and reported as one line. The pipeline's
config checks names with `check_name` when it is loaded, and writes the values with
`as_strings`; importing this module does not import torch (steps.model is loaded only to
check num_layers), so the config stays light.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

OPTIMIZERS = ("sgd", "adam", "rmsprop", "nag")
AUGMENTATION_TYPES = ("crop", "crop_color", "crop_color_transform")
PRECISION_DTYPES = ("float32", "float16")

class HyperparameterError(ValueError):
    """A hyperparameter that is unknown, missing or has an invalid value."""


@dataclass(frozen=True)
class TrainConfig:
    # --- data and network
    num_classes: int  # required; labels must be 0..num_classes-1
    num_training_samples: int  # required; a mismatch with the data is logged, not fatal
    num_layers: int = 152  # 18/34/50/101/152/200 ImageNet-style, 20/32/44/56/110 small-image
    image_shape: tuple[int, int, int] = (3, 224, 224)  # "C,H,W"; the network's input size
    resize: int | None = None  # shorter side in pixels before cropping; None = as stored
    augmentation_type: str | None = None  # None, crop, crop_color or crop_color_transform
    multi_label: bool = False  # only False (single-label softmax) is supported
    use_weighted_loss: bool = False  # weight the loss by inverse class frequency
    # --- optimization
    epochs: int = 30
    mini_batch_size: int = 32
    learning_rate: float = 0.1
    optimizer: str = "sgd"  # sgd, adam, rmsprop or nag (SGD with Nesterov momentum)
    momentum: float = 0.9  # sgd and nag
    weight_decay: float = 0.0001
    beta_1: float = 0.9  # adam
    beta_2: float = 0.999  # adam
    eps: float = 1e-8  # adam and rmsprop
    gamma: float = 0.9  # rmsprop's moving-average decay
    lr_scheduler_step: tuple[int, ...] = ()  # epochs after which lr *= lr_scheduler_factor
    lr_scheduler_factor: float = 0.1
    precision_dtype: str = "float32"  # float16 = autocast (bfloat16 on CPU)
    # --- stopping, checkpoints, reporting
    early_stopping: bool = False
    early_stopping_min_epochs: int = 10
    early_stopping_patience: int = 5
    early_stopping_tolerance: float = 0.0  # relative improvement of validation accuracy
    checkpoint_frequency: int | None = None  # epochs between checkpoints; None = every epoch
    use_pretrained_model: bool = False  # start from the weights in the `model` channel
    top_k: int | None = None  # also report top-k accuracy (k > 1)
    kv_store: str | None = None  # dist_sync/dist_async; single machine here, so unused
    # --- not hyperparameters: set by the caller (environment of the job)
    seed: int = 0
    num_workers: int = 2  # input-pipeline worker processes
    extra: dict[str, str] = field(default_factory=dict)  # sagemaker_* names the SDK adds

    def hyperparameters(self) -> dict[str, str]:
        """The config back as SageMaker-style strings (what model.json records)."""
        out: dict[str, str] = {}
        for spec in fields(self):
            if spec.name in _NOT_HYPERPARAMETERS:
                continue
            value = getattr(self, spec.name)
            if value is None or value == ():
                continue
            if isinstance(value, tuple):
                value = ",".join(str(item) for item in value)
            elif isinstance(value, bool):
                value = "1" if value else "0"
            out[spec.name] = str(value)
        return out


_NOT_HYPERPARAMETERS = {"seed", "num_workers", "extra"}


# ---------------------------------------------------------------------------------------
# value parsers: str -> typed value, raising ValueError with the reason


def _positive_int(text: str) -> int:
    value = int(text.strip())
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _unit_float(text: str) -> float:
    value = float(text.strip())
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be a number in [0, 1]")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text.strip())
    if not value >= 0.0:
        raise ValueError("must be a number >= 0")
    return value


def _flag(text: str) -> bool:
    """The built-in algorithm uses both 0/1 and True/False spellings."""
    lowered = text.strip().lower()
    if lowered in ("1", "true"):
        return True
    if lowered in ("0", "false"):
        return False
    raise ValueError("must be 0/1 or True/False")


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


def _num_layers(text: str) -> int:
    from steps.model import VALID_NUM_LAYERS  # here, not at the top: steps.model imports torch

    value = int(text.strip())
    if value not in VALID_NUM_LAYERS:
        raise ValueError(f"must be one of {', '.join(str(n) for n in VALID_NUM_LAYERS)}")
    return value


def _image_shape(text: str) -> tuple[int, int, int]:
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 3:
        raise ValueError('must be "channels,height,width", e.g. "3,224,224"')
    channels, height, width = (int(part) for part in parts)
    if channels not in (1, 3):
        raise ValueError("must have 1 or 3 channels")
    if height < 8 or width < 8:
        raise ValueError("height and width must be at least 8")
    return channels, height, width


def _epoch_list(text: str) -> tuple[int, ...]:
    steps = tuple(int(part.strip()) for part in text.split(",") if part.strip())
    if not steps or any(step <= 0 for step in steps) or list(steps) != sorted(set(steps)):
        raise ValueError('must be increasing positive epochs separated by commas, e.g. "10,20"')
    return steps


def _top_k(text: str) -> int:
    value = int(text.strip())
    if value <= 1:
        raise ValueError("must be an integer greater than 1 (top-1 is the accuracy)")
    return value


def _multi_label(text: str) -> bool:
    if _flag(text):
        raise ValueError("multi-label training is not supported by this trainer; use 0")
    return False


# name -> parser. Names and meanings are the built-in algorithm's.
PARSERS: dict[str, Callable[[str], Any]] = {
    "num_classes": _positive_int,
    "num_training_samples": _positive_int,
    "num_layers": _num_layers,
    "image_shape": _image_shape,
    "resize": _positive_int,
    "augmentation_type": _choice(AUGMENTATION_TYPES),
    "multi_label": _multi_label,
    "use_weighted_loss": _flag,
    "epochs": _positive_int,
    "mini_batch_size": _positive_int,
    "learning_rate": _unit_float,
    "optimizer": _choice(OPTIMIZERS),
    "momentum": _unit_float,
    "weight_decay": _unit_float,
    "beta_1": _unit_float,
    "beta_2": _unit_float,
    "eps": _unit_float,
    "gamma": _unit_float,
    "lr_scheduler_step": _epoch_list,
    "lr_scheduler_factor": _unit_float,
    "precision_dtype": _choice(PRECISION_DTYPES),
    "early_stopping": _flag,
    "early_stopping_min_epochs": _positive_int,
    "early_stopping_patience": _positive_int,
    "early_stopping_tolerance": _non_negative_float,
    "checkpoint_frequency": _positive_int,
    "use_pretrained_model": _flag,
    "top_k": _top_k,
    "kv_store": _choice(("dist_sync", "dist_async")),
}
REQUIRED = ("num_classes", "num_training_samples")

# Names SageMaker itself adds (script mode, tuning jobs): accepted and kept, never used.
_PASSED_THROUGH_PREFIXES = ("sagemaker_", "_tuning_objective_metric")


def is_passed_through(name: str) -> bool:
    """A name SageMaker adds (sagemaker_program, ...): accepted, kept in TrainConfig.extra, never used."""
    return name.startswith(_PASSED_THROUGH_PREFIXES)


def check_name(name: str) -> None:
    """Raises HyperparameterError for a name the built-in algorithm does not know, with the closest known name."""
    if name in PARSERS or is_passed_through(name):
        return
    close = difflib.get_close_matches(name, PARSERS, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    raise HyperparameterError(f'unknown hyperparameter "{name}"{hint}')


def as_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """Values as SageMaker hands them to the job: every one a string (`13` -> "13", `0.002` -> "0.002")."""
    return {name: str(value) for name, value in values.items()}


def parse_hyperparameters(raw: dict[str, Any], *, seed: int = 0, num_workers: int = 2) -> TrainConfig:
    """Validate a hyperparameters.json object; the first problem found is raised."""
    if not isinstance(raw, dict):
        raise HyperparameterError(f"hyperparameters must be a JSON object, got {type(raw).__name__}")
    values: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for name, text in raw.items():
        if is_passed_through(name):
            extra[name] = str(text)
            continue
        check_name(name)
        if not isinstance(text, str):
            raise HyperparameterError(
                f"hyperparameter {name} must be a string, as SageMaker passes it, got {type(text).__name__} {text!r}"
            )
        try:
            values[name] = PARSERS[name](text)
        except ValueError as error:
            reason = str(error)
            if "invalid literal" in reason or "could not convert" in reason:
                reason = "not a number"
            raise HyperparameterError(f"invalid value {text!r} for hyperparameter {name}: {reason}") from None
    missing = [name for name in REQUIRED if name not in values]
    if missing:
        raise HyperparameterError(f"missing required hyperparameter {', '.join(missing)}")
    config = TrainConfig(**values, seed=seed, num_workers=num_workers, extra=extra)
    _check_combinations(config)
    return config


def _check_combinations(config: TrainConfig) -> None:
    """Rules that involve more than one hyperparameter."""
    if config.checkpoint_frequency is not None and config.checkpoint_frequency > config.epochs:
        raise HyperparameterError(
            f"invalid value {config.checkpoint_frequency} for hyperparameter checkpoint_frequency: "
            f"must not be greater than epochs ({config.epochs})"
        )
    if config.top_k is not None and config.top_k > config.num_classes:
        raise HyperparameterError(
            f"invalid value {config.top_k} for hyperparameter top_k: must not exceed num_classes ({config.num_classes})"
        )
    if config.mini_batch_size > config.num_training_samples:
        raise HyperparameterError(
            f"invalid value {config.mini_batch_size} for hyperparameter mini_batch_size: "
            f"greater than num_training_samples ({config.num_training_samples})"
        )
