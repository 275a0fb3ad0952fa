"""Re-measure the latency of every final model of a `slimnas run` directory, in interleaved
rounds, and compare it with the latency budget it was searched for and the table's prediction.

A run measures each retrained model once, right after its training; on a shared or noisy
machine that single measurement can be off. This script loads every ``models/*/*/seed*/``
folder (`slimnas.pipeline.load_exported`), measures them round-robin (``--rounds`` times, so a
burst of load hits all models alike) with the run's latency settings (``search.latency_*``), and
prints per model the median of the round medians, the spread between rounds and the distance
to its budget.

    python bench/final_latency.py runs/proxyless_cifar10 --rounds 5

Ends with ``<method> <budget> seed<k>: <ms> ms`` lines.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from slimnas.cost.latency import measure_latency
from slimnas.pipeline import load_exported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()

    config = json.loads((args.run_dir / "config.json").read_text())
    search = config["search"]
    image = config["data"].get("image_size") or 32
    shape = (search["latency_batch"], 3, image, image)
    folders = sorted(args.run_dir.glob("models/*/*/seed*"))
    models = {f: load_exported(f) for f in folders if (f / "result.json").exists()}
    rounds: dict[Path, list[float]] = {f: [] for f in models}
    for _ in range(args.rounds):
        for folder, model in models.items():
            latency = measure_latency(
                model,
                shape,
                runtime=search["latency_runtime"],
                device=search["latency_device"],
                threads=search["latency_threads"],
                repeats=args.repeats,
            )
            rounds[folder].append(latency.median_ms)

    print(
        f"{search['latency_runtime']}, {search['latency_threads']} thread(s), batch "
        f"{shape[0]}, {args.rounds} rounds of {args.repeats} calls"
    )
    print(
        f"{'model':<42} {'median':>8} {'min':>8} {'max':>8} {'budget':>8} {'pred.':>8} "
        f"{'vs budget':>9} {'run':>8}"
    )
    lines = []
    for folder, values in rounds.items():
        row = json.loads((folder / "result.json").read_text())
        name = f"{row['method']} {row['budget']} {folder.name}"
        median = statistics.median(values)
        budget = row.get("latency_budget_ms")
        predicted = row.get("predicted_latency_ms")
        gap = f"{100 * (median / budget - 1):+.1f} %" if budget else "-"
        print(
            f"{name:<42} {median:8.3f} {min(values):8.3f} {max(values):8.3f} "
            f"{budget or float('nan'):8.3f} {predicted or float('nan'):8.3f} {gap:>9} "
            f"{row.get('latency_ms', float('nan')):8.3f}"
        )
        lines.append(f"{name}: {median:.4f} ms")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
