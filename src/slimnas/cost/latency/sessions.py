"""The onnxruntime sessions of a latency measurement (`slimnas.cost.latency.measure`): ONNX
bytes of a model, a session of them pinned to a thread count, and `_Sessions`, which holds one
session per model through the rounds while they fit in memory, or builds them anew each round.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger("slimnas.cost.latency.measure")

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# At most this many bytes of onnxruntime sessions are held through a measurement's rounds
# (`_Sessions`); more, and each round builds its sessions anew.
HELD_SESSIONS_BYTES = 2 * 2**30


def _onnxruntime_model(model: nn.Module, inputs: list[torch.Tensor]) -> bytes:
    """``model`` exported to ONNX (`export_onnx`), as the bytes of the file."""
    from slimnas.onnx_export import export_onnx

    with tempfile.TemporaryDirectory(prefix="slimnas-latency-") as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(model, tuple(inputs) if len(inputs) > 1 else inputs[0], path)
        return path.read_bytes()


def _onnxruntime_session(
    blob: bytes, inputs: list[torch.Tensor], threads: int
) -> Callable[[], object]:
    """One call of a new onnxruntime session of the ONNX model ``blob`` on ``inputs``."""
    import onnxruntime as ort

    from slimnas.onnx_export import INPUT_NAME

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    session = ort.InferenceSession(blob, sess_options=options, providers=["CPUExecutionProvider"])
    # export_onnx names the inputs input, input1, ...; an input the graph does not read is gone.
    names = [INPUT_NAME] + [f"{INPUT_NAME}{i}" for i in range(1, len(inputs))]
    arrays = {name: x.numpy() for name, x in zip(names, inputs)}
    feed = {i.name: arrays[i.name] for i in session.get_inputs()}
    return lambda: session.run(None, feed)


def _resident_bytes() -> int | None:
    """This process's resident memory now; None where /proc is not there to say."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * _PAGE_BYTES


def held_sessions_budget() -> int | None:
    """How many bytes the onnxruntime sessions that `time_rounds` holds may take together:
    `HELD_SESSIONS_BYTES`, or a quarter of the memory available now if that is less; None where
    the process cannot see its memory (then every session is held)."""
    if _resident_bytes() is None:
        return None
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
        available = next(int(x.split()[1]) * 1024 for x in lines if x.startswith("MemAvailable:"))
    except (OSError, ValueError, IndexError, StopIteration):
        return HELD_SESSIONS_BYTES
    return min(HELD_SESSIONS_BYTES, available // 4)


class _Sessions:
    """The onnxruntime calls of `time_rounds`: one session per model, held for every round while
    the held sessions fit `held_sessions_budget`, or else a new session per model and round.

    Each session keeps its own memory arena sized for its activations (about 75 MB for the CIFAR
    MobileNetV2 at batch 32), so held together 64 archs would take 5 GB. Past the budget every
    held session is let go, and each round builds each model's session anew, runs one untimed
    call (the first call of a session allocates its arena) and lets it go after its burst: one
    session lives at a time. A measurement then averages over as many sessions as rounds.
    """

    def __init__(self, models, shapes, threads: int, seed: int, warmup: int):
        from slimnas.cost.latency.measure import _time_calls as time_calls

        generator = torch.Generator().manual_seed(seed)
        self.inputs = [torch.randn(s, generator=generator) for s in shapes]
        self.threads = threads
        self.blobs = [_onnxruntime_model(m, self.inputs) for m in models]
        self.held: list[Callable[[], object]] | None = []
        budget, start = held_sessions_budget(), _resident_bytes()
        for count, blob in enumerate(self.blobs, 1):
            call = _onnxruntime_session(blob, self.inputs, threads)
            time_calls(call, warmup, 0)
            self.held.append(call)
            now = _resident_bytes()
            if budget is not None and None not in (start, now) and now - start > budget:
                log.info(
                    "%d onnxruntime sessions took %d MB, over the %d MB held through the rounds: "
                    "each of the %d models gets a new session every round",
                    count,
                    (now - start) >> 20,
                    budget >> 20,
                    len(self.blobs),
                )
                self.held = None
                break

    def call(self, i: int) -> tuple[Callable[[], object], int]:
        """Model ``i``'s call, and how many untimed calls a new session needs first."""
        if self.held is not None:
            return self.held[i], 0
        return _onnxruntime_session(self.blobs[i], self.inputs, self.threads), 1


__all__ = ["HELD_SESSIONS_BYTES", "held_sessions_budget"]
