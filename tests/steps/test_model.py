"""The hand-written ResNets: shapes, families, and loading user-supplied weights."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch

from steps.model import ModelError, ResNet, ResNetConfig, find_weights, load_pretrained, read_state_dict


def _count_weighted_layers(model: ResNet) -> int:
    """Convolutions and the classifier, minus 1x1 projection shortcuts: the paper's layer count."""
    convs = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Conv2d)]
    return len([name for name in convs if "shortcut" not in name]) + 1


@pytest.mark.parametrize("num_layers", [20, 32, 44, 56, 110, 18, 34, 50, 101, 152])
def test_every_depth_has_the_number_of_layers_its_name_says(num_layers: int) -> None:
    model = ResNet(ResNetConfig(num_layers=num_layers, num_classes=10))
    assert _count_weighted_layers(model) == num_layers


@pytest.mark.parametrize(("num_layers", "shape"), [(20, (48, 64)), (18, (64, 80)), (50, (64, 64))])
def test_forward_gives_one_logit_per_class_for_any_batch_size(num_layers: int, shape: tuple[int, int]) -> None:
    model = ResNet(ResNetConfig(num_layers=num_layers, num_classes=7)).eval()
    for batch in (1, 3):
        assert model(torch.rand(batch, 3, *shape) * 255).shape == (batch, 7)


def test_unknown_depth_is_refused_with_the_valid_ones_named() -> None:
    with pytest.raises(ModelError, match=r"num_layers 21 is not one of \[18, 34"):
        ResNetConfig(num_layers=21)


def test_normalization_lives_in_the_state_dict() -> None:
    state = ResNet(ResNetConfig(num_layers=20)).state_dict()
    assert state["mean"].flatten().tolist() == pytest.approx([123.675, 116.28, 103.53])


def _archive_with(tmp_path: Path, state: dict[str, torch.Tensor]) -> Path:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = tmp_path / "model.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("model.pt")
        info.size = len(buffer.getvalue())
        archive.addfile(info, io.BytesIO(buffer.getvalue()))
    return path


def test_pretrained_weights_from_an_archive_replace_everything_but_the_classifier(tmp_path: Path) -> None:
    source = ResNet(ResNetConfig(num_layers=20, num_classes=4))
    target = ResNet(ResNetConfig(num_layers=20, num_classes=10))
    fc_before = target.fc.weight.clone()
    state = read_state_dict(find_weights(_archive_with(tmp_path, source.state_dict()).parent))
    skipped = load_pretrained(target, state)
    assert skipped == ["fc.weight", "fc.bias"]
    assert torch.equal(target.stem[0].weight, source.stem[0].weight)
    assert torch.equal(target.fc.weight, fc_before)


def test_pretrained_weights_of_another_depth_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(ResNet(ResNetConfig(num_layers=32)).state_dict(), path)
    with pytest.raises(ModelError, match="do not fit ResNet-20: unexpected stages.0.3"):
        load_pretrained(ResNet(ResNetConfig(num_layers=20)), read_state_dict(path))


def test_weights_files_that_would_run_code_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"fc.weight": torch.zeros(1), "trap": Path("x")}, path)
    with pytest.raises(ModelError, match="cannot read weights"):
        read_state_dict(path)


def test_a_model_channel_without_weights_says_what_it_found(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no weights here")
    with pytest.raises(ModelError, match="needs exactly one model.tar.gz or \\*.pt file, found nothing"):
        find_weights(tmp_path)
