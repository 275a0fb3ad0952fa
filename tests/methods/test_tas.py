"""Tests of methods/tas.py: candidates, Gumbel sampling, the cost loss, expected costs, derivation,
and a real (short) search on the built-in CIFAR-10 images that resumes exactly."""

from __future__ import annotations

import pytest
import torch

import slimnas
from slimnas.cost.budget import Budget
from slimnas.cost.counting import expected_macs, macs
from slimnas.cost.latency.build import build_latency_table
from slimnas.cost.latency.predict import expected_latency, predict_latency
from slimnas.methods.setup import StageStopped
from slimnas.methods.tas import TAS
from slimnas.methods.tas_arch import (
    TASArch,
    cost_loss,
    derive,
    expected_form,
    gumbel_pair,
    snap_to_grid,
    tas_depth_choices,
    tas_width_choices,
    tau_at,
)
from slimnas.models import MODELS
from tests.cost.test_latency import FAST, TinyNet, midway_budget, traced
from tests.helpers.search import tiny_data, tiny_setup


@pytest.fixture(scope="module")
def space() -> slimnas.Space:
    model = MODELS["resnet20"](num_classes=10)
    space = slimnas.trace(model, torch.randn(1, 3, 32, 32), divisor=4)
    return space


# ------------------------------------------------------------------------------ candidates
def test_width_candidates_are_the_papers_sets() -> None:
    assert tas_width_choices(16) == (4, 6, 8, 9, 11, 12, 14, 16)
    assert tas_width_choices(32) == (9, 12, 16, 19, 22, 25, 28, 32)
    assert tas_width_choices(64) == (19, 25, 32, 38, 44, 51, 57, 64)
    assert tas_width_choices(2) == (1, 2)  # few channels: fewer candidates, never 0
    with pytest.raises(slimnas.ConfigError):
        tas_width_choices(0)


def test_depth_candidates_follow_the_official_rule() -> None:
    assert tas_depth_choices(3) == (1, 2, 3)
    assert tas_depth_choices(9) == (1, 3, 5, 7, 9)
    assert tas_depth_choices(18) == (1, 3, 5, 7, 9, 11, 13, 15, 17, 18)


def test_candidates_are_snapped_to_the_spaces_grid(space) -> None:
    assert snap_to_grid(tas_width_choices(16), (4, 8, 12, 16)) == (4, 8, 12, 16)
    arch = TASArch(space)
    candidates = dict(zip(arch.names, arch.candidates))
    for name, values in candidates.items():
        assert set(values) <= set(space.units[name].choices)
        assert max(values) == max(space.units[name].choices)
    # 64 channels on a grid of 4 with AutoSlim's 12 steps: the paper's ratios, nearest choice.
    assert candidates["layer3.0.conv2"] == (20, 28, 32, 36, 44, 52, 60, 64)
    assert candidates["layer1"] == (1, 2, 3)
    assert "layer1" not in TASArch(space, depth=False).names


# ------------------------------------------------------------------------------- sampling
def test_two_sampled_weights_sum_to_one_and_keep_their_gradient() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, requires_grad=True)
    for tau in (10.0, 1.0, 0.1):
        index, weights = gumbel_pair(logits, tau, generator)
        assert len(index) == 2 and index[0] != index[1]
        assert torch.isclose(weights.sum(), torch.tensor(1.0))
    (weights[0] * 3).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_weights_concentrate_on_the_argmax_as_tau_falls() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.tensor([0.0, 0.5, 9.0, 1.0])  # softmax puts 0.9995 on index 2

    def heaviest(tau: float) -> tuple[float, float]:
        top, hits = [], 0
        for _ in range(300):
            index, weights = gumbel_pair(logits, tau, generator)
            top.append(float(weights.max()))
            hits += index[int(weights.argmax())] == 2
        return sum(top) / len(top), hits / 300

    weight_cold, hits_cold = heaviest(0.01)
    weight_hot, _ = heaviest(100.0)
    assert weight_cold > 0.99 and hits_cold > 0.95
    assert weight_hot < 0.6  # a hot sample mixes its two widths almost evenly


