"""Run configuration: a TOML file (plus ``--set section.key=value`` flags) → frozen dataclasses.

Every value is checked when it is read, and a mistake is one `ConfigError` line that names the
field: ``train.lr must be a positive number, got 'fast'``. Unknown sections and keys are refused
with the list of known ones, so that a typo never silently leaves a setting at its default (the
released AutoSlim configs lost in-place distillation that way: a misspelt key nobody read).

    config = load_config("examples/train_resnet20.toml", ["train.lr=0.05", "run.dir=runs/a"])
    config.train.lr                     # 0.05, a float because the field is one
    json.dumps(config.to_dict())        # the resolved config, as written to the run directory

Each field carries its rule (type, range or choices) and a one-line doc in its metadata;
`schema` lists them, and docs/config.md documents every one with its default. The ``[model]``
section and the forms of ``model.name`` live in `slimnas.config_model`, the ``[data]``
section in `slimnas.config_data`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from slimnas.config_data import CIFAR_SIZE as CIFAR_SIZE  # re-exported: the old home
from slimnas.config_data import DATA_SOURCES as DATA_SOURCES
from slimnas.config_data import DataConfig, PipelineDataConfig
from slimnas.config_model import RANK_CRITERIA as RANK_CRITERIA  # re-exported: the old home
from slimnas.config_model import ModelConfig, PipelineModelConfig
from slimnas.errors import ConfigError
from slimnas.search_config import SearchConfig
from slimnas.settings import Rule, Section, did_you_mean
from slimnas.settings import choice as _choice
from slimnas.settings import flag as _flag
from slimnas.settings import integer as _integer
from slimnas.settings import items as _list
from slimnas.settings import number as _number
from slimnas.settings import positive as _positive
from slimnas.settings import share as _share
from slimnas.settings import text as _text

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None


@dataclass(frozen=True)
class RecipeConfig(Section):
    """A training recipe; the sections that train something extend it."""

    section: ClassVar[str] = "train"

    epochs: int = _integer(30, 1, "passes over the training data; the LR schedule spans them")
    max_steps: int | None = _integer(
        None, 1, "stop at this global step (the schedule still spans epochs)", optional=True
    )
    batch_size: int = _integer(128, 1, "images per step")
    optimizer: str = _choice("sgd", ("sgd", "adamw"), "the optimizer")
    lr: float = _number(0.1, "a positive number", _positive, "peak learning rate")
    momentum: float = _number(0.9, "a number in [0, 1)", _share, "SGD momentum")
    nesterov: bool = _flag(True, "Nesterov momentum (SGD)")
    weight_decay: float = _number(
        5e-4, "a number >= 0", lambda v: v >= 0, "L2 (SGD) or decoupled (AdamW) weight decay"
    )
    no_decay_bn_bias: bool = _flag(True, "no weight decay on BatchNorm weights and biases")
    schedule: str = _choice(
        "cosine", ("cosine", "linear", "constant"), "LR after warm-up, per step"
    )
    warmup_epochs: float = _number(
        1.0, "a number >= 0", lambda v: v >= 0, "linear LR warm-up, in epochs (fractions allowed)"
    )
    label_smoothing: float = _number(
        0.1, "a number in [0, 1)", _share, "label smoothing (of the max arch for supernets)"
    )
    grad_clip: float | None = _number(
        None,
        "a positive number",
        _positive,
        "clip the global gradient norm; none: no clipping",
        optional=True,
    )
    checkpoint_every: int | None = _integer(
        None, 1, "also checkpoint every this many steps (always at each epoch end)", True
    )
    keep_last: int = _integer(3, 1, "checkpoints kept")
    seed: int = _integer(0, 0, "seed of the initial weights, data order, augmentation, sampling")
    device: str = _choice("auto", ("auto", "cpu", "cuda"), "auto: cuda when available")
    amp: bool = _flag(False, "mixed precision (CUDA only)")
    channels_last: bool = _flag(
        False,
        "model weights and image batches in channels-last memory (NHWC): faster convolutions on "
        "CUDA, above all with amp; the same values on any device",
    )
    tensorboard: bool = _flag(
        False,
        "also log metrics for TensorBoard in run.dir/tensorboard (needs the tensorboard package)",
    )


@dataclass(frozen=True)
class TrainConfig(RecipeConfig):
    section: ClassVar[str] = "train"

    supernet: bool = _flag(False, "train a slimmable supernet with the sandwich rule")
    sandwich_n: int = _integer(4, 2, "supernet: archs per step (max, min and n-2 random ones)")
    distill: bool = _flag(
        False, "supernet: in-place distillation from the max arch (the paper: true)"
    )
    sandwich_loss: str = _choice(
        "mean",
        ("mean", "sum"),
        "supernet: the other archs' losses averaged (weighing as much as the max arch's) or "
        "summed (the paper)",
    )
    bn_batches: int = _integer(
        20, 1, "supernet: training batches to recalibrate BatchNorm per evaluated arch"
    )


@dataclass(frozen=True)
class RunConfig(Section):
    section: ClassVar[str] = "run"

    dir: str = _text("runs/train", "run directory: config.json, checkpoints, metrics, results")


class _Document:
    """What both kinds of config file share: model and data checks, reading, writing."""

    model: ModelConfig
    data: DataConfig

    def __post_init__(self) -> None:
        data = self.data
        if data.source != "builtin" and data.root is None:
            where = "train/<class>/" if data.source == "folder" else "the binary version"
            raise ConfigError(
                f"data.root must be set for data.source = {data.source!r}: the folder holding "
                f"{where}"
            )
        if data.stream and data.source != "folder":
            raise ConfigError(
                f"data.stream streams image folders only; set data.source = 'folder' or "
                f"data.stream = false (data.source is {data.source!r})"
            )
        if data.source == "folder":
            if data.image_size is None:
                raise ConfigError(
                    "data.image_size must be set for data.source = 'folder' (e.g. 64 or 224)"
                )
            if data.resize is not None and data.resize < data.image_size:
                raise ConfigError(
                    f"data.resize {data.resize} is below data.image_size {data.image_size}; the "
                    "centre crop needs resize >= image_size"
                )
        elif data.image_size not in (None, CIFAR_SIZE):
            raise ConfigError(
                f"data.image_size must be {CIFAR_SIZE} for data.source = {data.source!r} (its "
                f"images are {CIFAR_SIZE}x{CIFAR_SIZE}), got {data.image_size}"
            )
        else:  # resolved, so that config.json says what ran
            object.__setattr__(self, "data", dataclasses.replace(data, image_size=CIFAR_SIZE))
        for name, section in self.sections().items():
            recipe = getattr(self, name)
            if issubclass(section, RecipeConfig) and recipe.amp and recipe.device == "cpu":
                raise ConfigError(
                    f"{name}.amp needs a CUDA device; set {name}.device to auto or cuda"
                )

    @classmethod
    def sections(cls) -> dict[str, type[Section]]:
        return {f.name: f.default_factory for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """A config from nested tables (a parsed TOML file, or `to_dict` output)."""
        sections = cls.sections()
        for key, value in data.items():
            if key in sections:
                continue
            if isinstance(value, Mapping):
                hint = did_you_mean(key, list(sections))
                raise ConfigError(
                    f"unknown section [{key}]{hint}; the sections are {', '.join(sections)}"
                )
            owners = [
                s for s, c in sections.items() if key in {f.name for f in dataclasses.fields(c)}
            ]
            where = f" (it belongs under [{owners[0]}])" if owners else ""
            raise ConfigError(
                f"key {key!r} is outside any section{where}; settings go under "
                f"{', '.join(f'[{s}]' for s in sections)}"
            )
        return cls(**{key: sections[key].from_dict(value) for key, value in data.items()})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain JSON-able nested dict (None for unset optional values); `from_dict` reads it."""
        return _plain({name: getattr(self, name).to_table() for name in self.sections()})


