"""Joslim inside `slimnas run`: its own supernet trained on GP-chosen widths (resumable), its
archs exported with that supernet's weights, and its front compared with the two-stage
baseline's (random search on the sandwich-rule supernet) in results.json and the report; and
the area under a front's curve on hand-made fronts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from slimnas.errors import BudgetError, ConfigError
from slimnas.io import load_tensors
from slimnas.methods.fronts import best_within, common_range, front_auc, pick_curve, step_accuracy
from slimnas.pipeline import Pipeline, StageStopped, budget_slug
from slimnas.space.units import Arch
from slimnas.supernet import Supernet
from tests.test_pipeline import tiny_config

needs_botorch = pytest.mark.skipif(
    importlib.util.find_spec("botorch") is None,
    reason="botorch is not installed (pip install 'slimnas[joslim]')",
)

BUDGETS = ["macs<=70%", "macs<=50%", "macs<=30%"]
# 192 training images in batches of 40: 4 steps. A round of 2 archs at every step; the first
# 3 are uniform widths, the 4th the max arch: the GP models are fitted at steps 2 and 3.
CHANGES = {
    "data__max_train_images": 240,
    "search__methods": ["joslim", "random"],
    "search__budgets": BUDGETS,
    "search__joslim_refit_every": 1,
    "search__joslim_warmup": 3,
    "search__joslim_pool": 64,
    "search__joslim_refresh_images": 40,
    "retrain__seeds": [0],
    "retrain__bn_batches": 2,
}


def joslim_config(run_dir: Path, **changes):
    return tiny_config(run_dir, **(CHANGES | changes))


@pytest.fixture(scope="module")
def joslim_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("joslim") / "run"
    Pipeline(joslim_config(run_dir), progress=False).run()
    return run_dir


@needs_botorch
def test_joslim_trains_its_own_supernet_and_meets_every_budget(joslim_run: Path) -> None:
    folder = joslim_run / "search" / "joslim"
    assert list(folder.glob("ckpt-*")) and (folder / "metrics.csv").exists()
    state = json.loads((folder / "final" / "joslim_step.json").read_text())
    assert [call for call, _ in state["fits"]] == [2, 3]  # the GP models were fitted twice
    assert len(state["picks"]) == 4 and state["cost"] == "macs"  # 2 GP-chosen archs per round
    results = json.loads((joslim_run / "results.json").read_text())
    max_macs = results["max"]["macs"]
    found = json.loads((joslim_run / "search" / "joslim.json").read_text())
    assert [r["budget"] for r in found] == BUDGETS
    for result, budget in zip(found, BUDGETS):
        share = int(budget.removeprefix("macs<=").removesuffix("%")) / 100
        assert result["costs"]["macs"] <= share * max_macs
    rows = [r for r in results["rows"] if r["method"] == "joslim"]
    assert len(rows) == 3 and all(0 <= r["test_accuracy"] <= 1 for r in rows)


@needs_botorch
def test_joslim_archs_are_exported_with_joslim_weights(joslim_run: Path) -> None:
    found = json.loads((joslim_run / "search" / "joslim.json").read_text())[0]
    arch = Arch(found["arch"])
    folder = joslim_run / "exports" / "joslim" / budget_slug(found["budget"])
    exported = load_tensors(folder / "model.safetensors")
    config = joslim_config(joslim_run)
    pipeline = Pipeline(config, resume=True, progress=False)
    p = pipeline.prepare()
    own = Supernet.load(pipeline._model(p.config, 0), joslim_run / "search" / "joslim" / "final")
    shared = Supernet.load(pipeline._model(p.config, 0), joslim_run / "supernet" / "final")
    name = "conv1.weight"
    assert torch.equal(exported[name], own.export(arch).state_dict()[name])
    assert not torch.equal(exported[name], shared.export(arch).state_dict()[name])


@needs_botorch
def test_fronts_are_tested_and_compared_in_the_report(joslim_run: Path) -> None:
    results = json.loads((joslim_run / "results.json").read_text())
    fronts = results["fronts"]
    assert set(fronts["methods"]) == {"joslim", "random"} and fronts["cost"] == "macs"
    low, high = fronts["range"]
    for method, entry in fronts["methods"].items():
        saved = json.loads((joslim_run / "search" / f"{method}.front.json").read_text())
        points = saved["points"]
        assert points and points == entry["points"] and saved["explored"] == entry["explored"]
        costs = [p["macs"] for p in points]
        assert costs == sorted(costs)
        assert all(0 <= p["test_accuracy"] <= 1 and 0 <= p["heldout_accuracy"] <= 1 for p in points)
        assert 0 <= entry["auc"] <= 100
        assert set(entry["budgets"]) == set(BUDGETS)
        assert saved["explored"][0] == costs[0] <= low <= high <= saved["explored"][1]
    # random's front is the Pareto front of everything it scored: more archs than results.
    scored = json.loads((joslim_run / "search" / "random.scored.json").read_text())
    assert len(scored) > len(BUDGETS) and len(fronts["methods"]["random"]["points"]) <= len(scored)
    report = (joslim_run / "report.md").read_text()
    assert "## Slimmable fronts without retraining (MACs)" in report
    assert "](fronts.png)" in report and "| joslim |" in report and "| random |" in report
    assert (joslim_run / "fronts.png").read_bytes()[:4] == b"\x89PNG"


@needs_botorch
def test_a_resumed_run_reuses_the_joslim_supernet_and_the_fronts(joslim_run: Path) -> None:
    watched = [
        joslim_run / "search" / "joslim" / "final" / "supernet.safetensors",
        joslim_run / "search" / "joslim.front.json",
        joslim_run / "search" / "random.front.json",
    ]
    before = [path.stat().st_mtime_ns for path in watched]
    Pipeline(joslim_config(joslim_run), resume=True, progress=False).run()
    assert [path.stat().st_mtime_ns for path in watched] == before


@needs_botorch
def test_a_killed_joslim_training_resumes_to_the_same_state(joslim_run: Path, tmp_path) -> None:
    import shutil

    run_dir = tmp_path / "run"  # the finished sandwich supernet; joslim trained again
    shutil.copytree(joslim_run, run_dir, ignore=shutil.ignore_patterns("search", "exports"))
    only = {"search__methods": ["joslim"]}
    config = joslim_config(run_dir, supernet__max_steps=2, **only)  # before the GP rounds
    stopped = Pipeline(config, resume=True, progress=False)
    with pytest.raises(StageStopped):
        stopped.run(("supernet", "search"))
    assert (run_dir / "search" / "joslim" / "ckpt-00000002").exists()
    Pipeline(joslim_config(run_dir, **only), resume=True, progress=False).run(
        ("supernet", "search")
    )
    final = Path("search") / "joslim" / "final"
    again = json.loads((run_dir / final / "joslim_step.json").read_text())
    assert again == json.loads((joslim_run / final / "joslim_step.json").read_text())


@needs_botorch
def test_a_run_searched_before_random_saved_its_archs_gets_the_same_front(
    joslim_run: Path, tmp_path
) -> None:
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(joslim_run, run_dir)
    for name in ("random.scored.json", "random.front.json"):
        (run_dir / "search" / name).unlink()
    Pipeline(joslim_config(run_dir), resume=True, progress=False).run(("report",))
    for name in ("random.scored.json", "random.front.json"):
        again = json.loads((run_dir / "search" / name).read_text())
        assert again == json.loads((joslim_run / "search" / name).read_text())


def test_joslim_needs_a_chosen_arch_per_step(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="supernet.sandwich_n >= 3"):
        joslim_config(tmp_path / "run", supernet__sandwich_n=2)


def test_a_budget_only_shallower_archs_meet_is_refused_before_the_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = joslim_config(run_dir, space__depth=True, search__budgets=["macs<=8%"])
    with pytest.raises(BudgetError, match="widths only"):
        Pipeline(config, progress=False).prepare()
    assert not run_dir.exists()


# ------------------------------------------------------------------------- area under a front
A = [(10.0, 0.40), (20.0, 0.60), (40.0, 0.80)]
B = [(15.0, 0.50), (30.0, 0.70), (50.0, 0.90)]


def test_the_area_is_the_mean_of_the_step_curve_over_the_range() -> None:
    # A over [10, 40]: 0.40 on [10, 20), 0.60 on [20, 40) -> (10·0.4 + 20·0.6) / 30.
    assert front_auc(A, 10, 40) == pytest.approx(100 * (10 * 0.4 + 20 * 0.6) / 30)
    assert front_auc(A, 20, 40) == pytest.approx(60.0)
    assert front_auc(A, 12, 12) == pytest.approx(40.0)  # a point: the value there
    assert front_auc(A, 40, 60) == pytest.approx(80.0)  # flat past the costliest arch
    assert step_accuracy(A, 19.9) == 0.40 and step_accuracy(A, 20.0) == 0.60


def test_fronts_of_different_ranges_count_only_the_common_one() -> None:
    low, high = common_range([(10.0, 40.0), (15.0, 50.0)])  # what the two methods explored
    assert (low, high) == (15.0, 40.0)
    # A on [15, 40]: 0.40 for 5, 0.60 for 20 -> 56 %; B: 0.50 for 15, 0.70 for 10 -> 58 %.
    assert front_auc(A, low, high) == pytest.approx(56.0)
    assert front_auc(B, low, high) == pytest.approx(58.0)
    assert common_range([(10.0, 40.0), (45.0, 60.0)]) is None  # no overlap
    assert common_range([]) is None


def test_the_curve_follows_held_out_loss_not_test_accuracy() -> None:
    points = [
        {"macs": 10.0, "heldout_loss": 2.0, "test_accuracy": 0.40},
        {"macs": 20.0, "heldout_loss": 2.5, "test_accuracy": 0.90},  # worse on held-out data
        {"macs": 30.0, "heldout_loss": 1.5, "test_accuracy": 0.70},
    ]
    curve = pick_curve(points, "macs")
    assert curve == [(10.0, 0.40), (30.0, 0.70)]  # a budget never picks the 20 M arch
    assert front_auc(curve, 10, 30) == pytest.approx(40.0)


def test_an_empty_range_or_one_below_the_front_is_refused() -> None:
    with pytest.raises(ConfigError, match="must not be empty"):
        front_auc(A, 30, 20)
    with pytest.raises(ConfigError, match="no front point"):
        front_auc(A, 5, 20)


def test_budget_picks_use_the_lowest_held_out_loss_within_the_budget() -> None:
    points = [
        {"macs": 10.0, "heldout_loss": 2.0, "test_accuracy": 0.4},
        {"macs": 30.0, "heldout_loss": 1.5, "test_accuracy": 0.7},
    ]
    assert best_within(points, lambda p: p["macs"] <= 25) is points[0]
    assert best_within(points, lambda p: p["macs"] <= 5) is None
