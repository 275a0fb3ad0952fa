"""Training throughput of the sandwich rule against plain training of the max arch.

For the CIFAR ResNet-20 and the CIFAR MobileNetV2 (names of `slimnas.models.MODELS`), on the CPU,
on the same batches of the built-in CIFAR-10 subset (batch 64, normalised, not augmented), each
through the real `slimnas.train.Trainer` (SGD step, schedule, finiteness checks included):

(a) the supernet trained with the sandwich rule, ``sandwich_step(supernet, n=4, generator=...)``
    (Yu & Huang, "Universally Slimmable Networks and Improved Training Techniques", arXiv
    1903.05134): per batch the max arch, the min arch and two random archs, each with its own
    forward and backward;
(b) ``supernet.export(supernet.max_arch())``, a plain model, trained with ``plain_step``.

It prints the images per second of each and how much a sandwich step costs beyond the compute it
does. The **measured ratio** is the time of the sandwich steps ÷ that of as many plain steps; the
**ideal ratio** is the MACs of every arch the sandwich steps trained (recorded at each forward of
the supernet, so the random archs are the ones actually drawn) ÷ (max-arch MACs × steps): what the
sandwich would cost if time followed MACs and weight sharing were free. Their quotient is the
**overhead factor**: 1.0 means the supernet costs nothing beyond the extra subnets' MACs; above 1
are the dynamic layers' slicing, the small subnets' poorer use of the cores, and the per-arch
Python work. Its ``±`` is half the interquartile range of the per-step factors, the noise to read
it against.

Timing: warm-up steps of each first, then the measured steps, one sandwich step and one plain step
per round (the order alternating per round) so that drift and background load hit both alike;
Python's garbage collector is off while timing. Wall-clock figures mean something only on an
otherwise idle machine (the script prints the load average); on a shared one ``--threads 1
--clock cpu`` (this process's CPU time) is steadier.

The output is a table, then one ``NAME: VALUE UNIT`` line per figure.

    .venv/bin/python bench/train_throughput.py              # 12 measured steps per model
    .venv/bin/python bench/train_throughput.py --quick      # 4 measured steps per model, noisier
    .venv/bin/python bench/train_throughput.py --threads 1 --clock cpu  # on a busy machine
    .venv/bin/python bench/train_throughput.py --models resnet56 --steps 40 --batch-size 128
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

import slimnas
from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, BatchLoader, load_builtin
from slimnas.models import MODELS
from slimnas.train import Trainer, plain_step, sandwich_step

DEFAULT_MODELS = ["resnet20", "mobilenet_v2_cifar"]
INPUT = (3, 32, 32)
SANDWICH_N = 4
LABEL_SMOOTHING = 0.1  # the sandwich step's default for the max arch; the plain step uses it too
FULL_STEPS, FULL_WARMUP = 12, 2
QUICK_STEPS, QUICK_WARMUP = 4, 1
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


class ArchRecorder:
    """Records the arch a supernet runs at each forward, grouped by training step.

    A forward pre-hook reads ``supernet.arch`` (what the last ``activate`` set), so every forward
    the sandwich step makes, and only those, is counted, whichever archs it drew.
    """

    def __init__(self, supernet: slimnas.Supernet):
        self.supernet = supernet
        self.steps: list[list[slimnas.Arch]] | None = None  # None: not recording
        supernet.register_forward_pre_hook(self._record)

    def _record(self, module: nn.Module, args: tuple) -> None:
        if self.steps is not None:
            self.steps[-1].append(dict(self.supernet.arch))

    def start(self) -> None:
        """Record from now on; forgets what came before."""
        self.steps = []

    def next_step(self) -> None:
        """The forwards from now on belong to a new step."""
        assert self.steps is not None, "call start() first"
        self.steps.append([])


@dataclass(frozen=True)
class Result:
    model: str
    max_macs: int
    batch: int
    sandwich_s: list[float]  # seconds of each measured step
    plain_s: list[float]
    sandwich_macs: list[int]  # MACs of the archs trained in each measured step, summed
    archs_per_step: float

    @property
    def steps(self) -> int:
        return len(self.plain_s)

    def images_per_s(self, seconds: list[float]) -> float:
        return self.batch * len(seconds) / sum(seconds)

    @property
    def measured_ratio(self) -> float:
        return sum(self.sandwich_s) / sum(self.plain_s)

    @property
    def ideal_ratio(self) -> float:
        return sum(self.sandwich_macs) / (self.max_macs * self.steps)

    @property
    def overhead(self) -> float:
        return self.measured_ratio / self.ideal_ratio

    @property
    def overhead_spread(self) -> float:
        """Half the interquartile range of the per-step overhead factors."""
        factors = [
            (s / p) / (m / self.max_macs)
            for s, p, m in zip(self.sandwich_s, self.plain_s, self.sandwich_macs)
        ]
        if len(factors) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(factors, n=4)
        return (q3 - q1) / 2


def batches(batch_size: int) -> BatchLoader:
    """The built-in training subset, normalised, shuffled with a fixed seed: the same batches for
    every loader this returns."""
    images, labels = load_builtin(train=True)
    return BatchLoader(images, labels, batch_size, seed=0, mean=CIFAR10_MEAN, std=CIFAR10_STD)


def make_trainer(model: nn.Module, step_fn, loader: BatchLoader, total_steps: int) -> Trainer:
    epochs = math.ceil(total_steps / len(loader))
    return Trainer(
        model, loader, step_fn=step_fn, lr=0.05, epochs=epochs, run_dir=None, progress=False
    )


def timed_step(trainer: Trainer, clock: Callable[[], float]) -> float:
    """Seconds of one more training step of ``trainer``."""
    start = clock()
    trainer.fit(until_step=trainer.step + 1)
    return clock() - start


def measure(
    name: str,
    batch_size: int,
    warmup: int,
    steps: int,
    clock: Callable[[], float],
    progress: tqdm,
) -> Result:
    torch.manual_seed(0)
    model = MODELS[name]()
    space = slimnas.trace(model, torch.randn(1, *INPUT))
    supernet = slimnas.Supernet(model, space)
    max_arch = supernet.max_arch()
    plain = supernet.export(max_arch)
    recorder = ArchRecorder(supernet)

    total = warmup + steps
    step = sandwich_step(supernet, n=SANDWICH_N, generator=torch.Generator().manual_seed(0))
    sandwich = make_trainer(supernet, step, batches(batch_size), total)
    reference = make_trainer(plain, plain_step(LABEL_SMOOTHING), batches(batch_size), total)

    progress.set_postfix_str(f"{name} warm-up")
    for _ in range(warmup):
        timed_step(sandwich, clock)
        timed_step(reference, clock)
    recorder.start()
    sandwich_s, plain_s = [], []
    progress.set_postfix_str(name)
    gc.collect()
    gc.disable()
    try:
        for round_ in range(steps):
            recorder.next_step()
            if round_ % 2 == 0:
                sandwich_s.append(timed_step(sandwich, clock))
                plain_s.append(timed_step(reference, clock))
            else:
                plain_s.append(timed_step(reference, clock))
                sandwich_s.append(timed_step(sandwich, clock))
            progress.update()
    finally:
        gc.enable()
    assert recorder.steps is not None
    sandwich_macs = [sum(slimnas.macs(space, arch) for arch in archs) for archs in recorder.steps]
    archs_per_step = statistics.mean(len(archs) for archs in recorder.steps)
    assert archs_per_step == SANDWICH_N, f"recorded {archs_per_step} archs per step"
    return Result(
        name,
        slimnas.macs(space, max_arch),
        batch_size,
        sandwich_s,
        plain_s,
        sandwich_macs,
        archs_per_step,
    )


# ---------------------------------------------------------------------------------- report
def print_report(results: list[Result]) -> list[tuple[str, float, str]]:
    """Print the table; returns the figures as (name, value, unit)."""
    batch = results[0].batch
    print(
        f"\ntrain step, batch {batch}: sandwich rule (n={SANDWICH_N}) on the supernet vs plain "
        "step of the exported max arch"
    )
    header = (
        f"{'model':<19} {'max MMACs':>9} {'plain ms':>9} {'sandw. ms':>9} {'plain img/s':>11} "
        f"{'sandw. img/s':>12} {'measured':>8} {'ideal':>6} {'overhead':>13}"
    )
    print(header)
    print("-" * len(header))
    figures: list[tuple[str, float, str]] = []
    for r in results:
        plain_ips, sandwich_ips = r.images_per_s(r.plain_s), r.images_per_s(r.sandwich_s)
        overhead = f"{r.overhead:.3f}±{r.overhead_spread:.3f}"
        print(
            f"{r.model:<19} {r.max_macs / 1e6:>9.1f} "
            f"{sum(r.plain_s) / r.steps * 1e3:>9.1f} {sum(r.sandwich_s) / r.steps * 1e3:>9.1f} "
            f"{plain_ips:>11.1f} {sandwich_ips:>12.1f} {r.measured_ratio:>8.3f} "
            f"{r.ideal_ratio:>6.3f} {overhead:>13}"
        )
        figures += [
            (f"sandwich_images_per_s_{r.model}", sandwich_ips, "img/s"),
            (f"plain_images_per_s_{r.model}", plain_ips, "img/s"),
            (f"sandwich_over_plain_time_{r.model}", r.measured_ratio, "x"),
            (f"sandwich_ideal_ratio_{r.model}", r.ideal_ratio, "x"),
            (f"sandwich_overhead_vs_ideal_{r.model}", r.overhead, "x"),
        ]
    print(
        "measured: sandwich ÷ plain step time; ideal: MACs of the archs the sandwich trained ÷ "
        "(max MACs × steps);\noverhead: measured ÷ ideal (1.0 = weight sharing costs nothing "
        "beyond the extra subnets' MACs)"
    )
    return figures


def _available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _load_text(cpus: int) -> str:
    if not hasattr(os, "getloadavg"):
        return "load average unknown"
    load = os.getloadavg()[0]
    busy = "  (busy: timings are noisy; try --threads 1 --clock cpu)" if load > 0.5 else ""
    return f"load average {load:.2f} on {cpus} CPUs{busy}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", choices=list(MODELS), default=DEFAULT_MODELS, metavar="MODEL"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_WARMUP} warm-up + {QUICK_STEPS} measured steps",
    )
    parser.add_argument("--steps", type=int, help=f"measured steps (default {FULL_STEPS})")
    parser.add_argument("--warmup", type=int, help=f"warm-up steps (default {FULL_WARMUP})")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--threads",
        type=int,
        default=_available_cpus(),
        help="torch intra-op threads (default: every CPU this process may use)",
    )
    parser.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time, which other processes barely "
        "disturb (use it with --threads 1 on a shared machine)",
    )
    args = parser.parse_args(argv)
    steps = args.steps or (QUICK_STEPS if args.quick else FULL_STEPS)
    warmup = args.warmup if args.warmup is not None else QUICK_WARMUP if args.quick else FULL_WARMUP
    if steps < 1 or warmup < 0 or args.batch_size < 1 or args.threads < 1:
        parser.error("--steps, --batch-size and --threads must be positive, --warmup not negative")

    torch.set_num_threads(args.threads)
    print(
        f"slimnas {slimnas.__version__}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, batch {args.batch_size}, {warmup} warm-up + {steps} measured steps, "
        f"{args.clock} clock"
    )
    print(
        "note: wall-clock figures mean something only on an otherwise idle machine; "
        "on a shared one use --threads 1 --clock cpu"
    )
    print(f"start: {_load_text(_available_cpus())}")

    started = time.perf_counter()
    results = []
    with tqdm(total=steps * len(args.models), disable=not sys.stderr.isatty()) as progress:
        for name in args.models:
            results.append(
                measure(name, args.batch_size, warmup, steps, CLOCKS[args.clock], progress)
            )
    figures = print_report(results)
    # The 1-minute load average now includes this run's own threads.
    print(f"\nend: {_load_text(_available_cpus())}; took {time.perf_counter() - started:.0f} s\n")
    for name, value, unit in figures:
        print(f"{name}: {value:.1f} {unit}" if unit == "img/s" else f"{name}: {value:.3f} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
