"""Supernet training recipes side by side: does the max arch train as well as a plain network?

Trains the plain model and sandwich-rule supernets (variants of `SandwichStep`) with one
`slimnas train` recipe (default `examples/train_resnet20.toml`: ResNet-20, 5 epochs, built-in
CIFAR-10 subset), each from the same initial weights and batches, then scores the plain model and
the supernet's max and min archs (BatchNorm recalibrated, US-Nets §3.3) on the held-out and test
images. The ablation of issue 18: which of in-place distillation, the middle archs' sampling, the
depth units and the residual blocks' initialisation cost the max arch its accuracy.

    .venv/bin/python bench/supernet_recipe.py [--variants plain paper ...] [--set train.epochs=5]
        [--config examples/train_resnet20.toml] [--threads N]

Prints one row per variant, then ``NAME: VALUE UNIT`` lines (max and min test top-1).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from slimnas.config import Config, load_config
from slimnas.data import normalize
from slimnas.data.prepare import load_training_data, make_loader, resolve_device
from slimnas.models.build import build_model
from slimnas.space import trace
from slimnas.supernet import Supernet
from slimnas.train import evaluate, plain_step, recalibrate_bn
from slimnas.train.recipe import trainer_from_recipe
from slimnas.train.residual_init import zero_init_residual_bn
from slimnas.train.slimmable import SandwichStep

# name -> SandwichStep options (None: the plain model). "paper" is today's default.
VARIANTS: dict[str, dict | None] = {
    "plain": None,
    "paper": {"n": 4, "distill": True},
    "nodistill": {"n": 4, "distill": False},
    "nodistill_n2": {"n": 2, "distill": False},
    "nodistill_n3": {"n": 3, "distill": False},
    "nodistill_uniform": {"n": 4, "distill": False, "sampling": "uniform"},
    "nodistill_width": {"n": 4, "distill": False, "space": "width"},
    "nodistill_zero": {"n": 4, "distill": False, "zero_init": True},
    "nodistill_width_zero": {"n": 4, "distill": False, "space": "width", "zero_init": True},
    "distill_zero": {"n": 4, "distill": True, "zero_init": True},
    "distill_uniform_zero": {"n": 4, "distill": True, "sampling": "uniform", "zero_init": True},
    "distill_after1_zero": {"n": 4, "distill": True, "zero_init": True, "distill_after": 1.0},
    "nodistill_sw": {"n": 4, "distill": False, "student_weight": 1 / 3},
    # slimnas run's supernet: widths only (space.depth = false), labels, losses averaged
    "nodistill_width_sw": {"n": 4, "distill": False, "space": "width", "student_weight": 1 / 3},
    "distill_sw_zero": {"n": 4, "distill": True, "student_weight": 1 / 3, "zero_init": True},
    "nodistill_ramp": {"n": 4, "distill": False, "ramp": 5.0},
    "distill_sw": {"n": 4, "distill": True, "student_weight": 1 / 3},
    "distill_after2_sw": {"n": 4, "distill": True, "student_weight": 1 / 3, "distill_after": 2.0},
    "distill_after2_ramp": {"n": 4, "distill": True, "ramp": 5.0, "distill_after": 2.0},
    "distill_after2_zero": {"n": 4, "distill": True, "zero_init": True, "distill_after": 2.0},
}


def width_only(space):
    """``space`` with every depth unit fixed at its maximum."""
    for name, unit in list(space.searchable.items()):
        if unit.kind == "depth":
            space = space.fix(name)
    return space


def run_variant(config: Config, name: str, options: dict | None, data, threads: int) -> dict:
    torch.set_num_threads(threads)
    cfg = config.train
    torch.manual_seed(cfg.seed)
    model, _ = build_model(config.model.name, num_classes=data.num_classes)
    device = resolve_device(cfg)  # train.device: auto is cuda when there is one

    def batches(split, train: bool):
        return make_loader(data, split, cfg.batch_size, train=train, seed=cfg.seed, device=device)

    loader = batches(data.train, True)
    supernet = step = None
    if options is None:
        step = plain_step(cfg.label_smoothing)
    else:
        options = dict(options)
        example = normalize(data.train[0][:2], data.mean, data.std)
        space = trace(model, example)
        if options.pop("space", "full") == "width":
            space = width_only(space)
        if options.pop("zero_init", False):
            zero_init_residual_bn(model)
        after = round(options.pop("distill_after", 0) * len(loader))
        options["student_ramp"] = round(options.pop("ramp", 0) * len(loader))
        supernet = model = Supernet(model, space)
        generator = torch.Generator().manual_seed(cfg.seed)
        step = SandwichStep(
            supernet,
            generator=generator,
            label_smoothing=cfg.label_smoothing,
            distill_after=after,
            **options,
        )
    model.to(device)
    trainer = trainer_from_recipe(
        model, loader, cfg, step_fn=step, run_dir=None, resume=False, progress=False
    )
    started = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - started
    splits = {"heldout": batches(data.heldout, False), "test": batches(data.test, False)}
    row = {"variant": name, "seconds": round(seconds, 1)}
    archs = (
        {"max": None}
        if supernet is None
        else {"max": supernet.max_arch(), "min": supernet.min_arch()}
    )
    for arch_name, arch in archs.items():
        if arch is not None:
            recalibrate_bn(supernet, arch, itertools.islice(iter(loader), cfg.bn_batches))
        for split, split_batches in splits.items():
            row[f"{arch_name}_{split}"] = round(100 * evaluate(model, split_batches).accuracy, 2)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="examples/train_resnet20.toml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--variants", nargs="+", default=["plain", "paper", "nodistill"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", help="append each row as a JSON line to this file")
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        print(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    config = load_config(args.config, args.set)
    data = load_training_data(config.data)
    config = replace(config, model=replace(config.model, num_classes=data.num_classes))
    print(
        f"{config.model.name}, {config.data.source}: {len(data.train[1])} train images, "
        f"{config.train.epochs} epochs, {args.threads} threads, load {os.getloadavg()[0]:.2f}"
    )
    rows = []
    header = (
        f"{'variant':<24} {'max test':>9} {'max held':>9} {'min test':>9} {'min held':>9} {'s':>7}"
    )
    print(header)
    for name in args.variants:
        row = run_variant(config, name, VARIANTS[name], data, args.threads)
        rows.append(row)
        print(
            f"{name:<24} {row['max_test']:>9.2f} {row['max_heldout']:>9.2f} "
            f"{row.get('min_test', math.nan):>9.2f} {row.get('min_heldout', math.nan):>9.2f} "
            f"{row['seconds']:>7.1f}",
            flush=True,
        )
        if args.out:
            with Path(args.out).open("a") as f:
                f.write(json.dumps(row | {"config": args.config, "set": args.set}) + "\n")
    for row in rows:
        print(f"{row['variant']}_max_test: {row['max_test']} %")
        if "min_test" in row:
            print(f"{row['variant']}_min_test: {row['min_test']} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
