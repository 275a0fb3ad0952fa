"""Tests of methods/joslim.py: the scalarisation and weight search on problems with known answers,
and the Joslim step and method on a small ResNet-20 supernet trained on real images.

The supernet runs at 16×16 (the built-in CIFAR-10 subset, every other pixel) so that a training
step with four archs takes a few milliseconds on one thread.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import sys

import pytest
import torch

import slimnas
from slimnas.config import SupernetConfig
from slimnas.cost.budget import Budget
from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, BatchLoader, load_builtin, normalize
from slimnas.data.prepare import TrainingData
from slimnas.errors import CheckpointError, ConfigError
from slimnas.methods.joslim import (
    Joslim,
    JoslimStep,
    ObjectiveModels,
    pareto_front,
    tchebyshev,
    visited_archs,
    weight_search,
)
from slimnas.methods.scoring import Score
from slimnas.methods.setup import Setup
from slimnas.models import MODELS
from slimnas.train import Trainer, read_metrics
from tests.helpers.search import tiny_setup

needs_botorch = pytest.mark.skipif(
    importlib.util.find_spec("botorch") is None,
    reason="botorch is not installed (pip install 'slimnas[joslim]')",
)

SIZE = 16  # image side
TAU = 2  # refit_every in the training tests
WARMUP = 2  # uniform-width archs before the GP: the models are first fitted at step TAU


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_images(start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_builtin(train=True)
    part = slice(start, start + count)
    step = 32 // SIZE
    return images[part, :, ::step, ::step].contiguous(), labels[part].clone()


def loader(count: int, batch: int = 32) -> BatchLoader:
    images, labels = small_images(0, count)
    return BatchLoader(
        images,
        labels,
        batch,
        augment=True,
        padding=2,
        drop_last=True,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )


def heldout(count: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    images, labels = small_images(4000, count)
    return [(normalize(images, CIFAR10_MEAN, CIFAR10_STD), labels)]


def joslim_setup() -> Setup:
    """128 training and 64 held-out 16x16 images, one epoch of batches of 32."""
    data = TrainingData(
        train=small_images(0, 128),
        heldout=small_images(4000, 64),
        test=None,
        num_classes=10,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )
    return tiny_setup(data=data)


def supernet() -> slimnas.Supernet:
    """ResNet-20 with its depth units left searchable (Joslim must keep them at default)."""
    torch.manual_seed(0)
    model = MODELS["resnet20"](num_classes=10)
    return slimnas.Supernet(model, slimnas.trace(model, torch.randn(1, 3, SIZE, SIZE)))


def joslim_step(net: slimnas.Supernet, cost: str = "macs") -> JoslimStep:
    return JoslimStep(net, heldout(), cost=cost, refit_every=TAU, warmup=WARMUP, pool=128)


# ------------------------------------------------------------------------------ scalarisation
def balanced_point(weight: float, reference: float) -> float:
    """The x in [0, 1] where (1−λ)(x² − z) = λ((x − 1)² − z), by bisection: the left side
    grows and the right side shrinks with x, so the max of the two is smallest there."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if (1 - weight) * (mid**2 - reference) < weight * ((mid - 1) ** 2 - reference):
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# With z = −3 the optimum is inside (0, 1) only for weights in (3/7, 4/7), at the ends otherwise.
@pytest.mark.parametrize(
    "reference, weight",
    [(0.0, 0.1), (0.0, 0.3), (0.0, 0.5), (0.0, 0.8), (-3.0, 0.1), (-3.0, 0.45), (-3.0, 0.55)],
)
def test_scalarisation_picks_the_known_optimum(reference: float, weight: float):
    x = torch.linspace(0, 1, 20001, dtype=torch.float64)
    best = float(x[torch.argmin(tchebyshev(x**2, (x - 1) ** 2, weight, reference))])
    assert best == pytest.approx(balanced_point(weight, reference), abs=1e-4)
    if reference == 0.0:  # closed form: x* = √λ / (√λ + √(1 − λ))
        root = math.sqrt(weight) / (math.sqrt(weight) + math.sqrt(1 - weight))
        assert best == pytest.approx(root, abs=1e-4)


