"""The latency table: per-segment latencies measured on one machine, in one JSON file.

A file holds one or more *targets*, each keyed by the device (``cpu: <model name>`` or
``cuda: <GPU name>``), the runtime, the thread count and the batch size: latency measured under
one of them says nothing about another (ProxylessNAS's table is per device; pitfall 9 of the
re-implementation brief), so a search asks for its exact target and anything else is refused.
Each target maps segment signatures (`slimnas.cost.latency.segments`) to measured latencies,
and holds per traced model (a *layout*: the model's segments, keyed by `space_key`) its
calibration: the fixed overhead the segments do not cover and the scale that turns their sum
into the whole model's latency (see `slimnas.cost.latency.build`). The layouts do not depend on
the target and are stored once per file::

    {"format": "slimnas-latency-table/1",
     "layouts": {"<space key>": {"model": "resnet56", "segments": [[layer, template, inputs]]}},
     "targets": [{"device": "cpu", "device_name": "cpu: AMD EPYC (x86_64)",
                  "runtime": "onnxruntime", "threads": 1, "batch": 1,
                  "versions": {"torch": "2.4.0", "onnxruntime": "1.19.0"},
                  "entries": {"<signature>": {"median_ms": 0.031, "p10_ms": ..., ...}},
                  "calibrations": {"<space key>": {"overhead_ms": 0.12, "scale": 1.03,
                                                   "segment_scales": [1.1, 0.9, ...],
                                                   "points": [...]}}}]}

`slimnas.cost.latency.build.build_latency_table` fills a file; `load_latency_target` opens the
target a search needs, or says what the file holds and how to build the one asked for.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from slimnas.cost.latency.measure import check_target, device_name
from slimnas.cost.latency.segments import Segment, space_key
from slimnas.errors import ConfigError
from slimnas.io import atomic_write_text
from slimnas.space.space import Space

log = logging.getLogger(__name__)

FORMAT = "slimnas-latency-table/1"
EMPTY_SIGNATURE = "empty|inputs={}"  # the call of a module that does nothing, per input count


def versions(runtime: str) -> dict[str, str]:
    names = ["torch"] + (["onnxruntime"] if runtime == "onnxruntime" else [])
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "unknown"
    return found


def build_command(runtime: str, threads: int, batch: int, device: str = "cpu") -> str:
    """The command line that builds a target."""
    where = "" if device == "cpu" else f" --device {device}"
    return (
        f"slimnas latency-table CONFIG --runtime {runtime} --threads {threads} --batch {batch}"
        f"{where}"
    )


@dataclass
class LatencyTarget:
    """The measurements of one (device, runtime, threads, batch) target of a table file."""

    device: str
    device_name: str
    runtime: str
    threads: int
    batch: int
    versions: dict[str, str] = field(default_factory=dict)
    entries: dict[str, dict] = field(default_factory=dict)
    calibrations: dict[str, dict] = field(default_factory=dict)
    layouts: dict[str, dict] = field(default_factory=dict, repr=False)  # shared with the file
    source: str = ""  # the file, for messages
    _compiled: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.device_name, self.runtime, self.threads, self.batch)

    def describe(self) -> str:
        threads = f"{self.threads} thread" + ("s" if self.threads > 1 else "")
        return f"{self.device_name}, {self.runtime}, {threads}, batch {self.batch}"

    def layout_segments(self, space: Space, key: str | None = None) -> list[Segment]:
        """The segments of ``space``'s model (``key``: its `space_key`, when known); refuses a
        model the table was not built for."""
        layout = self.layouts.get(key or space_key(space))
        if layout is None:
            raise self._not_built()
        return [Segment(*s) for s in layout["segments"]]

    def calibration(self, space: Space, key: str | None = None) -> tuple[float, float]:
        """``(overhead_ms, scale)`` of ``space``'s model (``key``: its `space_key`, when known):
        its latency is predicted as ``overhead_ms + scale * (sum of its segments)``."""
        calibration = self.calibrations.get(key or space_key(space))
        if calibration is None:
            raise self._not_built()
        return calibration["overhead_ms"], calibration.get("scale", 1.0)

    def segment_scales(self, key: str) -> list[float] | None:
        """The per-segment factors of the layout ``key``'s calibration, if it fitted any."""
        return self.calibrations.get(key, {}).get("segment_scales")

    def _not_built(self) -> ConfigError:
        return ConfigError(
            f"latency table {self.source or '(in memory)'} has no measurements of this model "
            f"for {self.describe()}; build them with `"
            f"{build_command(self.runtime, self.threads, self.batch, self.device)}`"
        )

    def entry_ms(self, signature: str) -> float:
        entry = self.entries.get(signature)
        if entry is None:
            raise ConfigError(
                f"latency table {self.source or '(in memory)'} lacks the entry {signature!r} for "
                f"{self.describe()}; the space has channels the table was not built for, "
                f"rebuild it with `{build_command(self.runtime, self.threads, self.batch)}`"
            )
        return entry["median_ms"]

    def to_dict(self) -> dict:
        return {
            "device": self.device,
            "device_name": self.device_name,
            "runtime": self.runtime,
            "threads": self.threads,
            "batch": self.batch,
            "versions": self.versions,
            "entries": self.entries,
            "calibrations": self.calibrations,
        }


