"""ProxylessNAS (methods/proxyless.py, methods/proxyless_paths.py): gate and logit gradients
against explicit references, the two-path rescale, the expected-cost gradient, REINFORCE on a
bandit, binarized weight steps and a real search."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import slimnas
from slimnas.cost.budget import Budget
from slimnas.cost.counting import expected_macs
from slimnas.cost.latency.build import build_latency_table
from slimnas.cost.latency.predict import expected_latency
from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, load_builtin
from slimnas.data.prepare import TrainingData
from slimnas.methods.fixed_op import fixed_op_results
from slimnas.methods.proxyless import ProxylessNAS, ProxylessStep, WarmupStep
from slimnas.methods.proxyless_paths import (
    ProxylessArch,
    Reinforce,
    cost_loss,
    derive,
    rescale_pair,
    sample_pair,
)
from slimnas.methods.setup import StageStopped
from tests.cost.test_latency import FAST
from tests.helpers.search import tiny_setup

KERNELS = (3, 5, 7)


def mbconv(kernel: int, channels: int = 8, hidden: int = 16) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(),
        nn.Conv2d(hidden, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
    )


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        ops = {f"k{k}": mbconv(k) for k in KERNELS}
        self.op = slimnas.Choice({**ops, "zero": slimnas.Zero()})

    def forward(self, x):
        return x + self.op(x)


class Net(nn.Module):
    """Stem, two searched blocks (k3/k5/k7/zero), pooled linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.blocks = nn.Sequential(Block(), Block())
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.blocks(torch.relu(self.stem(x))).mean(dim=(2, 3)))


def op_space(model: nn.Module, example: torch.Tensor):
    space = slimnas.trace(model, example)
    for unit in [*space.channel_units(), *space.depth_units()]:  # operators only
        space = space.fix(unit.name)
    return space


def build(seed: int = 0):
    torch.manual_seed(seed)
    model = Net()
    x = torch.randn(8, 3, 8, 8)
    space = op_space(model, x[:1])
    return model, slimnas.Supernet(model, space).train(), space, x


