"""Tests for train/memory_format.py and the Trainer's ``channels_last``, and the CUDA paths of
training: mixed precision, channels-last on cuDNN, NCCL under torchrun.

On the CPU: a sandwich-rule supernet trained channels-last follows the contiguous run within
1e-5 (losses and weights), really sees channels-last weights and batches, and resumes exactly.
The CUDA tests run only where a GPU is present (and the NCCL one only with two), with TF32 off
so that cuDNN's NHWC and NCHW kernels are compared in float32.

As a script (started by the NCCL test through torchrun): ``python test_memory_format.py OUT``
trains the BatchNorm-free net on this rank's GPU and writes its weights under OUT.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_training import SIZE, tiny_data, tiny_supernet
from torch import nn

import slimnas
from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, BatchLoader
from slimnas.io import load_tensors, save_tensors
from slimnas.train import Trainer, distributed, plain_step, read_metrics, sandwich_step
from slimnas.train.memory_format import channels_last_batch

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
SCRIPT = Path(__file__)
CL = torch.channels_last


def is_channels_last(tensor: torch.Tensor) -> bool:
    return tensor.dim() == 4 and tensor.is_contiguous(memory_format=CL)


class RecordingStep:
    """Wraps a step, noting whether each batch's images arrive channels-last."""

    def __init__(self, step) -> None:
        self.step = step
        self.seen: list[bool] = []

    def __call__(self, model, batch, backward):
        self.seen.append(is_channels_last(batch[0]))
        return self.step(model, batch, backward)

    def state_dict(self):
        return self.step.state_dict()

    def load_state_dict(self, state) -> None:
        self.step.load_state_dict(state)


def sandwich_trainer(run_dir, channels_last: bool, device="cpu", resume=False, **options):
    supernet = tiny_supernet().to(device)
    step = sandwich_step(supernet, n=3, generator=torch.Generator().manual_seed(1))
    images, labels = tiny_data()
    loader = BatchLoader(
        images,
        labels,
        16,
        seed=0,
        augment=True,
        padding=1,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        device=device,
    )
    return Trainer(
        supernet,
        loader,
        step_fn=RecordingStep(step),
        lr=0.05,
        warmup_steps=1,
        epochs=2,
        run_dir=run_dir,
        checkpoint_every=2,
        progress=False,
        resume=resume,
        channels_last=channels_last,
        **options,
    )


def losses(run_dir: Path, column: str = "loss") -> list[float]:
    return [float(row[column]) for row in read_metrics(run_dir / "metrics.csv")]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double().cpu() - b[k].double().cpu()).abs().max()) for k in a)


# ------------------------------------------------------------------------------------ CPU
def test_channels_last_batch_converts_the_images_of_a_batch_only() -> None:
    images, labels = torch.randn(2, 3, 4, 5), torch.tensor([0, 1])
    out = channels_last_batch((images, labels))
    assert isinstance(out, tuple) and is_channels_last(out[0]) and out[1] is labels
    assert torch.equal(out[0], images) and not is_channels_last(images)
    assert isinstance(channels_last_batch([images, labels]), list)
    assert is_channels_last(channels_last_batch(images))
    flat = (torch.randn(2, 7), labels)
    assert channels_last_batch(flat) is flat


