"""The two-stage baseline's slimmable front from another supernet seed, beside a finished Joslim
run's fronts: how far a whole front moves with the supernet seed alone.

Tests the random search's front (Pareto front of held-out loss vs MACs over the archs it scored)
of ``--run`` — a run of the same config with ``search.methods = ["random"]`` and another
``supernet.seed`` — on the test set with that run's supernet (`tested_front`, as
`Joslim.artifacts` does: BatchNorm recalibrated per arch), then sums up the fronts of
``--reference`` (its ``search/*.front.json``) and those of ``--run`` (its random front and any
other tested front there, e.g. a Joslim front that `slimnas report` wrote; named with
``--suffix``) with `compare_fronts` over the budgets of the config: mean top-1 over the common
MACs range and top-1 at each budget.

    slimnas search configs/joslim_resnet20_cifar10.toml --set run.dir=runs/seed1 \\
        --set supernet.seed=1 --set 'search.methods=["random"]'
    .venv/bin/python bench/front_seed.py configs/joslim_resnet20_cifar10.toml \\
        --run runs/seed1 --set supernet.seed=1 --set 'search.methods=["random"]' \\
        --reference runs/joslim_resnet20_cifar10_r18
    # Joslim on the same seed, added to that run (its random search kept), then all four fronts:
    S=(--set run.dir=runs/seed1 --set supernet.seed=1 --set 'search.methods=["joslim","random"]')
    slimnas search configs/joslim_resnet20_cifar10.toml "${S[@]}" --resume
    slimnas report configs/joslim_resnet20_cifar10.toml "${S[@]}" --resume  # tests Joslim's front
    .venv/bin/python bench/front_seed.py configs/joslim_resnet20_cifar10.toml --run runs/seed1 \\
        --set supernet.seed=1 --set 'search.methods=["joslim","random"]' \\
        --reference runs/joslim_resnet20_cifar10_r18
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slimnas.config import PipelineConfig, load_config
from slimnas.methods.baseline_search import read_scored
from slimnas.methods.fronts import compare_fronts, scored_front, tested_front
from slimnas.methods.setup import read_json
from slimnas.pipeline import Pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--run", required=True, help="the other seed's finished run dir")
    parser.add_argument("--set", action="append", default=[], help="the --set of that run")
    parser.add_argument("--reference", required=True, help="a finished joslim + random run dir")
    parser.add_argument("--suffix", default="_seed1", help="added to the names of --run's fronts")
    args = parser.parse_args()

    config = load_config(args.config, [*args.set, f"run.dir={args.run}"], PipelineConfig)
    pipeline = Pipeline(config, resume=True, progress=False)
    supernet = pipeline.stage_supernet()
    setup = pipeline.setup()
    space, cost = supernet.space, "macs"
    out = Path(args.run) / "search" / "random.front.json"
    if read_json(out) is None:  # tested once, written atomically, as Joslim._tested does
        scored = read_scored(read_json(Path(args.run) / "search/random.scored.json"))
        front = scored_front(space, scored, cost)
        test = list(setup.loader(setup.data.test, 500, train=False))
        setup.write_json(
            out, tested_front(supernet, front, list(scored), setup.calibration(), test, cost)
        )
    fronts = {
        path.name.removesuffix(".front.json"): json.loads(path.read_text())
        for path in sorted((Path(args.reference) / "search").glob("*.front.json"))
    }
    for path in sorted((Path(args.run) / "search").glob("*.front.json")):
        fronts[path.name.removesuffix(".front.json") + args.suffix] = json.loads(path.read_text())
    summary = compare_fronts(fronts, space, pipeline.prepare().budgets, cost)
    low, high = summary["range"]
    print(f"common range {low / 1e6:.2f}-{high / 1e6:.2f} M MACs")
    for method, found in summary["methods"].items():
        picks = "  ".join(
            f"{b}: {100 * p['test_accuracy']:.2f} ({p['macs'] / 1e6:.2f} M)"
            for b, p in found["budgets"].items()
        )
        print(f"{method:14s} {len(found['points']):3d} archs  mean {found['auc']:.2f}  {picks}")


if __name__ == "__main__":
    main()
