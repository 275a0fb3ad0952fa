"""What AutoSlim's one-pass search costs next to training its supernet.

Trains a ResNet-20 (or ``--model``) supernet with the sandwich rule for ``--steps`` steps on the
CIFAR-10 training split minus the held-out images, which gives the time of one step; one epoch's
time is that × the steps of an epoch over the whole split (the bench does not wait for a full
epoch). Then runs the greedy search for ``--budgets`` MAC budgets (evenly from 95 % down to
``--lowest`` % of the max arch) in one pass, scoring each candidate on ``--score-images``
held-out images, and prints the search's wall time ÷ one epoch's (AutoSlim's goal: ≤ 1.0) and
the number of candidate evaluations.

    .venv/bin/python bench/search_cost.py                    # full CIFAR-10, ~10 minutes
    .venv/bin/python bench/search_cost.py --builtin --steps 20 --budgets 4   # a quick look
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

import slimnas
from slimnas.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    BatchLoader,
    class_balanced_split,
    load_builtin,
    load_cifar,
)
from slimnas.methods import ArchScorer, greedy_slim
from slimnas.train import Trainer, sandwich_step

SHARED_PACK = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10.py"


def load_train(args: argparse.Namespace):
    if args.builtin:
        return load_builtin(train=True)
    data = Path(args.data)
    if not (data / "cifar-10-batches-bin").exists() and SHARED_PACK.exists():
        subprocess.run([sys.executable, str(SHARED_PACK), str(data)], check=True)
    return load_cifar(data, train=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", choices=sorted(slimnas.models.MODELS))
    parser.add_argument("--data", default="data/cache")
    parser.add_argument("--builtin", action="store_true", help="the built-in 5,000 images")
    parser.add_argument("--steps", type=int, default=40, help="timed supernet steps")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--budgets", type=int, default=10)
    parser.add_argument("--lowest", type=float, default=25.0, help="smallest budget, % of max")
    parser.add_argument("--score-images", type=int, default=1024)
    parser.add_argument("--divisor", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    images, labels = load_train(args)
    keep, held = class_balanced_split(labels, 0.1, seed=0)
    norm = {"mean": CIFAR10_MEAN, "std": CIFAR10_STD}
    loader = BatchLoader(
        images[keep], labels[keep], args.batch_size, augment=True, drop_last=True, **norm
    )
    torch.manual_seed(0)
    model = slimnas.models.MODELS[args.model](num_classes=10)
    space = slimnas.trace(model, torch.randn(1, 3, 32, 32), divisor=args.divisor)
    for unit in space.depth_units():
        space = space.fix(unit.name)
    supernet = slimnas.Supernet(model, space)
    step = sandwich_step(supernet, 4, torch.Generator().manual_seed(0))
    trainer = Trainer(supernet, loader, step_fn=step, epochs=1, run_dir=None, progress=False)
    trainer.fit(until_step=2)  # warm-up: allocator, caches
    started = time.perf_counter()
    trainer.fit(until_step=2 + args.steps)
    step_seconds = (time.perf_counter() - started) / args.steps
    epoch_seconds = step_seconds * len(loader)

    count = min(args.score_images, len(held))
    score = BatchLoader(images[held][:count], labels[held][:count], 512, shuffle=False, **norm)
    scorer = ArchScorer(supernet, list(score))
    shares = torch.linspace(95.0, args.lowest, args.budgets).tolist()
    budgets = [slimnas.Budget.parse(f"macs<={share:.2f}%", space) for share in shares]
    started = time.perf_counter()
    results = greedy_slim(space, scorer, budgets, progress=False)
    search_seconds = time.perf_counter() - started

    print(
        f"{args.model} on {len(keep)} training images, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f} "
        "(wall-clock figures mean something only on an idle machine)"
    )
    print(f"{'budget':>16} {'MACs (M)':>10} {'iteration':>10} {'held-out acc':>13}")
    for result in results:
        print(
            f"{result.budget:>16} {result.costs['macs'] / 1e6:10.2f} "
            f"{result.info['iteration']:10d} {100 * result.accuracy:12.1f}%"
        )
    evaluations = results[0].info["evaluations"]
    print(f"supernet step {step_seconds:.3f} s x {len(loader)} steps = epoch {epoch_seconds:.0f} s")
    print(f"search {search_seconds:.0f} s, {evaluations} evaluations of {count} images")
    print(f"search_seconds: {search_seconds:.1f} s")
    print(f"supernet_epoch_seconds: {epoch_seconds:.1f} s")
    print(f"search_over_epoch: {search_seconds / epoch_seconds:.3f} x")
    print(f"candidate_evaluations: {evaluations} archs")


if __name__ == "__main__":
    main()