def make_step(supernet, space, data, **options) -> ProxylessStep:
    budget = Budget.parse("macs<=60%", space)
    arch = ProxylessArch(space, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # a non-uniform start, so that the Jacobians are not symmetric
        for logits in arch.logits:
            logits.copy_(torch.randn(len(logits), dtype=torch.float64))
    options = {"steps_per_epoch": 4, "generator": torch.Generator().manual_seed(2), **options}
    return ProxylessStep(supernet, arch, data, budget, **options)


class Batches:
    """Endless random batches of ready tensors, with the loader protocol's state methods."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor):
        self.x, self.labels = x, labels

    def __iter__(self):
        for _ in range(2):
            yield self.x, self.labels

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state) -> None:
        pass


def batches(x: torch.Tensor, labels: torch.Tensor):
    return Batches(x, labels)


# ------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("mode", ["two", "full"])
def test_logit_gradients_equal_an_explicit_gated_forward(mode) -> None:
    model, supernet, space, x = build()
    labels = torch.randint(0, 4, (8,))
    step = make_step(supernet, space, [(x, labels)], mode=mode, loss_form="add_linear")
    reference_model = copy.deepcopy(model)
    state = torch.Generator().manual_seed(7).get_state()
    step.generator.set_state(state)
    step.arch_gradients(model, x, labels)
    got = [lg.grad.clone() for lg in step.arch.logits]

    # Re-draw the same paths, then run every sampled path live (no detach) with leaf gates.
    generator = torch.Generator()
    generator.set_state(state)
    gates, pairs, renorm, probs, picks = [], [], [], {}, {}
    for unit, logits in zip(step.arch.units, step.arch.logits):
        if mode == "two":
            pair, p_used, active = sample_pair(logits, generator)
        else:
            p_used = logits.softmax(-1)
            pair = list(range(len(unit.choices)))
            active = int(torch.multinomial(p_used.detach(), 1, generator=generator))
        pairs.append(pair)
        renorm.append(p_used)
        probs[unit.name] = torch.zeros_like(logits).index_add(0, torch.tensor(pair), p_used)
        picks[unit.name] = pair[active] if mode == "two" else active
        gate = torch.zeros(len(pair), requires_grad=False)
        gate[pair.index(picks[unit.name])] = 1.0
        gates.append(gate.requires_grad_(True))

    def gated(choice, gate, pair, unit):
        def forward(inputs):
            return sum(g * choice[unit.choices[i]](inputs) for g, i in zip(gate, pair))

        return forward

    for unit, gate, pair in zip(step.arch.units, gates, pairs):
        choice = reference_model.get_submodule(unit.name)
        choice.forward = gated(choice, gate, pair, space.units[unit.name])
    out = reference_model(x)
    ce = nn.functional.cross_entropy(out, labels)
    gate_grads = torch.autograd.grad(ce, gates)
    # ProxylessNAS Eq. 4 through autograd: d/dα Σ_j g'_j p'_j, plus the cost term λ(E − T)/T.
    surrogate = sum((g.double() * p).sum() for g, p in zip(gate_grads, renorm))
    expected = expected_macs(space, probs, step.arch.base)
    surrogate = surrogate + cost_loss(ce.detach(), expected, step.budget.limit, "add_linear")
    want = torch.autograd.grad(surrogate, list(step.arch.logits))
    for ours, theirs in zip(got, want):
        assert torch.allclose(ours, theirs, atol=1e-6), (ours, theirs)
    assert any(float(g.abs().sum()) > 0 for g in got)
    if mode == "two":  # only the two sampled logits of a unit get a gradient
        for grad, pair in zip(got, pairs):
            others = [i for i in range(len(grad)) if i not in pair]
            assert torch.all(grad[others] == 0)


def test_two_path_update_leaves_unsampled_probabilities_unchanged() -> None:
    model, supernet, space, x = build()
    labels = torch.randint(0, 4, (8,))
    step = make_step(supernet, space, batches(x, labels), arch_lr=0.05)
    for _ in range(5):
        before = [lg.detach().softmax(-1).clone() for lg in step.arch.logits]
        metrics, pairs = step.arch_gradients(model, *step._arch_batch())
        old = [lg.detach().clone() for lg in step.arch.logits]
        step.optimizer.step()
        for logits, prior, pair in zip(step.arch.logits, old, pairs):
            rescale_pair(logits, prior, pair)
        for logits, prior, pair in zip(step.arch.logits, before, pairs):
            after = logits.detach().softmax(-1)
            others = [i for i in range(len(after)) if i not in pair]
            assert torch.allclose(after[others], prior[others], rtol=0, atol=1e-15)
            assert not torch.allclose(after[pair], prior[pair], rtol=0, atol=1e-12)
            # and the pair's total probability is what it was
            assert abs(float(after[pair].sum() - prior[pair].sum())) < 1e-15


def test_rescale_pair_keeps_the_pairs_mass() -> None:
    logits = torch.tensor([0.3, -1.0, 2.0, 0.5], dtype=torch.float64)
    old = logits.clone()
    logits[[0, 2]] += torch.tensor([0.7, -0.2], dtype=torch.float64)
    rescale_pair(logits, old, [0, 2])
    assert torch.allclose(logits[[0, 2]].exp().sum(), old[[0, 2]].exp().sum(), atol=1e-15)
    assert torch.equal(logits[[1, 3]], old[[1, 3]])


@pytest.mark.parametrize("cost", ["macs", "latency"])
def test_expected_cost_gradient_is_cost_minus_mean_times_p(cost, tmp_path) -> None:
    """∂E/∂α_i = (cost_i − E)·p_i per block, cost_i = E given the block takes candidate i;
    E[MACs], and E[latency] from a real latency table measured here."""
    model, x = Net(), torch.randn(1, 3, 8, 8)
    space = op_space(model, x)  # the table is built from the plain model
    if cost == "latency":
        table = tmp_path / "table.json"
        target = build_latency_table(model, space, x, table, runtime="torch", **FAST).target

        def expected_cost(probs):
            return expected_latency(space, probs, target, arch.base)
    else:

        def expected_cost(probs):
            return expected_macs(space, probs, arch.base)

    arch = ProxylessArch(space, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for logits in arch.logits:
            logits.copy_(torch.randn(len(logits), dtype=torch.float64))
    probs = arch.probs()
    expected = expected_cost(probs)
    grads = torch.autograd.grad(expected, list(arch.logits))
    for unit, logits, grad in zip(arch.units, arch.logits, grads):
        p = logits.detach().softmax(-1)
        conditional = []
        for i in range(len(unit.choices)):
            one_hot = {k: v.detach() for k, v in probs.items()}
            one_hot[unit.name] = nn.functional.one_hot(torch.tensor(i), len(unit.choices)).double()
            conditional.append(float(expected_cost(one_hot)))
        conditional = torch.tensor(conditional, dtype=torch.float64)
        assert torch.allclose(grad, (conditional - float(expected.detach())) * p, rtol=1e-9)
        assert grad.abs().sum() > 0
    if cost == "macs":  # the zero op costs nothing: the cheapest candidate of its block
        assert conditional[-1] == conditional.min()


# ------------------------------------------------------------------------- cost loss, RL
def test_cost_loss_forms() -> None:
    ce = torch.tensor(2.0)
    at_target = cost_loss(ce, torch.tensor(5.0), 5.0, "mul_log", alpha=0.2, beta=0.3)
    assert torch.allclose(at_target, torch.tensor(0.4))  # α·CE·1 at E = T, whatever the unit
    assert torch.allclose(cost_loss(ce, torch.tensor(5e6), 5e6, "mul_log"), at_target)
    expected = torch.tensor(7.0, requires_grad=True)
    (grad,) = torch.autograd.grad(cost_loss(ce, expected, 5.0, "mul_log"), expected)
    assert grad > 0  # more cost, more loss
    linear = cost_loss(ce, torch.tensor(6.0), 5.0, "add_linear", lam=0.1)
    assert torch.allclose(linear, torch.tensor(2.0 + 0.1 * 0.2))
    with pytest.raises(slimnas.ConfigError, match="loss form"):
        cost_loss(ce, expected, 5.0, "quadratic")
    # band: pushes the expected cost down above the target, up below (1 − t)·T, not inside.
    for actual, sign in ((5.5, 1), (4.0, -1), (4.9, 0)):
        loss = cost_loss(ce, expected, 5.0, "band", actual=actual, band_weight=2.0, tolerance=0.05)
        (grad,) = torch.autograd.grad(loss, expected)
        assert torch.sign(grad) == sign, (actual, grad)
    with pytest.raises(slimnas.ConfigError, match="argmax"):
        cost_loss(ce, expected, 5.0, "band")


def test_reinforce_finds_the_better_arm_of_a_bandit() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.05, betas=(0.0, 0.999))
    means = (0.3, 0.8)  # arm 1 is better
    rl = Reinforce()
    for _ in range(300):
        picks = torch.multinomial(logits.detach().softmax(-1), 10, True, generator=generator)
        rewards = [means[i] + 0.1 * float(torch.randn(1, generator=generator)) for i in picks]
        rl.update([logits], [[int(i)] for i in picks], rewards)
        optimizer.step()
    assert float(logits.detach().softmax(-1)[1]) > 0.95
    assert 0.6 < rl.baseline < 0.85  # the baseline tracks the mean reward


# --------------------------------------------------------------------------- weight steps
def test_weight_step_trains_only_the_sampled_path() -> None:
    model, supernet, space, x = build()
    labels = torch.randint(0, 4, (8,))
    step = make_step(supernet, space, batches(x, labels), warmup_epochs=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(3):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        optimizer.zero_grad(set_to_none=True)
        loss, metrics = step(model, (x, labels), lambda loss: loss.backward())
        loss.backward()
        active = {u.name: model.get_submodule(u.name).active for u in step.arch.units}
        optimizer.step()
        assert metrics["arch_step"] == 0.0
        for name, param in model.named_parameters():
            owner = next((u for u in active if name.startswith(u + ".")), None)
            if owner is None:
                continue
            candidate = name[len(owner) + 1 :].split(".")[0]
            if candidate == active[owner]:
                assert param.grad is not None
            else:  # not run: no gradient, and neither momentum nor weight decay moved it
                assert param.grad is None
                assert torch.equal(param.detach(), before[name])


def warmup_draws(draw: str, steps: int = 40) -> list[dict[str, str]]:
    """The active candidate of every unit at each of ``steps`` warm-up steps of ``draw``."""
    model, supernet, space, x = build()
    arch = ProxylessArch(space, generator=torch.Generator().manual_seed(1))
    step = WarmupStep(supernet, arch, 0.1, torch.Generator().manual_seed(2), draw, steps)
    labels = torch.randint(0, 4, (8,))
    drawn = []
    with torch.no_grad():
        for _ in range(steps):
            step(model, (x, labels), lambda loss: None)
            drawn.append({u.name: model.get_submodule(u.name).active for u in arch.units})
    return drawn


def test_warmup_draws() -> None:
    """paper: every candidate, zero included; no_zero: never zero; largest_first: the first
    candidate only at the start, the first two a little later, all four from half-way."""
    units = ("blocks.0.op", "blocks.1.op")
    paper = warmup_draws("paper")
    assert {d[u] for d in paper for u in units} == {"k3", "k5", "k7", "zero"}
    no_zero = warmup_draws("no_zero")
    assert {d[u] for d in no_zero for u in units} == {"k3", "k5", "k7"}
    curriculum = warmup_draws("largest_first")  # 4 candidates over a 20-step ramp: 5 steps each
    assert {d[u] for d in curriculum[:5] for u in units} == {"k3"}
    assert {d[u] for d in curriculum[5:10] for u in units} == {"k3", "k5"}
    assert {d[u] for d in curriculum[20:] for u in units} == {"k3", "k5", "k7", "zero"}
    plain_ops = warmup_draws("inherit")  # no MBConv to inherit into: the paper's draw throughout
    assert {d[u] for d in plain_ops[:20] for u in units} == {"k3", "k5", "k7", "zero"}
    with pytest.raises(slimnas.ConfigError, match="total_steps"):
        WarmupStep(None, None, draw="largest_first")
    with pytest.raises(slimnas.ConfigError, match="warmup_draw"):
        ProxylessNAS(warmup_draw="first")


def _inherit_warmup(seed: int = 0) -> tuple[nn.Module, ProxylessArch, WarmupStep]:
    """A 6-block ProxylessNet searching ops only, with an ``inherit`` warm-up of 40 steps."""
    torch.manual_seed(seed)
    model = slimnas.models.ProxylessNet(
        0.25,
        4,
        blocks=(1, 1, 1, 1, 1, 1),
        strides=(1, 2, 1, 1, 2, 1),
        stem_stride=1,
        head_channels=16,
    )
    space = slimnas.trace(model, torch.randn(1, 3, 8, 8))
    for unit in space.channel_units():
        space = space.fix(unit.name)
    supernet = slimnas.Supernet(model, space)
    arch = ProxylessArch(space, generator=torch.Generator().manual_seed(1))
    step = WarmupStep(supernet, arch, 0.1, torch.Generator().manual_seed(2), "inherit", 40)
    return model, arch, step


def test_warmup_inherit_draw_trains_the_largest_then_slices_it_into_the_others() -> None:
    """inherit: the first half of the steps only the first (largest) candidate; at the switch
    every other MBConv candidate takes a slice of its weights; then the paper's draw."""
    model, arch, step = _inherit_warmup()
    x, labels = torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))
    choices = [model.get_submodule(u.name) for u in arch.units]
    untouched = {n: p.clone() for n, p in choices[0]["k3e3"].named_parameters()}
    drawn = []
    for _ in range(40):
        step(model, (x, labels), lambda loss: None)
        drawn.append({c.active for c in choices})
        if step.steps == 20:  # not yet inherited: the step at 20 does it
            assert all(
                torch.equal(p, untouched[n]) for n, p in choices[0]["k3e3"].named_parameters()
            )
    assert set().union(*drawn[:20]) == {"k7e6"}
    assert len(set().union(*drawn[20:])) > 3
    for choice in choices:
        big, small = choice["k7e6"].depth_conv[0].weight, choice["k5e6"].depth_conv[0].weight
        assert torch.equal(small, big[:, :, 1:6, 1:6])
    with pytest.raises(slimnas.ConfigError, match="total_steps"):
        WarmupStep(None, None, draw="inherit")


