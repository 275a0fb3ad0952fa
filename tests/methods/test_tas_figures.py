"""`distribution_figures`: the per-step convergence figures a TAS search logs (issue 18)."""

from __future__ import annotations

import math

import pytest
import torch

import slimnas
from slimnas.methods.tas import TASArch, distribution_figures
from slimnas.models import MODELS
from slimnas.space.units import DepthUnit


@pytest.fixture(scope="module")
def arch() -> TASArch:
    torch.manual_seed(0)
    model = MODELS["resnet20"](num_classes=10)
    space = slimnas.trace(model, torch.randn(1, 3, 32, 32), divisor=4)
    return TASArch(space, depth=True, generator=torch.Generator().manual_seed(0))


def test_uniform_logits_read_entropy_one_and_top_one_over_n(arch) -> None:
    with torch.no_grad():
        for logits in arch.logits:
            logits.zero_()
    figures = distribution_figures(arch)
    sizes = {kind: [] for kind in ("width", "depth")}
    for name, candidates, _ in arch.units():
        depth = isinstance(arch.space.units[name], DepthUnit)
        sizes["depth" if depth else "width"].append(len(candidates))
    for kind, ns in sizes.items():
        assert ns, f"resnet20 has searched {kind} units"
        assert figures[f"{kind}_entropy"] == pytest.approx(1.0)
        assert figures[f"{kind}_top"] == pytest.approx(sum(1 / n for n in ns) / len(ns))


def test_decided_logits_read_entropy_zero_and_top_one(arch) -> None:
    with torch.no_grad():
        for logits in arch.logits:
            logits.zero_()
            logits[-1] = 50.0
    figures = distribution_figures(arch)
    for kind in ("width", "depth"):
        assert figures[f"{kind}_entropy"] < 1e-6
        assert figures[f"{kind}_top"] == pytest.approx(1.0)


def test_a_width_only_search_reports_no_depth_figure(arch) -> None:
    width_only = TASArch(arch.space, depth=False)
    figures = distribution_figures(width_only)
    assert math.isnan(figures["depth_entropy"]) and math.isnan(figures["depth_top"])
    assert 0.99 < figures["width_entropy"] <= 1.0
