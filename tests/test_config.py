"""TOML configs: defaults, strict types, typed overrides, and errors that name the field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import slimnas.config
from slimnas.config import Config, ConfigError, apply_overrides, load_config, schema

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, overrides: list[str] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), overrides)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    return message


def test_empty_file_gives_the_documented_defaults(tmp_path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config == Config()
    assert config.model.name == "resnet20" and config.model.num_classes is None
    assert config.data.source == "builtin" and config.data.image_size == 32  # resolved
    assert config.train.lr == 0.1 and config.train.optimizer == "sgd" and config.train.nesterov
    assert config.train.max_steps is None and config.train.supernet is False
    assert config.train.sandwich_n == 4 and config.train.distill is False
    assert config.train.sandwich_loss == "mean"
    assert config.run.dir == "runs/train"


def test_file_values_are_read_and_converted(tmp_path) -> None:
    config = load_config(
        write(
            tmp_path,
            '[model]\nname = "resnet56"\nwidth_mult = 1\n'
            "[data]\nheldout = 0.1\n"
            "[train]\nepochs = 3\nlr = 1\nsupernet = true\ngrad_clip = 5\n"
            '[run]\ndir = "runs/x"\n',
        )
    )
    assert config.model.name == "resnet56"
    assert config.model.width_mult == 1.0 and isinstance(config.model.width_mult, float)
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.train.grad_clip == 5.0 and config.train.epochs == 3 and config.train.supernet
    assert config.data.heldout == 0.1 and config.run.dir == "runs/x"


def test_overrides_are_typed_by_the_field(tmp_path) -> None:
    path = write(tmp_path, "[train]\nepochs = 3\ngrad_clip = 1.5\n")
    config = load_config(
        path,
        [
            "train.lr=0.05",
            "train.epochs=7",
            "train.supernet=true",
            "train.grad_clip=none",
            "model.name=resnet32",
            "run.dir='runs/with space'",
            "train.max_steps=3",
            "train.max_steps=4",  # the last one wins
        ],
    )
    assert config.train.lr == 0.05 and isinstance(config.train.lr, float)
    assert config.train.epochs == 7 and isinstance(config.train.epochs, int)
    assert config.train.supernet is True
    assert config.train.grad_clip is None
    assert config.model.name == "resnet32"
    assert config.run.dir == "runs/with space"
    assert config.train.max_steps == 4


def test_to_dict_is_json_and_reads_back(tmp_path) -> None:
    config = load_config(write(tmp_path, "[train]\nsupernet = true\n"), ["train.lr=0.2"])
    data = json.loads(json.dumps(config.to_dict()))
    assert data["train"]["lr"] == 0.2 and data["model"]["num_classes"] is None
    assert Config.from_dict(data) == config


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        ("[train]\nlr = 'fast'\n", [], "train.lr must be a positive number, got 'fast'"),
        ("", ["train.lr=fast"], "train.lr must be a positive number, got 'fast'"),
        ("[train]\nlr = -0.1\n", [], "train.lr must be a positive number, got -0.1"),
        ("[train]\nepochs = 2.5\n", [], "train.epochs must be a positive integer, got 2.5"),
        ("[train]\nepochs = true\n", [], "train.epochs must be a positive integer, got True"),
        ("", ["train.epochs=0"], "train.epochs must be a positive integer, got 0"),
        ("[train]\nsupernet = 1\n", [], "train.supernet must be true or false, got 1"),
        ("", ["train.supernet=yes"], "train.supernet must be true or false, got 'yes'"),
        ("[train]\noptimizer = 'adam'\n", [], "train.optimizer must be one of 'sgd', 'adamw'"),
        ("[data]\nheldout = 1.0\n", [], "data.heldout must be a number in [0, 1), got 1.0"),
        ("[data]\nsource = 'imagenet'\n", [], "data.source must be one of 'builtin'"),
        ("[train]\nsandwich_n = 1\n", [], "train.sandwich_n must be an integer >= 2, got 1"),
        ("[model]\nwidth_mult = 'wide'\n", [], "model.width_mult must be a positive number"),
        ("[train]\nlr = nan\n", [], "train.lr must be a positive number, got nan"),
    ],
)
def test_bad_values_name_the_field(tmp_path, text, overrides, expected) -> None:
    assert expected in error_of(tmp_path, text, overrides)


def test_unknown_keys_are_refused_with_the_known_ones(tmp_path) -> None:
    message = error_of(tmp_path, "[train]\nlrr = 0.1\n")
    assert message.startswith("unknown key train.lrr (did you mean lr?)")
    keys = [name for name, *_ in schema() if name.startswith("train.")]
    assert ", ".join(key.split(".")[1] for key in keys) in message
    assert "unknown key train.lrr" in error_of(tmp_path, "", ["train.lrr=0.1"])
    assert "did you mean model?" in error_of(tmp_path, "[modle]\nname = 'resnet20'\n")
    assert "belongs under [train]" in error_of(tmp_path, "lr = 0.1\n")
    assert "train must be a table" in error_of(tmp_path, "train = 3\n")
    assert "unknown section 'trian'" in error_of(tmp_path, "", ["trian.lr=0.1"])
    assert "--set expects section.key=value" in error_of(tmp_path, "", ["lr=0.1"])
    assert "--set expects section.key=value" in error_of(tmp_path, "", ["train.lr"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[model]\nname = 'resnet7'\n", "model.name must be one of resnet20"),
        ("[data]\nsource = 'cifar10'\n", "data.root must be set for data.source = 'cifar10'"),
        ("[data]\nsource = 'folder'\nroot = 'x'\n", "data.image_size must be set"),
        ("[data]\nimage_size = 64\n", "data.image_size must be 32 for data.source = 'builtin'"),
        ("[train]\namp = true\ndevice = 'cpu'\n", "train.amp needs a CUDA device"),
    ],
)
def test_settings_that_do_not_fit_together(tmp_path, text, expected) -> None:
    assert expected in error_of(tmp_path, text)


def test_file_errors_are_one_line(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*missing\.toml does not exist"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    message = error_of(tmp_path, "[train\nlr = 0.1\n")
    assert "is not valid TOML" in message and "line 1" in message


def test_python_310_without_tomli_says_what_to_install(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(slimnas.config, "tomllib", None)
    with pytest.raises(ConfigError, match="pip install tomli"):
        load_config(write(tmp_path, ""))


def test_apply_overrides_leaves_its_input_alone() -> None:
    data = {"train": {"lr": 0.1}}
    merged = apply_overrides(data, ["train.lr=0.2", "run.dir=x"])
    assert data == {"train": {"lr": 0.1}}
    assert merged == {"train": {"lr": 0.2}, "run": {"dir": "x"}}


def test_sections_refuse_bad_values_when_built_directly() -> None:
    with pytest.raises(ConfigError, match="train.keep_last must be a positive integer"):
        slimnas.config.TrainConfig(keep_last=0)


def _literal(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{json.dumps(value)}`"


def test_every_setting_is_documented_with_its_default() -> None:
    docs = (ROOT / "docs" / "config.md").read_text()
    rows = {
        m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+\.\w+)` \| ([^|]+) \|", docs, re.M)
    }
    for key, default, _, _ in schema():
        assert key in rows, f"{key} is missing from docs/config.md"
        assert rows[key].strip() == _literal(default), key
    documented = {key for key in rows if key.split(".")[0] in Config.sections()}
    assert documented == {key for key, *_ in schema()}  # nothing documented that does not exist


def test_the_example_config_loads() -> None:
    config = load_config(ROOT / "examples" / "train_resnet20.toml")
    assert config.model.name == "resnet20" and config.data.source == "builtin"
    assert 1 <= config.train.epochs <= 10
