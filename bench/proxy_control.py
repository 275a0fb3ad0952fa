"""Does the ProxylessNAS weight warm-up train like a plain network? The control of issue 18.

On the built-in CIFAR-10 subset (4,500 training images after a 10 % class-balanced hold-out),
with the same seed, batches, learning rate and number of steps, it trains through the `Trainer`:

(a) ``fixed``: the ProxylessNAS CIFAR net with one op per searched block (``--op``, default
    ``k3e6``, no zero op): a plain network;
(b) ``control``: the same net, same initial weights, whose every searched block is a
    `slimnas.Choice` of ``--copies`` identical copies of that op, traced into a `Supernet` and
    trained with ProxylessNAS's warm-up step (`WarmupStep`: one path per unit drawn from the
    near-uniform p, hard mode, label-smoothed CE). Copies are interchangeable, so a correct
    engine trains it as (a), only each copy sees 1/copies of the steps;
(c) ``search``: the real search space (all kernels × expansions, plus the zero op on
    identity-shortcut blocks) with the same warm-up step, as `slimnas run` runs it.

Each prints the mean training loss of every ``--every`` steps (the curve) and, at the end, the
held-out top-1 of the net (for (b) and (c) of the paths drawn, train-mode BatchNorm as the
authors validate). Chance is ln 10 = 2.303. The recipe defaults are those of
configs/proxyless_cifar10.toml's ``[supernet]`` section (SGD Nesterov, lr 0.05 cosine, wd 4e-5,
label smoothing 0.1, batch 128) and its model (``proxyless_cifar_small`` at width 0.35).

    .venv/bin/python bench/proxy_control.py                       # a, b, c: about 6 min, 1 thread
    .venv/bin/python bench/proxy_control.py --runs fixed control --steps 150
    .venv/bin/python bench/proxy_control.py --runs search --lr 0.1 --label-smoothing 0
    .venv/bin/python bench/proxy_control.py --runs search --no-zero      # (c) without zero op
    .venv/bin/python bench/proxy_control.py --runs search --draw largest_first

``--draw`` is (c)'s `WarmupStep` draw (``search.proxyless.warmup_draw``); results of issue 18:
docs/results/proxyless_warmup.md.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time

import torch
from torch import nn

import slimnas
from slimnas.config import DataConfig
from slimnas.data.prepare import load_training_data, make_loader
from slimnas.dynamic.choice import Choice
from slimnas.methods.proxyless import WarmupStep
from slimnas.methods.proxyless_paths import ProxylessArch
from slimnas.methods.proxyless_warmup import WARMUP_DRAWS
from slimnas.models.proxyless import CIFAR_STRIDES, ProxylessNet
from slimnas.train import Trainer
from slimnas.train.losses import cross_entropy
from slimnas.train.optim import build_schedule
from slimnas.train.step import top1

RUNS = ("fixed", "control", "search")
SMALL = {"blocks": (2, 2, 2, 2, 2, 1), "head_channels": 640}  # proxyless_cifar_small
FULL = {"blocks": (4, 4, 4, 4, 4, 1), "head_channels": 1280}  # proxyless_cifar


def build_net(args, kernels, expansions, zero: bool) -> ProxylessNet:
    """The CIFAR ProxylessNAS net of ``args.model`` with these candidates, seeded init."""
    torch.manual_seed(args.seed)
    layout = SMALL if args.model == "proxyless_cifar_small" else FULL
    return ProxylessNet(
        args.width_mult,
        10,
        strides=CIFAR_STRIDES,
        stem_stride=1,
        kernels=kernels,
        expansions=expansions,
        zero=zero,
        **layout,
    )


def copies_of(net: ProxylessNet, copies: int, shared: bool = False) -> ProxylessNet:
    """``net`` with every block's single-candidate Choice replaced by ``copies`` identical
    copies of that candidate (same initial weights); with ``shared`` the copies are one module
    under ``copies`` names (so any path trains the same weights: the engine must then train it
    exactly as the fixed net)."""
    net = copy.deepcopy(net)
    for module in net.modules():
        if hasattr(module, "op") and isinstance(module.op, Choice):
            (name, op), *_ = module.op.items()
            module.op = Choice(
                {f"{name}_{i}": op if shared else copy.deepcopy(op) for i in range(copies)}
            )
    return net


def align_candidates(net: ProxylessNet) -> ProxylessNet:
    """Every MBConv candidate of a block starts as a slice of the block's largest one: its
    expansion's first rows, the centre of the largest depthwise kernel, the projection's first
    columns, the BatchNorms' first entries (as Once-for-All's elastic kernel and expansion
    share weights). Changes ``net`` in place; returns it."""
    from slimnas.models.proxyless import MBConv

    for module in net.modules():
        if not (hasattr(module, "op") and isinstance(module.op, Choice)):
            continue
        ops = [op for op in module.op.values() if isinstance(op, MBConv)]
        big = max(
            ops, key=lambda op: (op.depth_conv[0].weight.shape[0], op.depth_conv[0].kernel_size)
        )
        with torch.no_grad():
            for op in ops:
                if op is big:
                    continue
                hidden = op.depth_conv[0].weight.shape[0]
                k, kb = op.depth_conv[0].kernel_size[0], big.depth_conv[0].kernel_size[0]
                lo = (kb - k) // 2
                pairs = [(op.depth_conv, big.depth_conv), (op.point_linear, big.point_linear)]
                if op.inverted_bottleneck is not None:
                    pairs.append((op.inverted_bottleneck, big.inverted_bottleneck))
                for small_seq, big_seq in pairs:
                    for small, large in zip(small_seq, big_seq):
                        if isinstance(small, nn.Conv2d):
                            w = large.weight
                            if small is op.depth_conv[0]:
                                w = w[:hidden, :, lo : lo + k, lo : lo + k]
                            elif small is op.point_linear[0]:
                                w = w[:, :hidden]
                            else:
                                w = w[:hidden]
                            small.weight.copy_(w)
                        elif isinstance(small, nn.BatchNorm2d):
                            n = small.num_features
                            for name in ("weight", "bias", "running_mean", "running_var"):
                                getattr(small, name).copy_(getattr(large, name)[:n])
    return net


class Recorder:
    """Wraps a step: keeps every step's loss (float) for the curve."""

    def __init__(self, step):
        self.step, self.losses = step, []

    def __call__(self, model, batch, backward):
        loss, metrics = self.step(model, batch, backward)
        self.losses.append(float(loss.detach()))
        return loss, metrics


