"""Train a reference model on CIFAR-10 with the Trainer and report its test accuracy.

The full CIFAR-10 (binary layout) is read from ``--data`` (written there from the shared pack by
``python3 ../shared/data/cifar10.py DIR`` when missing), or ``--builtin`` uses the 5,000-image
subset shipped in the package. Test accuracy is measured once, at the end, on the test split.
Resumable: run again with the same ``--run-dir`` to continue after an interruption.

    .venv/bin/python bench/train_cifar.py --model resnet20 --epochs 15 --run-dir runs/r20-full
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

import slimnas
from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, BatchLoader, load_builtin, load_cifar
from slimnas.train import Trainer, evaluate, latest

SHARED_PACK = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10.py"


def load_data(args: argparse.Namespace):
    if args.builtin:
        return load_builtin(train=True), load_builtin(train=False)
    data = Path(args.data)
    if not (data / "cifar-10-batches-bin").exists() and SHARED_PACK.exists():
        subprocess.run([sys.executable, str(SHARED_PACK), str(data)], check=True)
    return load_cifar(data, train=True), load_cifar(data, train=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", choices=sorted(slimnas.models.MODELS))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--data", default="data/cache")
    parser.add_argument("--builtin", action="store_true", help="use the built-in 5,000 images")
    parser.add_argument("--run-dir", default="runs/train-cifar")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    (train_x, train_y), (test_x, test_y) = load_data(args)
    loader = BatchLoader(
        train_x,
        train_y,
        args.batch_size,
        augment=True,
        drop_last=True,
        seed=args.seed,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )
    torch.manual_seed(args.seed)
    model = slimnas.models.MODELS[args.model](num_classes=10)
    resume = latest(args.run_dir) is not None
    trainer = Trainer(
        model,
        loader,
        optimizer="sgd",
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=len(loader),
        epochs=args.epochs,
        label_smoothing=args.label_smoothing,
        run_dir=args.run_dir,
        checkpoint_every=len(loader),
        seed=args.seed,
        resume=resume,
    )
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    test = BatchLoader(test_x, test_y, 500, shuffle=False, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    result = evaluate(model, test)
    print(
        f"{args.model}: {args.epochs} epochs on {len(train_x)} images, batch {args.batch_size},"
        f" {torch.get_num_threads()} threads{' (resumed)' if resume else ''}"
    )
    print(
        f"test accuracy {result.accuracy:.4f} on {result.samples} images, "
        f"loss {result.loss:.4f}, this run {seconds:.0f} s"
    )
    print(f"test_accuracy: {100 * result.accuracy:.2f} %")
    print(f"train_seconds: {seconds:.0f} s")


if __name__ == "__main__":
    main()
