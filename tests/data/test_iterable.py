"""Tests for `IterableBatches` (data/iterable.py): the Trainer, scoring and BatchNorm
recalibration on plain ``torch.utils.data.DataLoader``s, with workers, exact resume (also after a
real SIGKILL), and two torchrun ranks with a ``DistributedSampler`` on gloo.

As a script: ``python test_iterable.py ddp OUT`` runs one rank of the torchrun scenario (the test
sets torchrun's environment); ``python test_iterable.py kill RUN_DIR OUT [--resume]`` runs the
training the SIGKILL test kills (announcing each step on stdout and waiting for a line).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

import slimnas
from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, BatchLoader, IterableBatches, normalize
from slimnas.errors import CheckpointError, ConfigError
from slimnas.io import load_tensors, save_tensors
from slimnas.methods.scoring import ArchScorer
from slimnas.train import Trainer, distributed, plain_step, recalibrate_bn

SCRIPT = Path(__file__)
IMAGES, SIZE, BATCH = 48, 8, 8  # 6 batches an epoch


def images_labels() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (IMAGES, 3, SIZE, SIZE), generator=generator, dtype=torch.uint8)
    return images, torch.arange(IMAGES) % 4


class Flipped(Dataset):
    """Normalised images, each flipped at random by torch's generator of the process that reads
    it (a DataLoader worker: seeded from the loader's base seed), as user transforms do."""

    def __init__(self) -> None:
        images, self.labels = images_labels()
        self.images = normalize(images, CIFAR10_MEAN, CIFAR10_STD)

    def __len__(self) -> int:
        return IMAGES

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if bool(torch.rand(()) < 0.5):
            image = image.flip(-1)
        return image, self.labels[index]


class PlainNet(nn.Module):
    """No BatchNorm, no dropout: the gradient of a batch is the mean of its images' gradients,
    so shards averaged over ranks equal the global batch's (BatchNorm's batch statistics would
    differ per rank by design)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def data_loader(kind: str, workers: int = 0, batch: int = BATCH) -> DataLoader:
    """A DataLoader whose epoch order comes from: a seeded generator (``generator``), torch's
    global generator (``global``), or a sampler with ``set_epoch`` (``sampler``)."""
    data = Flipped()
    if kind == "generator":
        generator = torch.Generator().manual_seed(5)
        return DataLoader(data, batch, shuffle=True, generator=generator, num_workers=workers)
    if kind == "global":
        return DataLoader(data, batch, shuffle=True, num_workers=workers)
    sampler = DistributedSampler(data, num_replicas=1, rank=0, seed=5)
    return DataLoader(data, batch, sampler=sampler, num_workers=workers)


def trainer(loader, run_dir=None, resume: bool = False, step_fn=None, epochs: int = 2) -> Trainer:
    torch.manual_seed(0)
    return Trainer(
        PlainNet(),
        loader,
        step_fn=step_fn or plain_step(),
        lr=0.05,
        warmup_steps=2,
        epochs=epochs,
        run_dir=run_dir,
        checkpoint_every=2,
        resume=resume,
        progress=False,
    )


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


# ------------------------------------------------------------------------- the Trainer
def test_trainer_trains_on_a_dataloader_with_workers_and_resumes(tmp_path) -> None:
    whole = trainer(data_loader("generator", workers=2))
    assert isinstance(whole.loader, IterableBatches) and whole.total_steps == 12
    start = {k: v.clone() for k, v in whole.model.state_dict().items()}
    row = whole.fit()
    assert row["step"] == 12 and row["epoch"] == 1
    assert max(float((whole.model.state_dict()[k] - start[k]).abs().max()) for k in start) > 1e-3
    # Stopped inside the second epoch, resumed by a new Trainer on a new DataLoader.
    trainer(data_loader("generator", workers=2), tmp_path).fit(until_step=9)
    resumed = trainer(data_loader("generator", workers=2), tmp_path, resume=True)
    assert resumed.step == 9 and resumed.loader.epoch == 1 and resumed.loader.position == 3
    resumed.fit()
    assert_same_weights(resumed.model.state_dict(), whole.model.state_dict())


@pytest.mark.parametrize("kind", ["global", "sampler"])
@pytest.mark.parametrize("stop", [4, 6, 9])
def test_resume_inside_or_between_epochs_is_exact(tmp_path, kind: str, stop: int) -> None:
    """The epoch's order (and each image's flip, drawn from the global generator when there
    are no workers) is replayed from the generator states saved with the position."""
    whole = trainer(data_loader(kind))
    whole.fit()
    trainer(data_loader(kind), tmp_path).fit(until_step=stop)
    resumed = trainer(data_loader(kind), tmp_path, resume=True)
    resumed.fit()
    assert_same_weights(resumed.model.state_dict(), whole.model.state_dict())


class Announced:
    """A step that prints ``step`` and waits for a line on stdin, so a test can kill it."""

    def __init__(self) -> None:
        self.step = plain_step()

    def __call__(self, model, batch, backward):
        print("step", flush=True)
        if not sys.stdin.readline():
            raise SystemExit(3)
        return self.step(model, batch, backward)


@pytest.mark.slow  # two fresh interpreters and their workers: about 20 s on 2 busy cores
def test_sigkill_then_resume_from_a_dataloader_is_bit_identical(tmp_path) -> None:
    """A real crash inside step 10 (the last checkpoint at step 8, inside the second epoch) of
    a run on a DataLoader with a seeded generator and 2 workers flipping images; a new process
    resumes it."""
    expected = trainer(data_loader("generator", workers=2))
    expected.fit()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run_dir, out = tmp_path / "run", tmp_path / "out.safetensors"
    command = [sys.executable, str(SCRIPT), "kill", str(run_dir), str(out)]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        for call in range(1, 11):
            assert process.stdout.readline() == "step\n"
            if call == 10:
                os.kill(process.pid, signal.SIGKILL)
            else:
                process.stdin.write("\n")
                process.stdin.flush()
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        process.kill()
        process.wait()
    subprocess.run([*command, "--resume"], check=True, env=env, timeout=120)
    assert_same_weights(load_tensors(out), expected.model.state_dict())


class NoLength:
    def __iter__(self):
        return iter([])


def test_bad_loaders_are_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="one-pass iterator"):
        Trainer(PlainNet(), iter(data_loader("generator")), progress=False)
    with pytest.raises(ConfigError, match="length="):
        Trainer(PlainNet(), NoLength(), progress=False)
    trainer(data_loader("generator"), tmp_path).fit(until_step=3)
    with pytest.raises(CheckpointError, match="6 batches per epoch, this loader has 12"):
        trainer(data_loader("generator", batch=4), tmp_path, resume=True)
    ours = BatchLoader(*images_labels(), BATCH)
    theirs = IterableBatches(data_loader("generator"))
    with pytest.raises(CheckpointError, match="not one of a wrapped data loader"):
        theirs.load_state_dict(ours.state_dict())
    with pytest.raises(CheckpointError, match="not a BatchLoader state"):
        ours.load_state_dict(theirs.state_dict())


# ----------------------------------------------------------------- scoring, recalibration
def tiny_supernet() -> slimnas.Supernet:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )
    space = slimnas.trace(model, torch.randn(1, 3, SIZE, SIZE), divisor=4)
    return slimnas.Supernet(model, space)


def test_scoring_and_recalibration_on_a_dataloader_equal_the_batchloader() -> None:
    images, labels = images_labels()
    ours = BatchLoader(images, labels, 16, shuffle=False, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    theirs = DataLoader(
        TensorDataset(normalize(images, CIFAR10_MEAN, CIFAR10_STD), labels), 16, num_workers=2
    )
    supernet = tiny_supernet()
    small = supernet.min_arch()
    for bn in ("batch", "recalibrate"):
        a = ArchScorer(supernet, ours, bn, ours if bn == "recalibrate" else None).score(small)
        b = ArchScorer(supernet, theirs, bn, theirs if bn == "recalibrate" else None).score(small)
        assert a == b and a.samples == IMAGES
    recalibrate_bn(supernet, small, ours)
    expected = {k: v.clone() for k, v in supernet.state_dict().items() if "running" in k}
    assert recalibrate_bn(supernet, small, theirs) == 3
    for name, value in expected.items():
        assert torch.equal(supernet.state_dict()[name], value), name
    assert max(float(v.abs().max()) for k, v in expected.items() if "mean" in k) > 0


# ---------------------------------------------------------------------------- torchrun
def run_rank(out: Path) -> None:
    """One rank: 6 steps of a DataLoader over a DistributedSampler with 2 workers."""
    torch.set_num_threads(1)
    distributed.init_from_env()
    rank, size = distributed.rank(), distributed.world_size()
    data = Flipped()
    sampler = DistributedSampler(data, num_replicas=size, rank=rank, seed=3, drop_last=True)
    loader = DataLoader(NoFlip(data), BATCH // size, sampler=sampler, num_workers=2)
    result = trainer(loader, epochs=1)
    assert result.loader.world_size == size and result.loader.rank == rank
    result.fit()
    save_tensors(result.model.state_dict(), out / f"rank{rank}.safetensors")
    distributed.barrier()
    distributed.cleanup()


class NoFlip(Dataset):
    """The images of ``Flipped`` as they are: the per-rank workers' flips could not match one
    process's (their seeds differ), so the equality test takes the augmentation out."""

    def __init__(self, data: Flipped) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.images[index], self.data.labels[index]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_torchrun_ranks_with_a_distributed_sampler_train_like_one_process(tmp_path) -> None:
    port, world = free_port(), 2
    processes = []
    for rank in range(world):
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world),
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, str(SCRIPT), "ddp", str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        logs = [process.communicate(timeout=180)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
    for rank, (process, text) in enumerate(zip(processes, logs)):
        assert process.returncode == 0, f"rank {rank} failed:\n{text[-3000:]}"
    # One process, the global batch: the same sampler's order with one replica.
    data = Flipped()
    sampler = DistributedSampler(data, num_replicas=1, rank=0, seed=3, drop_last=True)
    single = trainer(DataLoader(NoFlip(data), BATCH, sampler=sampler), epochs=1)
    start = {k: v.clone() for k, v in single.model.state_dict().items()}
    single.fit()
    expected = single.model.state_dict()
    ranks = [load_tensors(tmp_path / f"rank{r}.safetensors") for r in range(world)]
    assert_same_weights(ranks[0], ranks[1])
    for name in expected:
        assert torch.allclose(ranks[0][name], expected[name], atol=1e-5, rtol=0), name
    assert max(float((expected[k] - start[k]).abs().max()) for k in start) > 1e-3


def main(argv: list[str]) -> None:
    if argv[0] == "ddp":
        run_rank(Path(argv[1]))
        return
    torch.set_num_threads(1)
    run_dir, out = argv[1:3]
    run = trainer(
        data_loader("generator", workers=2),
        run_dir,
        resume="--resume" in argv,
        step_fn=plain_step() if "--resume" in argv else Announced(),
    )
    run.fit()
    save_tensors(run.model.state_dict(), out)


if __name__ == "__main__":
    main(sys.argv[1:])
