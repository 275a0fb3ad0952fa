"""`build_latency_table`: measure a traced model's segments on this machine into a table file.

Following the recipe of the re-implementation brief (§1.6, built on ProxylessNAS's table): every
segment is measured at every channel pair it can take in the space, with warm-up, repeats and
pinned threads; entries are deduplicated by signature, so a stage's repeated blocks, and another
model sharing a segment, cost one measurement. Each entry is measured ``rounds`` times, at
different moments (one pass over all entries per round), and keeps the round with the lowest
median: a burst of load from other processes then spoils a round, not the entry.

The sum of isolated segments is not the whole model's latency: alone, a segment finds its weights
and input in cache on every call, and onnxruntime adds layout conversions at its boundaries
(NCHWc reorders) and cannot fuse a residual add whose other operand comes from outside. The
build therefore measures whole archs (the max, the min and random ones: 64 by default), fits a
factor per segment (`slimnas.cost.latency.fit.fit_segment_scales`) and then the line
``measured = overhead + scale * sum of factored segments`` through them (the *calibration*, a
robust line fit). The calibration archs are measured together after the entries, in interleaved
rounds (`measure_latencies`): measured one after another, each met the machine at another speed,
which bends the line. The validation recommended by the brief — predicted vs measured on archs not
used here — is ``bench/latency_predictor.py``.

The file is saved (atomically) at least twice a second while measuring and whenever the build
stops, so a killed build loses almost nothing and a new one reuses every entry it finds.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from dataclasses import astuple, dataclass
from itertools import product
from pathlib import Path

import torch
from torch import fx, nn
from tqdm import tqdm

from slimnas.cost.latency.fit import fit_line, fit_segment_scales
from slimnas.cost.latency.measure import (
    Latency,
    check_target,
    device_name,
    measure_latencies,
    measure_latency,
)
from slimnas.cost.latency.segments import Segment, cut_segments, space_key
from slimnas.cost.latency.table import EMPTY_SIGNATURE, LatencyTable, LatencyTarget, versions
from slimnas.space.space import Space
from slimnas.space.units import Arch

log = logging.getLogger(__name__)

_DIGITS = 5  # milliseconds to 10 ns
_SAVE_EVERY = 0.5  # seconds
# Whole archs measured for the calibration: enough to fit per-segment factors (MIN_ARCHS); on the
# CIFAR MobileNetV2 with onnxruntime 64 ranked about as well as 100 and better than 32 (bench/).
CALIBRATION_ARCHS = 64


@dataclass(frozen=True)
class TableBuild:
    """What `build_latency_table` did."""

    target: LatencyTarget
    measured: int  # entries measured now (each in every round it still lacked)
    reused: int  # entries found complete in the file
    calibration: dict


def channel_pairs(space: Space, segment: Segment) -> set[tuple[int, int]]:
    """Every (input, output) channel count the segment's layer takes in the space."""
    layer = space.layers[segment.layer]
    units = list(dict.fromkeys(layer.in_units + layer.out_units))
    pairs = set()
    for combo in product(*(space.units[u].choices for u in units)):
        choice = dict(zip(units, combo))
        cout = sum(choice[u] for u in layer.out_units)
        cin = cout if layer.kind == "norm" else sum(choice[u] for u in layer.in_units)
        pairs.add((cin, cout))
    return pairs


def _empty(inputs: int) -> nn.Module:
    """A module that returns its first input: the cost of calling anything at all."""
    graph = fx.Graph()
    first = [graph.placeholder(f"x{i}") for i in range(inputs)][0]
    graph.output(first)
    return fx.GraphModule({}, graph)


def _entry(latency: Latency, rounds: int) -> dict:
    return {
        "median_ms": round(latency.median_ms, _DIGITS),
        "p10_ms": round(latency.p10_ms, _DIGITS),
        "p90_ms": round(latency.p90_ms, _DIGITS),
        "std_ms": round(latency.std_ms, _DIGITS),
        "repeats": latency.repeats,
        "rounds": rounds,
    }


