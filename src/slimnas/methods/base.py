"""The method protocol: what every search method and baseline is, and the registry of them.

A method is one class in one file:

- ``name``: what ``search.methods`` calls it; ``@register`` puts the class in `METHODS`, the
  only list of the names `slimnas run` accepts;
- ``Options``: a frozen dataclass of its hyper-parameters, each with its default, rule and
  one-line doc (`slimnas.settings`): the only place they are written. ``[search.<name>]``
  tables, ``--set search.<name>.<key>=...`` and docs/pipeline.md come from it;
- ``shared_supernet``: True when it searches the run's sandwich-rule supernet (`attach`), False
  when `fit` trains a model of its own (from the fresh supernet it is given);
- ``check(space, budgets)``: refuses, before any training, what it cannot search;
- ``fit(supernet, setup)`` / ``attach(supernet, setup)`` then ``search(budgets)``: one `Result`
  per budget;
- ``artifacts(setup, results)``: JSON for the report (greedy path, traces, fronts), read back
  from what the search wrote, so that a resumed run reports without searching again.

The Python API and `slimnas run` run the same objects:
``AutoSlim().fit(supernet, setup).search(["macs<=50%"])``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from slimnas.cost.budget import Budget
from slimnas.errors import ConfigError
from slimnas.methods.result import Result
from slimnas.methods.setup import Setup
from slimnas.settings import Section, unknown_key
from slimnas.space.space import Space
from slimnas.train.slimmable import recipe_sandwich_step

log = logging.getLogger("slimnas.config")


@dataclass(frozen=True)
class Options(Section):
    """A method's hyper-parameters (none here); subclasses add fields made with the helpers of
    `slimnas.settings` (``number``, ``integer``, ``choice``, ``flag``, ``text``, ``items``)."""

    section: ClassVar[str] = "search.<method>"

    @classmethod
    def from_table(cls, section: str, table: Any) -> Options:
        """The options of a ``[section]`` table (e.g. ``search.tas``); a wrong type or an
        unknown key is one `ConfigError` line naming ``section.key``."""
        if not isinstance(table, Mapping):
            raise ConfigError(f"{section} must be a table ([{section}] in TOML), got {table!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in table:
            if key not in fields:
                raise ConfigError(unknown_key(section, key, list(fields)))
        return cls(
            **{
                key: fields[key].metadata["rule"].check(f"{section}.{key}", value)
                for key, value in table.items()
            }
        )

    def describe(self) -> str:
        """``key value, ...``: the options for the report's recipe table."""
        return ", ".join(f"{f.name} {getattr(self, f.name)}" for f in dataclasses.fields(self))


class Method:
    """The protocol (module doc). Subclasses set ``name`` and ``Options``, and implement
    `search`; `fit` and `attach` serve the methods that search a trained supernet."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options
    shared_supernet: ClassVar[bool] = True
    # A method of its own model (shared_supernet False) that trains it with the [supernet]
    # recipe; False for those that only read the trained weights (magnitude, torch_pruning).
    trains: ClassVar[bool] = True
    # Flat [search] keys of earlier releases: "<legacy_prefix>_<option>" and these extra ones
    # (old key -> option) are read, with a deprecation line, for one release.
    legacy_prefix: ClassVar[str | None] = None
    legacy_keys: ClassVar[Mapping[str, str]] = {}
    # Among the methods `slimnas run` runs when search.methods is not set.
    default: ClassVar[bool] = False

    def __init__(self, options: Options | None = None, **changes: Any):
        options = self.Options() if options is None else options
        if not isinstance(options, self.Options):
            raise ConfigError(f"{self.name} takes {self.Options.__qualname__}, not {options!r}")
        self.options = dataclasses.replace(options, **changes) if changes else options
        self.supernet = None
        self.setup: Setup | None = None

    def check(self, space: Space, budgets: Sequence[Budget]) -> None:
        """Refuse what this method cannot search (`ConfigError`, `BudgetError`); nothing yet
        has trained. Default: anything goes."""

    def check_recipe(self, recipe: Any) -> None:
        """Refuse a training recipe (``[supernet]``) this method cannot train with."""

    def fit(self, supernet, setup: Setup) -> Method:
        """Train ``supernet`` with the sandwich rule (`train_sandwich`), then `attach` it.
        Changes the supernet's weights."""
        return self.attach(train_sandwich(supernet, setup), setup)

    def attach(self, supernet, setup: Setup) -> Method:
        """Search the trained ``supernet``; archs are scored with ``setup.scorer``."""
        self.supernet, self.setup = supernet, setup
        self.scorer = setup.scorer(supernet)
        return self

    def search(self, budgets: Sequence[Budget | str]) -> list[Result]:
        """One `Result` per budget, each meeting it."""
        raise NotImplementedError

    def artifacts(
        self, setup: Setup, results: Sequence[Result], budgets: Sequence[Budget]
    ) -> dict[str, Any]:
        """JSON for the report, from what the search wrote; results.json merges the keys of
        every method's artifacts (`slimnas.report.sections` reads them). Default: none."""
        return {}

    def weights(self, budget: str | None = None):
        """The supernet whose weights the found archs inherit (exports, ``retrain.init =
        "inherit"``) when it is not the run's shared one; None: the shared one. ``budget`` (a
        result's budget text) for a method whose weights differ per budget (torch_pruning)."""
        return None

    # ---------------------------------------------------------------------------- helpers
    def space(self) -> Space:
        if self.supernet is None or self.setup is None:
            raise ConfigError(f"{self.name}: call fit(...) or attach(...) before search(...)")
        return self.supernet.space

    def budgets(self, budgets: Sequence[Budget | str] | Budget | str) -> list[Budget]:
        """``budgets`` as `Budget`s (``%`` limits relative to the max arch), each feasible."""
        space = self.space()
        if isinstance(budgets, (str, Budget)):
            budgets = [budgets]
        parsed = [b if isinstance(b, Budget) else Budget.parse(b, space) for b in budgets]
        for budget in parsed:
            budget.check_feasible(space)
        return parsed