@pytest.mark.parametrize("stop", [13, 20, 27])
def test_warmup_inherit_resumed_before_at_or_after_the_switch_trains_as_one_run(stop: int) -> None:
    """A warm-up stopped after ``stop`` steps and resumed into a fresh model from its state
    (model, optimizer, step) ends with the same weights and draws as one that never stopped:
    the slicing happens once, at the switch (step 20), whichever side the stop falls on."""
    batches = [(torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))) for _ in range(40)]

    def train(model, step, optimizer, steps):
        def backward(loss):
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        model.train()
        drawn = []
        for images, labels in steps:
            loss, _ = step(model, (images, labels), backward)
            backward(loss)
            drawn.append(tuple(choice.active for choice in step.choices))
        return drawn

    def sgd(model):
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    whole, _, whole_step = _inherit_warmup()
    whole_opt = sgd(whole)
    whole_drawn = train(whole, whole_step, whole_opt, batches)

    first, _, first_step = _inherit_warmup()
    first_opt = sgd(first)
    drawn = train(first, first_step, first_opt, batches[:stop])
    resumed, _, resumed_step = _inherit_warmup(seed=1)  # other initial weights, overwritten
    resumed.load_state_dict(first.state_dict())
    resumed_opt = sgd(resumed)
    resumed_opt.load_state_dict(first_opt.state_dict())
    resumed_step.load_state_dict(first_step.state_dict())
    drawn += train(resumed, resumed_step, resumed_opt, batches[stop:])

    assert resumed_step.steps == whole_step.steps == 40
    assert drawn == whole_drawn and len(set(whole_drawn[20:])) > 1
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_derive_moves_units_until_the_budget_holds() -> None:
    _, _, space, _ = build()
    arch = ProxylessArch(space)
    with torch.no_grad():
        for logits in arch.logits:
            logits.copy_(torch.tensor([0.0, 0.1, 2.0, -3.0], dtype=torch.float64))  # k7 likely
    loose = Budget.parse("macs<=1G", space)  # the max arch is the first candidate, k3
    found, steps = derive(arch, loose)
    assert found == arch.argmax() and steps == []
    tight = Budget.parse("macs<=45%", space)
    found, steps = derive(arch, tight)
    assert tight.fits(space, found) and steps
    assert not tight.fits(space, arch.argmax())
    impossible = Budget("macs", 1.0, "macs<=1")
    with pytest.raises(slimnas.ConfigError, match="raise the budget"):
        derive(arch, impossible)