def test_more_weight_on_the_second_objective_moves_the_optimum_towards_its_minimum():
    x = torch.linspace(0, 1, 2001, dtype=torch.float64)
    optima = [
        float(x[torch.argmin(tchebyshev(x**2, (x - 1) ** 2, w, -3.0))])
        for w in torch.linspace(0, 1, 41).tolist()
    ]
    assert optima == sorted(optima) and optima[0] == 0.0 and optima[-1] == 1.0
    assert len(set(optima)) > 5


def test_scalarisation_reaches_a_non_convex_front():
    # A front bulging away from the origin (a quarter circle): any weighted sum picks an end,
    # the Tchebyshev scalarisation with equal weights picks the middle.
    angles = torch.linspace(0, math.pi / 2, 91, dtype=torch.float64)
    first, second = torch.cos(angles), torch.sin(angles)
    assert int(torch.argmin(tchebyshev(first, second, 0.5, reference=0.0))) == 45
    for weight in (0.3, 0.5, 0.7):
        assert int(torch.argmin((1 - weight) * first + weight * second)) in (0, 90)


def test_pareto_front_keeps_the_non_dominated_points_by_cost():
    losses = [3.0, 1.0, 2.0, 2.5, 1.0, 0.5, 2.0]
    costs = [1.0, 3.0, 2.0, 1.5, 3.0, 5.0, 2.5]
    # 4 ties with 1 (the first is kept); 6 is dominated by 2.
    assert pareto_front(losses, costs) == [0, 3, 2, 1, 5]
    assert pareto_front([], []) == []


@needs_botorch
def test_weight_search_lands_the_predicted_cost_on_target():
    generator = torch.Generator().manual_seed(0)
    x = 0.25 + 0.75 * torch.rand(30, 2, generator=generator, dtype=torch.float64)
    models = ObjectiveModels(x, ((1 - x) ** 2).sum(1), x.mean(1))
    side = torch.linspace(0.25, 1.0, 41, dtype=torch.float64)
    pool = torch.cartesian_prod(side, side)
    loss_ucb, cost_ucb = models.ucb(pool)
    predicted = models.predicted_cost(pool)
    assert torch.allclose(predicted, pool.mean(1), atol=0.01)  # the cost model learnt the cost
    weights = []
    for target in (0.3, 0.45, 0.6, 0.75, 0.9):
        choice = weight_search(loss_ucb, cost_ucb, lambda i: float(predicted[i]), target)
        assert choice.hit and abs(float(predicted[choice.index]) - target) <= 0.02
        assert choice.cost == float(predicted[choice.index]) and choice.steps <= 10
        weights.append(choice.weight)
    assert weights == sorted(weights, reverse=True)  # cheaper targets need more weight on cost
    # A target no candidate can reach gives the closest one, marked as a miss.
    low = weight_search(loss_ucb, cost_ucb, lambda i: float(predicted[i]), 0.0)
    assert not low.hit and low.cost == pytest.approx(float(predicted.min()), abs=0.02)
    # Unavailable candidates are never chosen.
    available = torch.ones(len(pool), dtype=torch.bool)
    available[low.index] = False
    again = weight_search(
        loss_ucb, cost_ucb, lambda i: float(predicted[i]), 0.0, available=available
    )
    assert again.index != low.index