class LatencyTable:
    """A latency table file: layouts and targets. `load` reads one, `save` writes it atomically."""

    def __init__(self, path: str | Path, layouts=None, targets: Iterable[LatencyTarget] = ()):
        self.path = Path(path)
        self.layouts: dict[str, dict] = layouts if layouts is not None else {}
        self.targets: list[LatencyTarget] = list(targets)

    @classmethod
    def load(cls, path: str | Path, missing_ok: bool = False) -> LatencyTable:
        """Read ``path``; with ``missing_ok`` a missing file is an empty table.

        Raises:
            ConfigError: the file is missing (without ``missing_ok``), unreadable or not a table.
        """
        path = Path(path).expanduser()
        if not path.exists():
            if missing_ok:
                return cls(path)
            raise ConfigError(
                f"latency table {path} does not exist; build it with `slimnas latency-table "
                f"CONFIG --out {path}`"
            )
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot read latency table {path}: {err}; build it again") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{path} is not a slimnas latency table ({FORMAT}); build one")
        table = cls(path, data.get("layouts", {}))
        for raw in data.get("targets", []):
            target = LatencyTarget(**raw, layouts=table.layouts, source=str(path))
            table.targets.append(target)
        return table

    def save(self) -> Path:
        data = {
            "format": FORMAT,
            "layouts": self.layouts,
            "targets": [t.to_dict() for t in self.targets],
        }
        return atomic_write_text(self.path, json.dumps(data, indent=0) + "\n")

    def find(self, name: str, runtime: str, threads: int, batch: int) -> LatencyTarget | None:
        return next((t for t in self.targets if t.key == (name, runtime, threads, batch)), None)

    def target(self, runtime: str, threads: int, batch: int, device: str = "cpu") -> LatencyTarget:
        """The target for this machine, or a ConfigError saying what the file holds instead."""
        check_target(runtime, device, threads)
        name = device_name(device)
        found = self.find(name, runtime, threads, batch)
        if found is None:
            held = "; ".join(t.describe() for t in self.targets) or "nothing"
            wanted = LatencyTarget(device, name, runtime, threads, batch).describe()
            raise ConfigError(
                f"latency table {self.path} holds [{held}] but this search needs {wanted}; "
                f"build it on this machine with `{build_command(runtime, threads, batch, device)}"
                f" --out {self.path}`"
            )
        here = versions(runtime)
        if found.versions and found.versions != here:
            log.warning(
                "latency table %s was measured with %s, this is %s; rebuild it if the runtime "
                "changed",
                self.path,
                found.versions,
                here,
            )
        return found


def load_latency_target(
    path: str | Path, *, runtime: str, threads: int, batch: int, device: str = "cpu"
) -> LatencyTarget:
    """The target of ``path`` measured on this machine with this runtime, threads and batch.

    Raises:
        ConfigError: the file is missing or holds no such target (the message says which targets
            it holds and the command that builds the one asked for).
    """
    return LatencyTable.load(path).target(runtime, threads, batch, device)


__all__ = [
    "EMPTY_SIGNATURE",
    "FORMAT",
    "LatencyTable",
    "LatencyTarget",
    "build_command",
    "load_latency_target",
    "versions",
]
