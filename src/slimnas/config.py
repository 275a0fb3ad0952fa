"""Run configuration: a TOML file (plus ``--set section.key=value`` flags) → frozen dataclasses.

Every value is checked when it is read, and a mistake is one `ConfigError` line that names the
field: ``train.lr must be a positive number, got 'fast'``. Unknown sections and keys are refused
with the list of known ones, so that a typo never silently leaves a setting at its default (the
released AutoSlim configs lost in-place distillation that way: a misspelt key nobody read).

    config = load_config("examples/train_resnet20.toml", ["train.lr=0.05", "run.dir=runs/a"])
    config.train.lr                     # 0.05, a float because the field is one
    json.dumps(config.to_dict())        # the resolved config, as written to the run directory

Each field carries its rule (type, range or choices) and a one-line doc in its metadata;
`schema` lists them, and docs/config.md documents every one with its default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from slimnas.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

DATA_SOURCES = ("builtin", "cifar10", "cifar100", "folder")
CIFAR_SIZE = 32  # the side of every image of the built-in set and of CIFAR-10/100


@dataclass(frozen=True)
class Rule:
    """What a field accepts: a ``kind`` (int, float, bool, str), a test, and how to say it."""

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
            converted = None if items is None else tuple(_convert(self.item, v) for v in items)
            if converted is None or None in converted or (self.test and not self.test(converted)):
                raise ConfigError(f"{name} must be {self.what}, got {value!r}")
            return converted
        converted = _convert(self.kind, value)
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
        try:
            return self.kind(text.replace("_", ""))
        except ValueError:
            return text


def _convert(kind: type, value: Any) -> Any:
    """``value`` as ``kind``, or None when it is not one (bools are never numbers)."""
    if isinstance(value, bool):
        return value if kind is bool else None
    if kind is float and isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if kind in (int, str) and isinstance(value, kind):
        return value
    return None


def _did_you_mean(word: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _unknown_key(section: str, key: str, known: Sequence[str]) -> str:
    return (
        f"unknown key {section}.{key}{_did_you_mean(key, known)}; the keys of [{section}] are "
        f"{', '.join(known)}"
    )


def _setting(default: Any, rule: Rule, doc: str) -> Any:
    return field(default=default, metadata={"rule": rule, "doc": doc})


def _number(default, what, test, doc, optional=False):
    return _setting(default, Rule(float, what, test, optional), doc)


def _integer(default, minimum, doc, optional=False):
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    return _setting(default, Rule(int, what, lambda v: v >= minimum, optional), doc)


def _choice(default, choices, doc):
    what = "one of " + ", ".join(repr(c) for c in choices)
    return _setting(default, Rule(str, what, lambda v: v in choices), doc)


def _flag(default, doc):
    return _setting(default, Rule(bool, "true or false"), doc)


def _text(default, doc, optional=False):
    return _setting(default, Rule(str, "a non-empty string", bool, optional), doc)


def _list(default, item, what, test, doc):
    return field(
        default=tuple(default), metadata={"rule": Rule(tuple, what, test, item=item), "doc": doc}
    )


def _positive(v: float) -> bool:
    return v > 0


def _share(v: float) -> bool:
    return 0 <= v < 1


class Section:
    """Base of the sections: checks (and converts) every field against its rule on creation."""

    section: ClassVar[str]  # its name in the file

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
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
            raise ConfigError(_unknown_key(cls.section, unknown[0], known))
        return cls(**table)


@dataclass(frozen=True)
class ModelConfig(Section):
    section: ClassVar[str] = "model"

    name: str = _text("resnet20", "a model of slimnas.models.MODELS, or tv:<torchvision name>")
    width_mult: float = _number(
        1.0, "a positive number", _positive, "channel multiplier of the model's constructor"
    )
    num_classes: int | None = _integer(
        None, 1, "classifier outputs; none: the number of classes in the data", optional=True
    )


@dataclass(frozen=True)
class DataConfig(Section):
    section: ClassVar[str] = "data"

    source: str = _choice("builtin", DATA_SOURCES, "where the images come from")
    root: str | None = _text(
        None,
        "cifar10/cifar100: the folder holding the binary version; folder: the folder holding "
        "train/<class>/ (and optionally val/<class>/ as test split); unused by builtin",
        optional=True,
    )
    image_size: int | None = _integer(
        None, 1, "side of the square images; 32 for builtin and CIFAR, required for folder", True
    )
    heldout: float = _number(
        0.0,
        "a number in [0, 1)",
        _share,
        "share of each class of the training data held out for validation (and search)",
    )
    seed: int = _integer(0, 0, "seed of the held-out split and of the subsets below")
    max_train_images: int | None = _integer(
        None, 1, "use a class-balanced subset of this many training images (quick runs)", True
    )
    max_test_images: int | None = _integer(
        None, 1, "use a class-balanced subset of this many test images (quick runs)", True
    )
    augment: bool = _flag(True, "random crop (zero padding 4) and horizontal flip in training")


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
    tensorboard: bool = _flag(
        False,
        "also log metrics for TensorBoard in run.dir/tensorboard (needs the tensorboard package)",
    )


@dataclass(frozen=True)
class TrainConfig(RecipeConfig):
    section: ClassVar[str] = "train"

    supernet: bool = _flag(False, "train a slimmable supernet with the sandwich rule")
    sandwich_n: int = _integer(4, 2, "supernet: archs per step (max, min and n-2 random ones)")
    distill: bool = _flag(True, "supernet: in-place distillation from the max arch")
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
        data, model = self.data, self.model
        from slimnas.models import MODELS

        if not (model.name in MODELS or (model.name.startswith("tv:") and len(model.name) > 3)):
            raise ConfigError(
                f"model.name must be one of {', '.join(MODELS)} or tv:<torchvision name>, "
                f"got {model.name!r}"
            )
        if data.source != "builtin" and data.root is None:
            where = "train/<class>/" if data.source == "folder" else "the binary version"
            raise ConfigError(
                f"data.root must be set for data.source = {data.source!r}: the folder holding "
                f"{where}"
            )
        if data.source == "folder":
            if data.image_size is None:
                raise ConfigError(
                    "data.image_size must be set for data.source = 'folder' (e.g. 64 or 224)"
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
                hint = _did_you_mean(key, list(sections))
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
        return _plain(dataclasses.asdict(self))


@dataclass(frozen=True)
class Config(_Document):
    """The config of ``slimnas train``; every section has defaults, so an empty file is valid."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)


