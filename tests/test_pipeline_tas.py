"""TAS inside `slimnas run`: a search per budget, resumable, retrained with KD, in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from slimnas.cli import main
from slimnas.io import load_tensors, save_tensors
from slimnas.models import MODELS
from slimnas.pipeline import Pipeline, budget_slug
from slimnas.pipeline.finished import write_finished_json
from slimnas.supernet import Supernet
from tests.test_pipeline import tiny_config, write_toml

CHANGES = {
    "space__depth": True,
    "search__methods": ["tas", "tas_width", "uniform"],
    "search__budgets": ["macs<=50%"],
    "search__tas_arch_lr": 0.05,
    "retrain__seeds": [0],
    "retrain__distill": True,
}


@pytest.fixture(scope="module")
def tas_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tas")
    teacher = folder / "teacher.safetensors"  # an unpruned model's weights teach the retraining
    save_tensors(MODELS["resnet20"](num_classes=10).state_dict(), teacher)
    run_dir = folder / "run"
    Pipeline(tiny_config(run_dir, retrain__teacher=str(teacher), **CHANGES), progress=False).run()
    return run_dir


def test_tas_searches_each_budget_and_its_archs_meet_it(tas_run: Path) -> None:
    results = json.loads((tas_run / "results.json").read_text())
    rows = {r["method"]: r for r in results["rows"]}
    assert set(rows) == {"tas", "tas_width", "uniform"}
    for method in ("tas", "tas_width"):
        folder = tas_run / "search" / method / budget_slug("macs<=50%")
        assert (folder / "metrics.csv").exists() and list(folder.glob("ckpt-*"))
        found = json.loads((folder / "result.json").read_text())
        assert found["costs"]["macs"] <= 0.5 * results["max"]["macs"]
        assert rows[method]["macs"] == found["costs"]["macs"]  # counted on the retrained model
        assert 0 <= rows[method]["test_accuracy"] <= 1
        assert 0 <= found["accuracy"] <= 1  # scored with the search's own weights
    depths = {"layer1", "layer2", "layer3"}
    units = {
        method: set(
            json.loads((tas_run / "search" / f"{method}.json").read_text())[0]["info"][
                "probabilities"
            ]
        )
        for method in ("tas", "tas_width")
    }
    assert depths <= units["tas"] and not depths & units["tas_width"]
    report = (tas_run / "report.md").read_text()
    assert "tas_width" in report and "](tas_search.png)" in report
    assert (tas_run / "tas_search.png").read_bytes()[:4] == b"\x89PNG"
    trace = results["tas"]["tas macs<=50%"]
    assert [p["epoch"] for p in trace] == [0] and 0 < trace[0]["cost_argmax"]


def test_tas_archs_inherit_and_are_scored_by_their_own_search_weights(tas_run, tmp_path):
    import shutil

    found = {
        r["method"]: r
        for name in ("tas", "uniform")
        for r in json.loads((tas_run / "search" / f"{name}.json").read_text())
    }
    assert found["tas"]["info"]["scored_by"] == "tas macs<=50%"
    assert found["uniform"]["info"]["scored_by"] == "supernet"
    assert "weights of 3 networks" in (tas_run / "report.md").read_text()
    # A copy of the run: one budget's search keeps its end weights in final/ ...
    run_dir = tmp_path / "run"
    shutil.copytree(tas_run, run_dir)
    config = tiny_config(
        run_dir, retrain__teacher=str(tas_run.parent / "teacher.safetensors"), **CHANGES
    )
    pipeline = Pipeline(config, resume=True, progress=False)
    own = pipeline.weights_of("tas", "macs<=50%")
    final = run_dir / "search" / "tas" / budget_slug("macs<=50%") / "final"
    saved = load_tensors(final / "supernet.safetensors")
    state = own.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    shared = pipeline.stage_supernet().model.state_dict()
    assert not torch.equal(state["conv1.weight"], shared["conv1.weight"])
    assert pipeline.weights_of("uniform", "macs<=50%") is pipeline.stage_supernet()
    # The report takes a retrained arch's inherited score from the search's results as they are.
    path = run_dir / "search" / "tas.json"
    found = json.loads(path.read_text())
    found[0]["accuracy"] = 0.123
    write_finished_json(path, found)
    Pipeline(config, resume=True, progress=False).run(("report",))
    rows = {r["method"]: r for r in json.loads((run_dir / "results.json").read_text())["rows"]}
    assert rows["tas"]["search_accuracy"] == 0.123
    assert rows["tas"]["scored_by"] == "tas macs<=50%"
    # ... and a search finished before final/ was written is read from its last checkpoint.
    shutil.rmtree(final)
    again = Pipeline(config, resume=True, progress=False).weights_of("tas", "macs<=50%")
    assert all(torch.equal(again.model.state_dict()[k], v) for k, v in saved.items())


def test_retraining_distils_from_the_given_teacher(tas_run: Path) -> None:
    metrics = tas_run / "models" / "tas" / budget_slug("macs<=50%") / "seed0" / "metrics.csv"
    assert "loss_ce" in metrics.read_text().splitlines()[0]  # the KD step's own column
    saved = tas_run.parent / "teacher.safetensors"
    config = tiny_config(tas_run, retrain__teacher=str(saved), **CHANGES)
    teacher = Pipeline(config, resume=True, progress=False)._teacher()
    expected = load_tensors(saved)
    assert not isinstance(teacher, Supernet)
    assert all(torch.equal(t, expected[k]) for k, t in teacher.state_dict().items())


@pytest.mark.parametrize(
    "teacher, words",
    [
        ("missing-dir", "neither a slimnas train run"),
        ("wrong.safetensors", "does not hold resnet20"),
    ],
)
def test_a_bad_teacher_is_refused_before_the_run_starts(tmp_path, capsys, teacher, words) -> None:
    save_tensors({"weight": torch.zeros(2)}, tmp_path / "wrong.safetensors")
    run_dir = tmp_path / "run"
    toml = (
        f'[retrain]\ndistill = true\nteacher = "{tmp_path / teacher}"\n[run]\ndir = "{run_dir}"\n'
    )
    assert main(["run", str(write_toml(tmp_path / "c.toml", toml))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not run_dir.exists()
