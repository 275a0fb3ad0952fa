"""Tests for train/slimmable.py: the sandwich step against a hand-written sandwich rule."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from tiny_training import tiny_loader, tiny_supernet

from slimnas.errors import ConfigError
from slimnas.space.units import ChannelUnit
from slimnas.train import SandwichStep, Trainer, sandwich_step
from slimnas.train.slimmable import sample_arch

SMOOTHING = 0.1


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def supernet_and_batch():
    supernet = tiny_supernet()
    supernet.train()
    return supernet, next(iter(tiny_loader()))


def reference_sandwich(supernet, batch, archs, distill: bool):
    """The sandwich rule written out: max on labels, then min and ``archs`` on the max's soft
    output (or labels), one backward each, gradients summed by accumulation."""
    images, labels = batch
    supernet.zero_grad(set_to_none=True)
    supernet.activate(supernet.max_arch())
    logits = supernet(images)
    loss_max = F.cross_entropy(logits, labels, label_smoothing=SMOOTHING)
    loss_max.backward()
    soft = torch.softmax(logits.detach(), dim=1)
    losses = [loss_max.detach()]
    for arch in [supernet.min_arch(), *archs]:
        supernet.activate(arch)
        out = supernet(images)
        if distill:
            loss = -(soft * torch.log_softmax(out, dim=1)).sum(dim=1).mean()
        else:
            loss = F.cross_entropy(out, labels, label_smoothing=SMOOTHING)
        loss.backward()
        losses.append(loss.detach())
    supernet.activate(supernet.max_arch())
    return losses, {n: p.grad.clone() for n, p in supernet.named_parameters()}


def run_step(supernet, batch, n: int, seed: int, distill: bool):
    step = sandwich_step(
        supernet, n, torch.Generator().manual_seed(seed), SMOOTHING, distill=distill
    )
    supernet.zero_grad(set_to_none=True)
    calls = []

    def backward(loss):
        calls.append(loss.detach())
        loss.backward()

    total, metrics = step(supernet, batch, backward)
    return total, metrics, calls, {n: p.grad.clone() for n, p in supernet.named_parameters()}


@pytest.mark.parametrize("distill", [True, False])
@pytest.mark.parametrize("n", [2, 4])
def test_sandwich_step_matches_hand_written_rule(supernet_and_batch, n: int, distill: bool):
    base, batch = supernet_and_batch
    ours, ref = copy.deepcopy(base), copy.deepcopy(base)
    g = torch.Generator().manual_seed(7)
    archs = [ref.space.sample(g) for _ in range(n - 2)]
    assert all(a not in (ref.max_arch(), ref.min_arch()) for a in archs)  # a real test

    torch.manual_seed(0)  # the same dropout masks for both
    total, metrics, calls, grads = run_step(ours, batch, n, seed=7, distill=distill)
    torch.manual_seed(0)
    losses, ref_grads = reference_sandwich(ref, batch, archs, distill)

    assert len(calls) == n  # one backward per arch
    for got, expected in zip(calls, losses):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(total, sum(losses), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(metrics["loss_max"], losses[0])
    torch.testing.assert_close(metrics["loss_min"], losses[1], rtol=1e-6, atol=1e-7)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    # Every forward updated the shared BatchNorm statistics, in the same order.
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
    assert ours.arch == ours.max_arch()


def test_distillation_is_on_by_default_and_changes_the_gradients(supernet_and_batch):
    base, batch = supernet_and_batch
    assert SandwichStep(base).distill
    results = []
    for distill in (True, False):
        torch.manual_seed(0)
        results.append(run_step(copy.deepcopy(base), batch, 3, seed=7, distill=distill))
    (_, on, _, grads_on), (_, off, _, grads_off) = results
    assert not torch.allclose(on["loss_min"], off["loss_min"])
    assert not torch.allclose(grads_on["model.conv1.weight"], grads_off["model.conv1.weight"])


def test_trainer_takes_one_step_on_the_summed_gradients(supernet_and_batch, tmp_path):
    base, batch = supernet_and_batch
    ours, ref = copy.deepcopy(base), copy.deepcopy(base)
    lr = 0.05
    step = sandwich_step(ours, 4, torch.Generator().manual_seed(3), SMOOTHING)
    trainer = Trainer(
        ours,
        tiny_loader(),
        step_fn=step,
        lr=lr,
        momentum=0.0,
        nesterov=False,
        weight_decay=0.0,
        schedule="constant",
        epochs=1,
        seed=11,
        progress=False,
    )
    trainer.fit(until_step=1)

    g = torch.Generator().manual_seed(3)
    archs = [ref.space.sample(g) for _ in range(2)]
    torch.manual_seed(11)
    ref.train()
    _, grads = reference_sandwich(ref, batch, archs, distill=True)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.add_(grads[name], alpha=-lr)
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


def test_generator_state_round_trips(supernet_and_batch):
    base, _ = supernet_and_batch
    step = sandwich_step(base, generator=torch.Generator().manual_seed(5))
    base.space.sample(step.generator)
    state = json.loads(json.dumps(step.state_dict()))
    expected = [base.space.sample(step.generator) for _ in range(3)]
    other = sandwich_step(base, generator=torch.Generator().manual_seed(0))
    other.load_state_dict(state)
    assert [base.space.sample(other.generator) for _ in range(3)] == expected
    assert sandwich_step(base).state_dict() == {"steps": 0}  # no generator: only the count


def test_fewer_than_two_archs_is_refused(supernet_and_batch):
    with pytest.raises(ConfigError, match="at least the max and min"):
        sandwich_step(supernet_and_batch[0], n=1)


def test_uniform_sampling_puts_every_unit_at_one_relative_position(supernet_and_batch):
    space = supernet_and_batch[0].space
    g = torch.Generator().manual_seed(0)
    positions = set()
    for _ in range(20):
        arch = sample_arch(space, "uniform", g)
        # The same fraction u picks index int(u · len(choices)) in every unit.
        fractions = [
            (
                unit.choices.index(arch[name]) / len(unit.choices),
                (unit.choices.index(arch[name]) + 1) / len(unit.choices),
            )
            for name, unit in space.searchable.items()
            if isinstance(unit, ChannelUnit)
        ]
        assert max(lo for lo, _ in fractions) < min(hi for _, hi in fractions)
        positions.add(tuple(arch.values()))
    assert len(positions) > 1
    with pytest.raises(ConfigError, match="sampling"):
        sample_arch(space, "layerwise", g)


def test_distillation_starts_after_the_given_steps(supernet_and_batch):
    base, batch = supernet_and_batch
    runs = {}
    for name, options in {
        "labels": {"distill": False},
        "late": {"distill": True, "distill_after": 1},
        "soft": {"distill": True},
    }.items():
        model = copy.deepcopy(base)
        step = SandwichStep(model, 3, torch.Generator().manual_seed(7), SMOOTHING, **options)
        losses = []
        for _ in range(2):
            torch.manual_seed(0)
            model.zero_grad(set_to_none=True)
            _, metrics = step(model, batch, lambda loss: loss.backward())
            losses.append(metrics["loss_min"])
        runs[name] = losses
        assert step.state_dict()["steps"] == 2
    torch.testing.assert_close(runs["late"][0], runs["labels"][0])  # step 1: on the labels
    torch.testing.assert_close(runs["late"][1], runs["soft"][1])  # step 2: distilled
    assert not torch.allclose(runs["late"][1], runs["labels"][1])
