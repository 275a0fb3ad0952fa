"""The ``[model]`` section: which network, built how, and the four forms of its name.

``model.name`` is one of

- a reference model of `slimnas.models.MODELS` (``resnet20``, ``mobilenet_v2``, ...);
- ``tv:<name>``, a torchvision classification model (``tv:resnet18``);
- ``timm:<name>``, a timm model, created with random weights (``timm:resnet10t``);
- ``package.module:callable``, any importable function or class that returns an ``nn.Module``
  (``mynets:make_net``, ``mypkg.models:Net``), the module looked up like ``python -m`` does:
  the working directory first, then the installed packages.

The name is checked here for its form only; `slimnas.models.build` imports and builds it (and
says which key is at fault when that fails) before a run writes anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from slimnas.errors import ConfigError
from slimnas.settings import Section, did_you_mean
from slimnas.settings import choice as _choice
from slimnas.settings import integer as _integer
from slimnas.settings import number as _number
from slimnas.settings import positive as _positive
from slimnas.settings import table as _table
from slimnas.settings import text as _text

PREFIXES = ("tv", "timm")  # a library's model zoo: tv:<name>, timm:<name>
_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_FACTORY = re.compile(rf"({_DOTTED}):({_DOTTED})")
NAME_FORMS = "tv:<torchvision name>, timm:<timm name> or package.module:callable"


def model_source(name: str, key: str = "model.name") -> tuple[str, str]:
    """``(kind, target)`` of a model name: kind ``builtin``, ``tv``, ``timm`` or ``factory``;
    target the name within its zoo (the whole name for a factory).

    Raises:
        ConfigError: naming ``key``, when the name has none of the four forms.
    """
    from slimnas.models import MODELS

    if name in MODELS:
        return "builtin", name
    prefix, colon, rest = name.partition(":")
    if colon and prefix in PREFIXES and rest:
        return prefix, rest
    if _FACTORY.fullmatch(name) and prefix not in PREFIXES:
        return "factory", name
    raise ConfigError(
        f"{key} must be one of {', '.join(MODELS)}{did_you_mean(name, list(MODELS))}, "
        f"{NAME_FORMS}; got {name!r}"
    )


@dataclass(frozen=True)
class ModelConfig(Section):
    section: ClassVar[str] = "model"

    name: str = _text(
        "resnet20",
        f"a model of slimnas.models.MODELS, {NAME_FORMS} (docs/config.md)",
    )
    kwargs: dict | None = _table(
        "keyword arguments of the model's constructor or factory (tv:, timm:, module:callable "
        "and the built-ins alike); num_classes and width_mult are set by their own keys"
    )
    width_mult: float = _number(
        1.0,
        "a positive number",
        _positive,
        "channel multiplier of the model's constructor (refused, when not 1, by a factory or "
        "timm model that takes no width_mult)",
    )
    num_classes: int | None = _integer(
        None,
        1,
        "classifier outputs, passed to any model that takes num_classes; none: the number of "
        "classes in the data",
        optional=True,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        model_source(self.name)
        for key in ("num_classes", "width_mult"):
            if key in (self.kwargs or {}):
                raise ConfigError(
                    f"model.kwargs.{key}: set model.{key} instead (slimnas passes it to every "
                    "model that takes it)"
                )


RANK_CRITERIA = ("auto", "none", "l1", "l2", "bn", "taylor")


@dataclass(frozen=True)
class PipelineModelConfig(ModelConfig):
    weights: str | None = _text(
        None,
        "trained weights to start from (a .safetensors state dict or a `slimnas train` run "
        "directory): the supernet's max arch, and the default KD teacher of retraining",
        optional=True,
    )
    rank: str = _choice(
        "auto",
        RANK_CRITERIA,
        "reorder each channel unit most important first before the supernet is built (narrower "
        "archs keep the top channels; the function is unchanged): l1 / l2 weight norms, bn "
        "|gamma|, taylor (first order, on calibration batches); auto: l1 with model.weights, "
        "none without",
    )

    @property
    def criterion(self) -> str | None:
        """The ranking criterion in effect, None for no ranking."""
        if self.rank == "auto":
            return "l1" if self.weights else None
        return None if self.rank == "none" else self.rank


__all__ = [
    "NAME_FORMS",
    "RANK_CRITERIA",
    "ModelConfig",
    "PipelineModelConfig",
    "model_source",
]
