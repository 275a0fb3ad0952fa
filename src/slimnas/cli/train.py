"""``slimnas train``: train a model or a slimmable supernet from a TOML config."""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from slimnas.cli.set_option import add_set_option
from slimnas.configured_model import build_checked, image_channels
from slimnas.data.augment import normalize
from slimnas.data.prepare import load_training_data, make_loader, resolve_device
from slimnas.errors import ConfigError
from slimnas.run_dir import check_resumed_config, check_run_dir
from slimnas.run_lock import check_unlocked_on_main, lock_run_dir


def _evaluation_line(split: str, arch: str, result, params: int, macs: int | None) -> str:
    cost = f"{params / 1e6:.3f} M params" + (f", {macs / 1e6:.1f} M MACs" if macs else "")
    return (
        f"{split:<8} {arch:<6} top-1 {100 * result.accuracy:6.2f} %  loss {result.loss:.4f}  "
        f"({result.samples} images, {cost})"
    )


def _build_network(
    config, model: torch.nn.Module, example: torch.Tensor
) -> tuple[torch.nn.Module, Any, Any]:
    """``(model, supernet, step)``: ``model`` (built by `build_checked` with ``train.seed``);
    for a supernet, the `Supernet` traced on ``example`` (as the model) and its sandwich step,
    else None, None."""
    from slimnas.space import trace
    from slimnas.supernet import Supernet
    from slimnas.train.slimmable import recipe_sandwich_step

    if not config.train.supernet:
        return model, None, None
    supernet = Supernet(model, trace(model, example))
    train = config.train
    generator = torch.Generator().manual_seed(train.seed)
    return supernet, supernet, recipe_sandwich_step(supernet, train, generator)


def _evaluate_at_end(
    model: torch.nn.Module,
    supernet: Any,
    splits: dict[str, Any],
    train_batches: Callable[[], Iterable],
    bn_batches: int,
) -> list[dict[str, Any]]:
    """Score the model, or the supernet's max and min archs, on each split; print a line each.

    A subnet's BatchNorm statistics are recalibrated first on ``bn_batches`` batches of
    ``train_batches()`` (US-Nets §3.3); the supernet is left at its max arch.
    """
    from slimnas.cost import macs, params
    from slimnas.train import evaluate, recalibrate_bn

    if supernet is None:
        archs = {"model": None}
    else:
        archs = {"max": supernet.max_arch(), "min": supernet.min_arch()}
    evaluations = []
    for arch_name, arch in archs.items():
        if arch is None:
            n_params, n_macs = sum(p.numel() for p in model.parameters()), None
        else:
            recalibrate_bn(supernet, arch, itertools.islice(train_batches(), bn_batches))
            n_params, n_macs = params(supernet.space, arch), macs(supernet.space, arch)
        for split, batches in splits.items():
            result = evaluate(model, batches)
            print(_evaluation_line(split, arch_name, result, n_params, n_macs))
            row = {"split": split, "arch": arch_name, **asdict(result)}
            evaluations.append(row | {"params": n_params, "macs": n_macs})
    if supernet is not None:
        supernet.activate(supernet.max_arch())
    return evaluations


def cmd_train(args: argparse.Namespace) -> int:
    """Train the model or supernet of the config ``args.config``; returns the exit status."""
    from slimnas.config import load_config
    from slimnas.train import distributed

    config = load_config(args.config, args.set)
    distributed.init_from_env()  # under torchrun: join the process group (gloo or NCCL)
    cfg_train = config.train
    run_dir = Path(config.run.dir).expanduser()
    check_unlocked_on_main(run_dir)  # another process trains there: say so before any work
    check_run_dir(run_dir, args.resume)
    if args.resume:
        check_resumed_config(run_dir, config.to_dict())
    device = resolve_device(cfg_train)
    data = load_training_data(config.data, channels=image_channels(config))
    example = normalize(data.train[0][:1], data.mean, data.std)
    config, model = build_checked(config, data, example, cfg_train.seed)  # before writing
    if len(data.train[1]) < cfg_train.batch_size:
        raise ConfigError(
            f"train.batch_size {cfg_train.batch_size} is more than the {len(data.train[1])} "
            "training images; lower it"
        )

    lock = lock_run_dir(run_dir)  # held until this command ends, however it ends
    try:
        check_run_dir(run_dir, args.resume)  # again: a run that started meanwhile and ended
        return _train(args, config, model, data, device, run_dir)
    finally:
        lock.release()


