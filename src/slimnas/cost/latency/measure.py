"""`measure_latency`: wall-clock time of one forward pass, measured the way deployment runs it.

Runtimes: torch eager (CPU or CUDA) and onnxruntime (CPU, on the model exported with
`slimnas.onnx_export.export_onnx`). Every measurement pins its thread count (torch's intra-op
threads, or onnxruntime's ``intra_op_num_threads`` with one inter-op thread) and restores torch's
afterwards, runs ``warmup`` untimed calls, then ``repeats`` timed ones, and reports the median
with its spread (10th and 90th percentiles, standard deviation, minimum). On CUDA each call is
timed with CUDA events after a synchronisation: the ProxylessNAS code timed GPU calls with
``time.time()`` and no synchronisation, which measures the launch, not the work (pitfall 9 of
docs/papers). The model runs in eval mode under ``torch.no_grad()``; its training flags are
restored.

Torch on the CPU gets its tensors from ``malloc``. With glibc's defaults a large activation is
often fresh memory that the kernel faults in and zeroes on first touch, which can triple a large
op's time depending on what the process allocated and freed before, something no latency table
can predict. Before measuring torch on the CPU we therefore tell glibc (once per process) to keep
freed memory for reuse, the effect the PyTorch CPU performance guide gets from jemalloc or
tcmalloc; see `keep_freed_memory`.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import importlib.util
import logging
import math
import platform
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn

from slimnas.cost.latency.sessions import (
    HELD_SESSIONS_BYTES,
    _Sessions,
    held_sessions_budget,
)
from slimnas.errors import LatencyError

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnxruntime")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
DEVICES = ("cpu", "cuda")

Shape = Sequence[int]


@dataclass(frozen=True)
class Latency:
    """One measurement: where and how it ran, and the distribution of its timed calls.

    Attributes:
        median_ms: median time of one call.
        p10_ms, p90_ms: 10th and 90th percentiles (the spread reported with the median).
        std_ms: standard deviation of the timed calls.
        min_ms: fastest call.
        repeats: timed calls.
        threads: the thread count it ran with.
        runtime: ``"torch"`` or ``"onnxruntime"``.
        device: ``"cpu"`` or ``"cuda"``.
        device_name: the processor (`device_name`).
        batch: batch size of the input.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    std_ms: float
    min_ms: float
    repeats: int
    threads: int
    runtime: str
    device: str
    device_name: str
    batch: int

    @property
    def spread_ms(self) -> float:
        """Width of the 10–90 % band."""
        return self.p90_ms - self.p10_ms

    def to_dict(self) -> dict:
        return asdict(self)


@cache
def device_name(device: str = "cpu") -> str:
    """What a latency table is keyed by: the CPU model (``/proc/cpuinfo``, else the platform's
    processor string) or the CUDA device's name, prefixed with the device kind."""
    if device == "cuda":
        _require_cuda()
        return f"cuda: {torch.cuda.get_device_name()}"
    name = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    name = name or platform.processor() or platform.machine() or "unknown"
    return f"cpu: {name} ({platform.machine()})"


@cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc serve blocks of up to 32 MiB from its heap and never return freed heap
    memory to the system, for the rest of the process; False where the C library is not glibc.

    Without it, repeated large activations come from memory that must be faulted in again and
    again (see the module docstring). The process keeps the memory it freed (its peak).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        trimmed = libc.mallopt(_M_TRIM_THRESHOLD, 2**30)
        mapped = libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
    except (OSError, AttributeError):
        return False
    return bool(trimmed and mapped)


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def _require_cuda() -> None:
    if not torch.cuda.is_available():
        raise LatencyError(
            "latency on device 'cuda' needs a CUDA GPU and a CUDA build of torch; none is "
            "available here, measure on 'cpu'"
        )


