"""Settings: typed, checked fields with a one-line doc, read from TOML tables.

A field is a dataclass field whose metadata holds its `Rule` (kind, range or choices) and its
doc; `Section` checks and converts every field when created and refuses unknown keys with the
list of the known ones. The config sections (`slimnas.config`) and every method's ``Options``
(`slimnas.methods.base`) are built from these, so that each setting is written once.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from slimnas.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """What a field accepts: a ``kind`` (int, float, bool, str, dict), a test, how to say it."""

    kind: type
    what: str  # completes "<field> must be ...", e.g. "a positive number"
    test: Callable[[Any], bool] | None = None
    optional: bool = False  # None allowed: the key left out of the file, or ``--set key=none``
    item: type | None = None  # a list of this kind (``kind`` is then tuple)

    def check(self, name: str, value: Any) -> Any:
        """``value`` converted to the field's kind (an int given for a float becomes a float).

        Raises:
            ConfigError: naming ``name``, when the value is of the wrong kind or out of range.
        """
        if value is None and self.optional:
            return None
        if self.item is not None:
            items = value if isinstance(value, (list, tuple)) else None
            converted = None if items is None else tuple(convert(self.item, v) for v in items)
            if converted is None or None in converted or (self.test and not self.test(converted)):
                raise ConfigError(f"{name} must be {self.what}, got {value!r}")
            return converted
        converted = convert(self.kind, value)
        if converted is None or (self.test is not None and not self.test(converted)):
            raise ConfigError(f"{name} must be {self.what}, got {value!r}")
        return converted

    def parse(self, text: str) -> Any:
        """The value of a ``--set`` flag's text, typed by the field; left as text when it does
        not parse, so that `check` reports it."""
        text = text.strip()
        if self.optional and text.lower() in ("none", "null"):
            return None
        if self.item is not None:  # comma-separated, each item parsed as the item kind
            item = Rule(self.item, self.what)
            return [item.parse(part) for part in text.strip("[]").split(",") if part.strip()]
        if self.kind is str:
            quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""
            return text[1:-1] if quoted else text
        if self.kind is bool:
            return {"true": True, "false": False}.get(text.lower(), text)
        if self.kind is dict:  # a TOML inline table, {depth = 3}, or a JSON object
            return parse_table(text)
        try:
            return self.kind(text.replace("_", ""))
        except ValueError:
            return text


def convert(kind: type, value: Any) -> Any:
    """``value`` as ``kind``, or None when it is not one (bools are never numbers)."""
    if isinstance(value, bool):
        return value if kind is bool else None
    if kind is float and isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if kind in (int, str) and isinstance(value, kind):
        return value
    if kind is dict and isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return dict(value)
    return None


def parse_table(text: str) -> Any:
    """The dict a ``--set`` value spells as a TOML inline table (``{depth = 3}``) or a JSON
    object (``{"depth": 3}``); the text itself when it is neither, for `Rule.check` to report."""
    try:
        value = json.loads(text)
    except ValueError:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
            import tomli as tomllib
        try:
            value = tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError:
            return text
    return value if isinstance(value, dict) else text


def did_you_mean(word: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def unknown_key(section: str, key: str, known: Sequence[str]) -> str:
    return (
        f"unknown key {section}.{key}{did_you_mean(key, known)}; the keys of [{section}] are "
        f"{', '.join(known)}"
    )


def setting(default: Any, rule: Rule, doc: str) -> Any:
    return field(default=default, metadata={"rule": rule, "doc": doc})


def number(default, what, test, doc, optional=False):
    return setting(default, Rule(float, what, test, optional), doc)


def integer(default, minimum, doc, optional=False):
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    return setting(default, Rule(int, what, lambda v: v >= minimum, optional), doc)


def choice(default, choices, doc):
    what = "one of " + ", ".join(repr(c) for c in choices)
    return setting(default, Rule(str, what, lambda v: v in choices), doc)


def flag(default, doc):
    return setting(default, Rule(bool, "true or false"), doc)


def text(default, doc, optional=False):
    return setting(default, Rule(str, "a non-empty string", bool, optional), doc)


def table(doc):
    """An optional table of JSON-able values (what TOML reads, less dates and times)."""
    what = "a table like {depth = 3, channels = 1} of strings, numbers, booleans, lists, tables"
    return setting(None, Rule(dict, what, _json_able, optional=True), doc)


def _json_able(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def items(default, item, what, test, doc):
    return field(
        default=tuple(default), metadata={"rule": Rule(tuple, what, test, item=item), "doc": doc}
    )


def positive(v: float) -> bool:
    return v > 0


def share(v: float) -> bool:
    return 0 <= v < 1


class Section:
    """Base of the sections: checks (and converts) every field against its rule on creation."""

    section: ClassVar[str]  # its name in the file

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if "rule" in f.metadata:  # a field without one is the subclass's to check
                value = f.metadata["rule"].check(f"{self.section}.{f.name}", getattr(self, f.name))
                object.__setattr__(self, f.name, value)

    @classmethod
    def from_dict(cls, table: Any) -> Section:
        """The section from a TOML table; unknown keys are refused with the list of known ones."""
        if not isinstance(table, Mapping):
            raise ConfigError(
                f"{cls.section} must be a table ([{cls.section}] in TOML), got {table!r}"
            )
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [key for key in table if key not in known]
        if unknown:
            raise ConfigError(unknown_key(cls.section, unknown[0], known))
        return cls(**table)

    @classmethod
    def settings(cls, prefix: str) -> Iterator[tuple[str, Any, Rule, str]]:
        """``(prefix.key, default, rule, doc)`` of every setting, in file order."""
        for f in dataclasses.fields(cls):
            if "rule" in f.metadata:
                default = f.default if f.default is not dataclasses.MISSING else None
                yield f"{prefix}.{f.name}", default, f.metadata["rule"], f.metadata["doc"]

    @classmethod
    def put(cls, table: dict[str, Any], key: str, text: str) -> None:
        """Set ``key`` of a parsed ``table`` from a ``--set`` flag's ``text``, typed by its rule.

        Raises:
            ConfigError: no such key.
        """
        rules = {name: rule for name, _, rule, _ in cls.settings("")}
        if f".{key}" not in rules:
            raise ConfigError(unknown_key(cls.section, key, [k[1:] for k in rules]))
        table[key] = rules[f".{key}"].parse(text)

    def to_table(self) -> dict[str, Any]:
        """The section as a plain table (`from_dict` reads it back)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


__all__ = [
    "Rule",
    "Section",
    "choice",
    "convert",
    "did_you_mean",
    "flag",
    "integer",
    "items",
    "number",
    "positive",
    "setting",
    "share",
    "table",
    "text",
    "unknown_key",
]