def test_temperature_schedules_run_from_max_to_min() -> None:
    linear = [tau_at(e, 10, 10.0, 0.1, "linear") for e in range(10)]
    assert linear[0] == 10.0 and abs(linear[-1] - 0.1) < 1e-12
    assert all(a > b for a, b in zip(linear, linear[1:]))
    cosine = [tau_at(e, 10, 5.0, 0.1, "cosine") for e in range(10)]
    assert cosine[0] == 5.0 and all(a > b for a, b in zip(cosine, cosine[1:]))
    with pytest.raises(slimnas.ConfigError):
        tau_at(0, 10, 5.0, 0.1, "step")


# ------------------------------------------------------------------------------ cost loss
def test_cost_loss_pushes_down_above_up_below_and_rests_inside_the_band() -> None:
    def gradient(actual: float) -> float:
        expected = torch.tensor(50.0, requires_grad=True)
        cost_loss(expected, actual, target=100.0, tolerance=0.05).backward()
        return float(expected.grad)

    assert gradient(120.0) > 0  # over the budget: lowering E[cost] lowers the loss
    assert gradient(90.0) < 0  # under (1 - t)·R: raising E[cost] lowers the loss
    assert gradient(97.0) == 0.0 and gradient(100.0) == 0.0  # inside [(1 - t)R, R]


def one_hot_probs(space, arch, dtype=torch.float64) -> dict[str, torch.Tensor]:
    probs = {}
    for name, unit in space.searchable.items():
        p = torch.zeros(len(unit.choices), dtype=dtype)
        p[unit.choices.index(arch[name])] = 1.0
        probs[name] = p
    return probs


def test_expected_macs_of_a_one_hot_distribution_are_the_exact_macs(space) -> None:
    generator = torch.Generator().manual_seed(3)
    for _ in range(10):
        arch = space.sample(generator)
        assert float(expected_macs(space, one_hot_probs(space, arch))) == pytest.approx(
            macs(space, arch), rel=1e-12
        )


