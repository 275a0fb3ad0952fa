"""Re-measure the latency of every final model of a `slimnas run` directory, in interleaved
rounds, and compare it with the latency budget it was searched for and the table's prediction.

A run measures each retrained model once, right after its training; on a shared or noisy
machine that single measurement can be off. This script loads every ``models/*/*/seed*/``
folder (`slimnas.pipeline.load_exported`), measures them round-robin (``--rounds`` times, so a
burst of load hits all models alike; `slimnas.cost.latency.time_rounds`) with the run's latency
settings (``search.latency_*``), and prints per model the median of the round medians, the
spread between rounds and the distance to its budget. (Runs since 2026-12-01 time each final
model alongside the max arch already: ``latency_at_table_speed_ms`` in ``result.json``.)

    python bench/final_latency.py runs/proxyless_cifar10 runs/proxyless_cifar10_band --rounds 9

Ends with ``<method> <budget> seed<k>: <ms> ms`` lines.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from slimnas.config import PipelineConfig
from slimnas.cost.latency.measure import time_rounds
from slimnas.pipeline import Pipeline, load_exported
from slimnas.space.space import Space
from slimnas.supernet import Supernet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+", help="runs of one config (one space)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()

    first = args.run_dirs[0]
    config = json.loads((first / "config.json").read_text())
    search = config["search"]
    image = config["data"].get("image_size") or 32
    shape = (search["latency_batch"], 3, image, image)
    folders = sorted(f for run in args.run_dirs for f in run.glob("models/*/*/seed*"))
    models = {f: load_exported(f) for f in folders if (f / "result.json").exists()}
    # The max arch of the run's space, measured in the same rounds: % budgets are relative to
    # it, and a machine whose speed drifts between the table's build and now shifts it too.
    space = Space.from_json((first / "space.json").read_text())
    fresh = Pipeline._model(PipelineConfig.from_dict(config), 0)
    max_arch = Path("max arch")
    models[max_arch] = Supernet(fresh, space).export(space.max_arch())
    times = time_rounds(
        list(models.values()),
        shape,
        runtime=search["latency_runtime"],
        device=search["latency_device"],
        threads=search["latency_threads"],
        rounds=args.rounds,
        repeats=args.repeats,
    )
    rounds = {f: [statistics.median(r) for r in t] for f, t in zip(models, times)}

    print(
        f"{search['latency_runtime']}, {search['latency_threads']} thread(s), batch "
        f"{shape[0]}, {args.rounds} rounds of {args.repeats} calls"
    )
    print(
        f"{'model':<58} {'median':>8} {'min':>8} {'max':>8} {'budget':>8} {'pred.':>8} "
        f"{'vs budget':>9} {'run':>8}"
    )
    lines = []
    reference = statistics.median(rounds.pop(max_arch))
    print(f"{'max arch':<58} {reference:8.3f}")
    for folder, values in rounds.items():
        row = json.loads((folder / "result.json").read_text())
        name = f"{folder.parents[3].name}: {row['method']} {row['budget']} {folder.name}"
        median = statistics.median(values)
        budget = row.get("latency_budget_ms")
        predicted = row.get("predicted_latency_ms")
        gap = f"{100 * (median / budget - 1):+.1f} %" if budget else "-"
        print(
            f"{name:<58} {median:8.3f} {min(values):8.3f} {max(values):8.3f} "
            f"{budget or float('nan'):8.3f} {predicted or float('nan'):8.3f} {gap:>9} "
            f"{row.get('latency_ms', float('nan')):8.3f}"
        )
        print(f"  {'share of the max arch, same rounds':<56} {100 * median / reference:7.1f} %")
        lines.append(f"{name}: {median:.4f} ms")
    lines.append(f"max arch: {reference:.4f} ms")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