class _Saver:
    """Saves the table at most every `_SAVE_EVERY` seconds, and once more at the end."""

    def __init__(self, table: LatencyTable):
        self.table, self.last = table, time.monotonic()

    def maybe(self) -> None:
        if time.monotonic() - self.last >= _SAVE_EVERY:
            self.now()

    def now(self) -> None:
        self.table.save()
        self.last = time.monotonic()


def build_latency_table(
    model: nn.Module,
    space: Space,
    example_input: torch.Tensor,
    path: str | Path,
    *,
    runtime: str = "onnxruntime",
    device: str = "cpu",
    threads: int = 1,
    batch: int = 1,
    warmup: int = 5,
    repeats: int = 20,
    rounds: int = 3,
    calibration_archs: int = CALIBRATION_ARCHS,
    calibration_rounds: int = 10,
    calibration_repeats: int = 10,
    model_name: str = "",
    seed: int = 0,
    recalibrate: bool = False,
    progress: bool = True,
) -> TableBuild:
    """Measure every segment of ``space`` at every channel choice it offers, then calibrate the
    model, into the target (this machine, ``runtime``, ``threads``, ``batch``) of the table file
    ``path``. Entries and calibrations already in the file are reused.

    Args:
        model: the model ``space`` was traced from (not changed).
        space: its space (its current choices are the channels measured).
        example_input: an input of the traced size (its batch is replaced by ``batch``).
        path: the JSON file, created or extended.
        runtime, device, threads, batch: the target.
        warmup, repeats: per measurement of an entry.
        rounds: measurements per entry; the lowest median is kept.
        calibration_archs: whole archs measured to fit the calibration (at least 2: the max and
            the min, then random ones). From `MIN_ARCHS` (16) on, per-segment factors are fitted
            too (`fit_segment_scales`); below, the line only.
        calibration_rounds, calibration_repeats: the calibration archs' interleaved rounds and
            timed calls per arch and round (`measure_latencies`); each arch's median is fitted.
        model_name: recorded with the layout, for people reading the file.
        seed: seed of the random calibration archs.
        recalibrate: measure the calibration archs again even if the file has a calibration
            (one on another number of archs than ``calibration_archs`` always is):
            a machine whose speed has changed since the build (a shared VM, another power
            setting) then gets a line that matches it now. Entries are kept.
        progress: a tqdm bar (quiet when stderr is not a terminal).

    Raises:
        LatencyError: the runtime or device is not available here, or a layer cannot be cut.
    """
    check_target(runtime, device, threads)
    table = LatencyTable.load(path, missing_ok=True)
    name = device_name(device)
    target = table.find(name, runtime, threads, batch)
    if target is None:
        target = LatencyTarget(device, name, runtime, threads, batch, versions(runtime))
        target.layouts, target.source = table.layouts, str(table.path)
        table.targets.append(target)
    pieces = cut_segments(model, space, example_input)
    key = space_key(space)
    table.layouts[key] = {
        "model": model_name or type(model).__name__,
        "segments": [list(astuple(p.segment())) for p in pieces],
    }
    counts = sorted({1} | {p.inputs() for p in pieces})
    wanted: dict[str, tuple] = {
        EMPTY_SIGNATURE.format(n): (_empty(n), [[1, 1]] * n) for n in counts
    }
    for piece in pieces:
        segment = piece.segment()
        for cin, cout in sorted(channel_pairs(space, segment)):
            wanted.setdefault(segment.signature(cin, cout), (piece, cin, cout))

    def done(signature: str) -> int:
        return target.entries.get(signature, {}).get("rounds", 0)

    todo = [s for s in wanted if done(s) < rounds]
    log.info("latency table %s: %d entries to measure, %d reused", path, len(todo), len(wanted))
    options = {"runtime": runtime, "device": device, "threads": threads}
    calibration = None
    stored = target.calibrations.get(key)
    # A calibration on another number of archs than asked for is measured again.
    if recalibrate or stored is None or todo or len(stored["points"]) != calibration_archs:
        calibration = _Calibration(model, space, example_input, target, calibration_archs, seed)
    saver = _Saver(table)
    show = progress and sys.stderr.isatty()
    steps = sum(rounds - done(s) for s in todo) + (calibration_archs if calibration else 0)
    try:
        with tqdm(total=steps, desc="latency table", unit="entry", disable=not show) as bar:
            # One pass over the entries per round: each keeps its best round, so a burst of
            # load from elsewhere spoils a round, not the entry.
            for round_ in range(1, rounds + 1):
                for signature in (s for s in todo if done(s) < round_):
                    how = wanted[signature]
                    module, shapes = how if len(how) == 2 else how[0].build(*how[1:], batch)
                    latency = measure_latency(
                        module, shapes, warmup=warmup, repeats=repeats, **options
                    )
                    old = target.entries.get(signature)
                    if old is None or latency.median_ms < old["median_ms"]:
                        target.entries[signature] = _entry(latency, round_)
                    else:
                        old["rounds"] = round_
                    saver.maybe()
                    bar.update(1)
            if calibration is not None:
                calibration.measure(calibration_rounds, calibration_repeats)
                bar.update(calibration_archs)
                target.calibrations[key] = calibration.fit()
                target._compiled.clear()  # the new factors
    finally:
        saver.now()
    return TableBuild(target, len(todo), len(wanted) - len(todo), target.calibrations[key])


