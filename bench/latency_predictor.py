"""How well a latency table predicts the measured latency of exported archs.

For each model (CIFAR MobileNetV2 and ResNet-56 by default), runtime (torch eager and
onnxruntime) and batch size (1, 8 and 32), all on the CPU with ``--threads`` threads: builds (or
reuses) the latency table of that target in ``--tables``, draws ``--archs`` random archs of the
model's space (seeded, none of them used by the table's calibration), predicts each one's latency
from the table, exports it (`Supernet.export`) and measures all of them together, twice, each
time in ``--rounds`` interleaved rounds (`measure_latencies`); an arch's measured latency is the
mean of its two medians. The table's calibration archs run in the same rounds, and the line
refitted through them gives a second, "same-time" prediction: the table's own calibration was
measured minutes earlier, and a machine whose speed drifts (this project's VM does, by 10-30 %
within a minute) shifts every measurement since. Prints per target the mean absolute percentage
error of both predictions (goal <= 5 %) and Kendall's tau-b (the same for both: they differ by
an increasing line) between predicted and measured (goal >= 0.9); the same two figures for the
same-time line through the plain segment sums (what the table's per-segment factors add, see
`slimnas.cost.latency.fit`), and for the first measurement against the second (the noise
floor: a prediction cannot agree with the measurements better than they agree with
themselves), then one line per figure.

    OMP_NUM_THREADS=1 .venv/bin/python bench/latency_predictor.py          # ~40 min, 2 cores
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
from slimnas.cost.latency.build import (
    CALIBRATION_ARCHS,
    build_latency_table,
    calibration_archs,
    fit_line,
)
from slimnas.cost.latency.measure import measure_latencies
from slimnas.cost.latency.predict import predict_latency, segment_sum_ms, segment_values
from slimnas.io import atomic_write_text
from slimnas.report.proxy import kendall_tau
from slimnas.supernet import Supernet

# Timed calls: (warm-up, repeats) of a table entry, and repeats of a whole arch per round.
SETTINGS = {1: ((5, 20), 10), 32: ((2, 10), 3)}


def mape(predicted: list[float], measured: list[float]) -> float:
    return 100 * statistics.fmean(abs(p - m) / m for p, m in zip(predicted, measured))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2_cifar", "resnet56"])
    parser.add_argument("--runtimes", nargs="+", default=["torch", "onnxruntime"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--archs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--rounds", type=int, default=10, help="interleaved rounds of each whole-arch measurement"
    )
    parser.add_argument(
        "--entry-rounds", type=int, default=5, help="of each table entry (its best is kept)"
    )
    parser.add_argument("--calibration-archs", type=int, default=CALIBRATION_ARCHS)
    parser.add_argument(
        "--recalibrate", action="store_true", help="measure the tables' calibrations again"
    )
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
                (warmup, repeats), arch_repeats = SETTINGS.get(batch, SETTINGS[32])
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
                    rounds=args.entry_rounds,
                    calibration_archs=args.calibration_archs,
                    calibration_rounds=args.rounds,
                    calibration_repeats=arch_repeats,
                    model_name=name,
                    recalibrate=args.recalibrate,
                )
                built = time.perf_counter() - clock
                predicted = [predict_latency(space, a, build.target) for a in archs]
                # The calibration archs run in the same rounds as the evaluated ones: the line
                # refitted through them gives the "same-time" prediction.
                calibration = calibration_archs(space, args.calibration_archs)
                reference = [supernet.export(a).eval() for a in calibration.values()]
                first, second = (
                    measure_latencies(
                        reference + exported,
                        (batch, 3, 32, 32),
                        runtime=runtime,
                        threads=args.threads,
                        rounds=args.rounds,
                        repeats=arch_repeats,
                        seed=seed,
                    )
                    for seed in (0, 1)
                )
                both = [(a.median_ms + b.median_ms) / 2 for a, b in zip(first, second)]
                sums = [segment_sum_ms(space, a, build.target) for a in calibration.values()]
                overhead, scale = fit_line(sums, both[: len(reference)])
                now = [overhead + scale * segment_sum_ms(space, a, build.target) for a in archs]
                # What the segment factors bring: the same-time line through the plain sums.
                plain = [sum(segment_values(space, a, build.target)) for a in calibration.values()]
                overhead, scale = fit_line(plain, both[: len(reference)])
                line = [
                    overhead + scale * sum(segment_values(space, a, build.target)) for a in archs
                ]
                first, second = first[len(reference) :], second[len(reference) :]
                medians = both[len(reference) :]
                # The noise floor: the first measurement against the second.
                noise = [a.median_ms for a in first], [b.median_ms for b in second]
                measured = [min(pair, key=lambda m: m.median_ms) for pair in zip(first, second)]
                inside = sum(m.p10_ms <= p <= m.p90_ms for p, m in zip(predicted, measured))
                row = {
                    "model": name,
                    "runtime": runtime,
                    "batch": batch,
                    "entries": build.measured + build.reused,
                    "measured": build.measured,
                    "build_s": built,
                    "mape": mape(predicted, medians),
                    "mape_now": mape(now, medians),
                    "tau": kendall_tau(predicted, medians),
                    "factors": "segment_scales" in build.calibration,
                    "line_mape": mape(line, medians),
                    "line_tau": kendall_tau(line, medians),
                    "inside": inside,
                    "spread": statistics.fmean(
                        100 * (m.p90_ms - m.p10_ms) / m.median_ms for m in measured
                    ),
                    "range": (min(medians), max(medians)),
                    "noise_mape": mape(*noise),
                    "noise_tau": kendall_tau(*noise),
                    "scale": build.calibration["scale"],
                }
                row["archs"] = [
                    {"predicted_ms": p, **m.to_dict()} for p, m in zip(predicted, measured)
                ]
                rows.append(row)
                if args.dump:
                    atomic_write_text(args.dump, json.dumps(rows, indent=1))
                print(
                    f"{name} {runtime} batch {batch} (segment factors "
                    f"{'fitted' if row['factors'] else 'not fitted'}): MAPE {row['mape']:.2f} % "
                    f"(same-time calibration {row['mape_now']:.2f} %), tau "
                    f"{row['tau']:.3f}, {inside}/{len(archs)} predictions inside the p10-p90 "
                    f"band; the line alone (no segment factors): {row['line_mape']:.2f} %, tau "
                    f"{row['line_tau']:.3f}; measurement 1 vs 2: {row['noise_mape']:.2f} %, tau "
                    f"{row['noise_tau']:.3f} ({time.perf_counter() - clock:.0f} s)",
                    flush=True,
                )
    print(
        f"\n{'model':<20} {'runtime':<12} {'batch':>5} {'entries':>8} {'table s':>8} "
        f"{'scale':>6} {'measured ms':>16} {'p10-p90 %':>9} {'MAPE %':>7} {'now %':>6} "
        f"{'tau':>6} {'line %':>6} {'tau':>6} {'noise %':>7} {'tau':>6}"
    )
    for r in rows:
        low, high = r["range"]
        noise = (
            f"{r['line_mape']:>6.2f} {r['line_tau']:>6.3f} "
            f"{r['noise_mape']:>7.2f} {r['noise_tau']:>6.3f}"
        )
        print(
            f"{r['model']:<20} {r['runtime']:<12} {r['batch']:>5} {r['entries']:>8} "
            f"{r['build_s']:>8.0f} {r['scale']:>6.3f} {f'{low:.2f}-{high:.2f}':>16} "
            f"{r['spread']:>9.1f} {r['mape']:>7.2f} {r['mape_now']:>6.2f} {r['tau']:>6.3f} "
            f"{noise}"
        )
    print(
        f"\n{args.archs} archs per "
        f"model, {time.perf_counter() - started:.0f} s in all, load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    for r in rows:
        tag = f"{r['model']}_{r['runtime']}_b{r['batch']}"
        print(f"latency_mape_{tag}: {r['mape']:.2f} %")
        print(f"latency_mape_same_time_{tag}: {r['mape_now']:.2f} %")
        print(f"latency_tau_{tag}: {r['tau']:.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