def test_expected_macs_gradient_matches_finite_differences(space) -> None:
    arch = TASArch(space, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        for logits in arch.logits:
            logits.normal_(0, 1.0)
    expected_macs(space, arch.probs()).backward()
    eps = 1e-6
    for logits in (arch.logits[0], arch.logits[-1], arch.logits[5]):
        for i in range(len(logits)):
            with torch.no_grad():
                logits[i] += eps
                up = float(expected_macs(space, arch.probs()))
                logits[i] -= 2 * eps
                down = float(expected_macs(space, arch.probs()))
                logits[i] += eps
            assert float(logits.grad[i]) == pytest.approx((up - down) / (2 * eps), rel=1e-5)


def test_depth_probabilities_weigh_blocks_by_the_chance_they_run(space) -> None:
    # One-hot widths, depth 1, 2 or 3 of the last stage equally likely: E[MACs] is the mean.
    arch = space.sample(torch.Generator().manual_seed(5))
    probs = one_hot_probs(space, arch)
    probs["layer3"] = torch.full((3,), 1 / 3, dtype=torch.float64)
    exact = [macs(space, arch.replace(layer3=d)) for d in (1, 2, 3)]
    assert len(set(exact)) == 3
    assert float(expected_macs(space, probs)) == pytest.approx(sum(exact) / 3, rel=1e-12)


# ----------------------------------------------------------------------------- derivation
def test_derive_steps_the_least_probable_units_down_until_the_budget_fits(space) -> None:
    arch = TASArch(space)
    with torch.no_grad():
        for logits in arch.logits:
            logits.zero_()
            logits[-1] = 1.0  # argmax: the max arch
        arch.logits[arch.names.index("layer3.0.conv2")].copy_(
            torch.tensor([0, 0, 0, 0, 0, 0, 0.9, 1.0])  # its next step down is nearly as likely
        )
    roomy = Budget.parse("macs<=100%", space)
    assert derive(arch, roomy) == (space.max_arch(), [])
    budget = Budget.parse("macs<=90%", space)
    found, steps = derive(arch, budget)
    assert budget.fits(space, found) and steps
    assert steps[0] == {"unit": "layer3.0.conv2", "from": 64, "to": 60}
    tight = Budget.parse("macs<=1K", space)
    with pytest.raises(slimnas.ConfigError, match="cannot meet"):
        derive(arch, tight)


# ------------------------------------------------------------------------- a real search
def new_search(space, folder=None, **recipe):
    torch.manual_seed(0)
    supernet = slimnas.Supernet(MODELS["resnet20"](num_classes=10), space)
    setup = tiny_setup(folder, tiny_data(train=512, heldout=200), epochs=2, **recipe)
    return TAS(arch_lr=0.05), supernet, setup


def test_a_search_learns_logits_meets_the_budget_and_scores_the_arch(space) -> None:
    tas, supernet, setup = new_search(space)
    (result,) = tas.fit(supernet, setup).search(["macs<=50%"])
    step = tas.steps["macs<=50%"]
    before = TASArch(space, generator=torch.Generator().manual_seed(0))
    moved = [float((a - b).detach().abs().max()) for a, b in zip(step.arch.logits, before.logits)]
    assert min(moved) > 0  # every unit's logits learned
    budget = Budget.parse("macs<=50%", space)
    assert result.method == "tas" and result.costs["macs"] <= budget.limit
    assert 0 <= result.accuracy <= 1
    assert set(result.info["probabilities"]) == set(step.arch.names)
    assert step.supernet.arch == space.max_arch()  # left in hard mode at the max arch
    assert supernet.arch == space.max_arch()  # the fitted weights are copied, not trained


def test_an_interrupted_search_resumes_to_the_same_logits_and_weights(space, tmp_path) -> None:
    tas, supernet, setup = new_search(space)
    tas.fit(supernet, setup).search(["macs<=50%"])
    whole = tas.steps["macs<=50%"]

    run = tmp_path / "tas"
    tas, supernet, setup = new_search(space, run, max_steps=5)
    with pytest.raises(StageStopped):
        tas.fit(supernet, setup).search(["macs<=50%"])
    tas, supernet, setup = new_search(space, run)  # a new process, say
    tas.fit(supernet, setup).search(["macs<=50%"])
    again = tas.steps["macs<=50%"]
    for a, b in zip(whole.arch.logits, again.arch.logits):
        assert torch.equal(a, b)
    weights = whole.supernet.state_dict()
    for name, tensor in again.supernet.state_dict().items():
        assert torch.equal(tensor, weights[name]), name


def test_a_budget_without_an_expected_form_is_refused(space) -> None:
    tas, supernet, setup = new_search(space)
    tas.fit(supernet, setup)
    budget = Budget("latency_ms", 3.0, "latency_ms<=3")  # a latency budget without its table
    with pytest.raises(slimnas.ConfigError, match="latency table"):
        tas.make_step(supernet, [], budget, 4, 2)


def test_a_latency_budget_searches_on_the_tables_expected_latency(tmp_path) -> None:
    model, space, example = traced(TinyNet)  # a small residual net and a real torch table
    table = tmp_path / "table.json"
    target = build_latency_table(model, space, example, table, runtime="torch", **FAST).target
    budget = midway_budget(space, target)
    arch = TASArch(space, generator=torch.Generator().manual_seed(1)).double()
    form = expected_form(budget)
    assert float(form(space, arch.probs()).detach()) == pytest.approx(
        float(expected_latency(space, arch.probs(), target).detach())
    )
    form(space, arch.probs()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in arch.logits)
    found, _ = derive(arch, budget)
    assert predict_latency(space, found, target) <= budget.limit
