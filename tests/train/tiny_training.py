"""A tiny real training setup for the training tests, and a script that runs it.

Real images (the built-in CIFAR-10 subset, first 48 images, subsampled to 8×8), a small CNN with
BatchNorm and dropout (so that the global RNG matters), augmented batches of 16.

As a script: ``python tiny_training.py RUN_DIR OUT [--resume] [--handshake]`` trains the tiny
supernet with the sandwich rule (3 epochs × 3 steps, a checkpoint every 2 steps) and writes its
final weights to OUT (safetensors). With ``--handshake`` it prints ``step`` before each step and
waits for a line on stdin, so that a test can SIGKILL it at a chosen step.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import torch
from torch import nn

import slimnas
from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, BatchLoader, load_builtin
from slimnas.io import save_tensors
from slimnas.train import Trainer, sandwich_step

IMAGES = 48
BATCH = 16
SIZE = 8


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(self.drop(x.mean((2, 3))))


@functools.lru_cache(maxsize=1)
def tiny_data() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_builtin(train=True)
    step = 32 // SIZE
    return images[:IMAGES, :, ::step, ::step].contiguous(), labels[:IMAGES].clone()


def tiny_loader(seed: int = 0) -> BatchLoader:
    images, labels = tiny_data()
    return BatchLoader(
        images,
        labels,
        BATCH,
        seed=seed,
        augment=True,
        padding=1,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )


def tiny_model(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


def tiny_supernet(seed: int = 0) -> slimnas.Supernet:
    model = tiny_model(seed)
    space = slimnas.trace(model, torch.randn(1, 3, SIZE, SIZE), divisor=4)
    return slimnas.Supernet(model, space)


class Handshake:
    """Wraps a step: announces each call on stdout and waits for a line on stdin first."""

    def __init__(self, step: Any) -> None:
        self.step = step

    def __call__(self, model, batch, backward):
        print("step", flush=True)
        if not sys.stdin.readline():
            raise SystemExit(3)  # the test went away
        return self.step(model, batch, backward)

    def state_dict(self) -> dict[str, Any]:
        return self.step.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step.load_state_dict(state)


def sandwich_trainer(run_dir, resume: bool = False, handshake: bool = False) -> Trainer:
    supernet = tiny_supernet()
    step = sandwich_step(supernet, n=3, generator=torch.Generator().manual_seed(1))
    return Trainer(
        supernet,
        tiny_loader(),
        step_fn=Handshake(step) if handshake else step,
        lr=0.05,
        warmup_steps=2,
        epochs=3,
        run_dir=run_dir,
        checkpoint_every=2,
        keep_last=2,
        resume=resume,
        progress=False,
    )


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    run_dir, out = argv[:2]
    trainer = sandwich_trainer(run_dir, resume="--resume" in argv, handshake="--handshake" in argv)
    trainer.fit()
    save_tensors(trainer.model.state_dict(), out)


if __name__ == "__main__":
    main(sys.argv[1:])
