"""Fault injection for the fault tests: a tiny `slimnas run` config, files damaged three ways
(truncated, one bit flipped, replaced by a pickle whose loading would create a marker file), and
results.json reduced to what must not change across a resume (timings and latencies dropped)."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

from slimnas.config import PipelineConfig, schema

TINY_RUN = {
    "data": {"heldout": 0.25, "max_train_images": 160, "max_test_images": 80},
    "supernet": {"epochs": 1, "batch_size": 40, "warmup_epochs": 0.0},
    "search": {
        "methods": ["uniform", "random"],
        "budgets": ["macs<=60%"],
        "score_images": 40,
        "score_batch": 40,
        "random": {"samples": 3},
        "evolution": {"population": 3, "generations": 2},
    },
    "retrain": {"epochs": 1, "batch_size": 40, "warmup_epochs": 0.0, "seeds": [0]},
}

CORRUPTIONS = ("truncate", "bitflip", "pickle")
SETTING_KEYS = {key for key, _, _, _ in schema(PipelineConfig)}

# results.json keys whose values are wall-clock measurements (different on every run).
TIMED = ("seconds", "latency")


def tiny_run_config(run_dir: Path, **changes: Any) -> PipelineConfig:
    """`TINY_RUN` in ``run_dir``; ``changes`` as ``section__key=value``."""
    tables = {section: dict(values) for section, values in TINY_RUN.items()}
    for key, value in changes.items():
        section, name = key.split("__")
        tables.setdefault(section, {})[name] = value
    tables["run"] = {"dir": str(run_dir)}
    return PipelineConfig.from_dict(tables)


def toml_of(config: PipelineConfig) -> str:
    """A TOML file of ``config`` (every field), for the CLI."""
    lines = []
    tables = config.to_dict()
    for section, values in tables.items():
        nested = {k: v for k, v in values.items() if isinstance(v, dict)}
        lines.append(f"[{section}]")
        lines += [
            f"{k} = {_toml(v)}" for k, v in values.items() if k not in nested and v is not None
        ]
        for name, table in nested.items():
            lines.append(f"[{section}.{name}]")
            lines += [f"{k} = {_toml(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


class Payload:
    """Unpickling this creates ``path`` (the proof that a loader ran code)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def corrupt(path: Path, how: str, marker: Path) -> None:
    """Damage the file ``path``: ``truncate`` (keep the first half), ``bitflip`` (flip one bit
    in the middle), or ``pickle`` (a pickle whose loading creates ``marker``)."""
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "bitflip":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1 :])
    elif how == "pickle":
        path.write_bytes(pickle.dumps({"state": Payload(marker)}))
    else:
        raise ValueError(how)


def comparable(value: Any) -> Any:
    """``value`` (a results.json) without wall-clock figures (keys naming seconds or latency)."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if not any(t in k for t in TIMED)}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    items = ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items())
    return "{" + items + "}"


def write_config(path: Path, run_dir: Path, key: str | None = None, value: Any = None) -> None:
    """`TINY_RUN` as TOML at ``path``, with ``key`` (``section.key`` or ``section.table.key``)
    set to ``value``."""
    tables: dict[str, dict] = {s: dict(t) for s, t in TINY_RUN.items()}
    tables["search"] = {
        k: dict(v) if isinstance(v, dict) else v for k, v in tables["search"].items()
    }
    tables["run"] = {"dir": str(run_dir)}
    if key is not None:
        section, *rest = key.split(".")
        table = tables.setdefault(section, {})
        for part in rest[:-1]:
            table = table.setdefault(part, {})
        table[rest[-1]] = value
    lines = []
    for section, table in tables.items():
        lines.append(f"[{section}]")
        nested = {
            k: v
            for k, v in table.items()
            if isinstance(v, dict) and f"{section}.{k}" not in SETTING_KEYS
        }
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items() if k not in nested]
        for name, inner in nested.items():
            lines.append(f"[{section}.{name}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in inner.items()]
    path.write_text("\n".join(lines) + "\n")
