"""``slimnas run --resume`` with an edited config: a change that would give results from two
configs (budgets, the supernet's training, data, space, a method's options, the retraining
recipe) stops with one line naming the setting and leaves the run as it was; a change that only
adds or drops work (methods, retraining seeds, where a stage stops) reruns just that work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from slimnas.cli import main
from slimnas.pipeline import Pipeline
from tests.helpers.faults import comparable, tiny_run_config, toml_of

REFUSED = [
    ("search__budgets", ["macs<=50%"], "search.budgets"),
    ("supernet__epochs", 2, "supernet.epochs"),
    ("supernet__lr", 0.05, "supernet.lr"),
    ("data__max_train_images", 120, "data.max_train_images"),
    ("data__augment", False, "data.augment"),
    ("space__divisor", 4, "space.divisor"),
    ("model__width_mult", 0.5, "model.width_mult"),
    ("search__random", {"samples": 4}, "search.random"),
    ("search__score_images", 20, "search.score_images"),
    ("retrain__epochs", 2, "retrain.epochs"),
    ("retrain__init", "inherit", "retrain.init"),
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("config") / "run"
    Pipeline(tiny_run_config(run_dir), progress=False).run()
    return run_dir, json.loads((run_dir / "results.json").read_text())


def copy_of(finished, tmp_path: Path, **changes) -> tuple[Path, Path]:
    run_dir = tmp_path / "run"
    shutil.copytree(finished[0], run_dir)
    config = tmp_path / "run.toml"
    config.write_text(toml_of(tiny_run_config(run_dir, **changes)))
    return run_dir, config


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("key", "value", "name"), REFUSED)
def test_a_change_that_would_mix_two_configs_is_refused(
    finished, tmp_path, key, value, name, capsys
) -> None:
    run_dir, config = copy_of(finished, tmp_path, **{key: value})
    before = snapshot(run_dir)
    capsys.readouterr()
    assert main(["run", str(config), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err and "Traceback" not in err, err
    assert snapshot(run_dir) == before  # nothing written, nothing damaged


def rows(results: dict, method: str) -> list[dict]:
    return [r for r in comparable(results)["rows"] if r["method"] == method]


def test_an_added_method_runs_alone_and_the_rest_is_reused(finished, tmp_path) -> None:
    run_dir, config = copy_of(
        finished, tmp_path, search__methods=["uniform", "random", "evolution"]
    )
    searched = (run_dir / "search" / "random.json").stat().st_mtime_ns
    assert main(["run", str(config), "--resume"]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert (run_dir / "search" / "random.json").stat().st_mtime_ns == searched
    for method in ("uniform", "random"):
        assert rows(results, method) == rows(finished[1], method)
    assert len(rows(results, "evolution")) == 1


def test_a_dropped_method_leaves_the_report(finished, tmp_path) -> None:
    run_dir, config = copy_of(finished, tmp_path, search__methods=["uniform"])
    assert main(["run", str(config), "--resume"]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert {r["method"] for r in results["rows"]} == {"uniform"}
    assert rows(results, "uniform") == rows(finished[1], "uniform")


def test_an_added_seed_trains_only_its_models(finished, tmp_path) -> None:
    run_dir, config = copy_of(finished, tmp_path, retrain__seeds=[0, 1])
    trained = run_dir / "models" / "uniform" / "macs-le-60pct" / "seed0" / "result.json"
    before = trained.stat().st_mtime_ns
    assert main(["run", str(config), "--resume"]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert trained.stat().st_mtime_ns == before
    seed0 = [r for r in rows(results, "uniform") if r["seed"] == 0]
    assert seed0 == rows(finished[1], "uniform")
    assert {r["seed"] for r in results["rows"]} == {0, 1}
