"""`slimnas latency-table` and latency budgets in `slimnas run`: tables are built and reused, a
table for another target is refused, and the report compares measured latency with the budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from slimnas.cli import main
from slimnas.cost.latency.predict import predict_latency
from slimnas.cost.latency.table import LatencyTable, load_latency_target
from slimnas.space.space import Space

CONFIG = """
[model]
name = "resnet20"

[data]
heldout = 0.2
max_train_images = 120
max_test_images = 50

[space]
min_ratio = 0.5
steps = 2

[supernet]
epochs = 1
batch_size = 48
warmup_epochs = 0.0

[search]
methods = ["uniform", "random"]
budgets = ["latency_ms<=80%"]
score_images = 24
score_batch = 24
random_samples = 3
latency_runtime = "torch"

[retrain]
epochs = 1
batch_size = 48
warmup_epochs = 0.0
seeds = [0]

[run]
dir = "{run}"
"""
FAST = ["--repeats", "3", "--rounds", "1", "--calibration-archs", "4"]


def write_config(folder: Path, table: Path | None = None, **search) -> Path:
    text = CONFIG.replace("{run}", str(folder / "run"))
    lines = [f"latency_table = {json.dumps(str(table))}"] if table else []
    lines += [f"{k} = {json.dumps(v)}" for k, v in search.items()]
    text = text.replace("[retrain]", "\n".join(lines) + "\n\n[retrain]")
    path = folder / "config.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """A config and its torch table, built once for the module."""
    folder = tmp_path_factory.mktemp("latency_cli")
    table = folder / "table.json"
    config = write_config(folder, table)
    assert main(["latency-table", str(config), *FAST]) == 0
    return config, table


def test_latency_table_is_built_and_reused(built, capsys) -> None:
    config, table = built
    target = load_latency_target(table, runtime="torch", threads=1, batch=1)
    assert len(target.entries) > 10 and len(target.calibrations) == 1
    (calibration,) = target.calibrations.values()
    assert len(calibration["points"]) == 4  # --calibration-archs
    assert main(["latency-table", str(config), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "0 entries measured" in printed and "torch, 1 thread, batch 1" in printed


def test_recalibrate_measures_the_calibration_again_and_keeps_the_entries(
    built, tmp_path, capsys
) -> None:
    config, table = built
    copy = tmp_path / "copy.json"
    copy.write_text(table.read_text())
    before = json.loads(copy.read_text())["targets"][0]
    args = ["latency-table", str(config), "--out", str(copy), *FAST]
    assert main([*args, "--recalibrate"]) == 0
    assert "0 entries measured" in capsys.readouterr().out
    after = json.loads(copy.read_text())["targets"][0]
    assert after["entries"] == before["entries"]
    (key,) = before["calibrations"]
    old, new = before["calibrations"][key]["points"], after["calibrations"][key]["points"]
    assert [p["arch"] for p in new] == [p["arch"] for p in old]
    # 4 archs fit no segment factors: the sums are the kept entries'
    assert [p["segments_ms"] for p in new] == [p["segments_ms"] for p in old]
    assert [p["measured_ms"] for p in new] != [p["measured_ms"] for p in old]  # timed anew


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--out FILE"),
        (["--out", "{out}", "--threads", "0"], "threads"),
        (["--out", "{out}", "--batch", "0"], "--batch"),
        (["--out", "{out}", "--calibration-archs", "1"], "--calibration-archs"),
        (["--out", "{folder}"], "is a directory"),
        (["--out", "{out}", "--set", "search.latency_threads=x"], "latency_threads"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, args, message):
    config = write_config(tmp_path)
    out = tmp_path / "new.json"
    args = [a.format(out=out, folder=tmp_path) for a in args]
    assert main(["latency-table", str(config), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists() and not (tmp_path / "run").exists()


def test_a_file_that_is_not_a_table_is_kept(tmp_path, capsys) -> None:
    config = write_config(tmp_path)
    other = tmp_path / "other.json"
    other.write_text('{"something": 1}')
    assert main(["latency-table", str(config), "--out", str(other)]) == 2
    assert "not a slimnas latency table" in capsys.readouterr().err
    assert other.read_text() == '{"something": 1}'


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_cuda_table_without_a_gpu_is_refused(tmp_path, capsys) -> None:
    config = write_config(tmp_path)
    out = tmp_path / "t.json"
    assert main(["latency-table", str(config), "--out", str(out), "--device", "cuda"]) == 2
    assert "CUDA GPU" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    ("setting", "shown"),
    [
        ("search.latency_threads=2", "2 threads"),
        ("search.latency_batch=4", "batch 4"),
        ("search.latency_runtime=onnxruntime", "onnxruntime"),
    ],
)
def test_a_search_refuses_a_table_of_another_target(built, tmp_path, capsys, setting, shown):
    config, table = built
    run = tmp_path / "run"
    args = ["search", str(config), "--set", f"run.dir={run}", "--set", setting]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and shown in err and "slimnas latency-table" in err
    assert not run.exists()


def test_a_latency_budget_without_a_table_is_refused(tmp_path, capsys) -> None:
    config = write_config(tmp_path)
    assert main(["search", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs a latency table" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_run_under_a_latency_budget_reports_measured_against_budget(built, tmp_path) -> None:
    config, table = built
    run = tmp_path / "run"
    args = ["--set", f"run.dir={run}", "--set", "search.methods=uniform"]
    assert main(["run", str(config), *args]) == 0
    results = json.loads((run / "results.json").read_text())
    target = LatencyTable.load(table).targets[0]
    space = Space.from_json((run / "space.json").read_text())
    for row in results["rows"]:
        assert row["latency_budget_ms"] == pytest.approx(results["rows"][0]["latency_budget_ms"])
        assert row["predicted_latency_ms"] <= row["latency_budget_ms"]
        assert 0 < row["latency_p10_ms"] <= row["latency_ms"] <= row["latency_p90_ms"]
        assert "torch, 1 thread(s), batch 1" in row["latency_setting"]
        # Rescaled by the max arch's prediction over its time in the same rounds.
        factor = predict_latency(space, space.max_arch(), target) / row["latency_max_arch_ms"]
        assert row["latency_at_table_speed_ms"] == pytest.approx(row["latency_ms"] * factor)
        assert row["latency_p10_at_table_speed_ms"] == pytest.approx(row["latency_p10_ms"] * factor)
    assert target.runtime == "torch"
    report = (run / "report.md").read_text()
    assert "Measured vs budget (ms)" in report and "Latency (ms) [p10–p90]" in report
    assert "](accuracy_vs_latency.png)" in report
    assert any(word in report for word in ("meets", "within spread", "over"))
