"""A damaged file of each kind a finished run holds (truncated, one bit flipped, or a pickle whose
loading would create a marker file): ``slimnas run --resume`` either recomputes it and ends
with the same results.json, or stops with one line naming it (exit 2); no code ever runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from slimnas.cli import main
from slimnas.io import load_json, load_tensors
from slimnas.pipeline import Pipeline
from tests.helpers.faults import CORRUPTIONS, comparable, corrupt, tiny_run_config, toml_of

BUDGET = "macs-le-60pct"
# One file of each kind the pipeline writes (stage by stage), then the method's own files.
KINDS = (
    "config.json",
    "space.json",
    "supernet/ckpt-00000003/state.json",
    "supernet/ckpt-00000003/tensors.safetensors",
    "supernet/metrics.csv",
    "supernet/final/supernet.json",
    "supernet/final/supernet.safetensors",
    "supernet/final/scores.json",
    "search/uniform.json",
    "search/random.json",
    "search/random.scored.json",
    "search/random.state.json",
    f"exports/uniform/{BUDGET}/arch.json",
    f"exports/uniform/{BUDGET}/model.safetensors",
    f"models/uniform/{BUDGET}/seed0/ckpt-00000003/state.json",
    f"models/uniform/{BUDGET}/seed0/ckpt-00000003/tensors.safetensors",
    f"models/uniform/{BUDGET}/seed0/metrics.csv",
    f"models/uniform/{BUDGET}/seed0/arch.json",
    f"models/uniform/{BUDGET}/seed0/model.safetensors",
    f"models/uniform/{BUDGET}/seed0/result.json",
    "results.json",
)
# The files every resume reads back.
READ_BACK = (
    "supernet/final/*.safetensors",
    "supernet/final/scores.json",
    "search/uniform.json",
    "search/random.json",
    "exports/*/*/*.json",
    "exports/*/*/*.safetensors",
    "models/*/*/*/*.json",
    "models/*/*/*/*.safetensors",
)
# The default suite: a few kinds, each damaged one way; slow: every kind every way.
ONE_WAY = [
    ("config.json", "truncate"),
    ("supernet/ckpt-00000003/tensors.safetensors", "pickle"),
    ("supernet/final/supernet.safetensors", "bitflip"),
    ("search/random.json", "bitflip"),
    ("search/random.state.json", "pickle"),
    (f"exports/uniform/{BUDGET}/model.safetensors", "pickle"),
    (f"models/uniform/{BUDGET}/seed0/model.safetensors", "bitflip"),
    (f"models/uniform/{BUDGET}/seed0/result.json", "bitflip"),
]
EVERY_WAY = [(k, c) for k in KINDS for c in CORRUPTIONS if (k, c) not in ONE_WAY]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("corrupt") / "run"
    Pipeline(tiny_run_config(run_dir), progress=False).run()
    return run_dir, json.loads((run_dir / "results.json").read_text())


def resume_damaged(finished, tmp_path: Path, kind: str, how: str, capsys) -> None:
    original, results = finished
    run_dir = tmp_path / "run"
    shutil.copytree(original, run_dir)
    config = tmp_path / "run.toml"
    config.write_text(toml_of(tiny_run_config(run_dir)))
    marker = tmp_path / "code-ran"
    damaged = run_dir / kind
    assert damaged.exists(), f"the tiny run no longer writes {kind}"
    corrupt(damaged, how, marker)
    capsys.readouterr()

    status = main(["run", str(config), "--resume"])

    err = capsys.readouterr().err
    assert not marker.exists(), f"loading the damaged {kind} ran code"
    assert "Traceback" not in err
    if status != 0:  # stopped: one line that names the damaged file
        assert status == 2
        lines = [line for line in err.splitlines() if line.startswith("slimnas: error:")]
        assert len(lines) == 1 and kind.split("/")[-1] in lines[0], err
        return
    after = json.loads((run_dir / "results.json").read_text())
    assert comparable(after) == comparable(results), f"results changed after damaging {kind}"
    # What a resume reads back is whole again (a finished training's checkpoints, its metrics
    # and a finished search's state are not read again, so they may stay damaged).
    for pattern in READ_BACK:
        for path in run_dir.glob(pattern):
            load_tensors(path) if path.suffix == ".safetensors" else load_json(path)


@pytest.mark.parametrize(("kind", "how"), ONE_WAY)
def test_a_damaged_file_is_recomputed_or_named(finished, tmp_path, kind, how, capsys) -> None:
    resume_damaged(finished, tmp_path, kind, how, capsys)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "how"), EVERY_WAY)
def test_every_damage_is_recomputed_or_named(finished, tmp_path, kind, how, capsys) -> None:
    resume_damaged(finished, tmp_path, kind, how, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_damaged_newest_checkpoint_resumes_from_the_one_before(tmp_path, how, caplog) -> None:
    every_step = {"supernet__checkpoint_every": 1}
    Pipeline(tiny_run_config(tmp_path / "whole", **every_step), progress=False).run()
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    run_dir = tmp_path / "stopped"
    config = tmp_path / "run.toml"
    config.write_text(toml_of(tiny_run_config(run_dir, supernet__max_steps=2, **every_step)))
    assert main(["run", str(config)]) == 0  # stopped at max_steps, after checkpoints 1 and 2
    newest = run_dir / "supernet" / "ckpt-00000002" / "tensors.safetensors"
    corrupt(newest, how, tmp_path / "code-ran")
    config.write_text(toml_of(tiny_run_config(run_dir, **every_step)))
    assert main(["run", str(config), "--resume"]) == 0
    assert "ckpt-00000002" in caplog.text  # the warning names the one set aside
    assert (run_dir / "supernet" / "ckpt-00000002.corrupt").exists()
    assert not (tmp_path / "code-ran").exists()
    after = json.loads((run_dir / "results.json").read_text())
    assert comparable(after) == comparable(whole)


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_damaged_latency_table_is_one_line(tmp_path, how, capsys) -> None:
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"format": "slimnas-latency-table", "layouts": {}, "targets": []}))
    corrupt(table, how, tmp_path / "code-ran")
    config = tmp_path / "run.toml"
    config.write_text(toml_of(tiny_run_config(tmp_path / "run", search__latency_table=str(table))))
    capsys.readouterr()
    for argv in (["run", str(config)], ["latency-table", str(config)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "table.json" in err, err
    assert not (tmp_path / "code-ran").exists() and not (tmp_path / "run").exists()