def test_fixed_op_reference_reports_the_tightest_budget_it_fits() -> None:
    _, _, space, _ = build()
    k5 = slimnas.macs(space, space.max_arch().merged({u.name: "k5" for u in space.op_units()}))
    budgets = [Budget("macs", k5 * f, f"macs<={k5 * f:.0f}") for f in (2.0, 1.1, 0.5)]
    (result,) = fixed_op_results(space, budgets, "k5")
    assert set(result.arch.values()) == {"k5"}
    fitting = [b for b in budgets if b.fits(space, result.arch)]
    assert len(fitting) == 2 and result.budget == budgets[1].text  # the tighter of the two
    (over,) = fixed_op_results(space, budgets[2:], "k5")  # fits none: shown, marked over
    assert over.budget == budgets[2].text and over.info["over"] == pytest.approx(2.0)
    assert over.info["reference"] and result.info["reference"] and "over" not in result.info
    with pytest.raises(slimnas.ConfigError, match="k9"):
        fixed_op_results(space, budgets, "k9")


def test_bad_options_are_refused() -> None:
    _, supernet, space, _ = build()
    with pytest.raises(slimnas.ConfigError, match="mode"):
        make_step(supernet, space, [], mode="three")
    plain = slimnas.trace(nn.Sequential(nn.Conv2d(3, 8, 3)), torch.randn(1, 3, 8, 8))
    with pytest.raises(slimnas.ConfigError, match="op unit"):
        ProxylessArch(plain)


