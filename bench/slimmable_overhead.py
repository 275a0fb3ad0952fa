"""What weight sharing costs: the supernet against its exported subnets, and those against natives.

For the CIFAR ResNet-56 and the CIFAR MobileNetV2, at the min arch, the max arch and three random
archs (``space.sample(torch.Generator().manual_seed(k))``, k = 0, 1, 2), on the CPU:

(a) train step (forward, ``loss = output.sum()``, backward; batch 64, train mode) of the supernet
    at the arch ÷ that of ``supernet.export(arch)``. Goal ≤ 1.10.
(b) eval-mode forward latency under ``no_grad`` (batch 1 and batch 64) of the exported net ÷ that
    of the same net built natively: a fresh model whose convs, linears and BatchNorms were
    constructed at the exported widths and whose skipped blocks are ``nn.Identity``, so that it
    never held larger tensors. Goal ≤ 1.02.
(c) mean time of one ``slimnas.macs`` / ``params`` / ``peak_memory`` query on ResNet-56 over 1000
    calls. Goal: well under 1 ms.

Timing: warm-up calls, then repeated samples of a few calls each, the two nets interleaved (the
order alternating per round) so that drift and background load hit both alike; a ratio is the
median of the per-round ratios, shown with half their interquartile range (a ratio above its goal
by less than that is marked "~", not "MISS"). Python's garbage collector is off while timing.
On a machine that other processes keep busy, wall-clock figures swing widely (multi-threaded
kernels stall when a thread is descheduled); ``--threads 1 --clock cpu`` then measures this
process's own CPU time, which the other load barely changes.

The output is a table, then one ``NAME: VALUE UNIT`` line per figure.

    .venv/bin/python bench/slimmable_overhead.py            # full run, a few minutes on 2 cores
    .venv/bin/python bench/slimmable_overhead.py --quick    # under a minute, noisier
    .venv/bin/python bench/slimmable_overhead.py --threads 1 --clock cpu    # on a busy machine
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import inspect
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
from slimnas.models import mobilenet_v2_cifar, resnet56

MODELS: dict[str, Callable[[], nn.Module]] = {
    "resnet56": resnet56,
    "mobilenet_v2_cifar": mobilenet_v2_cifar,
}
INPUT = (3, 32, 32)
TRAIN_BATCH = 64
RANDOM_ARCHS = 3
COST_CALLS = 1000
TRAIN_GOAL = 1.10
EXPORT_GOAL = 1.02
COST_GOAL_US = 1000.0
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclass(frozen=True)
class Timing:
    """How each comparison is timed: warm-up calls, timed samples, and the clock."""

    warmup: int
    train_repeats: int
    eval64_repeats: int
    eval1_repeats: int
    eval1_sample_s: float  # a batch-1 sample runs as many calls as fill this time
    cost_rounds: int  # rounds of COST_CALLS queries; the median round is reported
    clock: Callable[[], float] = time.perf_counter


FULL = Timing(
    warmup=2,
    train_repeats=13,
    eval64_repeats=21,
    eval1_repeats=41,
    eval1_sample_s=0.03,
    cost_rounds=3,
)
QUICK = Timing(
    warmup=1, train_repeats=3, eval64_repeats=5, eval1_repeats=7, eval1_sample_s=0.01, cost_rounds=1
)


@dataclass(frozen=True)
class Comparison:
    """Median seconds per call of two callables, and the median of their per-round ratios.

    ``spread`` is half the interquartile range of the per-round ratios: the noise to read the
    ratio against.
    """

    a_s: float
    b_s: float
    ratio: float
    spread: float

    def ratio_text(self) -> str:
        return f"{self.ratio:.3f}±{self.spread:.3f}"


def compare(
    a: Callable[[], object],
    b: Callable[[], object],
    warmup: int,
    repeats: int,
    min_sample_s: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
) -> Comparison:
    """Time ``a`` against ``b``, interleaved.

    Args:
        a: the callable whose relative cost is wanted (numerator).
        b: the reference (denominator).
        warmup: untimed calls of each first.
        repeats: timed rounds; each times one sample of ``a`` and one of ``b``.
        min_sample_s: a sample runs the same number of calls of each, enough that the faster
            one takes at least this long (one call when 0).
        clock: ``time.perf_counter`` (wall) or ``time.process_time`` (this process's CPU time).
    """
    for _ in range(warmup):
        a()
        b()
    calls = 1
    if min_sample_s > 0:
        fastest = min(_seconds(a, 1, clock), _seconds(b, 1, clock))
        calls = max(1, math.ceil(min_sample_s / max(fastest, 1e-9)))
    times_a, times_b, ratios = [], [], []
    gc.collect()
    gc.disable()
    try:
        for round_ in range(repeats):
            if round_ % 2 == 0:
                ta, tb = _seconds(a, calls, clock), _seconds(b, calls, clock)
            else:
                tb, ta = _seconds(b, calls, clock), _seconds(a, calls, clock)
            times_a.append(ta)
            times_b.append(tb)
            ratios.append(ta / tb)
    finally:
        gc.enable()
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    median = statistics.median
    return Comparison(median(times_a), median(times_b), median(ratios), (q3 - q1) / 2)


def _seconds(fn: Callable[[], object], calls: int, clock: Callable[[], float]) -> float:
    """Seconds per call of ``fn`` over ``calls`` back-to-back calls."""
    start = clock()
    for _ in range(calls):
        fn()
    return (clock() - start) / calls


def train_step(net: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One forward + backward with ``loss = output.sum()``; gradients dropped after each step."""

    def step() -> None:
        net(x).sum().backward()
        net.zero_grad(set_to_none=True)

    return step


def forward(net: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    return lambda: net(x)


# --------------------------------------------------------------------------- native models
_BN_TAKES_BIAS = "bias" in inspect.signature(nn.BatchNorm2d.__init__).parameters


def _fresh_layer(layer: nn.Module) -> nn.Module:
    """A newly constructed module of ``layer``'s class and shape, holding ``layer``'s values."""
    cls = type(layer)
    if cls is nn.Conv2d:
        fresh = cls(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
            bias=layer.bias is not None,
            padding_mode=layer.padding_mode,
        )
    elif cls is nn.Linear:
        fresh = cls(layer.in_features, layer.out_features, bias=layer.bias is not None)
    else:  # nn.BatchNorm2d
        extra = {"bias": layer.bias is not None} if _BN_TAKES_BIAS else {}
        fresh = cls(
            layer.num_features,
            layer.eps,
            layer.momentum,
            layer.affine,
            layer.track_running_stats,
            **extra,
        )
    # copy_ writes into the fresh, contiguous storage: same values, native memory layout.
    fresh.load_state_dict(layer.state_dict())
    return fresh.train(layer.training)


def build_native(build: Callable[[], nn.Module], exported: nn.Module) -> nn.Module:
    """The model ``build()`` constructed at ``exported``'s widths and depths from the start.

    Every Conv2d / Linear / BatchNorm2d is a new module of the exported one's shape (its values
    copied, so outputs can be compared); blocks the export replaced by ``nn.Identity`` are
    ``nn.Identity``. Any other structural difference is an error: this native would be wrong.
    """
    native = copy.deepcopy(build())
    for path, module in exported.named_modules():
        if not path:
            continue
        parent, _, name = path.rpartition(".")
        owner = native.get_submodule(parent) if parent else native
        current = owner._modules[name]
        if type(module) is nn.Identity and type(current) is not nn.Identity:
            owner._modules[name] = nn.Identity()
        elif type(module) in (nn.Conv2d, nn.Linear, nn.BatchNorm2d):
            owner._modules[name] = _fresh_layer(module)
        elif type(module) is not type(current):
            raise TypeError(f"{path}: exported {type(module).__name__}, native {type(current)}")
    return native.train(exported.training)


def check_native(native: nn.Module, exported: nn.Module, x: torch.Tensor) -> int:
    """Assert that ``native`` is ``exported`` rebuilt; returns the parameter count."""
    count = sum(p.numel() for p in native.parameters())
    exported_count = sum(p.numel() for p in exported.parameters())
    assert count == exported_count, f"native has {count} parameters, exported {exported_count}"
    layout = {k: (v.shape, v.stride()) for k, v in native.state_dict().items()}
    assert layout == {k: (v.shape, v.stride()) for k, v in exported.state_dict().items()}, (
        "native and exported tensors differ in shape or strides"
    )
    assert all(p.is_contiguous() for p in exported.parameters()), "exported weights are views"
    with torch.no_grad():
        diff = (native.eval()(x) - exported.eval()(x)).abs().max().item()
    assert diff <= 1e-5, f"native and exported outputs differ by {diff}"
    return count


# ------------------------------------------------------------------------------------ runs
@dataclass(frozen=True)
class ArchResult:
    model: str
    arch: str
    macs: int
    params: int
    train: Comparison  # supernet ÷ exported
    eval1: Comparison  # exported ÷ native
    eval64: Comparison  # exported ÷ native


def archs_of(space: slimnas.Space) -> dict[str, slimnas.Arch]:
    archs = {"min": space.min_arch(), "max": space.max_arch()}
    for k in range(RANDOM_ARCHS):
        archs[f"rand{k}"] = space.sample(torch.Generator().manual_seed(k))
    return archs


def measure_model(
    name: str, timing: Timing, progress: tqdm
) -> tuple[list[ArchResult], slimnas.Space]:
    build = MODELS[name]
    torch.manual_seed(0)
    model = build()
    space = slimnas.trace(model, torch.randn(1, *INPUT))
    supernet = slimnas.Supernet(model, space)
    generator = torch.Generator().manual_seed(1)
    x64 = torch.randn(TRAIN_BATCH, *INPUT, generator=generator)
    x1 = torch.randn(1, *INPUT, generator=generator)
    results = []
    for label, arch in archs_of(space).items():
        progress.set_postfix_str(f"{name} {label}")
        supernet.activate(arch)
        exported = supernet.export(arch)
        native = build_native(build, exported)
        count = check_native(native, exported, x1)
        assert count == slimnas.params(space, arch)

        supernet.train()
        exported.train()
        train = compare(
            train_step(supernet, x64),
            train_step(exported, x64),
            timing.warmup,
            timing.train_repeats,
            clock=timing.clock,
        )
        exported.eval()
        native.eval()
        with torch.no_grad():
            eval64 = compare(
                forward(exported, x64),
                forward(native, x64),
                timing.warmup,
                timing.eval64_repeats,
                clock=timing.clock,
            )
            eval1 = compare(
                forward(exported, x1),
                forward(native, x1),
                5 * timing.warmup,
                timing.eval1_repeats,
                timing.eval1_sample_s,
                timing.clock,
            )
        results.append(
            ArchResult(name, label, slimnas.macs(space, arch), count, train, eval1, eval64)
        )
        progress.update()
    return results, space


def cost_query_us(space: slimnas.Space, timing: Timing) -> dict[str, float]:
    """Mean microseconds per call of each cost function over COST_CALLS calls (median round)."""
    archs = list(archs_of(space).values())
    queries = {"macs": slimnas.macs, "params": slimnas.params, "peak_memory": slimnas.peak_memory}
    result = {}
    for name, query in queries.items():
        for arch in archs * 10:  # warm-up
            query(space, arch)
        rounds = []
        for _ in range(timing.cost_rounds):
            gc.collect()
            start = timing.clock()
            for i in range(COST_CALLS):
                query(space, archs[i % len(archs)])
            rounds.append((timing.clock() - start) / COST_CALLS * 1e6)
        result[name] = statistics.median(rounds)
    return result


# ---------------------------------------------------------------------------------- report
def _mark(value: float, goal: float, spread: float = 0.0) -> str:
    """ "ok" within the goal, "~" above it by less than the noise, else "MISS"."""
    if value <= goal:
        return "ok"
    return "~" if value - spread <= goal else "MISS"


def print_report(
    results: list[ArchResult], costs: dict[str, float]
) -> list[tuple[str, float, str]]:
    """Print the tables; returns the figures as (name, value, unit)."""
    figures: list[tuple[str, float, str]] = []
    print(f"\n(a) train step, batch {TRAIN_BATCH}: supernet ÷ exported (goal ≤ {TRAIN_GOAL:.2f})")
    header = (
        f"{'model':<19} {'arch':<6} {'MMACs':>6} {'params':>8} "
        f"{'supernet ms':>11} {'exported ms':>11} {'ratio':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.model:<19} {r.arch:<6} {r.macs / 1e6:>6.1f} {r.params:>8} "
            f"{r.train.a_s * 1e3:>11.2f} {r.train.b_s * 1e3:>11.2f} {r.train.ratio_text():>12} "
            f"{_mark(r.train.ratio, TRAIN_GOAL, r.train.spread)}"
        )
        figures.append((f"{r.model}_{r.arch}_train_supernet_over_exported", r.train.ratio, "x"))

    print(f"\n(b) eval forward, no_grad: exported ÷ native (goal ≤ {EXPORT_GOAL:.2f})")
    header = (
        f"{'model':<19} {'arch':<6} {'b1 exp ms':>9} {'b1 nat ms':>9} {'ratio':>12}      "
        f"{'b64 exp ms':>10} {'b64 nat ms':>10} {'ratio':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.model:<19} {r.arch:<6} {r.eval1.a_s * 1e3:>9.3f} {r.eval1.b_s * 1e3:>9.3f} "
            f"{r.eval1.ratio_text():>12} {_mark(r.eval1.ratio, EXPORT_GOAL, r.eval1.spread):<4} "
            f"{r.eval64.a_s * 1e3:>10.2f} {r.eval64.b_s * 1e3:>10.2f} "
            f"{r.eval64.ratio_text():>12} {_mark(r.eval64.ratio, EXPORT_GOAL, r.eval64.spread)}"
        )
        figures.append((f"{r.model}_{r.arch}_b1_exported_over_native", r.eval1.ratio, "x"))
        figures.append((f"{r.model}_{r.arch}_b64_exported_over_native", r.eval64.ratio, "x"))

    for model in dict.fromkeys(r.model for r in results):
        mine = [r for r in results if r.model == model]
        worst_train = max(r.train.ratio for r in mine)
        worst_export = max(max(r.eval1.ratio, r.eval64.ratio) for r in mine)
        figures.append((f"{model}_worst_train_supernet_over_exported", worst_train, "x"))
        figures.append((f"{model}_worst_exported_over_native", worst_export, "x"))

    print(
        f"\n(c) cost queries on resnet56, mean of {COST_CALLS} calls (goal < {COST_GOAL_US:.0f} us)"
    )
    for name, us in costs.items():
        print(f"{name:<12} {us:>9.1f} us {_mark(us, COST_GOAL_US)}")
        figures.append((f"resnet56_{name}_query", us, "us"))
    return figures


def _available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _load_text(cpus: int) -> str:
    if not hasattr(os, "getloadavg"):
        return ""
    load = os.getloadavg()[0]
    busy = "  (busy: timings are noisy; try --threads 1 --clock cpu)" if load > 0.5 else ""
    return f"load average {load:.2f} on {cpus} CPUs{busy}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (under a minute)")
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
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    args = parser.parse_args(argv)
    timing = dataclasses.replace(QUICK if args.quick else FULL, clock=CLOCKS[args.clock])
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"slimnas {slimnas.__version__}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, {'quick' if args.quick else 'full'} run, {args.clock} clock"
    )
    if args.clock == "cpu" and args.threads > 1:
        print("note: with several threads the CPU clock also counts threads waiting at barriers")
    print(f"start: {_load_text(_available_cpus())}")

    started = time.perf_counter()
    results: list[ArchResult] = []
    resnet_space = None
    archs = len(args.models) * (2 + RANDOM_ARCHS)
    with tqdm(total=archs, disable=not sys.stderr.isatty()) as progress:
        for name in args.models:
            model_results, space = measure_model(name, timing, progress)
            results += model_results
            if name == "resnet56":
                resnet_space = space
    if resnet_space is None:
        resnet_space = slimnas.trace(resnet56(), torch.randn(1, *INPUT))
    costs = cost_query_us(resnet_space, timing)

    figures = print_report(results, costs)
    # The 1-minute load average now includes this run's own threads.
    print(f"\nend: {_load_text(_available_cpus())}; took {time.perf_counter() - started:.0f} s\n")
    for name, value, unit in figures:
        print(f"{name}: {value:.1f} {unit}" if unit == "us" else f"{name}: {value:.3f} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