@dataclass(frozen=True)
class Config(_Document):
    """The config of ``slimnas train``; every section has defaults, so an empty file is valid."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)


@dataclass(frozen=True)
class PipelineRunConfig(RunConfig):
    dir: str = _text("runs/run", "run directory: every stage's output, resumable")


@dataclass(frozen=True)
class SpaceConfig(Section):
    section: ClassVar[str] = "space"

    divisor: int = _integer(8, 1, "channel choices are multiples of it (never 10 % down)")
    min_ratio: float = _number(
        0.25, "a number in (0, 1]", lambda v: 0 < v <= 1, "smallest channel choice / max"
    )
    steps: int = _integer(12, 1, "channel choices are the ratios k/steps (AutoSlim: 12 groups)")
    depth: bool = _flag(False, "also search the depth of residual stages (else kept at max)")
    channels: bool = _flag(
        True, "search channel counts (false: fixed at max, e.g. to search only op units)"
    )


@dataclass(frozen=True)
class SupernetConfig(RecipeConfig):
    section: ClassVar[str] = "supernet"

    epochs: int = _integer(
        30,
        0,
        "passes over the training data; 0 (with model.weights): no sandwich training, the "
        "methods search the trained (ranked) model as it is",
    )

    sandwich_n: int = _integer(4, 2, "archs per step (max, min and n-2 random ones)")
    distill: bool = _flag(False, "in-place distillation from the max arch (the paper: true)")
    sandwich_loss: str = _choice(
        "mean",
        ("mean", "sum"),
        "the other archs' losses averaged (weighing as much as the max arch's) or summed (the "
        "paper)",
    )


@dataclass(frozen=True)
class RetrainConfig(RecipeConfig):
    section: ClassVar[str] = "retrain"

    seeds: tuple[int, ...] = _list(
        (0,),
        int,
        "a non-empty list of integers >= 0",
        lambda v: bool(v) and min(v) >= 0,
        "each found arch is trained once per seed",
    )
    init: str = _choice(
        "scratch", ("scratch", "inherit"), "initial weights: fresh, or the supernet's"
    )
    distill: bool = _flag(False, "knowledge distillation from the teacher")
    teacher: str | None = _text(
        None,
        "distill: a `slimnas train` run directory or a .safetensors state dict of the unpruned "
        "model (unset: the supernet's max arch)",
        optional=True,
    )
    kd_alpha: float = _number(0.9, "a number in [0, 1]", lambda v: 0 <= v <= 1, "KD weight")
    kd_temperature: float = _number(4.0, "a positive number", _positive, "KD temperature")
    bn_batches: int = _integer(
        20, 1, "training batches to recalibrate BatchNorm of inherited weights"
    )


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: what the value reads back as from JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class PipelineConfig(_Document):
    """The config of ``slimnas run``: model, data, space, supernet training, search, retraining."""

    model: PipelineModelConfig = field(default_factory=PipelineModelConfig)
    data: PipelineDataConfig = field(default_factory=PipelineDataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    run: PipelineRunConfig = field(default_factory=PipelineRunConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.retrain.seed != 0:
            raise ConfigError(
                "retrain.seed is not read by slimnas run; list the seeds in retrain.seeds"
            )
        if self.supernet.epochs == 0 and self.model.weights is None:
            raise ConfigError(
                "supernet.epochs is 0 but model.weights is not set: a supernet that is never "
                "trained needs trained weights; give model.weights or train it for some epochs"
            )
        for name in self.search.methods:
            self.search.method(name).check_recipe(self.supernet)


def schema(config_class: type = Config) -> Iterator[tuple[str, Any, Rule, str]]:
    """``(section.key, default, rule, doc)`` of every setting, in file order."""
    for section_name, section in config_class.sections().items():
        yield from section.settings(section_name)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file.

    Raises:
        ConfigError: the file is missing or unreadable, is not TOML, or no parser is installed.
    """
    if tomllib is None:
        raise ConfigError("reading TOML on Python 3.10 needs the tomli package: pip install tomli")
    path = Path(path).expanduser()
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory; give a .toml file") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None


