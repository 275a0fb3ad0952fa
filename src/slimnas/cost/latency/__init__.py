"""Latency: measured on a device (`measure`, with `sessions` for onnxruntime), cut into
segments (`segments`), tabulated per device (`table`, built by `build`, calibrated by `fit`) and
predicted from the table, also in expectation (`predict`)."""

from slimnas.cost.latency.measure import (
    DEVICES,
    HELD_SESSIONS_BYTES,
    RUNTIMES,
    Latency,
    check_target,
    device_name,
    held_sessions_budget,
    keep_freed_memory,
    measure_latencies,
    measure_latency,
    onnxruntime_available,
    summarize_times,
    time_rounds,
)

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