def train_sandwich(supernet, setup: Setup):
    """Train ``supernet`` with the sandwich rule (US-Nets §3, arXiv 1903.05134; the recipe's
    ``distill`` and ``sandwich_loss``, `recipe_sandwich_step`) on ``setup``'s training split
    with its recipe, resumable in ``setup.folder``; returns it at its max arch. The shared
    supernet of `slimnas run` is trained by this too."""
    recipe = setup.recipe
    generator = torch.Generator().manual_seed(recipe.seed)
    step = recipe_sandwich_step(supernet, recipe, generator)
    trainer = setup.trainer(supernet, setup.train_loader(), step, setup.folder)
    setup.train(trainer, "supernet", f"sandwich rule, n={recipe.sandwich_n}")
    supernet.activate(supernet.max_arch())
    return supernet


# ------------------------------------------------------------------------------- registry
METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: ``cls`` becomes a method `slimnas run` accepts under ``cls.name``."""
    if not cls.name:
        raise ConfigError(f"{cls.__qualname__} needs a name to be registered")
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ConfigError(f"a method named {cls.name!r} is registered already")
    METHODS[cls.name] = cls
    if cls.Options is not Options and "section" not in vars(cls.Options):
        cls.Options.section = f"search.{cls.name}"  # what its errors call it
    return cls


def unregister(name: str) -> None:
    """Remove ``name`` from the registry (tests that register a method of their own)."""
    METHODS.pop(name, None)


def method_class(name: str) -> type[Method]:
    """The registered class of ``name``.

    Raises:
        ConfigError: no method of that name.
    """
    _load_builtin()
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; the methods are {', '.join(METHODS)}")
    return METHODS[name]


def method_names() -> list[str]:
    """Every registered name, built-in ones first."""
    _load_builtin()
    return list(METHODS)


def default_methods() -> list[str]:
    """The methods run when ``search.methods`` is not set."""
    return [name for name in method_names() if METHODS[name].default]


_warned: set[str] = set()


def legacy_targets(key: str) -> list[tuple[str, str]]:
    """``(method, option)`` that a flat ``[search]`` key of earlier releases sets (e.g.
    ``tas_epochs`` → tas and tas_width ``epochs``); logs a deprecation line once per key."""
    found = []
    for name in method_names():
        cls = METHODS[name]
        option = cls.legacy_keys.get(key)
        if option is None and cls.legacy_prefix and key.startswith(f"{cls.legacy_prefix}_"):
            option = key.removeprefix(f"{cls.legacy_prefix}_")
        if option in {f.name for f in dataclasses.fields(cls.Options)}:
            found.append((name, option))
    if found and key not in _warned:
        _warned.add(key)
        tables = " and ".join(f"[search.{name}]" for name, _ in found)
        log.warning(
            "search.%s is deprecated: write %s = ... under %s (flat keys are read until the "
            "next release)",
            key,
            found[0][1],
            tables,
        )
    return found


def _load_builtin() -> None:
    import slimnas.methods  # noqa: F401  (each built-in method registers itself on import)


__all__ = [
    "METHODS",
    "Method",
    "default_methods",
    "legacy_targets",
    "Options",
    "method_class",
    "method_names",
    "register",
    "train_sandwich",
    "unregister",
]
