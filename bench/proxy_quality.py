"""Proxy quality: does a supernet's inherited accuracy rank archs the way retraining does?

Trains a sandwich-rule supernet with a `slimnas train` recipe (default
`examples/train_resnet20.toml`: ResNet-20 on the built-in CIFAR-10 subset), picks archs spread
over the MACs range (the uniform-width path and random archs at several MACs levels), scores each
with inherited weights (BatchNorm recalibrated, held-out images), retrains each from its native
initialisation (`slimnas.train.native_init`) with the same recipe, tests it once, and prints
Kendall's τ and Spearman's ρ between the two accuracies, plus whether inherited accuracy rises
with width along the uniform path (a drop larger than the standard error counts as a fault).

    .venv/bin/python bench/proxy_quality.py --cache runs/proxy [--set train.epochs=5]
        [--step student_weight=0.333] [--retrain-epochs 5] [--random 6] [--shard 0/2]

Each arch's row is written to ``CACHE/rows/`` as it is done, so a killed run resumes; two
processes with ``--shard 0/2`` and ``--shard 1/2`` share the retraining.

Ends with ``NAME: VALUE UNIT`` lines (kendall_tau, spearman_rho, uniform_path_faults).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import torch

from slimnas.config import load_config
from slimnas.cost import macs
from slimnas.data import normalize
from slimnas.data.prepare import load_training_data, make_loader
from slimnas.io import atomic_write_text, load_tensors, save_tensors
from slimnas.models.build import build_model
from slimnas.report.proxy import accuracy_standard_error, kendall_tau, spearman_rho
from slimnas.space import trace
from slimnas.space.units import Arch, ChannelUnit
from slimnas.supernet import Supernet
from slimnas.train import evaluate, plain_step, recalibrate_bn
from slimnas.train.native_init import apply_native_init, record_init
from slimnas.train.recipe import trainer_from_recipe
from slimnas.train.slimmable import recipe_sandwich_step


def uniform_arch(space, ratio: float) -> Arch:
    """Every channel unit at the choice nearest ``ratio`` × its max; other units at default."""
    picks = {}
    for name, unit in space.searchable.items():
        if isinstance(unit, ChannelUnit):
            picks[name] = min(unit.choices, key=lambda c: (abs(c - ratio * unit.max_channels), -c))
        else:
            picks[name] = unit.default
    return Arch(picks)


def random_arch_near(space, share: float, generator: torch.Generator, tries: int = 400) -> Arch:
    """A random arch (every unit drawn on its own) whose MACs are nearest ``share`` of the max."""
    target = share * macs(space, space.max_arch())
    best, gap = None, math.inf
    for _ in range(tries):
        arch = space.sample(generator)
        g = abs(macs(space, arch) - target)
        if g < gap:
            best, gap = arch, g
    return best


def step_options(pairs: list[str], steps_per_epoch: int) -> dict:
    """``KEY=VALUE`` SandwichStep options; ``distill_after`` and ``student_ramp`` in epochs."""
    options: dict = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        parsed = json.loads(value) if value not in ("unit", "uniform") else value
        if key in ("distill_after", "student_ramp"):
            parsed = round(float(parsed) * steps_per_epoch)
        options[key] = parsed
    return options


def traced_supernet(config, data, divisor: int):
    """``(supernet, init_record)``: ``config``'s model seeded by ``train.seed``, its
    initialisation recorded (`record_init`), traced on two training images at ``divisor``
    with every unit but the channel units fixed (widths only, as `slimnas run` searches).
    `bench/autoslim_path.py` rebuilds the same supernet with it to load this bench's weights."""

    def build():
        return build_model(config.model.name, num_classes=data.num_classes)[0]

    torch.manual_seed(config.train.seed)
    model, init_record = record_init(build)
    example = normalize(data.train[0][:2], data.mean, data.std)
    space = trace(model, example, divisor=divisor)
    for name, unit in list(space.searchable.items()):
        if not isinstance(unit, ChannelUnit):
            space = space.fix(name)
    return Supernet(model, space), init_record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="examples/train_resnet20.toml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--step",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a SandwichStep option (JSON value; distill_after, student_ramp in epochs)",
    )
    parser.add_argument("--retrain-epochs", type=int, default=None)
    parser.add_argument("--uniform", type=int, default=7, help="points on the uniform path")
    parser.add_argument("--random", type=int, default=6, help="random archs")
    parser.add_argument("--divisor", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--cache", required=True, help="folder: supernet weights and one row per arch"
    )
    parser.add_argument(
        "--shard",
        default="0/1",
        help="K/N: this process retrains archs K, K+N, ...; shard 0 "
        "trains the supernet, the others wait for it",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shard, shards = (int(x) for x in args.shard.split("/"))
    cache = Path(args.cache)
    (cache / "rows").mkdir(parents=True, exist_ok=True)

    config = load_config(args.config, args.set)
    data = load_training_data(config.data)
    cfg = config.train
    retrain = replace(cfg, epochs=args.retrain_epochs or cfg.epochs)

    def batches(split, train: bool, seed: int = cfg.seed):
        return make_loader(data, split, cfg.batch_size, train=train, seed=seed)

    supernet, init_record = traced_supernet(config, data, args.divisor)
    space = supernet.space
    loader = batches(data.train, True)
    options = step_options(args.step, len(loader))
    print(
        f"{config.model.name}, {config.data.source}: {len(data.train[1])} train / "
        f"{len(data.heldout[1])} held-out / {len(data.test[1])} test images; supernet "
        f"n={cfg.sandwich_n} distill={cfg.distill} loss={cfg.sandwich_loss} {options} "
        f"{cfg.epochs} epochs, retrain {retrain.epochs} epochs; "
        f"{args.threads} threads, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    weights = cache / "supernet.safetensors"
    if shard == 0 and not weights.exists():
        # the recipe's own sandwich step ([train] sandwich_n, distill, sandwich_loss), then --step
        generator = torch.Generator().manual_seed(cfg.seed)
        step = recipe_sandwich_step(supernet, cfg, generator, **options)
        started = time.perf_counter()
        trainer_from_recipe(
            supernet, loader, cfg, step_fn=step, run_dir=None, resume=False, progress=False
        ).fit()
        print(f"supernet trained in {time.perf_counter() - started:.0f} s", flush=True)
        save_tensors(supernet.state_dict(), weights)
    while not weights.exists():
        time.sleep(10)
    supernet.load_state_dict(load_tensors(weights))

    max_macs = macs(space, space.max_arch())
    archs: dict[Arch, str] = {}
    for ratio in torch.linspace(0.25, 1.0, args.uniform).tolist():
        archs.setdefault(uniform_arch(space, ratio), f"uniform {ratio:.2f}")
    generator = torch.Generator().manual_seed(1)
    for share in torch.linspace(0.25, 0.85, args.random).tolist():
        archs.setdefault(random_arch_near(space, share, generator), f"random {share:.2f}")

    heldout, test = batches(data.heldout, False), batches(data.test, False)
    print(f"{'arch':<14} {'MACs %':>7} {'inherited':>10} {'retrained':>10} {'s':>6}", flush=True)
    for index, (arch, label) in enumerate(archs.items()):
        path = cache / "rows" / f"{label.replace(' ', '_')}.json"
        if index % shards != shard or path.exists():
            continue
        recalibrate_bn(supernet, arch, itertools.islice(iter(loader), cfg.bn_batches))
        inherited = evaluate(supernet, heldout).accuracy
        small = supernet.export(arch)  # weights re-drawn below: the arch's own initialisation
        apply_native_init(small, init_record, seed=cfg.seed)
        t0 = time.perf_counter()
        trainer_from_recipe(
            small,
            loader,
            retrain,
            step_fn=plain_step(cfg.label_smoothing),
            run_dir=None,
            resume=False,
            progress=False,
        ).fit()
        retrained = evaluate(small, test).accuracy
        row = {
            "arch": label,
            "macs_share": macs(space, arch) / max_macs,
            "inherited": inherited,
            "retrained": retrained,
            "choices": dict(arch),
        }
        atomic_write_text(path, json.dumps(row) + "\n")
        print(
            f"{label:<14} {100 * row['macs_share']:>7.1f} {100 * inherited:>10.2f} "
            f"{100 * retrained:>10.2f} {time.perf_counter() - t0:>6.0f}",
            flush=True,
        )
    supernet.activate(space.max_arch())

    rows = [json.loads(p.read_text()) for p in sorted((cache / "rows").glob("*.json"))]
    if len(rows) < len(archs):
        print(f"{len(rows)} of {len(archs)} archs done; rerun or wait for the other shards")
        return 0
    print(f"{'arch':<14} {'MACs %':>7} {'inherited':>10} {'retrained':>10}")
    for row in sorted(rows, key=lambda r: r["macs_share"]):
        print(
            f"{row['arch']:<14} {100 * row['macs_share']:>7.1f} {100 * row['inherited']:>10.2f} "
            f"{100 * row['retrained']:>10.2f}"
        )
    inherited = [r["inherited"] for r in rows]
    retrained = [r["retrained"] for r in rows]
    tau, rho = kendall_tau(inherited, retrained), spearman_rho(inherited, retrained)
    path = [r for r in rows if r["arch"].startswith("uniform")]
    path.sort(key=lambda r: r["macs_share"])
    se = accuracy_standard_error(max(inherited), len(data.heldout[1]))
    faults = sum(b["inherited"] < a["inherited"] - se for a, b in zip(path, path[1:]))
    print(f"held-out standard error of one accuracy: {100 * se:.2f} points")
    print(f"kendall_tau: {tau:.3f}")
    print(f"spearman_rho: {rho:.3f}")
    print(f"uniform_path_faults: {faults} of {len(path) - 1} steps")
    print(f"archs: {len(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
