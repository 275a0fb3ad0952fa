"""Adding a method is adding a class: a toy method registered from this file runs through
``slimnas run`` end to end, its options a ``[search.<name>]`` table like any built-in one's."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from slimnas.cli import main
from slimnas.methods import Method, Options, Result, register, unregister
from slimnas.settings import text


@dataclass(frozen=True)
class SmallestOptions(Options):
    note: str = text("none", "a word every result carries")


class Smallest(Method):
    """The smallest arch of the space for every budget, scored on held-out data."""

    name = "toy_smallest"
    Options = SmallestOptions

    def search(self, budgets):
        space = self.space()
        arch = space.min_arch()
        score = self.scorer.score(arch)
        return [
            Result.of(self.name, b, space, arch, score, note=self.options.note)
            for b in self.budgets(budgets)
        ]


@pytest.fixture
def toy_method():
    register(Smallest)
    yield Smallest
    unregister(Smallest.name)


CONFIG = """
[model]
name = "resnet20"
width_mult = 0.5
[space]
divisor = 4
[data]
heldout = 0.2
max_train_images = 200
max_test_images = 100
[supernet]
epochs = 1
batch_size = 40
warmup_epochs = 0.0
[search]
methods = ["toy_smallest", "uniform"]
budgets = ["macs<=50%"]
score_images = 40
score_batch = 40
[search.toy_smallest]
note = "from the file"
[retrain]
epochs = 1
batch_size = 40
warmup_epochs = 0.0
seeds = [0]
"""


def test_a_method_registered_from_a_test_file_runs_end_to_end(toy_method, tmp_path: Path):
    config = tmp_path / "toy.toml"
    config.write_text(CONFIG)
    run_dir = tmp_path / "run"
    args = ["run", str(config), "--set", f"run.dir={run_dir}"]
    assert main([*args, "--set", "search.toy_smallest.note=from-the-flag"]) == 0
    (found,) = json.loads((run_dir / "search" / "toy_smallest.json").read_text())
    assert found["info"]["note"] == "from-the-flag"
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["search"]["toy_smallest"] == {"note": "from-the-flag"}
    results = json.loads((run_dir / "results.json").read_text())
    rows = [r for r in results["rows"] if r["method"] == "toy_smallest"]
    assert len(rows) == 1 and 0 <= rows[0]["test_accuracy"] <= 1
    assert (run_dir / "exports" / "toy_smallest").is_dir()
    assert "toy_smallest" in (run_dir / "report.md").read_text()


def test_an_unknown_option_of_a_registered_method_is_one_line(toy_method, tmp_path, capsys):
    config = tmp_path / "toy.toml"
    config.write_text(CONFIG.replace('note = "from the file"', "notes = 1"))
    assert main(["run", str(config), "--set", f"run.dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "search.toy_smallest.notes" in err[0], err
