"""The command line: the demo runs end to end; user mistakes exit 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys

import slimnas
from slimnas.cli import main
from slimnas.io import load_tensors


def test_demo_writes_a_verified_export(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["demo", "--out", str(out), "--archs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "verified" in printed and "random1" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["supernet_vs_export_max_abs_diff"] <= 1e-4
    assert summary["torch_vs_onnxruntime_max_abs_diff"] <= 1e-4
    # The saved weights rebuild the exported model: trace a fresh ResNet-20, export the arch.
    arch = slimnas.Arch.from_json((out / "arch.json").read_text())
    model = slimnas.models.resnet20()
    space = slimnas.Space.from_json((out / "space.json").read_text())
    small = slimnas.Supernet(model, space).export(arch)
    small.load_state_dict(load_tensors(out / "model.safetensors"))
    assert sum(p.numel() for p in small.parameters()) == summary["params"]
    assert (out / "model.onnx").stat().st_size > 0


def test_unknown_model_exits_2_with_one_line(capsys) -> None:
    assert main(["demo", "--model", "resnet7"]) == 2
    err = capsys.readouterr().err.strip()
    assert "resnet7" in err and len(err.splitlines()) == 1


def test_out_path_that_is_a_file_is_refused_and_kept(tmp_path, capsys) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    assert main(["demo", "--out", str(target)]) == 2
    assert target.read_text() == "keep me"
    assert "not a directory" in capsys.readouterr().err


def test_bad_input_shape_exits_2(capsys) -> None:
    assert main(["space", "--input", "1,3,x"]) == 2
    assert "--input" in capsys.readouterr().err


def test_space_command_prints_units(capsys) -> None:
    assert main(["space", "--model", "resnet20"]) == 0
    printed = capsys.readouterr().out
    assert "layer3" in printed and "depth" in printed and "searchable units" in printed


def test_console_entry_point_exit_code() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "slimnas.cli", "demo", "--archs", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("slimnas: error: --archs")
