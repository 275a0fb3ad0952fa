"""Does AutoSlim's greedy path fall as MACs fall on a supernet that ranks archs well? Issue 18.

Loads the supernet `bench/proxy_quality.py` trained into ``--cache`` (same config, same trace:
ResNet-20 widths, divisor ``--divisor``), runs AutoSlim's greedy slimming (`greedy_slim`, §3.2
of Yu & Huang 2019) scored on the first ``--score-images`` held-out images (BatchNorm batch
statistics of each 500-image batch, as `slimnas run` scores by default), and prints the path:
MACs share and accuracy after every iteration, and every rise larger than the binomial standard
error of one score. Then it scores AutoSlim's and uniform width's archs at each budget on the
*other* held-out images (BatchNorm recalibrated), which neither selected on.

    OMP_NUM_THREADS=1 .venv/bin/python bench/autoslim_path.py \\
        --config bench/configs/proxy_quality_cifar10.toml --cache runs/proxy_cifar10 --threads 2

Ends with ``NAME: VALUE UNIT`` lines (path_rises_over_se, autoslim_minus_uniform_<budget>).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import torch
from proxy_quality import traced_supernet

from slimnas.config import load_config
from slimnas.cost import macs
from slimnas.cost.budget import parse_budgets
from slimnas.data.prepare import load_training_data, make_loader
from slimnas.io import load_tensors
from slimnas.methods.autoslim import greedy_slim
from slimnas.methods.baselines import uniform_search
from slimnas.methods.scoring import ArchScorer
from slimnas.report.proxy import accuracy_standard_error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="bench/configs/proxy_quality_cifar10.toml")
    parser.add_argument("--cache", required=True, help="bench/proxy_quality.py's --cache")
    parser.add_argument("--budgets", nargs="+", default=["macs<=50%", "macs<=30%"])
    parser.add_argument("--score-images", type=int, default=2500)
    parser.add_argument("--divisor", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    config = load_config(args.config)
    data = load_training_data(config.data)
    cfg = config.train
    supernet, _ = traced_supernet(config, data, args.divisor)  # proxy_quality's own
    space = supernet.space
    supernet.load_state_dict(load_tensors(f"{args.cache}/supernet.safetensors"))
    budgets = parse_budgets(args.budgets, space)

    images, labels = data.heldout
    n = min(args.score_images, len(labels) // 2)
    search_split = (images[:n], labels[:n])
    report_split = (images[n:], labels[n:])

    def batches(split, train=False, size=500):
        return make_loader(data, split, size, train=train, seed=cfg.seed)

    calibration = list(itertools.islice(iter(batches(data.train, True, 128)), 8))
    scorer = ArchScorer(supernet, batches(search_split))
    reporter = ArchScorer(
        supernet, batches(report_split), bn="recalibrate", calibration=calibration
    )
    print(
        f"{config.model.name}, {config.data.source}: supernet {args.cache}; search split "
        f"{n} held-out images (batch statistics), report split {len(report_split[1])} "
        f"(recalibrated); {args.threads} threads, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    started = time.perf_counter()
    results = greedy_slim(space, scorer, budgets, progress=False)
    seconds = time.perf_counter() - started
    path = results[0].info["trajectory"]
    max_macs = macs(space, space.max_arch())
    print(
        f"greedy path: {results[0].info['iterations']} iterations, "
        f"{results[0].info['evaluations']} archs scored, {seconds:.0f} s"
    )
    print(f"{'iter':>4} {'MACs %':>7} {'acc %':>6} {'SE':>5}  unit slimmed")
    rises = 0
    previous = None
    for i, point in enumerate(path):
        se = accuracy_standard_error(point["accuracy"], n)
        rise = previous is not None and point["accuracy"] > previous + se
        rises += rise
        print(
            f"{i:>4} {100 * point['macs'] / max_macs:>7.1f} {100 * point['accuracy']:>6.2f} "
            f"{100 * se:>5.2f}  {point.get('unit') or '-'}{'  RISE' if rise else ''}"
        )
        previous = point["accuracy"]

    uniform = uniform_search(space, budgets)
    found = [r.arch for r in results] + [r.arch for r in uniform]
    scores = reporter.score_many(found)
    k = len(budgets)
    print(f"{'budget':<12} {'method':<9} {'MACs %':>7} {'report acc %':>13}")
    gaps = {}
    for i, budget in enumerate(budgets):
        for label, arch, score in (
            ("autoslim", found[i], scores[i]),
            ("uniform", found[k + i], scores[k + i]),
        ):
            print(
                f"{budget.text:<12} {label:<9} {100 * macs(space, arch) / max_macs:>7.1f} "
                f"{100 * score.accuracy:>13.2f}"
            )
        gaps[budget.text] = scores[i].accuracy - scores[k + i].accuracy
    se = accuracy_standard_error(max(s.accuracy for s in scores), len(report_split[1]))
    print(f"report split standard error of one accuracy: {100 * se:.2f} points")
    print(f"path_rises_over_se: {rises} of {len(path) - 1} steps")
    for text, gap in gaps.items():
        name = text.replace("<=", "_").replace("%", "pct")
        print(f"autoslim_minus_uniform_{name}: {100 * gap:.2f} points")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
