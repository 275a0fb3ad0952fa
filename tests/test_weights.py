"""Loading trained weights: checked keys and shapes, run directories, the shared ResNet-20."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import slimnas
from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, load_builtin, normalize
from slimnas.io import save_tensors
from slimnas.models import resnet20
from slimnas.weights import load_weights, read_weights

SHARED = Path("/work/shared/models/resnet20_cifar10/model.safetensors")


def test_loads_a_safetensors_file_and_a_run_dir(tmp_path) -> None:
    torch.manual_seed(0)
    trained = resnet20()
    save_tensors(trained.state_dict(), tmp_path / "model.safetensors")
    for source in (tmp_path / "model.safetensors", tmp_path):
        model = load_weights(resnet20(), source)
        for key, value in trained.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), key


def test_loads_the_newest_checkpoint_of_a_run(tmp_path) -> None:
    from slimnas.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    trained = resnet20()
    save_checkpoint(tmp_path, 10, {"model": trained.state_dict(), "step": 10})
    model = load_weights(resnet20(), tmp_path)
    assert torch.equal(model.conv1.weight, trained.conv1.weight)


def test_loads_supernet_weights_onto_a_plain_model(tmp_path) -> None:
    torch.manual_seed(0)
    space = slimnas.trace(resnet20(), torch.randn(1, 3, 32, 32))
    supernet = slimnas.Supernet(resnet20(), space)
    save_tensors(supernet.state_dict(), tmp_path / "w.safetensors")  # keys "model.*"
    model = load_weights(resnet20(), tmp_path / "w.safetensors")
    assert torch.equal(model.fc.weight, supernet.model.fc.weight)


def test_mismatch_names_the_first_key_and_changes_nothing(tmp_path) -> None:
    save_tensors(resnet20(num_classes=100).state_dict(), tmp_path / "other.safetensors")
    model = resnet20()
    before = model.fc.weight.clone()
    with pytest.raises(slimnas.CheckpointError, match=r"'fc.bias' has shape \(100,\)"):
        load_weights(model, tmp_path / "other.safetensors")
    assert torch.equal(model.fc.weight, before)
    state = resnet20().state_dict()
    del state["bn1.weight"]
    save_tensors(state, tmp_path / "missing.safetensors")
    with pytest.raises(slimnas.CheckpointError, match="'bn1.weight' is missing from the weights"):
        load_weights(resnet20(), tmp_path / "missing.safetensors")


@pytest.mark.parametrize("name", ["model.pt", "corrupt.safetensors", "absent.safetensors"])
def test_bad_files_are_one_line(tmp_path, name: str) -> None:
    path = tmp_path / name
    if name != "absent.safetensors":
        path.write_bytes(b"\x80\x04\x95 not a safetensors file")
    with pytest.raises(slimnas.CheckpointError) as caught:
        read_weights(path)
    assert "\n" not in str(caught.value)
    with pytest.raises(slimnas.CheckpointError, match="neither model.safetensors"):
        read_weights(tmp_path)


@pytest.mark.skipif(not SHARED.exists(), reason="the shared trained ResNet-20 is absent")
def test_shared_resnet20_keeps_its_accuracy_after_ranking() -> None:
    images, labels = load_builtin(train=False)
    x = normalize(images[:400], CIFAR10_MEAN, CIFAR10_STD)
    y = labels[:400]
    model = load_weights(resnet20(), SHARED).eval()
    with torch.no_grad():
        before = model(x)
    space = slimnas.trace(model, x[:1])
    supernet = slimnas.Supernet(model, space).eval()
    ranking = supernet.rank_channels("l1")
    assert len(ranking.orders) == len(space.channel_units())
    with torch.no_grad():
        after = supernet(x)
    accuracy = (after.argmax(1) == y).float().mean().item()
    assert accuracy == (before.argmax(1) == y).float().mean().item()
    assert accuracy > 0.75  # a trained model: 85 % on the full test set
    assert (after - before).abs().max().item() <= 1e-4