def calibration_archs(
    space: Space, count: int = CALIBRATION_ARCHS, seed: int = 0
) -> dict[str, Arch]:
    """The whole archs a table's calibration measures, by label: ``max``, ``min``, then
    ``random0``, ``random1``, ... drawn with ``seed`` (``count`` in all, at least the two)."""
    generator = torch.Generator().manual_seed(seed)
    archs = {"max": space.max_arch(), "min": space.min_arch()}
    for i in range(max(0, count - 2)):
        archs[f"random{i}"] = space.sample(generator)
    return archs


class _Calibration:
    """Whole archs (the max, the min, random ones) measured together in interleaved rounds,
    then the line ``measured = overhead + scale * sum`` fitted through their medians."""

    def __init__(self, model, space, example_input, target, count, seed):
        from slimnas.supernet import Supernet

        self.archs = calibration_archs(space, count, seed)
        supernet = Supernet(copy.deepcopy(model), space)
        self.models = {label: supernet.export(arch) for label, arch in self.archs.items()}
        self.space, self.target, self.seed = space, target, seed
        self.shape = (target.batch, *example_input.shape[1:])
        self.medians: dict[str, float] = {}

    def measure(self, rounds: int, repeats: int) -> None:
        target = self.target
        measured = measure_latencies(
            list(self.models.values()),
            self.shape,
            runtime=target.runtime,
            device=target.device,
            threads=target.threads,
            rounds=rounds,
            repeats=repeats,
        )
        self.medians = {label: m.median_ms for label, m in zip(self.models, measured)}

    def fit(self) -> dict:
        from slimnas.cost.latency.predict import segment_values

        self.target._compiled.clear()  # entries changed since any earlier prediction
        values = [segment_values(self.space, arch, self.target) for arch in self.archs.values()]
        measured = [self.medians[label] for label in self.archs]
        factors, strength = fit_segment_scales(values, measured, self.seed)
        factors = [round(f, _DIGITS) for f in factors]
        sums = [sum(f * v for f, v in zip(factors, row)) for row in values]
        overhead, scale = fit_line(sums, measured)
        points = [
            {"arch": label, "measured_ms": round(m, _DIGITS), "segments_ms": round(s, _DIGITS)}
            for label, m, s in zip(self.archs, measured, sums)
        ]
        fitted = {"segment_scales": factors, "segment_strength": strength} if strength else {}
        return {
            "overhead_ms": round(overhead, _DIGITS),
            "scale": round(scale, _DIGITS),
            **fitted,
            "points": points,
        }


__all__ = [
    "TableBuild",
    "build_latency_table",
    "calibration_archs",
    "CALIBRATION_ARCHS",
    "channel_pairs",
    "fit_line",
]