@dataclass(frozen=True)
class PipelineDataConfig(DataConfig):
    heldout: float = _number(
        0.1,
        "a number in (0, 1)",
        lambda v: 0 < v < 1,
        "share of each class of the training data held out to score archs in the search",
    )


@dataclass(frozen=True)
class PipelineRunConfig(RunConfig):
    dir: str = _text("runs/run", "run directory: every stage's output, resumable")


DEFAULT_METHODS = ("autoslim", "uniform", "random", "evolution")
METHOD_NAMES = (*DEFAULT_METHODS, "tas", "tas_width", "joslim", "proxyless", "fixed")


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

    sandwich_n: int = _integer(4, 2, "archs per step (max, min and n-2 random ones)")
    distill: bool = _flag(True, "in-place distillation from the max arch")


def _budget_list(values: tuple) -> bool:
    return len(values) > 0 and all(isinstance(v, str) and "<=" in v for v in values)


def _method_list(values: tuple) -> bool:
    return len(values) > 0 and all(v in METHOD_NAMES for v in values)


@dataclass(frozen=True)
class SearchConfig(Section):
    section: ClassVar[str] = "search"

    methods: tuple[str, ...] = _list(
        DEFAULT_METHODS,
        str,
        "a non-empty list of " + ", ".join(repr(m) for m in METHOD_NAMES),
        _method_list,
        "methods and baselines to run (tas: width + depth, tas_width: width only, proxyless: "
        "op units, fixed: every op unit at search.fixed_op)",
    )
    budgets: tuple[str, ...] = _list(
        ("macs<=50%",),
        str,
        "a non-empty list of budgets like 'macs<=20M' or 'macs<=50%'",
        _budget_list,
        "one result per budget and method; % is relative to the max arch",
    )
    score_images: int = _integer(1024, 1, "held-out training images each arch is scored on")
    score_batch: int = _integer(512, 1, "images per scoring batch (its BatchNorm statistics)")
    bn: str = _choice("batch", ("batch", "recalibrate"), "BatchNorm statistics of a scored arch")
    bn_batches: int = _integer(8, 1, "bn = recalibrate: training batches per scored arch")
    random_samples: int = _integer(100, 1, "random search: archs scored per budget")
    population: int = _integer(32, 2, "evolution: population size")
    generations: int = _integer(10, 1, "evolution: generations")
    seed: int = _integer(0, 0, "seed of random and evolutionary search")
    tas_epochs: int | None = _integer(
        None, 1, "tas: search epochs (unset: supernet.epochs, with the [supernet] recipe)", True
    )
    tas_tau_max: float = _number(10.0, "a positive number", _positive, "tas: first temperature")
    tas_tau_min: float = _number(0.1, "a positive number", _positive, "tas: last temperature")
    tas_tau_schedule: str = _choice(
        "linear", ("linear", "cosine"), "tas: temperature decay per epoch (paper: linear)"
    )
    tas_cost_weight: float = _number(
        2.0, "a number >= 0", lambda v: v >= 0, "tas: weight of the cost loss (lambda)"
    )
    tas_tolerance: float = _number(
        0.05, "a number in [0, 1)", lambda v: 0 <= v < 1, "tas: band below the budget"
    )
    tas_arch_lr: float = _number(1e-3, "a positive number", _positive, "tas: Adam lr of logits")
    proxyless_epochs: int | None = _integer(
        None,
        1,
        "proxyless: epochs of each search after the shared warm-up (unset: supernet.epochs, "
        "with the [supernet] recipe)",
        True,
    )
    proxyless_warmup_epochs: int = _integer(
        1, 0, "proxyless: epochs of weight steps only, shared by every budget's search"
    )
    proxyless_mode: str = _choice(
        "two",
        ("two", "full", "reinforce"),
        "proxyless: architecture gradient (two paths, all paths, or REINFORCE)",
    )
    proxyless_arch_every: int = _integer(5, 1, "proxyless: weight steps per architecture step")
    proxyless_arch_lr: float = _number(
        1e-3, "a positive number", _positive, "proxyless: Adam lr of the path logits"
    )
    proxyless_loss: str = _choice(
        "mul_log",
        ("mul_log", "add_linear", "band"),
        "proxyless: cost term, alpha*CE*(log E/log T)^beta, CE + lambda*(E - T)/T, or band "
        "(TAS's Eq. 8: seeks [(1 - tolerance) T, T])",
    )
    proxyless_loss_alpha: float = _number(
        0.2, "a positive number", _positive, "proxyless: alpha of mul_log"
    )
    proxyless_loss_beta: float = _number(
        0.3, "a number >= 0", lambda v: v >= 0, "proxyless: beta of mul_log"
    )
    proxyless_loss_lambda: float = _number(
        0.1, "a number >= 0", lambda v: v >= 0, "proxyless: lambda of add_linear"
    )
    proxyless_band_weight: float = _number(
        2.0, "a number >= 0", lambda v: v >= 0, "proxyless: weight of the band loss"
    )
    proxyless_tolerance: float = _number(
        0.05, "a number in [0, 1)", lambda v: 0 <= v < 1, "proxyless: band below the budget"
    )
    fixed_op: str = _text(
        "k3e6", "fixed: the candidate every op unit takes (MobileNetV2-like: k3e6)"
    )
    joslim_cost: str = _choice(
        "macs", ("macs", "memory"), "joslim: the cost its GP models and fronts trade against loss"
    )
    joslim_visits: int = _integer(
        200, 1, "joslim: archs chosen over its training when joslim_refit_every is unset"
    )
    joslim_refit_every: int | None = _integer(
        None, 1, "joslim: steps between rounds of chosen archs (unset: from joslim_visits)", True
    )
    joslim_warmup: int = _integer(20, 0, "joslim: uniform-width archs before the GP models")
    joslim_pool: int = _integer(1000, 2, "joslim: candidate archs per round")
    joslim_refresh_images: int = _integer(
        256, 1, "joslim: held-out images the visited archs are re-scored on every round"
    )
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

    model: ModelConfig = field(default_factory=ModelConfig)
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
        if "joslim" in self.search.methods and self.supernet.sandwich_n < 3:
            raise ConfigError(
                "joslim trains the max, the min and at least one chosen arch per step: set "
                f"supernet.sandwich_n >= 3 (got {self.supernet.sandwich_n}) or drop joslim"
            )


def schema(config_class: type = Config) -> Iterator[tuple[str, Any, Rule, str]]:
    """``(section.key, default, rule, doc)`` of every setting, in file order."""
    for section_name, section in config_class.sections().items():
        for f in dataclasses.fields(section):
            yield f"{section_name}.{f.name}", f.default, f.metadata["rule"], f.metadata["doc"]


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
        fields = {f.name: f for f in dataclasses.fields(sections[section_name])}
        if name not in fields:
            raise ConfigError(_unknown_key(section_name, name, list(fields)))
        table = merged.setdefault(section_name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{section_name} must be a table ([{section_name}] in TOML)")
        table[name] = fields[name].metadata["rule"].parse(text)
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