def _train(
    args: argparse.Namespace, config, model: torch.nn.Module, data, device, run_dir: Path
) -> int:
    """`cmd_train` once the config is checked and the run directory locked."""
    from slimnas.data import BatchLoader, normalize
    from slimnas.io import atomic_write_text
    from slimnas.train import distributed, plain_step
    from slimnas.train.recipe import trainer_from_recipe

    cfg_model, cfg_data, cfg_train = config.model, config.data, config.train
    train_x, train_y = data.train

    def batches(images, labels, train: bool) -> BatchLoader:
        return make_loader(
            data,
            (images, labels),
            cfg_train.batch_size,
            train=train,
            seed=cfg_train.seed,
            augment=cfg_data.augment,
            device=device,
            rank=distributed.rank() if train else 0,  # each rank its shard of a global batch
            world_size=distributed.world_size() if train else 1,
        )

    example = normalize(train_x[:2], data.mean, data.std)
    model, supernet, step = _build_network(config, model, example)
    model.to(device)
    loader = batches(train_x, train_y, train=True)
    trainer = trainer_from_recipe(
        model,
        loader,
        cfg_train,
        step_fn=step or plain_step(cfg_train.label_smoothing),
        run_dir=run_dir,
        resume=args.resume,
        config=config.to_dict(),
    )
    if distributed.is_main():
        atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=1) + "\n")

    held = len(data.heldout[1]) if data.heldout else 0
    kind = f"supernet (sandwich, n={cfg_train.sandwich_n})" if supernet else "model"
    print(
        f"training {cfg_model.name} {kind} on {cfg_data.source}: {len(train_y)} images "
        f"({held} held out), {len(loader)} steps/epoch x {cfg_train.epochs} epochs on {device}"
        + (f", resuming at step {trainer.step}" if trainer.step else "")
        + (" (no checkpoint to resume: fresh run)" if args.resume and not trainer.step else "")
        + f" -> {run_dir}"
    )
    started = time.perf_counter()
    trainer.fit(until_step=cfg_train.max_steps)
    seconds = time.perf_counter() - started
    finished = trainer.step >= trainer.total_steps
    if not finished:
        print(
            f"stopped at step {trainer.step} of {trainer.total_steps} (train.max_steps); "
            "continue with --resume and a larger or no train.max_steps"
        )

    splits = {"heldout": data.heldout, "test": data.test}
    splits = {name: batches(*split, train=False) for name, split in splits.items() if split}
    evaluations = _evaluate_at_end(
        model, supernet, splits, lambda: batches(train_x, train_y, train=True), cfg_train.bn_batches
    )
    results = {
        "model": cfg_model.name,
        "supernet": cfg_train.supernet,
        "device": str(device),
        "step": trainer.step,
        "total_steps": trainer.total_steps,
        "finished": finished,
        "train_seconds": round(seconds, 3),
        "images": {
            "train": len(train_y),
            "heldout": held,
            "test": len(data.test[1]) if data.test else 0,
        },
        "evaluations": evaluations,
    }
    if distributed.is_main():
        atomic_write_text(run_dir / "results.json", json.dumps(results, indent=1) + "\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` command to the subcommands ``sub``."""
    train = sub.add_parser("train", help="train a model or a slimmable supernet from a TOML config")
    train.add_argument("config", help="TOML file (see docs/config.md)")
    add_set_option(train, "train.lr=0.05 (repeatable)")
    train.add_argument("--resume", action="store_true", help="continue the run in run.dir")
    train.set_defaults(run=cmd_train)
