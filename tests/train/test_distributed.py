"""Tests for train/distributed.py and the Trainer under DDP: two real processes on gloo.

Two ranks with batch B each must train exactly like one process with batch 2·B: the same weights
after N steps (float tolerance), the same logged loss, the same archs drawn by the sandwich step.
The nets here have no BatchNorm and no dropout, whose per-rank batch statistics and masks differ
from one process's by design; a third run with both checks that the ranks stay identical.

As a script, run with torchrun's environment (the test sets it): ``python test_distributed.py
OUT`` runs every scenario on this rank and writes weights and results under OUT.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_training import SIZE, tiny_data, tiny_supernet
from torch import nn

import slimnas
from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, BatchLoader
from slimnas.errors import ConfigError
from slimnas.io import load_tensors, save_tensors
from slimnas.train import Trainer, TrainingError, distributed, plain_step, read_metrics
from slimnas.train import sandwich_step as make_sandwich_step

SCRIPT = Path(__file__)
WORLD = 2
BATCH = 8  # per rank; 48 images → 3 global batches of 16 per epoch
EPOCHS = 2
STEPS = EPOCHS * 3
ATOL = 1e-5


class PlainNet(nn.Module):
    """A tiny conv net without BatchNorm or dropout: its gradient on a batch is the mean of its
    per-image gradients, so shards averaged over ranks give the global batch's exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)
        # Used by no pass: its grad stays None, so the optimizer leaves it alone (no decay).
        self.spare = nn.Parameter(torch.ones(2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean((2, 3)))


def loader(batch: int, rank: int = 0, world_size: int = 1) -> BatchLoader:
    images, labels = tiny_data()
    return BatchLoader(
        images,
        labels,
        batch,
        seed=0,
        augment=True,
        padding=1,
        drop_last=True,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        rank=rank,
        world_size=world_size,
    )


def plain_supernet() -> slimnas.Supernet:
    torch.manual_seed(0)
    model = PlainNet()
    return slimnas.Supernet(model, slimnas.trace(model, torch.randn(1, 3, SIZE, SIZE), divisor=4))


def plain_trainer(run_dir, batch, rank=0, world_size=1, **options) -> Trainer:
    torch.manual_seed(0)
    settings = dict(lr=0.05, weight_decay=5e-4, warmup_steps=2, grad_clip=1.0)
    settings.update(options)
    return Trainer(
        PlainNet(),
        loader(batch, rank, world_size),
        step_fn=plain_step(0.1),
        epochs=EPOCHS,
        run_dir=run_dir,
        checkpoint_every=2,
        progress=False,
        **settings,
    )


def sandwich_trainer(run_dir, batch, rank=0, world_size=1, bn: bool = False) -> Trainer:
    supernet = tiny_supernet() if bn else plain_supernet()  # tiny_supernet has BN and dropout
    step = make_sandwich_step(supernet, n=3, generator=torch.Generator().manual_seed(1))
    return Trainer(
        supernet,
        loader(batch, rank, world_size),
        step_fn=step,
        optimizer="adamw",
        lr=3e-3,
        weight_decay=0.05,
        epochs=EPOCHS,
        run_dir=run_dir,
        checkpoint_every=2,
        progress=False,
    )


class NanOnRank1:
    """A plain step whose loss is NaN on rank 1 at step 2."""

    def __init__(self) -> None:
        self.calls = 0
        self.step = plain_step()

    def __call__(self, model, batch, backward):
        self.calls += 1
        loss, metrics = self.step(model, batch, backward)
        if distributed.rank() == 1 and self.calls == 2:
            loss = loss * float("nan")
        return loss, metrics


# ----------------------------------------------------------------------------- a rank's script
def run_rank(out: Path) -> None:
    """Every scenario on this rank (started by the test with torchrun's environment)."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    assert distributed.init_from_env().type == "cpu"
    rank, size = distributed.rank(), distributed.world_size()
    assert size == WORLD and distributed.is_distributed()
    result: dict = {"rank": rank, "main": distributed.is_main()}

    # Each rank is given its own run_dir: rank 1's must stay empty.
    trainer = plain_trainer(out / f"plain-rank{rank}", BATCH, rank, size)
    trainer.fit()
    save_tensors(trainer.model.state_dict(), out / f"plain-rank{rank}.safetensors")

    trainer = sandwich_trainer(out / f"sandwich-rank{rank}", BATCH, rank, size)
    trainer.fit()
    save_tensors(trainer.model.state_dict(), out / f"sandwich-rank{rank}.safetensors")
    result["sandwich_step_state"] = trainer.step_fn.state_dict()

    # A shared run_dir, stopped and resumed on every rank.
    plain_trainer(out / "resumed", BATCH, rank, size).fit(until_step=3)
    trainer = plain_trainer(out / "resumed", BATCH, rank, size, resume=True)
    result["resumed_at"] = trainer.step
    trainer.fit()
    save_tensors(trainer.model.state_dict(), out / f"resumed-rank{rank}.safetensors")

    trainer = sandwich_trainer(None, BATCH, rank, size, bn=True)
    trainer.fit()
    save_tensors(trainer.model.state_dict(), out / f"bn-rank{rank}.safetensors")

    supernet = plain_supernet()
    step = make_sandwich_step(supernet, n=3, generator=torch.Generator().manual_seed(rank))
    try:
        Trainer(supernet, loader(BATCH, rank, size), step_fn=step, progress=False)
    except ConfigError as err:
        result["generators_differ"] = str(err)
    torch.manual_seed(rank)
    try:
        Trainer(PlainNet(), loader(BATCH, rank, size), seed=None, progress=False)
    except ConfigError as err:
        result["seeds_differ"] = str(err)

    trainer = plain_trainer(None, BATCH, rank, size)
    trainer.step_fn = NanOnRank1()
    try:
        trainer.fit()
    except TrainingError as err:
        result["nan"] = {"message": str(err), "step": trainer.step}

    result["all_reduce_mean"] = distributed.all_reduce_mean(float(rank))
    result["all_reduce_mean_tensor"] = distributed.all_reduce_mean(torch.tensor([rank, 2])).tolist()
    result["agree_same"] = distributed.agree("same")
    result["agree_rank"] = distributed.agree(f"rank {rank}")
    distributed.barrier()
    distributed.cleanup()
    (out / f"result-rank{rank}.json").write_text(json.dumps(result))


# ------------------------------------------------------------------------------------ tests
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> dict:
    """Launch the two ranks as torchrun would, and gather what they wrote."""
    out = tmp_path_factory.mktemp("ddp")
    port = free_port()
    processes = []
    started = time.perf_counter()
    for rank in range(WORLD):
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "",  # gloo, even on a machine with GPUs
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(WORLD),
            "LOCAL_WORLD_SIZE": str(WORLD),
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, str(SCRIPT), str(out)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = []
    try:
        for process in processes:
            logs.append(process.communicate(timeout=180)[0])
    finally:
        for process in processes:
            process.kill()
    for rank, (process, text) in enumerate(zip(processes, logs)):
        assert process.returncode == 0, f"rank {rank} failed:\n{text[-3000:]}"
    results = [json.loads((out / f"result-rank{r}.json").read_text()) for r in range(WORLD)]
    return {"out": out, "results": results, "seconds": time.perf_counter() - started}


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict:
    """The same runs in this process, with the global batch."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("single")
    plain = plain_trainer(out / "plain", WORLD * BATCH)
    plain.fit()
    sandwich = sandwich_trainer(out / "sandwich", WORLD * BATCH)
    sandwich.fit()
    return {"out": out, "plain": plain, "sandwich": sandwich}


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.mark.parametrize("run", ["plain", "sandwich"])
def test_two_ranks_train_like_one_process_with_the_global_batch(ddp, single, run: str):
    expected = single[run].model.state_dict()
    torch.manual_seed(0)
    start = plain_supernet() if run == "sandwich" else PlainNet()
    assert max_difference(expected, start.state_dict()) > 1e-2  # the runs really trained
    ranks = [load_tensors(ddp["out"] / f"{run}-rank{r}.safetensors") for r in range(WORLD)]
    assert max_difference(ranks[0], ranks[1]) == 0.0  # the ranks hold one model
    spare = "model.spare" if run == "sandwich" else "spare"
    assert torch.equal(ranks[0][spare], torch.ones(2, 2))  # no gradient: not even decayed
    difference = max_difference(ranks[0], expected)
    print(f"{run}: max |DDP − single| = {difference:.3g} after {STEPS} steps")
    assert difference < ATOL


@pytest.mark.parametrize("run", ["plain", "sandwich"])
def test_rank_0_alone_writes_the_metrics_and_checkpoints(ddp, single, run: str):
    out = ddp["out"]
    assert not (out / f"{run}-rank1").exists()
    written = sorted(p.name for p in (out / f"{run}-rank0").iterdir())
    assert written == ["ckpt-00000003", "ckpt-00000004", "ckpt-00000006", "metrics.csv"]
    rows = read_metrics(out / f"{run}-rank0" / "metrics.csv")
    expected = read_metrics(single["out"] / run / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    for got, want in zip(rows, expected):
        for column in ("loss", "lr", *(["grad_norm"] if run == "plain" else ["loss_min"])):
            assert float(got[column]) == pytest.approx(float(want[column]), rel=1e-5, abs=1e-6)


def test_sandwich_archs_are_the_same_on_every_rank(ddp, single):
    # The generator drew the same archs on both ranks and in one process: its states agree.
    states = [result["sandwich_step_state"] for result in ddp["results"]]
    assert states[0] == states[1] == single["sandwich"].step_fn.state_dict()


def test_every_rank_resumes_from_rank_0s_checkpoint_exactly(ddp):
    out = ddp["out"]
    assert [result["resumed_at"] for result in ddp["results"]] == [3, 3]
    whole = load_tensors(out / "plain-rank0.safetensors")
    for rank in range(WORLD):
        resumed = load_tensors(out / f"resumed-rank{rank}.safetensors")
        assert max_difference(resumed, whole) == 0.0
    rows = read_metrics(out / "resumed" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))


def test_batchnorm_statistics_and_weights_stay_identical_across_ranks(ddp):
    ranks = [load_tensors(ddp["out"] / f"bn-rank{r}.safetensors") for r in range(WORLD)]
    assert any("running_mean" in name for name in ranks[0])
    assert max_difference(ranks[0], ranks[1]) == 0.0


def test_ranks_with_different_random_states_are_refused(ddp):
    for result in ddp["results"]:
        assert "the sandwich step's generator) differs between ranks" in result["generators_differ"]
        assert "give every rank the same Trainer seed" in result["seeds_differ"]


def test_a_nan_on_one_rank_stops_every_rank_at_that_step(ddp):
    for result in ddp["results"]:
        assert result["nan"]["step"] == 1  # the optimizer step 2 was not taken
        assert "the loss is nan at step 2" in result["nan"]["message"]
        assert "on 1 of 2 ranks" in result["nan"]["message"]


def test_collectives(ddp):
    for rank, result in enumerate(ddp["results"]):
        assert result["main"] == (rank == 0)
        assert result["all_reduce_mean"] == 0.5
        assert result["all_reduce_mean_tensor"] == [0.5, 2.0]
        assert result["agree_same"] and not result["agree_rank"]


def test_single_process_helpers_are_identities():
    assert not torch.distributed.is_initialized()
    assert (distributed.rank(), distributed.world_size()) == (0, 1)
    assert distributed.is_main() and not distributed.is_distributed()
    assert distributed.all_reduce_mean(2.5) == 2.5
    assert distributed.agree("anything")
    distributed.barrier()  # nothing to wait for


def test_init_from_env_without_torchrun_stays_single(monkeypatch):
    for name in distributed.TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    assert distributed.init_from_env().type in ("cpu", "cuda")
    assert not torch.distributed.is_initialized()


def test_init_from_env_with_part_of_torchrun_env_is_refused(monkeypatch):
    for name in distributed.TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        distributed.init_from_env()


def test_a_loader_for_another_shard_is_refused():
    with pytest.raises(ConfigError, match="shard 1 of 2 but this process is rank 0 of 1"):
        plain_trainer(None, BATCH, rank=1, world_size=2)


if __name__ == "__main__":
    run_rank(Path(sys.argv[1]))
