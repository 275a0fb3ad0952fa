"""Tests of slimnas.onnx_export: real exports, checked against onnxruntime (no mocks)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torchvision = pytest.importorskip("torchvision")

from slimnas.errors import ExportError  # noqa: E402
from slimnas.onnx_export import export_onnx, run_onnx, verify_onnx  # noqa: E402

MODELS: dict[str, Callable[[], nn.Module]] = {
    "resnet18": lambda: torchvision.models.resnet18(weights=None, num_classes=10),
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(
        weights=None, num_classes=10
    ),
}


class UnsupportedOp(nn.Module):
    """A conv followed by an FFT, which the TorchScript exporter has no symbolic for."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft2(self.conv(x)).real


class RaisingForward(nn.Module):
    """A module whose forward fails while being traced."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)  # x is 1x3x32x32: the matmul shapes do not match


def _model(name: str) -> nn.Module:
    """A random-init model whose BN statistics come from one random 16x3x64x64 batch.

    At init, mobilenet_v3_small's logits are ~1e-10, which would make a 1e-4 tolerance
    meaningless; statistics from data bring them up (~0.03 for mobilenet, ~1 for resnet) and
    make the export fold non-trivial running means and variances. The batch must not be much
    smaller: statistics from a few samples per channel are degenerate, amplify activations by
    orders of magnitude, and with them the float32 rounding differences between torch and ORT.
    """
    torch.manual_seed(0)
    model = MODELS[name]()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average: one batch sets the statistics exactly
    with torch.no_grad():
        model.train()(torch.randn(16, 3, 64, 64))
    return model.eval()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_export_matches_onnxruntime(name: str, tmp_path: Path) -> None:
    model = _model(name)
    path = export_onnx(model, torch.randn(1, 3, 64, 64), tmp_path / f"{name}.onnx")
    assert path == tmp_path / f"{name}.onnx" and path.is_file()
    fresh = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    diff = verify_onnx(model, path, fresh, atol=1e-4)
    assert 0.0 <= diff <= 1e-4
    with torch.no_grad():
        expected = model(fresh).numpy()
    assert np.abs(expected).max() > 0.01  # large enough for atol=1e-4 to mean something
    np.testing.assert_allclose(run_onnx(path, fresh.numpy(), threads=1), expected, atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.onnx"]


def test_dynamic_batch(tmp_path: Path) -> None:
    model = _model("resnet18")
    path = export_onnx(model, torch.randn(1, 3, 32, 32), tmp_path / "m.onnx")
    out = run_onnx(path, torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 10)
    assert verify_onnx(model, path, torch.randn(3, 3, 32, 32)) <= 1e-4


def test_static_batch_rejects_other_batch(tmp_path: Path) -> None:
    model = _model("mobilenet_v3_small")
    path = export_onnx(model, torch.randn(1, 3, 32, 32), tmp_path / "m.onnx", dynamic_batch=False)
    assert run_onnx(path, torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(ExportError, match=r"expects \[1, 3, 32, 32\]") as info:
        run_onnx(path, torch.randn(3, 3, 32, 32))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("module", "cause"),
    [(UnsupportedOp, "fft_fft2"), (RaisingForward, "RuntimeError")],
    ids=["unsupported-op", "forward-raises"],
)
def test_failed_export_keeps_existing_file(
    module: type[nn.Module], cause: str, tmp_path: Path
) -> None:
    target = tmp_path / "model.onnx"
    original = b"previous export, must survive a failed one\x00\xff"
    target.write_bytes(original)
    with pytest.raises(ExportError, match=rf"{module.__name__}.*{cause}") as info:
        export_onnx(module(), torch.randn(1, 3, 32, 32), target)
    assert "\n" not in str(info.value)
    assert target.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_failed_export_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ExportError):
        export_onnx(UnsupportedOp(), torch.randn(1, 3, 8, 8), tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


def test_successful_export_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"stale")
    export_onnx(_model("mobilenet_v3_small"), torch.randn(1, 3, 32, 32), target)
    assert target.read_bytes() != b"stale"
    assert run_onnx(target, torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_training_flags_restored(tmp_path: Path) -> None:
    model = _model("resnet18").train()
    model.bn1.eval()  # mixed modes, as with frozen BN, must come back as they were
    flags = {name: m.training for name, m in model.named_modules()}
    path = export_onnx(model, torch.randn(1, 3, 32, 32), tmp_path / "m.onnx")
    assert {name: m.training for name, m in model.named_modules()} == flags
    verify_onnx(model, path, torch.randn(2, 3, 32, 32))
    assert {name: m.training for name, m in model.named_modules()} == flags

    failing = UnsupportedOp().train()
    with pytest.raises(ExportError):
        export_onnx(failing, torch.randn(1, 3, 8, 8), tmp_path / "bad.onnx")
    assert all(m.training for m in failing.modules())


def test_verify_detects_mismatch(tmp_path: Path) -> None:
    model = _model("resnet18")
    path = export_onnx(model, torch.randn(1, 3, 32, 32), tmp_path / "m.onnx")
    with torch.no_grad():
        model.fc.bias.add_(0.5)
    with pytest.raises(ExportError, match=r"differs from torch by 0\.5 \(tolerance 0\.0001\)"):
        verify_onnx(model, path, torch.randn(1, 3, 32, 32))


def test_run_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        run_onnx(tmp_path / "absent.onnx", torch.randn(1, 3, 8, 8))


def test_missing_onnx_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(ExportError, match=r"pip install 'slimnas\[onnx\]'"):
        export_onnx(UnsupportedOp(), torch.randn(1, 3, 8, 8), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2_cifar"])
def test_exported_subnet_runs_in_onnxruntime_like_torch(name: str, tmp_path: Path) -> None:
    import slimnas

    torch.manual_seed(0)
    model = slimnas.models.MODELS[name]()
    x = torch.randn(2, 3, 32, 32)
    space = slimnas.trace(model, x[:1])
    supernet = slimnas.Supernet(model, space)
    with torch.no_grad():  # realistic BN statistics, so the outputs are not vanishingly small
        supernet.train()(torch.randn(16, 3, 32, 32))
    arch = space.sample(torch.Generator().manual_seed(5))
    small = supernet.export(arch).eval()
    path = export_onnx(small, x[:1], tmp_path / f"{name}.onnx")
    assert verify_onnx(small, path, x, atol=1e-4) <= 1e-4
    assert np.abs(run_onnx(path, x)).max() > 1e-2
