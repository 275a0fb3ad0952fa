"""The ``slimnas`` command line.

    slimnas demo                 trace a built-in model, sample archs, print their costs,
                                 export one and verify it (torch and ONNX Runtime)
    slimnas space --model NAME   print the search space discovered in a model
    slimnas train CONFIG.toml    train a model or a slimmable supernet (docs/config.md);
                                 --set section.key=value overrides, --resume continues
    slimnas run CONFIG.toml      the whole pipeline: supernet, search, export, retrain, report
    slimnas search | export | evaluate | report CONFIG.toml
                                 the pipeline up to one stage (each reuses what is done)
    slimnas latency-table CONFIG.toml
                                 measure the latency table of the config's model on this
                                 machine (reuses what a file holds already)

User mistakes print one line and exit with status 2; nothing already written is damaged.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from slimnas.configured_model import build_checked, image_channels
from slimnas.data.augment import normalize
from slimnas.data.prepare import load_training_data, make_loader, resolve_device
from slimnas.errors import ConfigError, SlimnasError
from slimnas.io import write_failed
from slimnas.models.build import build_model
from slimnas.run_dir import build_model_of, check_resumed_config, check_run_dir
from slimnas.run_lock import check_unlocked_on_main, lock_run_dir
from slimnas.settings import parse_table

log = logging.getLogger("slimnas")

# The OS errors of a machine, not of slimnas: a full disk or quota, a read-only file system.
_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _parse_shape(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    if text is None:
        return default
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--input must be comma-separated integers like 1,3,32,32, got {text!r}"
        ) from None
    if len(shape) != 4 or min(shape) < 1:
        raise ConfigError(f"--input must be N,C,H,W with positive sizes, got {text!r}")
    return shape


def _model_kwargs(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    kwargs = parse_table(text)
    if not isinstance(kwargs, dict):
        raise ConfigError(
            f"--kwargs must be a TOML inline table or JSON object like '{{depth = 3}}', got "
            f"{text!r}"
        )
    return kwargs


def cmd_space(args: argparse.Namespace) -> int:
    from slimnas.space import trace

    model, default = build_model(args.model, "--model", **_model_kwargs(args.kwargs))
    space = trace(model, torch.randn(_parse_shape(args.input, default)))
    print(space.summary())
    print(f"\n{len(space)} searchable units, {space.size():.3g} archs")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from slimnas.cli.demo import run_demo

    model, default = build_model(args.model, "--model")
    return run_demo(args.model, model, _parse_shape(args.input, default), args)


def _evaluation_line(split: str, arch: str, result, params: int, macs: int | None) -> str:
    cost = f"{params / 1e6:.3f} M params" + (f", {macs / 1e6:.1f} M MACs" if macs else "")
    return (
        f"{split:<8} {arch:<6} top-1 {100 * result.accuracy:6.2f} %  loss {result.loss:.4f}  "
        f"({result.samples} images, {cost})"
    )


def _build_network(config, example: torch.Tensor) -> tuple[torch.nn.Module, Any, Any]:
    """``(model, supernet, step)``: the model seeded by ``train.seed``; for a supernet, the
    `Supernet` traced on ``example`` (as the model) and its sandwich step, else None, None."""
    from slimnas.space import trace
    from slimnas.supernet import Supernet
    from slimnas.train.slimmable import recipe_sandwich_step

    model = build_model_of(config, config.train.seed)
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
    config, _ = build_checked(config, data, example, cfg_train.seed)  # before writing anything
    if len(data.train[1]) < cfg_train.batch_size:
        raise ConfigError(
            f"train.batch_size {cfg_train.batch_size} is more than the {len(data.train[1])} "
            "training images; lower it"
        )

    lock = lock_run_dir(run_dir)  # held until this command ends, however it ends
    try:
        check_run_dir(run_dir, args.resume)  # again: a run that started meanwhile and ended
        return _train(args, config, data, device, run_dir)
    finally:
        lock.release()


def _train(args: argparse.Namespace, config, data, device, run_dir: Path) -> int:
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

    model, supernet, step = _build_network(config, normalize(train_x[:2], data.mean, data.std))
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


# The pipeline stages each command runs (earlier stages are reused when finished).
PIPELINE_COMMANDS = {
    "run": ("supernet", "search", "export", "retrain", "report"),
    "search": ("supernet", "search"),
    "export": ("supernet", "search", "export"),
    "evaluate": ("supernet", "search", "retrain"),
    "report": ("report",),
}


def cmd_pipeline(args: argparse.Namespace) -> int:
    from slimnas.config import PipelineConfig, load_config
    from slimnas.pipeline import Pipeline, StageStopped
    from slimnas.train.distributed import init_from_env

    config = load_config(args.config, args.set, PipelineConfig)
    stages = PIPELINE_COMMANDS[args.command]
    # Every command but run continues the run in run.dir when there is one.
    resume = args.resume or args.command != "run"
    if args.command == "report" and not (Path(config.run.dir) / "config.json").exists():
        raise ConfigError(f"run.dir {config.run.dir} holds no run to report; slimnas run first")
    init_from_env()
    logging.getLogger("slimnas.pipeline").setLevel(logging.INFO)  # say what each stage does
    pipeline = Pipeline(config, resume=resume)
    started = time.perf_counter()
    try:
        run_dir = pipeline.run(stages)
    except StageStopped as stop:  # a max_steps the user set: not an error
        print(f"{args.command}: {stop}")
        return 0
    print(f"{args.command}: done in {time.perf_counter() - started:.0f} s -> {run_dir}")
    if "report" in stages:
        print(f"report: {run_dir / 'report.md'}")
    return 0


def cmd_latency_table(args: argparse.Namespace) -> int:
    from slimnas.config import PipelineConfig, load_config
    from slimnas.cost.latency.build import CALIBRATION_ARCHS, build_latency_table
    from slimnas.cost.latency.measure import check_target
    from slimnas.cost.latency.predict import predict_latency
    from slimnas.cost.latency.table import LatencyTable
    from slimnas.data.augment import normalize
    from slimnas.pipeline import Pipeline

    config = load_config(args.config, args.set, PipelineConfig)
    options = config.search
    out = args.out or options.latency_table
    if out is None:
        raise ConfigError("give the table file with --out FILE or search.latency_table")
    runtime = args.runtime or options.latency_runtime
    device = args.device or options.latency_device
    threads = options.latency_threads if args.threads is None else args.threads
    batch = options.latency_batch if args.batch is None else args.batch
    if batch < 1 or args.rounds < 1 or args.repeats < 1:
        raise ConfigError("--batch, --rounds and --repeats must be at least 1")
    archs = CALIBRATION_ARCHS if args.calibration_archs is None else args.calibration_archs
    if archs < 2:
        raise ConfigError("--calibration-archs must be at least 2 (the max and the min arch)")
    check_target(runtime, device, threads)
    if Path(out).is_dir():
        raise ConfigError(f"--out {out} is a directory; give a .json file")
    LatencyTable.load(out, missing_ok=True)  # an existing file must be a table
    data = load_training_data(config.data, channels=image_channels(config))
    example = normalize(data.train[0][:1], data.mean, data.std)
    config, model = build_checked(config, data, example, config.supernet.seed)
    space = Pipeline._space(config, model, example)
    build = build_latency_table(
        model,
        space,
        example,
        out,
        runtime=runtime,
        device=device,
        threads=threads,
        batch=batch,
        repeats=args.repeats,
        rounds=args.rounds,
        calibration_archs=archs,
        model_name=config.model.name,
        recalibrate=args.recalibrate,
    )
    calibration = build.calibration
    strength = calibration.get("segment_strength")
    fitted = (
        f"segment factors fitted (ridge strength {strength:g})"
        if strength
        else "no segment factors (under 16 archs, or the line alone fits about as well)"
    )
    largest = next(p for p in calibration["points"] if p["arch"] == "max")
    predicted = predict_latency(space, space.max_arch(), build.target)
    print(
        f"latency table {out}: {build.target.describe()}; {build.measured} entries measured, "
        f"{build.reused} reused; calibration on {len(calibration['points'])} archs: {fitted}, "
        f"overhead {calibration['overhead_ms']:.3f} ms, scale {calibration['scale']:.3f}; "
        f"max arch {predicted:.3f} ms predicted, {largest['measured_ms']:.3f} ms measured"
    )
    return 0


class OneLineParser(argparse.ArgumentParser):
    """argparse, whose usage errors are one line (``slimnas run: error: ...``, exit 2) like
    every other mistake, instead of the usage text and then the error; an option is never
    taken for an abbreviation (``--res`` is not ``--resume``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="slimnas", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="trace, sample archs, cost table, export and verify")
    demo.add_argument(
        "--model", default="resnet20", help="any model.name form, as for slimnas space"
    )
    demo.add_argument("--input", help="example input shape N,C,H,W")
    demo.add_argument("--archs", type=int, default=5, help="random archs to sample")
    demo.add_argument("--out", default="runs/demo", help="directory for the exported model")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=cmd_demo)

    space = sub.add_parser(
        "space",
        help="print the search space of a model",
        description="Trace a model and print the searchable units slimnas finds in it.",
    )
    space.add_argument(
        "--model",
        default="resnet20",
        help="a reference model (resnet20, mobilenet_v2, ...), tv:<torchvision name>, "
        "timm:<timm name> (random weights) or package.module:callable (a function or class "
        "returning the nn.Module, imported from the working directory or the installed "
        "packages); see model.name in docs/config.md",
    )
    space.add_argument(
        "--kwargs",
        help="keyword arguments of the model, a TOML inline table or JSON object, e.g. "
        "'{num_classes = 10, depth = 3}'",
    )
    space.add_argument(
        "--input",
        help="example input shape N,C,H,W (default: 32 px for the CIFAR models, the timm "
        "model's input size, else 224 px with the first conv's input channels)",
    )
    space.set_defaults(run=cmd_space)

    train = sub.add_parser("train", help="train a model or a slimmable supernet from a TOML config")
    train.add_argument("config", help="TOML file (see docs/config.md)")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value, e.g. --set train.lr=0.05 (repeatable)",
    )
    train.add_argument("--resume", action="store_true", help="continue the run in run.dir")
    train.set_defaults(run=cmd_train)

    helps = {
        "run": "search and retrain end to end from a TOML config (docs/pipeline.md)",
        "search": "train the supernet and run the searches of a run config",
        "export": "export the found archs (supernet weights) as plain models and ONNX",
        "evaluate": "retrain every found arch per seed and test it once",
        "report": "write report.md and its figures from a run's results",
    }
    for name, text in helps.items():
        command = sub.add_parser(name, help=text)
        command.add_argument("config", help="TOML file (see docs/pipeline.md)")
        command.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help="override a config value, e.g. --set search.budgets=macs<=50%%",
        )
        command.add_argument("--resume", action="store_true", help="continue the run in run.dir")
        command.set_defaults(run=cmd_pipeline)

    table = sub.add_parser(
        "latency-table", help="measure the latency table of a run config's model on this machine"
    )
    table.add_argument("config", help="TOML file (see docs/pipeline.md)")
    table.add_argument("--out", help="JSON table file (default: search.latency_table)")
    table.add_argument(
        "--runtime", choices=("torch", "onnxruntime"), help="default: search.latency_runtime"
    )
    table.add_argument("--device", choices=("cpu", "cuda"), help="default: search.latency_device")
    table.add_argument("--threads", type=int, help="default: search.latency_threads")
    table.add_argument("--batch", type=int, help="default: search.latency_batch")
    table.add_argument("--repeats", type=int, default=20, help="timed calls per entry")
    table.add_argument(
        "--rounds", type=int, default=3, help="measurements per entry (lowest median kept)"
    )
    table.add_argument(
        "--calibration-archs",
        type=int,
        help="whole archs measured to calibrate the sum of segments (default 64; from 16 on, "
        "per-segment factors are fitted too)",
    )
    table.add_argument(
        "--recalibrate",
        action="store_true",
        help="measure the whole-arch calibration again (the machine's speed changed)",
    )
    table.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value, e.g. --set space.min_ratio=0.5",
    )
    table.set_defaults(run=cmd_latency_table)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.run(args)
    except SlimnasError as err:
        print(f"slimnas: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in _STORAGE_ERRNOS:
            raise
        # A write no slimnas.io call made (a library's own file): the same one line.
        print(f"slimnas: error: {write_failed(err.filename or '(a file)', err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