def apply_overrides(
    data: Mapping[str, Any], overrides: Sequence[str], config_class: type = Config
) -> dict[str, Any]:
    """``data`` with ``section.key=value`` overrides applied, each value typed by its field.

    Raises:
        ConfigError: an override is malformed or names an unknown section or key.
    """
    merged = {
        key: dict(value) if isinstance(value, Mapping) else value for key, value in data.items()
    }
    sections = config_class.sections()
    for override in overrides:
        key, sep, text = override.partition("=")
        section_name, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(
                f"--set expects section.key=value (e.g. train.lr=0.05), got {override!r}"
            )
        if section_name not in sections:
            raise ConfigError(
                f"unknown section {section_name!r} in --set {override}; the sections are "
                f"{', '.join(sections)}"
            )
        table = merged.setdefault(section_name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{section_name} must be a table ([{section_name}] in TOML)")
        sections[section_name].put(table, name, text)
    return merged


def load_config(path: str | Path, overrides: Sequence[str] = (), config_class: type = Config):
    """Read a TOML config file, apply ``--set`` overrides, and check every value.

    Args:
        path: the TOML file.
        overrides: ``section.key=value`` strings, applied in order after the file; each value is
            parsed as its field's type (``none`` clears an optional field).
        config_class: `Config` (``slimnas train``) or `PipelineConfig` (``slimnas run``).

    Raises:
        ConfigError: one line naming the file, section or field at fault.
    """
    return config_class.from_dict(apply_overrides(read_toml(path), overrides, config_class))