def check_target(runtime: str, device: str, threads: int | None) -> None:
    """Refuse a runtime/device/thread setting that cannot be measured here."""
    if runtime not in RUNTIMES:
        raise LatencyError(f"unknown latency runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if device not in DEVICES:
        raise LatencyError(f"unknown latency device {device!r}; use one of {', '.join(DEVICES)}")
    if threads is not None and threads < 1:
        raise LatencyError(f"latency threads must be at least 1, got {threads}")
    if device == "cuda":
        _require_cuda()
        if runtime == "onnxruntime":
            raise LatencyError(
                "onnxruntime latency is measured on the CPU only; use runtime 'torch' on cuda"
            )
    if runtime == "onnxruntime" and not onnxruntime_available():
        raise LatencyError(
            "onnxruntime is not installed; install the 'onnx' extra (pip install "
            "'slimnas[onnx]') or measure with runtime 'torch'"
        )


def _shapes(input_shape: Shape | Sequence[Shape]) -> list[tuple[int, ...]]:
    if len(input_shape) and isinstance(input_shape[0], int):
        return [tuple(input_shape)]
    return [tuple(s) for s in input_shape]


@contextlib.contextmanager
def _inference(model: nn.Module) -> Iterator[None]:
    """Eval mode and no_grad; every module's own training flag restored afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in flags:
            m.training = training


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _time_calls(
    call: Callable[[], object], warmup: int, repeats: int, cuda: bool = False
) -> list[float]:
    """Milliseconds of ``repeats`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    if cuda:
        torch.cuda.synchronize()
        for _ in range(repeats):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return times
    clock = time.perf_counter
    for _ in range(repeats):
        began = clock()
        call()
        times.append((clock() - began) * 1e3)
    return times


def _quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolation quantile of sorted values (numpy's default)."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize_times(times: list[float], **where) -> Latency:
    """The `Latency` of a list of call times in milliseconds."""
    ordered = sorted(times)
    return Latency(
        median_ms=statistics.median(ordered),
        p10_ms=_quantile(ordered, 0.1),
        p90_ms=_quantile(ordered, 0.9),
        std_ms=statistics.pstdev(ordered) if len(ordered) > 1 else 0.0,
        min_ms=ordered[0],
        repeats=len(ordered),
        **where,
    )


def _prepare(
    model: nn.Module, shapes: list[tuple[int, ...]], device: str, seed: int
) -> Callable[[], object]:
    """One torch forward call of ``model`` on seeded random inputs, ready to time (the caller
    holds `_torch_threads` and `_inference`)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(s, generator=generator) for s in shapes]
    if device == "cpu":
        keep_freed_memory()
    target = torch.device(device)
    inputs = [x.to(target) for x in inputs]
    return lambda: model(*inputs)


def _on_device(model: nn.Module, device: str) -> nn.Module:
    first = next(iter(model.parameters()), None)
    if first is not None and first.device != torch.device(device):
        return copy.deepcopy(model).to(device)
    return model


def measure_latency(
    model: nn.Module,
    input_shape: Shape | Sequence[Shape],
    *,
    runtime: str = "torch",
    device: str = "cpu",
    threads: int | None = None,
    warmup: int = 10,
    repeats: int = 50,
    seed: int = 0,
) -> Latency:
    """Time ``model`` on random inputs of ``input_shape``, in one burst of calls.

    Args:
        model: the module (not changed; a copy runs when it lives on another device).
        input_shape: the input's shape, batch first (``(1, 3, 32, 32)``), or a list of shapes
            for a model with several inputs.
        runtime: ``"torch"`` (eager) or ``"onnxruntime"`` (CPU, the model exported to ONNX).
        device: ``"cpu"`` or ``"cuda"`` (torch only).
        threads: intra-op threads; None: torch's current setting.
        warmup: untimed calls first.
        repeats: timed calls.
        seed: seed of the random inputs.

    Returns:
        The `Latency`, median and spread of the timed calls.

    Raises:
        LatencyError: the runtime or device is unavailable, or the settings are invalid.
    """
    return measure_latencies(
        [model],
        input_shape,
        runtime=runtime,
        device=device,
        threads=threads,
        warmup=warmup,
        rounds=1,
        repeats=repeats,
        seed=seed,
    )[0]


def measure_latencies(
    models: Sequence[nn.Module],
    input_shape: Shape | Sequence[Shape],
    *,
    runtime: str = "torch",
    device: str = "cpu",
    threads: int | None = None,
    warmup: int = 5,
    rounds: int = 10,
    repeats: int = 10,
    seed: int = 0,
) -> list[Latency]:
    """Time several models in interleaved rounds: every round runs each model (in a new
    shuffled order) for one untimed call and ``repeats`` timed ones, and each model's `Latency`
    summarises all its ``rounds * repeats`` calls.

    On a machine whose speed changes from one second to the next (a shared VM, turbo, another
    process), models timed one after another in long bursts each meet a different machine; in
    interleaved rounds a slow moment costs every model a little, so their *ratios* hold. What
    interleaving cannot fix is the machine's speed itself: on this project's 2-core VM two such
    measurements of 50 archs a minute apart differ by 4-18 % overall (``bench/latency_predictor.py``
    prints it); compare models measured in the same call, not across calls.

    With onnxruntime each model's session is held through the rounds, unless the held sessions
    take more memory than `held_sessions_budget` (2 GiB, or a quarter of the memory available):
    then each round builds each model's session anew, one at a time (`_Sessions`).

    Args:
        models: the modules (not changed), all taking inputs of ``input_shape``.
        input_shape, runtime, device, threads, seed: as in `measure_latency`.
        warmup: untimed calls of each model before the first round.
        rounds: passes over the models.
        repeats: timed calls of a model per round.

    Returns:
        One `Latency` per model, in the order given.

    Raises:
        LatencyError: the runtime or device is unavailable, or the settings are invalid.
    """
    times = time_rounds(
        models,
        input_shape,
        runtime=runtime,
        device=device,
        threads=threads,
        warmup=warmup,
        rounds=rounds,
        repeats=repeats,
        seed=seed,
    )
    where = {
        "threads": threads or torch.get_num_threads(),
        "runtime": runtime,
        "device": device,
        "device_name": device_name(device),
        "batch": _shapes(input_shape)[0][0],
    }
    return [summarize_times([t for r in model for t in r], **where) for model in times]


def time_rounds(
    models: Sequence[nn.Module],
    input_shape: Shape | Sequence[Shape],
    *,
    runtime: str = "torch",
    device: str = "cpu",
    threads: int | None = None,
    warmup: int = 5,
    rounds: int = 10,
    repeats: int = 10,
    seed: int = 0,
) -> list[list[list[float]]]:
    """The timed calls of `measure_latencies`, in milliseconds, unsummarised:
    ``times[model][round]`` lists the ``repeats`` calls of that model in that round (rounds in
    the order they ran), for statistics that need the rounds apart."""
    check_target(runtime, device, threads)
    if warmup < 0 or repeats < 1 or rounds < 1:
        raise LatencyError(
            "latency needs warmup >= 0, repeats >= 1 and rounds >= 1, got "
            f"{warmup}, {repeats}, {rounds}"
        )
    threads = threads or torch.get_num_threads()
    shapes = _shapes(input_shape)
    models = [_on_device(m, device) for m in models]
    cuda = device == "cuda"
    times: list[list[list[float]]] = [[] for _ in models]
    order = list(range(len(models)))
    shuffle = random.Random(seed)
    with _torch_threads(threads), contextlib.ExitStack() as stack:
        for model in models:
            stack.enter_context(_inference(model))
        if runtime == "onnxruntime":
            sessions = _Sessions(models, shapes, threads, seed, warmup)
            call_of = sessions.call
        else:
            calls = [_prepare(m, shapes, device, seed) for m in models]
            for call in calls:
                _time_calls(call, warmup, 0, cuda)

            def call_of(i: int) -> tuple[Callable[[], object], int]:
                return calls[i], 0

        # Among several models, one untimed call before each burst: the previous model's
        # weights and activations have just evicted this one's from the caches.
        settle = 1 if len(models) > 1 else 0
        for round_ in range(rounds):
            if round_:  # the first pass in the given order, later ones shuffled
                shuffle.shuffle(order)
            for i in order:
                call, fresh = call_of(i)  # fresh: untimed calls a new session needs first
                times[i].append(_time_calls(call, fresh + settle, repeats, cuda))
                del call  # a session built for this round goes now
    return times


__all__ = [
    "DEVICES",
    "HELD_SESSIONS_BYTES",
    "RUNTIMES",
    "Latency",
    "check_target",
    "device_name",
    "held_sessions_budget",
    "keep_freed_memory",
    "measure_latencies",
    "measure_latency",
    "onnxruntime_available",
    "summarize_times",
    "time_rounds",
]
