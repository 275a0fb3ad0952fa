"""``slimnas latency-table``: measure the latency table of a run config's model on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from slimnas.cli.set_option import add_set_option
from slimnas.configured_model import build_checked, image_channels
from slimnas.data.prepare import load_training_data
from slimnas.errors import ConfigError


def cmd_latency_table(args: argparse.Namespace) -> int:
    """Measure the latency table of the config ``args.config``; returns the exit status."""
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


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``latency-table`` command to the subcommands ``sub``."""
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
    add_set_option(table, "space.min_ratio=0.5")
    table.set_defaults(run=cmd_latency_table)