def test_channels_last_training_equals_contiguous_on_the_cpu(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    runs = {}
    for channels_last in (False, True):
        run_dir = tmp_path / f"cl-{channels_last}"
        trainer = sandwich_trainer(run_dir, channels_last)
        trainer.fit()
        runs[channels_last] = (trainer, losses(run_dir))
    plain, fast = runs[False][0], runs[True][0]
    assert fast.step == plain.step == 6
    assert all(fast.step_fn.seen) and not any(plain.step_fn.seen)
    convs = [p for p in fast.model.parameters() if p.dim() == 4]
    assert convs and all(is_channels_last(p) for p in convs)
    assert not any(is_channels_last(p) for p in plain.model.parameters() if p.dim() == 4)
    assert max(abs(a - b) for a, b in zip(runs[False][1], runs[True][1])) < 1e-5
    start = tiny_supernet().state_dict()
    assert max_difference(plain.model.state_dict(), start) > 1e-2  # it really trained
    assert max_difference(plain.model.state_dict(), fast.model.state_dict()) < 1e-5


def test_a_channels_last_run_resumes_exactly(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    whole = sandwich_trainer(tmp_path / "whole", True)
    whole.fit()
    sandwich_trainer(tmp_path / "cut", True).fit(until_step=3)
    resumed = sandwich_trainer(tmp_path / "cut", True, resume=True)
    assert resumed.step == 3
    assert all(is_channels_last(p) for p in resumed.model.parameters() if p.dim() == 4)
    resumed.fit()
    assert max_difference(whole.model.state_dict(), resumed.model.state_dict()) == 0.0
    assert losses(tmp_path / "whole") == losses(tmp_path / "cut")


# ----------------------------------------------------------------------------------- CUDA
@pytest.fixture
def no_tf32():
    """Float32 convolutions and matmuls on CUDA (TF32 would differ between kernels by 1e-3)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def repeated_batches(device: str, steps: int, batch: int = 32) -> list:
    """One fixed batch of real images, ``steps`` times: a net must memorise it."""
    images, labels = tiny_data()
    loader = BatchLoader(images[:batch], labels[:batch], batch, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    (fixed,) = list(loader)
    return [(fixed[0].to(device), fixed[1].to(device))] * steps


@needs_cuda
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_amp_trains_a_supernet_with_finite_falling_losses(
    tmp_path, monkeypatch, dtype: str, channels_last: bool
) -> None:
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    if dtype == "float16":  # the path of GPUs without bfloat16: float16 with a GradScaler
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    torch.manual_seed(0)
    model = slimnas.models.mobilenet_v2_cifar(width_mult=0.35)
    space = slimnas.trace(model, torch.randn(1, 3, SIZE, SIZE))
    supernet = slimnas.Supernet(model, space).cuda()
    step = sandwich_step(supernet, n=3, generator=torch.Generator().manual_seed(0))
    trainer = Trainer(
        supernet,
        repeated_batches("cuda", 30),
        step_fn=step,
        optimizer="adamw",
        lr=3e-3,
        weight_decay=0.0,
        epochs=1,
        run_dir=tmp_path,
        amp=True,
        channels_last=channels_last,
        progress=False,
    )
    assert trainer._amp_dtype == getattr(torch, dtype)
    assert (trainer.scaler is not None) == (dtype == "float16")
    trainer.fit()
    max_losses = losses(tmp_path, "loss_max")
    assert len(max_losses) == 30 and all(torch.isfinite(torch.tensor(losses(tmp_path))))
    first, last = sum(max_losses[:3]) / 3, sum(max_losses[-3:]) / 3
    assert last < 0.7 * first, max_losses
    assert all(torch.isfinite(p).all() for p in supernet.parameters())


@needs_cuda
def test_channels_last_training_equals_contiguous_on_cuda(tmp_path, no_tf32) -> None:
    runs = {}
    for channels_last in (False, True):
        run_dir = tmp_path / f"cl-{channels_last}"
        trainer = sandwich_trainer(run_dir, channels_last, device="cuda")
        trainer.fit()
        runs[channels_last] = (trainer, losses(run_dir))
    plain, fast = runs[False][0], runs[True][0]
    assert all(fast.step_fn.seen) and not any(plain.step_fn.seen)
    assert all(is_channels_last(p) for p in fast.model.parameters() if p.dim() == 4)
    difference = max(abs(a - b) for a, b in zip(runs[False][1], runs[True][1]))
    assert difference < 1e-4, difference
    assert max_difference(plain.model.state_dict(), fast.model.state_dict()) < 1e-4


# ------------------------------------------------------------------------ NCCL under torchrun
WORLD, BATCH = 2, 8  # per rank; the one-process run takes WORLD * BATCH


class PlainNet(nn.Module):
    """Convolutions without BatchNorm or dropout: ranks' averaged gradients equal the global
    batch's (see tests/train/test_distributed.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean((2, 3)))


def gpu_trainer(device, batch: int, rank: int = 0, world_size: int = 1) -> Trainer:
    images, labels = tiny_data()
    loader = BatchLoader(
        images,
        labels,
        batch,
        seed=0,
        augment=True,
        padding=1,
        drop_last=True,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        device=device,
        rank=rank,
        world_size=world_size,
    )
    torch.manual_seed(0)
    return Trainer(
        PlainNet().to(device),
        loader,
        step_fn=plain_step(0.1),
        lr=0.05,
        warmup_steps=1,
        epochs=2,
        channels_last=True,
        progress=False,
    )


def run_rank(out: Path) -> None:
    """This rank's part of the NCCL test: join the group, train, write the weights."""
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    device = distributed.init_from_env()
    assert device.type == "cuda" and torch.distributed.get_backend() == "nccl"
    trainer = gpu_trainer(device, BATCH, distributed.rank(), distributed.world_size())
    trainer.fit()
    save_tensors(trainer.model.state_dict(), out / f"rank{distributed.rank()}.safetensors")
    distributed.barrier()
    distributed.cleanup()


@pytest.mark.skipif(
    not CUDA or torch.cuda.device_count() < 2, reason="needs two CUDA GPUs (NCCL, torchrun)"
)
def test_two_nccl_ranks_under_torchrun_train_like_one_gpu(tmp_path, no_tf32) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={WORLD}",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        str(SCRIPT),
        str(tmp_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    ranks = [load_tensors(tmp_path / f"rank{r}.safetensors") for r in range(WORLD)]
    assert max_difference(ranks[0], ranks[1]) == 0.0  # one model on every rank
    single = gpu_trainer(torch.device("cuda"), WORLD * BATCH)
    single.fit()
    assert max_difference(ranks[0], single.model.state_dict()) < 1e-4


if __name__ == "__main__":
    run_rank(Path(sys.argv[1]))
