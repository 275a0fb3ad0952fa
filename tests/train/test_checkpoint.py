"""Tests for train/checkpoint.py, train/state_tree.py and train/rng.py: exact round trips,
atomic directories, and refusal of damaged or pickled files without running them."""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save
from tiny_training import tiny_model

from slimnas.errors import CheckpointError
from slimnas.train.checkpoint import (
    STATE_FILE,
    TENSORS_FILE,
    checkpoint_dirs,
    latest,
    load_checkpoint,
    load_latest,
    save_checkpoint,
)
from slimnas.train.rng import generator_state, rng_state, set_generator_state, set_rng_state
from slimnas.train.state_tree import join_state, split_state


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    torch.set_num_threads(1)


def assert_same(a, b, where: str = "") -> None:
    """Deep equality, with tensors compared bit for bit and types (tuple vs list) checked."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}/{i}")
    elif isinstance(a, float) and a != a:
        assert b != b, where
    else:
        assert a == b, where


# ---------------------------------------------------------------------------- state tree
def test_state_tree_round_trip_keeps_types_and_bits() -> None:
    state = {
        "ints": {0: torch.arange(3), 7: {"step": torch.tensor(4.0)}},
        "betas": (0.9, 0.999),
        "floats": [0.1, float("inf"), float("-inf"), float("nan"), 1e-300],
        "mixed": {1: "one", "1": "string one", (2, "x"): None},
        "tensors": [torch.randn(2, 3).bfloat16(), torch.tensor([True, False]), torch.zeros(0)],
        "collide": {"a/b": torch.ones(1), "a": {"b": torch.zeros(1)}},
        "marker": {"__tensor__": "not a tensor"},
        "flags": [True, False, None, 2**70],
    }
    tree, tensors = split_state(state)
    tree = json.loads(json.dumps(tree, allow_nan=False))  # strict JSON
    restored = join_state(tree, load_bytes(save(tensors)))
    assert_same(state, restored)


def load_bytes(blob: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(blob)


def test_state_tree_refuses_objects_without_a_safe_form() -> None:
    with pytest.raises(CheckpointError, match="optimizer/fn"):
        split_state({"optimizer": {"fn": object()}})


# ---------------------------------------------------------------------------- optimizer
def trained_optimizer(kind: str, steps: int = 3):
    model = tiny_model(0)
    params = [
        {"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": 1e-3},
        {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0},
    ]
    if kind == "sgd":
        optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(params, lr=1e-3, betas=(0.8, 0.99), amsgrad=kind == "amsgrad")
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(4, 3, 8, 8, generator=g)).square().mean().backward()
        optimizer.step()
    return model, optimizer


@pytest.mark.parametrize("kind", ["sgd", "adamw", "amsgrad"])
def test_optimizer_state_round_trip_is_identical(tmp_path: Path, kind: str) -> None:
    model, optimizer = trained_optimizer(kind)
    path = save_checkpoint(
        tmp_path, 3, {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    )
    saved = load_checkpoint(path)
    assert saved.step == 3
    fresh_model, fresh = trained_optimizer(kind, steps=0)
    fresh_model.load_state_dict(saved.state["model"])
    fresh.load_state_dict(saved.state["optimizer"])
    assert_same(optimizer.state_dict(), fresh.state_dict(), "optimizer")
    # One more identical step from both gives identical weights.
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    for m, o in ((model, optimizer), (fresh_model, fresh)):
        torch.manual_seed(0)  # the same dropout masks
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()
    for (name, a), b in zip(model.state_dict().items(), fresh_model.state_dict().values()):
        assert torch.equal(a, b), name
    assert_same(optimizer.state_dict(), fresh.state_dict(), "optimizer after a step")


def test_tensor_names_are_readable(tmp_path: Path) -> None:
    model, optimizer = trained_optimizer("adamw")
    path = save_checkpoint(tmp_path, 1, {"optimizer": optimizer.state_dict()})
    names = set(load_bytes((path / TENSORS_FILE).read_bytes()))
    assert {
        "optimizer/state/0/exp_avg",
        "optimizer/state/0/exp_avg_sq",
        "optimizer/state/0/step",
    } <= names


# ---------------------------------------------------------------------------- RNG
def draws() -> tuple:
    return (
        random.random(),
        random.gauss(0, 1),
        float(np.random.rand()),
        float(np.random.randn()),
        torch.rand(3).tolist(),
    )


def test_rng_state_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    random.gauss(0, 1)  # leaves a cached Gaussian in python's state
    np.random.randn()
    save_checkpoint(tmp_path, 1, {"rng": rng_state()})
    expected = draws()
    state = load_latest(tmp_path).state["rng"]
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    set_rng_state(state)
    assert draws() == expected


def test_generator_state_round_trip() -> None:
    g = torch.Generator().manual_seed(3)
    torch.rand(5, generator=g)
    state = generator_state(g)
    expected = torch.rand(5, generator=g)
    other = torch.Generator().manual_seed(0)
    set_generator_state(other, json.loads(json.dumps(state)))
    assert torch.equal(torch.rand(5, generator=other), expected)


# ---------------------------------------------------------------------------- directories
def test_keep_last_latest_and_no_leftovers(tmp_path: Path) -> None:
    for step in (2, 4, 6, 8):
        save_checkpoint(tmp_path, step, {"x": torch.tensor(step)}, keep_last=2)
    assert [s for s, _ in checkpoint_dirs(tmp_path)] == [6, 8]
    assert latest(tmp_path) == tmp_path / "ckpt-00000008"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000006", "ckpt-00000008"]
    save_checkpoint(tmp_path, 8, {"x": torch.tensor(80)}, keep_last=2)  # replaces step 8
    assert int(load_latest(tmp_path).state["x"]) == 80
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000006", "ckpt-00000008"]


def test_stale_temporary_directory_is_ignored_then_removed(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, {"x": torch.tensor(1)})
    stale = tmp_path / ".ckpt-00000002.abc.tmp"  # what a writer killed mid-way leaves
    stale.mkdir()
    (stale / TENSORS_FILE).write_bytes(b"half")
    assert latest(tmp_path) == tmp_path / "ckpt-00000001"
    save_checkpoint(tmp_path, 2, {"x": torch.tensor(2)})
    assert not stale.exists()


def test_missing_run_dir_has_no_checkpoint(tmp_path: Path) -> None:
    assert latest(tmp_path / "nothing") is None
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_latest(tmp_path / "nothing")


# ---------------------------------------------------------------------------- damage
def two_checkpoints(tmp_path: Path) -> Path:
    model, optimizer = trained_optimizer("sgd")
    for step in (1, 2):
        save_checkpoint(tmp_path, step, {"model": model.state_dict(), "step": step})
    return tmp_path / "ckpt-00000002"


@pytest.mark.parametrize("name", [TENSORS_FILE, STATE_FILE])
def test_truncated_file_is_refused_naming_it(tmp_path: Path, name: str) -> None:
    newest = two_checkpoints(tmp_path)
    target = newest / name
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=re.escape(str(target))):
        load_checkpoint(newest)
    with pytest.raises(CheckpointError, match=re.escape(str(target))):
        load_latest(tmp_path)
    fallen = load_latest(tmp_path, fallback=True)
    assert fallen.step == 1 and fallen.skipped == (newest,)


def test_flipped_byte_in_tensors_is_caught_by_the_checksum(tmp_path: Path) -> None:
    newest = two_checkpoints(tmp_path)
    target = newest / TENSORS_FILE
    data = bytearray(target.read_bytes())
    data[-3] ^= 0xFF  # inside a weight: still a valid safetensors file
    target.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(newest)


class _Payload:
    """Unpickling this creates ``marker``: proof that code in a pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_the_pickle_payload_is_live(tmp_path: Path) -> None:
    # The payload used below really runs code when unpickled ...
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Payload(marker)))  # our own payload, on purpose
    assert marker.exists()


