"""The ``--input`` and ``--kwargs`` options of the commands that build a model by name."""

from __future__ import annotations

from typing import Any

from slimnas.errors import ConfigError
from slimnas.settings import parse_table


def parse_shape(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    """The ``--input`` shape ``N,C,H,W``, or ``default`` when the option was not given."""
    if text is None:
        return default
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--input must be comma-separated integers like 1,3,32,32, got {text!r}"
        ) from None
    if len(shape) != 4 or min(shape) < 1:
        raise ConfigError(f"--input must be N,C,H,W with positive sizes, got {text!r}")
    return shape


def model_kwargs(text: str | None) -> dict[str, Any]:
    """The ``--kwargs`` keyword arguments of the model (a TOML inline table or JSON object)."""
    if text is None:
        return {}
    kwargs = parse_table(text)
    if not isinstance(kwargs, dict):
        raise ConfigError(
            f"--kwargs must be a TOML inline table or JSON object like '{{depth = 3}}', got "
            f"{text!r}"
        )
    return kwargs
