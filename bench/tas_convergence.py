"""Do TAS's width and depth distributions converge on the CPU recipe? Issue 18.

A TAS search (`TASStep` through the `Trainer`, as `slimnas run` runs it) of ResNet-20 on the
built-in CIFAR-10 subset: 4,500 training images after a 10 % hold-out, split in class-balanced
halves (weights / architecture, TAS §3.4), the space of configs/tas_resnet20_cifar10.toml
(divisor 4, depth searched), a ``macs<=50%`` budget. Per epoch it prints the temperature, the
mean normalised entropy (1 = uniform, 0 = decided) and the mean top probability of the width
units and of the depth units, the spread of the logits (mean max − min), the argmax arch's MACs
over the budget and the weight batches' accuracy; then a ``NAME: VALUE UNIT`` line per final
figure. Every option of the search can be changed, to compare recipes:

    .venv/bin/python bench/tas_convergence.py                                 # committed recipe
    .venv/bin/python bench/tas_convergence.py --arch-lr 0.05 --tau-max 5      # a variant
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

import slimnas
from slimnas.config import DataConfig
from slimnas.cost.budget import Budget
from slimnas.data.prepare import load_training_data, make_loader
from slimnas.data.split import class_balanced_split
from slimnas.methods.tas import TASArch, TASStep
from slimnas.models import MODELS
from slimnas.space.units import DepthUnit
from slimnas.train import Trainer


def distribution_stats(arch: TASArch, depth: bool) -> tuple[float, float, float]:
    """Mean normalised entropy, mean top probability and mean logit spread of the width units
    (``depth`` False) or of the depth units."""
    entropies, tops, spreads = [], [], []
    for name, _, logits in arch.units():
        if isinstance(arch.space.units[name], DepthUnit) != depth:
            continue
        p = logits.detach().softmax(-1)
        entropies.append(float(-(p * p.clamp_min(1e-30).log()).sum()) / math.log(len(p)))
        tops.append(float(p.max()))
        spreads.append(float(logits.detach().max() - logits.detach().min()))
    if not entropies:
        return float("nan"), float("nan"), float("nan")
    n = len(entropies)
    return sum(entropies) / n, sum(tops) / n, sum(spreads) / n


class EpochProbe:
    """Wraps the TAS step: at the end of every epoch, records the distributions' figures."""

    def __init__(self, step: TASStep, steps_per_epoch: int):
        self.step, self.steps_per_epoch = step, steps_per_epoch
        self.rows: list[dict[str, float]] = []
        self._acc: list[float] = []
        self._cost: list[float] = []

    def __call__(self, model, batch, backward):
        loss, metrics = self.step(model, batch, backward)
        self._acc.append(float(metrics["acc"]))
        self._cost.append(float(metrics["cost_argmax"]))
        if self.step.steps % self.steps_per_epoch == 0:
            arch = self.step.arch
            w_entropy, w_top, w_spread = distribution_stats(arch, depth=False)
            d_entropy, d_top, d_spread = distribution_stats(arch, depth=True)
            self.rows.append(
                {
                    "epoch": self.step.steps // self.steps_per_epoch,
                    "tau": float(metrics["tau"]),
                    "w_entropy": w_entropy,
                    "w_top": w_top,
                    "w_spread": w_spread,
                    "d_entropy": d_entropy,
                    "d_top": d_top,
                    "d_spread": d_spread,
                    "cost_argmax": self._cost[-1],
                    "acc": sum(self._acc) / len(self._acc),
                }
            )
            self._acc, self._cost = [], []
        return loss, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--budget", default="macs<=50%")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--arch-lr", type=float, default=0.01, help="the committed config's")
    parser.add_argument("--arch-weight-decay", type=float, default=1e-3)
    parser.add_argument(
        "--arch-betas", type=float, nargs=2, default=None, help="Adam betas of the logits"
    )
    parser.add_argument("--tau-max", type=float, default=10.0)
    parser.add_argument("--tau-min", type=float, default=0.1)
    parser.add_argument("--tau-schedule", choices=("linear", "cosine"), default="linear")
    parser.add_argument("--cost-weight", type=float, default=2.0)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--no-depth", action="store_true", help="widths only (tas_width)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_training_data(DataConfig(source="builtin", heldout=0.1))
    images, labels = data.train
    weight_half, arch_half = class_balanced_split(labels, 0.5, seed=args.seed)
    train = make_loader(
        data,
        (images[weight_half], labels[weight_half]),
        args.batch_size,
        train=True,
        seed=args.seed,
    )
    arch_data = make_loader(
        data,
        (images[arch_half], labels[arch_half]),
        args.batch_size,
        train=True,
        seed=args.seed + 1,
    )
    torch.manual_seed(args.seed)
    model = MODELS[args.model](num_classes=10)
    space = slimnas.trace(model, torch.randn(1, 3, 32, 32), divisor=4)
    supernet = slimnas.Supernet(model, space)
    budget = Budget.parse(args.budget, space)
    generator = torch.Generator().manual_seed(args.seed)
    arch = TASArch(space, depth=not args.no_depth, generator=generator)
    step = TASStep(
        supernet,
        arch,
        arch_data,
        budget,
        steps_per_epoch=len(train),
        epochs=args.epochs,
        cost_weight=args.cost_weight,
        tolerance=args.tolerance,
        tau_max=args.tau_max,
        tau_min=args.tau_min,
        tau_schedule=args.tau_schedule,
        arch_lr=args.arch_lr,
        arch_weight_decay=args.arch_weight_decay,
        generator=generator,
    )
    if args.arch_betas is not None:  # the step's Adam with other betas
        for group in step.optimizer.param_groups:
            group["betas"] = tuple(args.arch_betas)
    probe = EpochProbe(step, len(train))
    trainer = Trainer(
        supernet,
        train,
        step_fn=probe,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=round(0.5 * len(train)),
        epochs=args.epochs,
        seed=args.seed,
        progress=False,
    )
    started = time.process_time()
    trainer.fit()
    seconds = time.process_time() - started

    print(
        f"TAS {args.model} {args.budget}, {'width' if args.no_depth else 'width + depth'}, "
        f"{args.epochs} epochs of {len(train)} steps (batch {args.batch_size}), arch lr "
        f"{args.arch_lr} (wd {args.arch_weight_decay}, betas "
        f"{tuple(step.optimizer.param_groups[0]['betas'])}), tau {args.tau_max} -> {args.tau_min} "
        f"{args.tau_schedule}, cost weight {args.cost_weight}, {len(arch.names)} searched units, "
        f"threads {torch.get_num_threads()}, {seconds:.0f} cpu s, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    columns = (
        "tau",
        "w_entropy",
        "w_top",
        "w_spread",
        "d_entropy",
        "d_top",
        "d_spread",
        "cost_argmax",
        "acc",
    )
    print(f"{'epoch':>5} " + " ".join(f"{c:>11}" for c in columns))
    for row in probe.rows:
        print(f"{row['epoch']:>5} " + " ".join(f"{row[c]:11.3f}" for c in columns))
    last = probe.rows[-1]
    print(f"width_entropy: {last['w_entropy']:.3f} normalised")
    print(f"width_top_probability: {last['w_top']:.3f}")
    print(f"depth_entropy: {last['d_entropy']:.3f} normalised")
    print(f"depth_top_probability: {last['d_top']:.3f}")
    print(f"argmax_macs_over_budget: {last['cost_argmax']:.3f}")


if __name__ == "__main__":
    main()