# ------------------------------------------------------------------------------- Joslim step
def train_step(net, step, run_dir, until: int | None = None, resume: bool = False) -> Trainer:
    trainer = Trainer(
        net,
        loader(256),
        step_fn=step,
        epochs=1,
        lr=0.05,
        run_dir=run_dir,
        checkpoint_every=1,
        resume=resume,
        progress=False,
    )
    trainer.fit(until_step=until)
    return trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A Joslim step trained for 8 steps (τ = 2) without interruption."""
    net = supernet()
    step = joslim_step(net)
    run_dir = tmp_path_factory.mktemp("joslim-run")
    train_step(net, step, run_dir)
    return net, step, run_dir


@needs_botorch
def test_the_models_are_refitted_every_tau_steps_on_a_growing_visited_set(trained):
    net, step, run_dir = trained
    # Rounds at steps 0, 2, 4, 6; the first holds only the warm-up's uniform widths.
    assert [call for call, _ in step.fits] == [2, 4, 6]
    sizes = [size for _, size in step.fits]
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]
    # The last round's picks are visited (a pick may be a front arch visited before the fit).
    assert all(arch in step.archs for arch in step.current) and len(step.archs) >= sizes[-1]
    # Every arch visited before the last fit was re-scored for it; the ones picked since not.
    assert all(loss is not None and loss > 0 for loss in step.losses[: sizes[-1]])
    # The warm-up archs are uniform widths; then the max arch; the min arch came first.
    space = net.space
    assert step.archs[0] == step.min_arch
    assert step.max_arch in step.archs
    for arch in step.archs[1 : 1 + WARMUP]:
        ratios = {arch[u.name] / u.max_channels for u in space.channel_units()}
        assert max(ratios) - min(ratios) <= 0.5  # one multiplier, rounded per unit
    # GP picks: one target each, distinct within a round, never the max or min arch.
    assert len(step.picks) == 2 * 3 - 1  # the first GP round also trained the max arch
    for call, target, weight, cost, hit in step.picks:
        assert call in (2, 4, 6) and step.low <= target <= 1.0 and 0.0 <= weight <= 1.0
        assert hit == (abs(cost - target) <= step.tolerance)
    assert len(set(step.current)) == len(step.current) == 2
    assert step.max_arch not in step.current and step.min_arch not in step.current
    # Widths only: depth units keep their default in every visited arch.
    for arch in step.archs:
        assert all(arch[u.name] == u.default for u in space.depth_units())
    # The metrics log the visited count at every step.
    rows = read_metrics(run_dir / "metrics.csv")
    visited = [float(row["visited"]) for row in rows]
    assert len(visited) == 8 and visited == sorted(visited) and visited[-1] == len(step.archs)


@needs_botorch
def test_a_resumed_step_makes_the_same_choices(trained, tmp_path):
    net, step, _ = trained
    # Stop in the middle of the round chosen at step 2, resume in a fresh process's objects.
    first = supernet()
    train_step(first, joslim_step(first), tmp_path, until=3)
    again = supernet()
    resumed = joslim_step(again)
    train_step(again, resumed, tmp_path, resume=True)
    assert resumed.state_dict() == step.state_dict()
    assert all(
        torch.equal(a, b) for a, b in zip(again.state_dict().values(), net.state_dict().values())
    )


@needs_botorch
def test_a_state_dict_round_trip_gives_the_same_next_choices(trained):
    net, step, _ = trained
    state = json.loads(json.dumps(step.state_dict()))  # JSON-able, and survives the trip
    going_on = copy.deepcopy(step)  # with its own copy of the supernet
    fresh = joslim_step(copy.deepcopy(net))
    fresh.load_state_dict(state)
    assert fresh.archs == step.archs and fresh.current == step.current
    assert fresh.choose() == going_on.choose()
    assert fresh.state_dict() == going_on.state_dict()
    assert len(fresh.fits) == len(step.fits) + 1


def test_a_state_of_another_space_or_cost_is_refused(trained):
    net, step, _ = trained
    state = step.state_dict()
    with pytest.raises(CheckpointError, match="another space or cost"):
        joslim_step(net, cost="memory").load_state_dict(state)
    narrow = slimnas.Supernet(MODELS["resnet20"](num_classes=10), net.space.fix("conv1"))
    with pytest.raises(CheckpointError, match="another space or cost"):
        joslim_step(narrow).load_state_dict(state)


# ---------------------------------------------------------------------------- Joslim method
def fit_joslim(cost: str) -> Joslim:
    net = supernet()
    method = Joslim(cost=cost, refit_every=TAU, warmup=WARMUP, pool=128)
    return method.fit(net, joslim_setup())


@pytest.fixture(scope="module")
def macs_joslim() -> Joslim:
    return fit_joslim("macs")


@needs_botorch
def test_joslim_fit_then_search_returns_archs_within_budget(macs_joslim):
    method = macs_joslim
    space = method.supernet.space
    texts = ["macs<=50%", "macs<=30%", "params<=60%"]
    results = method.search(texts)
    assert [r.budget for r in results] == texts
    for result in results:
        budget = Budget.parse(result.budget, space)
        assert result.method == "joslim" and budget.fits(space, result.arch)
        assert 0.0 <= result.accuracy <= 1.0 and result.loss > 0
        assert result.info["source"] in ("front", "visited")
        assert all(result.arch[u.name] == u.default for u in space.depth_units())
    front = method.front()
    assert front and [p["macs"] for p in front] == sorted(p["macs"] for p in front)
    assert results[0].info["front_points"] == [
        {k: v for k, v in p.items() if k != "arch"} for p in front
    ]
    # Per budget, the front arch that fits with the lowest recalibrated loss.
    for result, text in zip(results[:2], texts[:2]):
        budget = Budget.parse(text, space)
        fitting = [p for p in front if p["macs"] <= budget.limit]
        if fitting:
            assert result.loss == min(p["loss"] for p in fitting)
    assert method.supernet.arch == space.max_arch()


@needs_botorch
def test_joslim_attached_with_saved_visited_archs_searches_alike(macs_joslim):
    method = macs_joslim
    state = json.loads(json.dumps(method.step.state_dict()))
    archs = visited_archs(state, method.supernet.space)
    assert archs == method.step.archs
    again = Joslim().attach(method.supernet, method.setup, visited=archs)
    assert again.search(["macs<=50%"]) == method.search(["macs<=50%"])
    with pytest.raises(ConfigError, match="visited"):
        Joslim(bn="batch").attach(method.supernet, method.setup).search(["macs<=50%"])


@needs_botorch
def test_joslim_memory_front(tmp_path):
    method = fit_joslim("memory")
    space, step = method.supernet.space, method.step
    peak = slimnas.peak_memory(space, space.max_arch())
    for arch in step.archs:
        assert step.cost_ratio(arch) == slimnas.peak_memory(space, arch) / peak
    assert step.low == slimnas.peak_memory(space, step.min_arch) / peak
    assert all(step.low <= target <= 1.0 for _, target, *_ in step.picks)
    (result,) = method.search(["memory<=60%"])
    assert result.costs["memory"] <= 0.6 * peak
    front = method.front()
    assert [p["memory"] for p in front] == sorted(p["memory"] for p in front)
    assert front[0]["memory"] == min(slimnas.peak_memory(space, a) for a in step.archs)


class WidthRuleScorer:
    """A scorer with a known answer (as in test_autoslim): loss = 1 + Σ_u w_u (1 − c_u/max_u)²
    with distinct weights, accuracy = 2 − loss; BatchNorm mode "batch"."""

    bn = "batch"
    batches: list = []

    def __init__(self, space: slimnas.Space):
        units = space.channel_units()
        draws = torch.rand(len(units), generator=torch.Generator().manual_seed(0))
        self.weights = {u.name: (0.5 + float(d)) / len(units) for u, d in zip(units, draws)}
        self.space = space

    def loss(self, arch) -> float:
        units = self.space.units
        return 1.0 + sum(
            w * (1.0 - arch[n] / units[n].max_channels) ** 2 for n, w in self.weights.items()
        )

    def score_many(self, archs):
        return [Score(2.0 - self.loss(a), self.loss(a), 100) for a in archs]


@pytest.mark.parametrize("cost", ["macs", "memory"])
def test_joslim_search_takes_the_best_front_arch_within_each_budget(cost: str):
    net = supernet()
    space = net.space
    generator = torch.Generator().manual_seed(3)
    base = space.max_arch()
    visited = [
        base.merged(
            {
                u.name: u.choices[int(torch.randint(len(u.choices), (), generator=generator))]
                for u in space.channel_units()
            }
        )
        for _ in range(40)
    ]
    method = Joslim(cost=cost, bn="batch").attach(net, joslim_setup(), visited=visited)
    scorer = method.scorer = WidthRuleScorer(space)
    front = method.front()
    # The front by hand: the visited archs (with the width extremes) no other one dominates.
    width_min = base.merged({u.name: u.choices[0] for u in space.channel_units()})
    archs = list(dict.fromkeys([*visited, width_min, base]))
    costs = [slimnas.Budget.parse(f"{cost}<=100%", space).cost(space, a) for a in archs]
    expected = [archs[i] for i in pareto_front([scorer.loss(a) for a in archs], costs)]
    assert [p["arch"] for p in front] == [dict(a) for a in expected]
    assert len(front) >= 3
    texts = [f"{cost}<=70%", f"{cost}<=55%", "params<=30%"]
    sources = []
    for result, text in zip(method.search(texts), texts):
        budget = Budget.parse(text, space)
        # The best front arch that fits; else (a budget on another metric) the best visited one.
        fitting = [a for a in expected if budget.fits(space, a)]
        source = "front" if fitting else "visited"
        fitting = fitting or [a for a in archs if budget.fits(space, a)]
        assert result.arch == min(fitting, key=scorer.loss)
        assert result.loss == scorer.loss(result.arch) and result.info["source"] == source
        sources.append(source)
    # Memory has few distinct values (the stem's width sets the peak): the width-min arch ties
    # with better ones and leaves the front, so a tight params budget falls back.
    assert sources == ["front", "front", "front" if cost == "macs" else "visited"]


def test_a_budget_only_shallower_archs_meet_is_refused(macs_joslim):
    space = macs_joslim.supernet.space
    widths_only = slimnas.macs(space, macs_joslim.step.min_arch)
    assert slimnas.macs(space, space.min_arch()) < widths_only
    with pytest.raises(slimnas.BudgetError, match="widths only"):
        macs_joslim.search([f"macs<={0.9 * widths_only / 1e6:.4f}M"])


# ------------------------------------------------------------------------------------ errors
def test_joslim_refuses_bad_options():
    with pytest.raises(ConfigError, match="search.joslim.cost must be one of 'macs', 'memory'"):
        Joslim(cost="params")
    with pytest.raises(ConfigError, match="sandwich_n >= 3"):
        Joslim().check_recipe(SupernetConfig(sandwich_n=2))
    with pytest.raises(ConfigError, match="before search"):
        Joslim().search(["macs<=50%"])


def test_joslim_without_botorch_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "botorch", None)  # makes `import botorch` fail
    x = torch.rand(4, 2, dtype=torch.float64)
    with pytest.raises(ConfigError, match=r"pip install 'slimnas\[joslim\]'"):
        ObjectiveModels(x, x.sum(1), x.mean(1))
    with pytest.raises(ConfigError, match=r"pip install 'slimnas\[joslim\]'"):
        joslim_step(supernet())  # before any training


def test_refit_interval_follows_the_authors_rule():
    # steps × M / τ ≈ visits: 30 epochs of 390 steps, M = 2, 1000 visits → τ = 23.
    recipe = SupernetConfig(epochs=30)
    assert Joslim(visits=1000).refit_interval(390, recipe) == 23
    assert Joslim(refit_every=5).refit_interval(390, recipe) == 5
    assert Joslim(visits=10**6).refit_interval(10, SupernetConfig(epochs=1)) == 1


@needs_botorch
def test_the_chosen_and_min_losses_follow_the_recipes_sandwich_loss():
    # The default recipe averages the non-max archs' losses (each 1 / (M + 1)), as the sandwich
    # step does; "sum" keeps the authors' weight of 1. The returned total stays unweighted.
    images, labels = next(iter(loader(64)))
    for sandwich_loss, weight in (("mean", 1 / 3), ("sum", 1.0)):
        recipe = SupernetConfig(sandwich_loss=sandwich_loss)
        net = supernet()
        step = Joslim().training_step(net, range(10), heldout(), recipe)
        assert step.student_weight == pytest.approx(weight)
        seen: list[float] = []
        total, _ = step(net, (images, labels), lambda loss, seen=seen: seen.append(float(loss)))
        assert len(seen) == 4  # max, two chosen, min
        unweighted = seen[0] + sum(loss / weight for loss in seen[1:])
        assert float(total) == pytest.approx(unweighted, rel=1e-5)
        assert all(loss > 0 for loss in seen)
    with pytest.raises(ConfigError, match="student_weight must be positive"):
        JoslimStep(supernet(), heldout(), student_weight=0.0)
