"""A torchrun script (2 gloo ranks): the tiny supernet trained with the sandwich rule under DDP,
resuming from its run directory's newest checkpoint, whose final weights rank 0 writes.

    torchrun --nproc-per-node 2 --max-restarts 1 killed_rank.py RUN_DIR OUT [KILL_AT MARKER]

With KILL_AT and MARKER, rank 1 SIGKILLs itself at the start of its KILL_AT-th step of the first
attempt (MARKER does not exist yet; it is created just before), as a preempted or crashed
worker would die: torchrun then stops rank 0 and starts both again, and they resume.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
from tiny_training import BATCH, tiny_data, tiny_supernet

from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, BatchLoader
from slimnas.io import save_tensors
from slimnas.train import Trainer, distributed, sandwich_step


class KillRank1:
    """Wraps a step: rank 1 dies by SIGKILL at call ``at`` unless ``marker`` exists."""

    def __init__(self, step: Any, at: int, marker: Path) -> None:
        self.step, self.at, self.marker, self.calls = step, at, marker, 0

    def __call__(self, model, batch, backward):
        self.calls += 1
        if distributed.rank() == 1 and self.calls == self.at and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return self.step(model, batch, backward)

    def state_dict(self) -> dict[str, Any]:
        return self.step.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step.load_state_dict(state)


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    distributed.init_from_env()
    run_dir, out = Path(argv[0]), Path(argv[1])
    images, labels = tiny_data()
    loader = BatchLoader(
        images,
        labels,
        BATCH // 2,  # per rank: the global batch is the single-process one
        seed=0,
        augment=True,
        padding=1,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        rank=distributed.rank(),
        world_size=distributed.world_size(),
    )
    supernet = tiny_supernet()
    step = sandwich_step(supernet, n=3, generator=torch.Generator().manual_seed(1))
    if len(argv) == 4:
        step = KillRank1(step, int(argv[2]), Path(argv[3]))
    trainer = Trainer(
        supernet,
        loader,
        step_fn=step,
        lr=0.05,
        warmup_steps=2,
        epochs=3,
        run_dir=run_dir,
        checkpoint_every=2,
        keep_last=2,
        resume=True,
        progress=False,
    )
    if distributed.is_main():  # the step each attempt starts from, for the test
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "attempts.txt", "a") as handle:
            handle.write(f"{trainer.step}\n")
    trainer.fit()
    if distributed.is_main():
        save_tensors(supernet.model.state_dict(), out)


if __name__ == "__main__":
    main(sys.argv[1:])
