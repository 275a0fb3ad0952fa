"""``[search]`` of a `slimnas run` config: the methods, budgets, scoring and latency settings,
and each method's ``[search.<method>]`` table, made from the method's ``Options``
(`slimnas.methods.base`; the methods are imported when a config is checked, not before)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from slimnas.errors import ConfigError
from slimnas.settings import Rule, Section, unknown_key
from slimnas.settings import choice as _choice
from slimnas.settings import integer as _integer
from slimnas.settings import items as _list
from slimnas.settings import text as _text


def _budget_list(values: tuple) -> bool:
    return len(values) > 0 and all(isinstance(v, str) and "<=" in v for v in values)


def _method_list(values: tuple) -> bool:
    from slimnas.methods.base import method_names

    return len(values) > 0 and all(v in method_names() for v in values)


@dataclass(frozen=True)
class SearchConfig(Section):
    """``[search]``: the methods, budgets and scoring; each method's own options are its
    ``[search.<method>]`` table, made from its ``Options`` (`slimnas.methods.base`)."""

    section: ClassVar[str] = "search"

    methods: tuple[str, ...] = _list(
        (),
        str,
        "a non-empty list of the methods of slimnas.methods.METHODS",
        _method_list,
        "methods and baselines to run (unset: the registered ones marked default); each one's "
        "options are its [search.<method>] table",
    )
    budgets: tuple[str, ...] = _list(
        ("macs<=50%",),
        str,
        "a non-empty list of budgets like 'macs<=20M' or 'macs<=50%'",
        _budget_list,
        "one result per budget and method; % is relative to the max arch",
    )
    score_images: int = _integer(1024, 1, "held-out training images each arch is scored on")
    report_images: int = _integer(
        1024,
        0,
        "held-out images after the scored ones, on which each found arch's inherited accuracy is "
        "reported (no method selects on them); 0: report the search's own score",
    )
    score_batch: int = _integer(512, 1, "images per scoring batch (its BatchNorm statistics)")
    bn: str = _choice("batch", ("batch", "recalibrate"), "BatchNorm statistics of a scored arch")
    bn_batches: int = _integer(8, 1, "bn = recalibrate: training batches per scored arch")
    seed: int = _integer(0, 0, "seed of the searches (random draws, architecture logits)")
    latency_table: str | None = _text(
        None,
        "JSON latency table (built by `slimnas latency-table`) that latency_ms budgets are "
        "predicted from",
        optional=True,
    )
    latency_runtime: str = _choice(
        "onnxruntime",
        ("onnxruntime", "torch"),
        "runtime of latency budgets and of the measured latency of the final models",
    )
    latency_device: str = _choice("cpu", ("cpu", "cuda"), "device latency is measured on")
    latency_threads: int = _integer(1, 1, "threads latency is measured and predicted with")
    latency_batch: int = _integer(1, 1, "batch size latency is measured and predicted at")
    # Per method name, its Options (the [search.<method>] tables; defaults for every method
    # of ``methods``).
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from slimnas.methods.base import default_methods, method_class

        if self.methods == ():  # unset; an empty or false value given is refused below
            object.__setattr__(self, "methods", tuple(default_methods()))
        super().__post_init__()
        options = dict(self.options)
        for name in self.methods:
            options.setdefault(name, method_class(name).Options())
        object.__setattr__(self, "options", options)

    @classmethod
    def from_dict(cls, table: Any) -> SearchConfig:
        """As `Section.from_dict`, and the ``[search.<method>]`` sub-tables as each method's
        Options; the flat keys of earlier releases (``tas_epochs``) are read with a
        deprecation line."""
        from slimnas.methods.base import legacy_targets, method_class, method_names

        if not isinstance(table, Mapping):
            return super().from_dict(table)
        own = {f.name for f in dataclasses.fields(cls)} - {"options"}
        names = method_names()
        plain, tables = {}, {}
        for key, value in table.items():
            if key in names:
                if not isinstance(value, Mapping):
                    raise ConfigError(f"search.{key} must be a table ([search.{key}] in TOML)")
                tables.setdefault(key, {}).update(value)
            elif key in own:
                plain[key] = value
            elif legacy_targets(key):
                for name, option in legacy_targets(key):
                    tables.setdefault(name, {}).setdefault(option, value)
            else:
                raise ConfigError(unknown_key(cls.section, key, [*sorted(own), *names]))
        options = {
            name: method_class(name).Options.from_table(f"search.{name}", values)
            for name, values in tables.items()
        }
        return cls(**plain, options=options)

    @classmethod
    def settings(cls, prefix: str) -> Iterator[tuple[str, Any, Rule, str]]:
        from slimnas.methods.base import method_class, method_names

        yield from super().settings(prefix)
        for name in method_names():
            yield from method_class(name).Options.settings(f"{prefix}.{name}")

    @classmethod
    def put(cls, table: dict[str, Any], key: str, text: str) -> None:
        """``method.key`` sets a method's option; a flat key of earlier releases is kept as
        written (`from_dict` reads it)."""
        from slimnas.methods.base import legacy_targets

        name, dot, option = key.partition(".")
        if dot:
            rules = {k: r for k, _, r, _ in cls.settings(cls.section)}
            if f"search.{key}" not in rules:
                known = [k.removeprefix("search.") for k in rules]
                raise ConfigError(unknown_key(cls.section, key, known))
            sub = table.setdefault(name, {})
            sub[option] = rules[f"search.{key}"].parse(text)
        elif legacy_targets(key):
            target, option = legacy_targets(key)[0]
            rules = {k: r for k, _, r, _ in cls.settings(cls.section)}
            table[key] = rules[f"search.{target}.{option}"].parse(text)
        else:
            super().put(table, key, text)

    def to_table(self) -> dict[str, Any]:
        table = super().to_table()
        options = table.pop("options")
        return table | {name: dataclasses.asdict(values) for name, values in options.items()}

    def method(self, name: str) -> Any:
        """A new `Method` ``name`` with its configured options."""
        from slimnas.methods.base import method_class

        cls = method_class(name)
        return cls(self.options.get(name) or cls.Options())


__all__ = ["SearchConfig"]
