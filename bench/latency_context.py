"""How much a layer's onnxruntime latency depends on the rest of its graph, at several batches.

A latency table (docs/latency.md) gives every segment one latency per channel pair, whatever
runs around it. This script measures how far that holds on this CPU. It builds MobileNetV2
blocks of fixed width (expand 1x1 ``cin -> c``, depthwise 3x3 ``c``, project 1x1 ``c -> 16``,
each with BatchNorm and ReLU6, at 32x32) for several input widths ``cin``, exports each to ONNX,
runs it in onnxruntime (one thread) with the per-node profiler on, and prints the depthwise
conv's kernel time inside the block for each ``cin``. The depthwise conv is the same op with the
same shapes in every block; only its producer's input differs. Next to it, the depthwise segment
timed alone (`measure_latency`), which is what a table entry holds.

The figures per batch: the depthwise conv's in-graph time at its fastest and slowest ``cin``,
their ratio (1.00: the context does not matter), and the isolated time. The profiler adds a few
microseconds per node; at these sizes (0.1 to several ms) that is small.

    OMP_NUM_THREADS=1 .venv/bin/python bench/latency_context.py [--batches 1 8 32]
        [--widths 48 96] [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from slimnas.cost.latency.measure import device_name, measure_latency, onnxruntime_available
from slimnas.onnx_export import export_onnx

INPUT_WIDTHS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96)


def block(cin: int, width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, width, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU6(),
        nn.Conv2d(width, width, 3, 1, 1, groups=width, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU6(),
        nn.Conv2d(width, 16, 1, bias=False),
        nn.BatchNorm2d(16),
    ).eval()


def depthwise(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(width, width, 3, 1, 1, groups=width, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU6(),
    ).eval()


def in_graph_ms(model: nn.Module, shape: tuple[int, ...], runs: int) -> float:
    """The median kernel time (ms) of the graph's second conv node (the depthwise conv, BN and
    ReLU6 fused into it) over the last two thirds of ``runs`` profiled calls."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="slimnas-context-") as folder:
        path = Path(folder) / "block.onnx"
        export_onnx(model, torch.randn(shape), path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(
            path.read_bytes(), sess_options=options, providers=["CPUExecutionProvider"]
        )
        feed = {session.get_inputs()[0].name: torch.randn(shape).numpy()}
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    convs = [
        e
        for e in events
        if e.get("cat") == "Node"
        and e["name"].endswith("_kernel_time")
        and e.get("args", {}).get("op_name") == "Conv"
    ]
    names = list(dict.fromkeys(e["name"] for e in convs))
    times = [e["dur"] / 1000 for e in convs if e["name"] == names[1]]
    return statistics.median(times[len(times) // 3 :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--widths", nargs="+", type=int, default=[48, 96])
    parser.add_argument("--runs", type=int, default=30, help="profiled calls per block")
    args = parser.parse_args()
    if not onnxruntime_available():
        sys.exit("latency_context.py needs onnxruntime: pip install onnxruntime")
    if args.runs < 3:
        sys.exit(f"--runs must be at least 3, got {args.runs}")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(
        f"onnxruntime, 1 thread, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"load average {os.getloadavg()[0]:.2f}, {device_name()}",
        flush=True,
    )
    figures = []
    print(f"{'batch':>5} {'width':>5}  depthwise in-graph ms by input width cin; alone")
    for batch in args.batches:
        for width in args.widths:
            inside = {
                cin: in_graph_ms(block(cin, width), (batch, cin, 32, 32), args.runs)
                for cin in INPUT_WIDTHS
            }
            alone = measure_latency(
                depthwise(width),
                (batch, width, 32, 32),
                runtime="onnxruntime",
                threads=1,
                warmup=5,
                repeats=max(10, args.runs),
            ).median_ms
            cells = " ".join(f"{cin}:{ms:.3f}" for cin, ms in inside.items())
            print(f"{batch:>5} {width:>5}  {cells}; alone {alone:.3f}", flush=True)
            low, high = min(inside.values()), max(inside.values())
            figures.append((batch, width, low, high, alone))
    print()
    for batch, width, low, high, alone in figures:
        tag = f"b{batch}_c{width}"
        print(f"latency_context_dw_min_{tag}: {low:.3f} ms")
        print(f"latency_context_dw_max_{tag}: {high:.3f} ms")
        print(f"latency_context_dw_ratio_{tag}: {high / low:.2f}")
        print(f"latency_context_dw_alone_{tag}: {alone:.3f} ms")


if __name__ == "__main__":
    main()