def plain(label_smoothing: float):
    def step(model, batch, backward):
        images, labels = batch
        out = model(images)
        return cross_entropy(out, labels, label_smoothing), {"acc": top1(out.detach(), labels)}

    return step


def heldout_top1(model: nn.Module, batches, draw=None) -> float:
    """Top-1 on ``batches`` with train-mode BatchNorm (batch statistics), ``draw()`` before each
    batch picking a path (supernets); the BatchNorm buffers are restored after."""
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    correct = total = 0
    with torch.no_grad():
        for images, labels in batches:
            if draw is not None:
                draw()
            correct += int((model(images).argmax(1) == labels).sum())
            total += len(labels)
    model.load_state_dict(buffers, strict=False)
    return correct / total


def train(args, model: nn.Module, step, loader) -> tuple[list[float], float]:
    recorder = Recorder(step)
    epochs = math.ceil(args.steps / len(loader))
    trainer = Trainer(
        model,
        loader,
        step_fn=recorder,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        epochs=epochs,
        seed=args.seed,
        progress=False,
    )
    # The cosine spans exactly --steps (a warm-up of that length), whatever the epoch rounding.
    trainer.total_steps = args.steps
    trainer.scheduler = build_schedule(trainer.optimizer, "cosine", args.warmup_steps, args.steps)
    started = time.process_time()
    trainer.fit(until_step=args.steps)
    return recorder.losses, time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    parser.add_argument(
        "--model", choices=("proxyless_cifar_small", "proxyless_cifar"), default=SMALL_NAME
    )
    parser.add_argument("--width-mult", type=float, default=0.35)
    parser.add_argument("--op", default="k3e6", help="the fixed op, k<kernel>e<expansion>")
    parser.add_argument("--copies", type=int, default=2, help="control: copies per block (>= 2)")
    parser.add_argument(
        "--shared", action="store_true", help="control: the copies are one module (shared weights)"
    )
    parser.add_argument("--steps", type=int, default=210)
    parser.add_argument("--every", type=int, default=15, help="steps per point of the curve")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--weight-decay", type=float, default=4e-5)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--warmup-steps", type=int, default=7)
    parser.add_argument("--aligned", action="store_true", help="search: align_candidates")
    parser.add_argument("--no-zero", action="store_true", help="search: without the zero op")
    parser.add_argument(
        "--draw", choices=WARMUP_DRAWS, default="paper", help="search: WarmupStep's path draw"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.copies < 2:
        parser.error("--copies must be at least 2: a Choice of one candidate is not searched")
    torch.set_num_threads(args.threads)

    data = load_training_data(DataConfig(source="builtin", heldout=0.1))
    loader = make_loader(data, data.train, args.batch_size, train=True, seed=args.seed)
    held = list(make_loader(data, data.heldout, 250, train=False))
    kernel, expansion = int(args.op[1 : args.op.index("e")]), int(args.op[args.op.index("e") + 1 :])
    example = torch.randn(1, 3, 32, 32)

    curves, accs, seconds = {}, {}, {}
    for run in args.runs:
        if run == "fixed":
            model = build_net(args, (kernel,), (expansion,), zero=False)
            curves[run], seconds[run] = train(args, model, plain(args.label_smoothing), loader)
            accs[run] = heldout_top1(model.train(), held)
            continue
        if run == "control":
            fixed_net = build_net(args, (kernel,), (expansion,), zero=False)
            model = copies_of(fixed_net, args.copies, args.shared)
        else:
            model = build_net(args, (3, 5, 7), (3, 6), zero=not args.no_zero)
            if args.aligned:
                align_candidates(model)
        space = slimnas.trace(model, example)
        for unit in space.channel_units():  # ops only, as configs/proxyless_cifar10.toml
            space = space.fix(unit.name)
        supernet = slimnas.Supernet(model, space)
        paths = ProxylessArch(space, generator=torch.Generator().manual_seed(args.seed))
        generator = torch.Generator().manual_seed(args.seed)
        draw = args.draw if run == "search" else "paper"
        step = WarmupStep(supernet, paths, args.label_smoothing, generator, draw, args.steps)
        curves[run], seconds[run] = train(args, supernet, step, loader)
        supernet.train()

        def draw(supernet=supernet, paths=paths, generator=generator) -> None:
            supernet.activate(paths.arch_of(paths.sample(generator)))

        accs[run] = heldout_top1(supernet, held, draw)

    print(
        f"model {args.model} x{args.width_mult}, op {args.op}, control copies {args.copies}, "
        f"{args.steps} steps of batch {args.batch_size} ({len(loader)} per epoch), lr {args.lr} "
        f"cosine, wd {args.weight_decay}, label smoothing {args.label_smoothing}, "
        f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}"
    )
    print("mean training loss per window of steps (chance 2.303)")
    print(f"{'steps':>9} " + " ".join(f"{r:>9}" for r in curves))
    for start in range(0, args.steps, args.every):
        row = [
            sum(c[start : start + args.every]) / len(c[start : start + args.every])
            for c in curves.values()
        ]
        print(
            f"{start + 1:>4}-{min(start + args.every, args.steps):<4} "
            + " ".join(f"{v:9.3f}" for v in row)
        )
    print(f"{'held-out':>9} " + " ".join(f"{accs[r]:9.3f}" for r in curves))
    print(f"{'cpu s':>9} " + " ".join(f"{seconds[r]:9.1f}" for r in curves))
    tail = max(args.every, args.steps // 10)
    for run, curve in curves.items():
        print(f"{run}_final_loss: {sum(curve[-tail:]) / tail:.3f} nats")
        print(f"{run}_heldout_top1: {100 * accs[run]:.1f} %")


SMALL_NAME = "proxyless_cifar_small"

if __name__ == "__main__":
    main()