@pytest.mark.parametrize("where", [TENSORS_FILE, STATE_FILE, "torch.save"])
def test_pickle_disguised_as_checkpoint_is_refused_and_never_run(
    tmp_path: Path, where: str
) -> None:
    # ... and a checkpoint carrying it is refused without running it.
    run_dir = tmp_path / "run"
    newest = two_checkpoints(run_dir)
    marker = tmp_path / "pwned"
    if where == "torch.save":
        target = newest / TENSORS_FILE
        torch.save({"model": _Payload(marker)}, target)
    else:
        target = newest / where
        target.write_bytes(pickle.dumps(_Payload(marker)))
    if target.name == TENSORS_FILE:
        # Give the pickle a matching checksum, so that the safetensors parser is what refuses it.
        meta = json.loads((newest / STATE_FILE).read_text())
        meta["tensors_sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
        (newest / STATE_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=re.escape(str(target))):
        load_checkpoint(newest)
    with pytest.raises(CheckpointError):
        load_latest(run_dir)
    assert load_latest(run_dir, fallback=True).step == 1
    assert not marker.exists()


def test_json_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    newest = two_checkpoints(tmp_path)
    (newest / STATE_FILE).write_text('{"hello": 1}')
    with pytest.raises(CheckpointError, match="not a slimnas checkpoint"):
        load_checkpoint(newest)


def test_missing_file_is_named(tmp_path: Path) -> None:
    newest = two_checkpoints(tmp_path)
    (newest / TENSORS_FILE).unlink()
    with pytest.raises(CheckpointError, match=re.escape(f"cannot read {newest / TENSORS_FILE}")):
        load_checkpoint(newest)
