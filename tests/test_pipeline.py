"""The `slimnas run` pipeline end to end on a small slice of the built-in data, and its CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import slimnas
from slimnas.cli import main
from slimnas.config import PipelineConfig
from slimnas.pipeline import Pipeline, StageStopped, budget_slug, load_exported

TINY = {
    "model": {"name": "resnet20"},
    "data": {"heldout": 0.2, "max_train_images": 400, "max_test_images": 200},
    "supernet": {"epochs": 1, "batch_size": 40, "warmup_epochs": 0.0},
    "search": {
        "methods": ["autoslim", "uniform", "random", "evolution"],
        "budgets": ["macs<=60%", "params<=0.2M"],
        "score_images": 80,
        "score_batch": 40,
        "random_samples": 4,
        "population": 4,
        "generations": 2,
    },
    "retrain": {"epochs": 1, "batch_size": 40, "warmup_epochs": 0.0, "seeds": [0, 1]},
}


def tiny_config(run_dir: Path, **changes) -> PipelineConfig:
    tables = {section: dict(values) for section, values in TINY.items()}
    for key, value in changes.items():
        section, name = key.split("__")
        tables.setdefault(section, {})[name] = value
    tables["run"] = {"dir": str(run_dir)}
    return PipelineConfig.from_dict(tables)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("pipeline") / "run"
    Pipeline(tiny_config(run_dir), progress=False).run()
    return run_dir


def test_run_writes_every_stage(finished_run: Path) -> None:
    results = json.loads((finished_run / "results.json").read_text())
    rows = results["rows"]
    assert len(rows) == 4 * 2 * 2  # methods x budgets x seeds
    assert {r["method"] for r in rows} == {"autoslim", "uniform", "random", "evolution"}
    assert all(r["test_accuracy"] is not None and 0 <= r["test_accuracy"] <= 1 for r in rows)
    report = (finished_run / "report.md").read_text()
    assert "macs<=60%" in report and "params<=0.2M" in report
    for figure in ("accuracy_vs_macs.png", "channels.png", "search_front.png"):
        assert (finished_run / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({figure})" in report
    front = results["front"]  # the greedy path: MACs fall at every iteration
    assert len(front) >= 2 and all(a["macs"] > b["macs"] for a, b in zip(front, front[1:]))
    for method in ("autoslim", "uniform", "random", "evolution"):
        for budget in ("macs<=60%", "params<=0.2M"):
            export = finished_run / "exports" / method / budget_slug(budget)
            assert (export / "model.safetensors").exists() and (export / "arch.json").exists()


def test_every_found_arch_meets_its_budget_on_the_exported_model(finished_run: Path) -> None:
    results = json.loads((finished_run / "results.json").read_text())
    max_macs = results["max"]["macs"]
    for row in results["rows"]:
        if row["budget"] == "macs<=60%":
            assert row["macs"] <= 0.6 * max_macs, row
        else:
            assert row["params"] <= 0.2e6, row
    # The retrained model itself, rebuilt from its folder, costs what the row says.
    row = results["rows"][0]
    folder = finished_run / "models" / row["method"] / budget_slug(row["budget"]) / "seed0"
    model = load_exported(folder)
    x = torch.randn(1, 3, 32, 32)
    assert slimnas.cost.measured.module_macs(model, x) == row["macs"]
    assert sum(p.numel() for p in model.parameters()) == row["params"]


def test_seeds_share_the_arch_and_differ_in_training(finished_run: Path) -> None:
    rows = json.loads((finished_run / "results.json").read_text())["rows"]
    autoslim = [r for r in rows if r["method"] == "autoslim" and r["budget"] == "macs<=60%"]
    assert [r["seed"] for r in autoslim] == [0, 1]
    assert autoslim[0]["arch"] == autoslim[1]["arch"]
    first = finished_run / "models" / "autoslim" / budget_slug("macs<=60%")
    a = slimnas.io.load_tensors(first / "seed0" / "model.safetensors")
    b = slimnas.io.load_tensors(first / "seed1" / "model.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def test_resume_reuses_finished_stages(finished_run: Path) -> None:
    done = finished_run / "models" / "uniform" / budget_slug("macs<=60%") / "seed1" / "result.json"
    before = done.stat().st_mtime_ns, (finished_run / "search" / "autoslim.json").read_text()
    Pipeline(tiny_config(finished_run), resume=True, progress=False).run()
    after = done.stat().st_mtime_ns, (finished_run / "search" / "autoslim.json").read_text()
    assert before == after


def test_a_second_run_without_resume_is_refused(finished_run: Path) -> None:
    with pytest.raises(slimnas.ConfigError, match="--resume"):
        Pipeline(tiny_config(finished_run), progress=False).prepare()


def test_resume_with_changed_search_settings_is_refused(finished_run: Path) -> None:
    config = tiny_config(finished_run, search__score_images=60)
    with pytest.raises(slimnas.ConfigError, match="search.score_images"):
        Pipeline(config, resume=True, progress=False).prepare()


def test_added_seed_trains_only_the_new_models(finished_run: Path, tmp_path: Path) -> None:
    # A copy, so that the module's run stays as the other tests expect it.
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    config = tiny_config(run, retrain__seeds=[0, 1, 2], search__methods=["uniform"])
    Pipeline(config, resume=True, progress=False).run(("retrain", "report"))
    rows = json.loads((run / "results.json").read_text())["rows"]
    assert sorted(r["seed"] for r in rows) == [0, 0, 1, 1, 2, 2]
    models = run / "models"
    assert (models / "uniform" / budget_slug("macs<=60%") / "seed2" / "result.json").exists()
    assert not (models / "autoslim" / budget_slug("macs<=60%") / "seed2").exists()


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "toml, field",
    [
        ('[search]\nmethods = ["autoslim", "greedy"]\n', "search.methods"),
        ('[model]\nname = "resnet21"\n', "model.name"),
        ('[search]\nbudgets = ["macs<20M"]\n', "search.budgets"),
        ('[search]\nbudgets = ["macs<=1K"]\n', "macs<=1K"),
        ("[retrain]\nepochs = 'three'\n", "retrain.epochs"),
        ('[search]\nbudgets = "macs<=20M"\n', "search.budgets"),
        ("[supernet]\nlr = -1\n", "supernet.lr"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_run_dir(tmp_path, capsys, toml, field) -> None:
    run_dir = tmp_path / "run"
    config = write_toml(tmp_path / "bad.toml", toml + f'\n[run]\ndir = "{run_dir}"\n')
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err, err
    assert not run_dir.exists()


def test_cli_report_without_a_run_is_refused(tmp_path, capsys) -> None:
    config = write_toml(tmp_path / "c.toml", f'[run]\ndir = "{tmp_path / "none"}"\n')
    assert main(["report", str(config)]) == 2
    assert "slimnas run first" in capsys.readouterr().err


def test_cli_report_rewrites_the_report(finished_run: Path, tmp_path, capsys) -> None:
    (finished_run / "report.md").unlink()
    lines = [f"{s}.{key}={_toml_value(v)}" for s, table in TINY.items() for key, v in table.items()]
    config = write_toml(tmp_path / "c.toml", f'[run]\ndir = "{finished_run}"\n')
    args = ["report", str(config)] + [x for line in lines for x in ("--set", line)]
    assert main(args) == 0
    assert (finished_run / "report.md").exists()


def _toml_value(value) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def test_budget_slug_is_a_plain_folder_name() -> None:
    assert budget_slug("macs<=50%") == "macs-le-50pct"
    assert os.sep not in budget_slug("params<=0.3M") and "<" not in budget_slug("params<=0.3M")


def test_every_pipeline_setting_is_documented() -> None:
    from slimnas.config import RecipeConfig, schema

    docs = (Path(__file__).resolve().parents[1] / "docs" / "pipeline.md").read_text()
    recipe = {f"{s}.{name}" for s in ("supernet", "retrain") for name in vars(RecipeConfig())}
    for key, *_ in schema(PipelineConfig):
        if key.split(".")[0] in ("model", "data") or key in recipe:
            continue  # documented in docs/config.md
        assert f"`{key}`" in docs, f"{key} is missing from docs/pipeline.md"


def test_retrain_from_inherited_weights_with_distillation(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    changes = {
        "search__methods": ["uniform"],
        "search__budgets": ["macs<=60%"],
        "retrain__seeds": [0],
        "retrain__init": "inherit",
        "retrain__distill": True,
    }
    pipeline = Pipeline(tiny_config(run_dir, **changes, retrain__max_steps=1), progress=False)
    pipeline.run(("supernet", "search", "export"))
    exported = load_exported(run_dir / "exports" / "uniform" / budget_slug("macs<=60%"))
    with pytest.raises(StageStopped):
        pipeline.run(("retrain",))  # one step, then stop: the weights barely moved
    folder = pipeline.model_dir("uniform", "macs<=60%", 0)
    after_one = slimnas.io.load_tensors(folder / "ckpt-00000001" / "tensors.safetensors")
    for name, value in exported.state_dict().items():
        if value.is_floating_point() and value.dim() > 1:  # conv and linear weights
            moved = (after_one[f"model/{name}"] - value).norm() / value.norm()
            assert moved < 0.3, name  # inherited (one SGD step); a fresh init differs by ~1.4
    finished = Pipeline(tiny_config(run_dir, **changes), resume=True, progress=False)
    finished.run(("retrain",))
    metrics = (folder / "metrics.csv").read_text().splitlines()
    assert "loss_ce" in metrics[0]  # the KD step logs the plain cross-entropy beside its loss
    assert json.loads((folder / "result.json").read_text())["test_accuracy"] is not None


def test_found_archs_are_reported_on_held_out_images_no_search_selected_on(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    changes = {
        "search__methods": ["uniform", "random"],
        "search__budgets": ["macs<=60%"],
        "search__score_images": 40,  # of the 80 held-out images; the other 40 report
        "search__report_images": 40,
    }
    pipeline = Pipeline(tiny_config(run_dir, **changes), progress=False)
    pipeline.run(("supernet", "search"))
    supernet = pipeline.stage_supernet()
    before = {n: b.clone() for n, b in supernet.named_buffers()}
    for method in ("uniform", "random"):
        (result,) = json.loads((run_dir / "search" / f"{method}.json").read_text())
        assert result["info"]["report_images"] == 40
        assert 0 <= result["accuracy"] <= 1 and 0 <= result["info"]["search_split_accuracy"] <= 1
    scores = json.loads((run_dir / "supernet" / "final" / "scores.json").read_text())
    path = scores["uniform_path"]
    assert len(path) == 6 and path[-1]["macs_share"] == 1.0
    assert all(p["images"] == 80 for p in path)
    # Reporting left the supernet's BatchNorm buffers as the saved supernet has them.
    saved = slimnas.io.load_tensors(run_dir / "supernet" / "final" / "supernet.safetensors")
    compared = 0
    for name, buffer in before.items():
        if buffer.is_floating_point():
            torch.testing.assert_close(buffer, saved[name.removeprefix("model.")], msg=name)
            compared += 1
    assert compared > 0
