"""The ResNets of the SageMaker built-in Image Classification algorithm, written by hand.

`num_layers` picks the family, as in the built-in algorithm and the ResNet paper:

- 18, 34, 50, 101, 152, 200: ImageNet-style (7x7/2 stem and 3x3/2 max-pool, four stages of
  64..512 channels; basic blocks up to 34 layers, bottleneck blocks from 50). Meant for
  images of about 224x224.
- 20, 32, 44, 56, 110: small-image (CIFAR) style, 6n+2 layers (3x3/1 stem, three stages of
  n basic blocks with 16, 32 and 64 channels). Meant for small images: the stem keeps the
  full resolution, so a 48x64 input still has 12x16 positions in the last stage.

The network takes float32 NCHW **RGB pixels in 0..255** and normalizes them itself (the
mean/std are buffers, so they travel in the state_dict and in the ONNX graph); it returns
logits. Keeping normalization inside means every consumer (serving, lambdas, batch scoring)
only has to resize and convert to float.

    >>> model = ResNet(ResNetConfig(num_layers=20, num_classes=10))
    >>> model(torch.zeros(2, 3, 48, 64)).shape
    torch.Size([2, 10])
"""
from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# ImageNet statistics in the 0..255 scale, the values MXNet's image iterators use.
RGB_MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
RGB_STD: tuple[float, float, float] = (58.395, 57.12, 57.375)

# num_layers -> (block kind, blocks per stage), from the ResNet paper (He et al., 2015).
IMAGENET_LAYOUTS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
SMALL_IMAGE_LAYERS: tuple[int, ...] = (20, 32, 44, 56, 110)
VALID_NUM_LAYERS: tuple[int, ...] = tuple(sorted(IMAGENET_LAYOUTS)) + SMALL_IMAGE_LAYERS


class ModelError(ValueError):
    """A model that cannot be built or weights that do not fit it."""


@dataclass(frozen=True)
class ResNetConfig:
    num_layers: int = 20  # one of VALID_NUM_LAYERS
    num_classes: int = 10
    in_channels: int = 3  # image_shape's C; 3 for RGB
    mean: tuple[float, ...] = RGB_MEAN  # per channel, 0..255 scale
    std: tuple[float, ...] = RGB_STD

    def __post_init__(self) -> None:
        if self.num_layers not in VALID_NUM_LAYERS:
            raise ModelError(f"num_layers {self.num_layers} is not one of {list(VALID_NUM_LAYERS)}")
        if self.num_classes < 1:
            raise ModelError(f"num_classes must be positive, got {self.num_classes}")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ModelError(f"mean/std need {self.in_channels} values (one per channel), got {self.mean} / {self.std}")

    @property
    def small_image(self) -> bool:
        return self.num_layers in SMALL_IMAGE_LAYERS


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _projection(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, as in ResNet v1.5."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _projection(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _projection(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    """Identity when shapes match, else a strided 1x1 convolution (the paper's option B)."""
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes))


class ResNet(nn.Module):
    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.tensor(config.mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(config.std, dtype=torch.float32).view(1, -1, 1, 1))
        if config.small_image:
            block: type[BasicBlock] | type[Bottleneck] = BasicBlock
            blocks_per_stage = ((config.num_layers - 2) // 6,) * 3
            widths = (16, 32, 64)
            self.stem = nn.Sequential(
                nn.Conv2d(config.in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)
            )
            in_planes = 16
        else:
            kind, blocks_per_stage = IMAGENET_LAYOUTS[config.num_layers]
            block = BasicBlock if kind == "basic" else Bottleneck
            widths = (64, 128, 256, 512)
            self.stem = nn.Sequential(
                nn.Conv2d(config.in_channels, 64, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
            in_planes = 64
        stages = []
        for index, (width, count) in enumerate(zip(widths, blocks_per_stage)):
            layers = []
            for position in range(count):
                stride = 2 if index > 0 and position == 0 else 1
                layers.append(block(in_planes, width, stride))
                in_planes = width * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, config.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # No zero-init of the residual branches' last BN (Goyal et al.): on the driver images
        # it kept ResNet-20 at chance for several epochs, while BN weights of 1 learn at once.

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Float NCHW RGB in 0..255 -> logits (N, num_classes)."""
        x = (pixels - self.mean) / self.std
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class Probabilities(nn.Module):
    """The served form: the network followed by a softmax, so outputs are class probabilities."""

    def __init__(self, network: ResNet) -> None:
        super().__init__()
        self.network = network

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(pixels), dim=1)


# ---------------------------------------------------------------------------------------
# user-supplied weights (use_pretrained_model=1 with a `model` channel)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Weights from a `model.pt` state_dict, or from the `model.pt` inside a `model.tar.gz`.

    Always loaded with `weights_only=True`: a weights file must not be able to run code.
    """
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    try:
        if tarfile.is_tarfile(path):
            with tarfile.open(path, "r:*") as archive:
                try:
                    member = archive.extractfile("model.pt")
                except KeyError:
                    raise ModelError(f"{path} has no model.pt inside") from None
                if member is None:
                    raise ModelError(f"model.pt in {path} is not a regular file")
                data = io.BytesIO(member.read())
            state = torch.load(data, map_location="cpu", weights_only=True)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, tarfile.TarError, EOFError, pickle.UnpicklingError) as error:
        raise ModelError(f"cannot read weights from {path}: {_first_reason(error)}") from error
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ModelError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return state


def _first_reason(error: BaseException) -> str:
    """torch.load's refusals run to a dozen lines; keep the one that names the cause."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "WeightsUnpickler error:" in line:
            return "not a plain state_dict (" + line.split("WeightsUnpickler error:", 1)[1].strip().split(". ")[0] + ")"
    return lines[0] if lines else type(error).__name__


def find_weights(channel: Path) -> Path:
    """The one weights file in a `model` channel directory: model.tar.gz, model.pt, or a single *.pt."""
    if channel.is_file():
        return channel
    for name in ("model.tar.gz", "model.pt"):
        if (channel / name).is_file():
            return channel / name
    candidates = sorted(channel.glob("*.pt")) + sorted(channel.glob("*.tar.gz"))
    if len(candidates) != 1:
        found = [candidate.name for candidate in candidates] or "nothing"
        raise ModelError(f"model channel {channel} needs exactly one model.tar.gz or *.pt file, found {found}")
    return candidates[0]


def load_pretrained(model: ResNet, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy every weight except the classifier into `model`; returns the names left as initialized.

    As in the built-in algorithm, only the top fully connected layer is re-initialized, so a
    model trained on other classes can be fine-tuned. Every other tensor must be present
    with the same shape: a different architecture is an error, not a silent partial load.
    """
    own = model.state_dict()
    skipped = [name for name in own if name.startswith("fc.")]
    problems = []
    for name, tensor in own.items():
        if name in skipped:
            continue
        if name not in state:
            problems.append(f"missing {name}")
        elif state[name].shape != tensor.shape:
            problems.append(f"{name} has shape {tuple(state[name].shape)}, the model needs {tuple(tensor.shape)}")
    problems += [f"unexpected {name}" for name in state if name not in own]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise ModelError(f"pretrained weights do not fit ResNet-{model.config.num_layers}: {shown}")
    fitted = {name: state[name] for name in own if name not in skipped}
    model.load_state_dict(fitted, strict=False)
    return skipped
