"""How well a latency table predicts the measured latency of exported archs.

For each model (CIFAR MobileNetV2 and ResNet-56 by default), runtime (torch eager and
onnxruntime) and batch size (1 and 32), all on the CPU with ``--threads`` threads: builds (or
reuses) the latency table of that target in ``--tables``, draws ``--archs`` random archs of the
model's space (seeded, none of them used by the table's calibration), predicts each one's latency
from the table, exports it (`Supernet.export`) and measures it (``--rounds`` measurements at
different moments, the lowest median kept, as the table's entries are). Prints per target the
mean absolute percentage error of the prediction (goal <= 5 %) and Kendall's tau-b between
predicted and measured (goal >= 0.9), and the same two figures for the first measurement round
against the second (the noise floor: a prediction cannot agree with the measurements better than
they agree with themselves), then one line per figure.

    OMP_NUM_THREADS=1 .venv/bin/python bench/latency_predictor.py          # ~20 min, 2 cores
    OMP_NUM_THREADS=1 .venv/bin/python bench/latency_predictor.py --quick  # under a minute
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import slimnas
from slimnas.cost.latency import measure_latency
from slimnas.cost.latency_build import build_latency_table
from slimnas.cost.latency_predict import predict_latency
from slimnas.io import atomic_write_text
from slimnas.supernet import Supernet

# Timed calls per measurement: (warm-up, repeats) of a table entry and of a whole arch.
SETTINGS = {1: ((5, 20), (5, 30)), 32: ((2, 10), (2, 10))}


def kendall_tau(xs: list[float], ys: list[float]) -> float:
    """Kendall's tau-b (ties in either list counted as neither concordant nor discordant)."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(xs)):
        for j in range(i + 1, len(xs)):
            dx, dy = xs[i] - xs[j], ys[i] - ys[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    pairs = concordant + discordant
    denominator = ((pairs + ties_x) * (pairs + ties_y)) ** 0.5
    return (concordant - discordant) / denominator if denominator else 0.0


def mape(predicted: list[float], measured: list[float]) -> float:
    return 100 * statistics.fmean(abs(p - m) / m for p, m in zip(predicted, measured))


def measure_archs(models, shape, runtime, threads, rounds, warmup, repeats) -> list[list]:
    """Per round (one pass over the models), the `Latency` of every model."""
    return [
        [
            measure_latency(
                model, shape, runtime=runtime, threads=threads, warmup=warmup, repeats=repeats
            )
            for model in models
        ]
        for _ in range(rounds)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2_cifar", "resnet56"])
    parser.add_argument("--runtimes", nargs="+", default=["torch", "onnxruntime"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--archs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1234, help="of the evaluated archs")
    parser.add_argument("--tables", default="runs/latency_tables", help="folder of the tables")
    parser.add_argument("--quick", action="store_true", help="ResNet-56, batch 1, 10 archs")
    parser.add_argument("--dump", help="JSON file for every arch's prediction and measurement")
    args = parser.parse_args()
    if args.quick:
        args.models, args.batches, args.archs = ["resnet56"], [1], 10
    torch.set_num_threads(args.threads)
    tables = Path(args.tables)
    print(
        f"threads {args.threads}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"load average {os.getloadavg()[0]:.2f}, {slimnas.cost.latency.device_name()}",
        flush=True,
    )
    rows, started = [], time.perf_counter()
    for name in args.models:
        torch.manual_seed(0)
        model = slimnas.models.MODELS[name]()
        example = torch.randn(1, 3, 32, 32)
        space = slimnas.trace(model, example)
        generator = torch.Generator().manual_seed(args.seed)
        archs = [space.sample(generator) for _ in range(args.archs)]
        supernet = Supernet(copy.deepcopy(model), space)
        exported = [supernet.export(a).eval() for a in archs]
        for runtime in args.runtimes:
            for batch in args.batches:
                (warmup, repeats), (arch_warmup, arch_repeats) = SETTINGS.get(batch, SETTINGS[32])
                clock = time.perf_counter()
                build = build_latency_table(
                    model,
                    space,
                    example,
                    tables / f"{name}.json",
                    runtime=runtime,
                    threads=args.threads,
                    batch=batch,
                    warmup=warmup,
                    repeats=repeats,
                    rounds=args.rounds,
                    calibration_repeats=arch_repeats,
                    model_name=name,
                )
                built = time.perf_counter() - clock
                predicted = [predict_latency(space, a, build.target) for a in archs]
                rounds = measure_archs(
                    exported,
                    (batch, 3, 32, 32),
                    runtime,
                    args.threads,
                    args.rounds,
                    arch_warmup,
                    arch_repeats,
                )
                # Each arch's round with the lowest median: load from elsewhere only slows.
                measured = [min(r, key=lambda m: m.median_ms) for r in zip(*rounds)]
                medians = [m.median_ms for m in measured]
                # The noise floor: the first two rounds against each other.
                first, second = ([m.median_ms for m in r] for r in rounds[:2])
                inside = sum(m.p10_ms <= p <= m.p90_ms for p, m in zip(predicted, measured))
                row = {
                    "model": name,
                    "runtime": runtime,
                    "batch": batch,
                    "entries": build.measured + build.reused,
                    "measured": build.measured,
                    "build_s": built,
                    "mape": mape(predicted, medians),
                    "tau": kendall_tau(predicted, medians),
                    "inside": inside,
                    "spread": statistics.fmean(
                        100 * (m.p90_ms - m.p10_ms) / m.median_ms for m in measured
                    ),
                    "range": (min(medians), max(medians)),
                    "noise_mape": mape(first, second) if args.rounds > 1 else None,
                    "noise_tau": kendall_tau(first, second) if args.rounds > 1 else None,
                    "scale": build.calibration["scale"],
                }
                row["archs"] = [
                    {"predicted_ms": p, **m.to_dict()} for p, m in zip(predicted, measured)
                ]
                rows.append(row)
                if args.dump:
                    atomic_write_text(args.dump, json.dumps(rows, indent=1))
                noise = (
                    f"; round 1 vs round 2: {row['noise_mape']:.2f} %, tau {row['noise_tau']:.3f}"
                    if args.rounds > 1
                    else ""
                )
                print(
                    f"{name} {runtime} batch {batch}: MAPE {row['mape']:.2f} %, tau "
                    f"{row['tau']:.3f}, {inside}/{len(archs)} predictions inside the p10-p90 "
                    f"band{noise} ({time.perf_counter() - clock:.0f} s)",
                    flush=True,
                )
    print(
        f"\n{'model':<20} {'runtime':<12} {'batch':>5} {'entries':>8} {'table s':>8} "
        f"{'scale':>6} {'measured ms':>16} {'p10-p90 %':>9} {'MAPE %':>7} {'tau':>6} "
        f"{'noise %':>7} {'tau':>6}"
    )
    for r in rows:
        low, high = r["range"]
        noise = "" if r["noise_mape"] is None else f"{r['noise_mape']:>7.2f} {r['noise_tau']:>6.3f}"
        print(
            f"{r['model']:<20} {r['runtime']:<12} {r['batch']:>5} {r['entries']:>8} "
            f"{r['build_s']:>8.0f} {r['scale']:>6.3f} {f'{low:.2f}-{high:.2f}':>16} "
            f"{r['spread']:>9.1f} {r['mape']:>7.2f} {r['tau']:>6.3f} {noise}"
        )
    print(
        f"\n{args.archs} archs per "
        f"model, {time.perf_counter() - started:.0f} s in all, load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    for r in rows:
        tag = f"{r['model']}_{r['runtime']}_b{r['batch']}"
        print(f"latency_mape_{tag}: {r['mape']:.2f} %")
        print(f"latency_tau_{tag}: {r['tau']:.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