def new_search(folder=None, max_steps=None, **options):
    """A fresh toy supernet, its 8x8 built-in CIFAR-10 crops (training and held-out) and the
    method."""
    torch.manual_seed(0)
    model = Net()
    images, labels = load_builtin(train=True)
    images = images[:256, :, 12:20, 12:20].contiguous()  # 8x8 crops keep the test fast
    labels = labels[:256] % 4
    data = TrainingData(
        (images[:128], labels[:128]),
        (images[128:], labels[128:]),
        None,
        4,
        CIFAR10_MEAN,
        CIFAR10_STD,
    )
    space = op_space(model, torch.randn(1, 3, 8, 8))
    supernet = slimnas.Supernet(model, space)
    setup = tiny_setup(folder, data, max_steps=max_steps, lr=0.05, weight_decay=4e-5)
    setup.augment = False
    settings = {"epochs": 2, "warmup_epochs": 1, "arch_every": 1, "arch_lr": 0.05}
    method = ProxylessNAS(**{**settings, **options})
    return method, supernet, space, setup


@pytest.mark.parametrize(
    "mode, loss",
    [("two", "mul_log"), ("full", "add_linear"), ("reinforce", "mul_log"), ("two", "band")],
)
def test_a_real_search_learns_the_logits_and_meets_its_budget(mode, loss, tmp_path) -> None:
    options = {"mode": mode, "loss": loss, "reinforce_samples": 4}
    method, supernet, space, setup = new_search(tmp_path, **options)
    (result,) = method.fit(supernet, setup).search(["macs<=50%"])
    assert result.info["arch_steps"] == 2 * 4  # every step of the 2 search epochs
    logits = [lg.detach() for lg in method.steps["macs<=50%"].arch.logits]
    assert min(float((lg - lg.mean()).abs().max()) for lg in logits) > 1e-3  # every unit moved
    budget = Budget.parse("macs<=50%", space)
    assert budget.fits(space, result.arch)
    assert (tmp_path / "warmup" / "final" / "supernet.json").exists()
    assert (tmp_path / "macs-le-50pct" / "metrics.csv").exists()


def test_an_interrupted_search_resumes_to_the_same_logits_and_weights(tmp_path) -> None:
    method, supernet, _, setup = new_search()
    method.fit(supernet, setup).search(["macs<=50%"])
    whole = method.steps["macs<=50%"]

    run = tmp_path / "proxyless"
    method, supernet, _, setup = new_search(run, max_steps=6)  # inside the search epochs
    with pytest.raises(StageStopped):
        method.fit(supernet, setup).search(["macs<=50%"])
    method, supernet, _, setup = new_search(run)  # a new process, say
    method.fit(supernet, setup).search(["macs<=50%"])
    again = method.steps["macs<=50%"]
    for a, b in zip(whole.arch.logits, again.arch.logits):
        assert torch.equal(a, b)
    weights = whole.supernet.state_dict()
    for name, tensor in again.supernet.state_dict().items():
        assert torch.equal(tensor, weights[name]), name
