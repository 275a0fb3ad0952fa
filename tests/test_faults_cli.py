"""Generated mistakes (hypothesis): every invalid value of every setting, given in the TOML file
or by ``--set``, impossible combinations, and malformed argument lists. Each one exits 2 with one
line that names the setting (or the argument), no traceback, and no run directory."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slimnas.cli import main
from slimnas.config import PipelineConfig, schema
from slimnas.errors import ConfigError
from tests.helpers.faults import toml_value, write_config

SETTINGS = [(key, rule) for key, _, rule, _ in schema(PipelineConfig) if key != "run.dir"]
SETTINGS_BY_KEY = dict(SETTINGS)
CHECKS = {"suppress_health_check": [HealthCheck.function_scoped_fixture], "deadline": None}

# Any TOML value: what a user might type where something else was meant.
TEXT = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), max_size=12)
SCALARS = st.one_of(
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    TEXT,
)
VALUES = st.one_of(
    SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(TEXT, SCALARS, max_size=2)
)


def rejected(rule, value: Any) -> bool:
    try:
        rule.check("x", value)
    except ConfigError:
        return True
    return False


@st.composite
def invalid_setting(draw) -> tuple[str, Any]:
    """A setting and a value its rule refuses."""
    key, rule = draw(st.sampled_from(SETTINGS))
    value = draw(VALUES.filter(lambda v: rejected(rule, v)))
    return key, value


def fresh(tmp_path: Path) -> tuple[Path, Path]:
    """A config path and a run directory of their own (hypothesis reuses ``tmp_path``)."""
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    return folder / "run.toml", folder / "run"


def check_refused(argv: list[str], names: str, run_dir: Path, capsys) -> None:
    """``main(argv)`` exits 2 with one line naming ``names`` (any of ``|``-separated), and
    writes no run directory."""
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse
        status = exit_.code
    err = capsys.readouterr().err.strip()
    assert status == 2, (
        argv,
        err,
        Path(argv[1]).read_text() if len(argv) > 1 and Path(argv[1]).is_file() else "",
    )
    assert "Traceback" not in err and len(err.splitlines()) == 1, (argv, err)
    assert any(name in err for name in names.split("|")), (argv, err)
    assert not run_dir.exists(), (argv, err)


@settings(max_examples=120, **CHECKS)
@given(invalid_setting())
def test_an_invalid_value_in_the_file_is_one_line(tmp_path, capsys, mistake) -> None:
    key, value = mistake
    config, run_dir = fresh(tmp_path)
    write_config(config, run_dir, key, value)
    check_refused(["run", str(config)], key, run_dir, capsys)


def set_text(value: Any) -> str:
    """How a user would write ``value`` after ``--set key=``."""
    if isinstance(value, (list, tuple)):
        return ",".join(set_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if not isinstance(value, dict) else toml_value(value)


@settings(max_examples=60, **CHECKS)
@given(invalid_setting(), st.sampled_from(["run", "search", "export", "evaluate"]))
def test_an_invalid_set_flag_is_one_line(tmp_path, capsys, mistake, command) -> None:
    key, value = mistake
    config, run_dir = fresh(tmp_path)
    write_config(config, run_dir)
    text = set_text(value)
    rule = SETTINGS_BY_KEY[key]
    try:  # the text may read as a valid value (a list of one, a quoted number): skip those
        rule.check(key, rule.parse(text))
        return
    except ConfigError:
        pass
    check_refused([command, str(config), "--set", f"{key}={text}"], key, run_dir, capsys)


NAMES = st.text(st.characters(codec="ascii", categories=("Ll", "Nd")), min_size=1, max_size=10)
# Settings that each value passes alone but that cannot work together (or with the data).
COMBINATIONS = st.one_of(
    st.builds(
        lambda n: ("search.methods", [n]),
        NAMES.filter(
            lambda n: (
                n
                not in {
                    "autoslim",
                    "joslim",
                    "tas",
                    "tas_width",
                    "proxyless",
                    "fixed",
                    "uniform",
                    "random",
                    "evolution",
                    "magnitude",
                    "torch_pruning",
                }
            )
        ),
    ),
    st.builds(
        lambda metric, op, limit: ("search.budgets", [f"{metric}{op}{limit}"]),
        st.sampled_from(["macs", "params", "memory", "latency_ms", "flops", "", "mac"]),
        st.sampled_from(["<=", "<", "=", ">=", ""]),
        st.sampled_from(["", "0%", "-5%", "abc", "1e-9", "0.0001%", "200%x", "50%%", "5@gpu"]),
    ),
    st.builds(lambda b: ("supernet.batch_size", b), st.integers(121, 10**6)),
    st.builds(lambda b: ("retrain.batch_size", b), st.integers(121, 10**6)),
    st.builds(lambda n: ("model.num_classes", n), st.integers(1, 9)),
    st.builds(lambda n: ("model.name", n), NAMES.filter(lambda n: not n.startswith("resnet"))),
    st.builds(lambda n: ("model.weights", f"/nonexistent/{n}.safetensors"), NAMES),
    st.builds(lambda n: ("retrain.teacher", f"/nonexistent/{n}"), NAMES),
    st.builds(lambda n: ("search.latency_table", f"/nonexistent/{n}.json"), NAMES),
    st.builds(lambda s: ("data.source", s), st.sampled_from(["cifar10", "cifar100", "folder"])),
)
# What the message may call a combination's mistake besides the setting.
ALSO = {
    "search.budgets": "budget",
    "model.name": "model",
    "data.source": "data.root",
    "model.num_classes": "num_classes",
}


def refuse_combination(tmp_path, capsys, mistake) -> None:
    key, value = mistake
    config, run_dir = fresh(tmp_path)
    write_config(config, run_dir, key, value)
    check_refused(["run", str(config)], f"{key}|{ALSO.get(key, key)}", run_dir, capsys)


@settings(max_examples=20, **CHECKS)
@given(COMBINATIONS)
def test_a_setting_that_cannot_work_is_one_line(tmp_path, capsys, mistake) -> None:
    refuse_combination(tmp_path, capsys, mistake)


@pytest.mark.slow
@settings(max_examples=300, **CHECKS)
@given(COMBINATIONS)
def test_many_settings_that_cannot_work_are_one_line(tmp_path, capsys, mistake) -> None:
    refuse_combination(tmp_path, capsys, mistake)


COMMANDS = ["run", "search", "export", "evaluate", "report", "train", "latency-table"]
ARGUMENTS = st.one_of(
    st.builds(lambda c: [c], st.sampled_from(COMMANDS)),  # no config
    st.builds(
        lambda c, f: [c, "CONFIG", f],
        st.sampled_from(COMMANDS),
        st.sampled_from(["--bogus", "-x", "--resum", "--set"]),
    ),
    st.builds(
        lambda c, s: [c, "CONFIG", "--set", s],
        st.sampled_from(COMMANDS[:4]),
        st.sampled_from(["nokey", "=1", "model", "model.=1", ".name=x", "search.tas.=1"]),
    ),
    st.builds(
        lambda c, k: [c, "CONFIG", "--set", f"{k}=1"],
        st.sampled_from(COMMANDS[:4]),
        NAMES.map(lambda n: f"search.{n}x"),
    ),
    st.builds(
        lambda c, k: [c, "CONFIG", "--set", f"{k}=1"],
        st.sampled_from(COMMANDS[:4]),
        NAMES.map(lambda n: f"{n}x.key"),
    ),
    st.builds(
        lambda c, p: [c, p],
        st.sampled_from(COMMANDS),
        st.sampled_from(["/nonexistent.toml", "/", "MISSING"]),
    ),
    st.builds(
        lambda f, v: ["latency-table", "CONFIG", f, v],
        st.sampled_from(["--batch", "--rounds", "--repeats", "--threads", "--calibration-archs"]),
        st.sampled_from(["0", "-1", "abc", "1.5", ""]),
    ),
    st.builds(lambda v: ["latency-table", "CONFIG", "--runtime", v], NAMES),
    st.builds(lambda c: [c], NAMES.filter(lambda n: n not in COMMANDS)),
)


@settings(max_examples=60, **CHECKS)
@given(ARGUMENTS)
def test_a_malformed_argument_list_is_one_line(tmp_path, capsys, argv) -> None:
    config, run_dir = fresh(tmp_path)
    write_config(config, run_dir)
    argv = [
        str(config) if a == "CONFIG" else str(tmp_path / a) if a == "MISSING" else a for a in argv
    ]
    names = "error"  # argparse names the argument; slimnas the setting or file
    capsys.readouterr()
    check_refused(argv, names, run_dir, capsys)


@pytest.mark.slow
@settings(max_examples=1000, **CHECKS)
@given(invalid_setting())
def test_many_invalid_values_are_one_line(tmp_path, capsys, mistake) -> None:
    key, value = mistake
    config, run_dir = fresh(tmp_path)
    write_config(config, run_dir, key, value)
    check_refused(["run", str(config)], key, run_dir, capsys)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("supernet.lr", -1),
        ("search.random.samples", 0),
        pytest.param("search.budgets", [], marks=pytest.mark.slow),
        pytest.param("data.heldout", 1.5, marks=pytest.mark.slow),
        pytest.param("search.methods", ["autoslim", "nosuch"], marks=pytest.mark.slow),
    ],
)
def test_a_real_process_exits_2_with_one_line(tmp_path, key, value) -> None:
    config, run_dir = fresh(tmp_path)
    write_config(config, run_dir, key, value)
    done = subprocess.run(
        [sys.executable, "-m", "slimnas.cli", "run", str(config)],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and key in done.stderr, done.stderr
    assert not run_dir.exists()
