"""Binarized paths (ProxylessNAS) against an explicit reference of the gate gradient."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import slimnas
from slimnas.dynamic import gate_to_logit_grad


def candidate(kernel: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(8, 16, 1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, kernel, padding=kernel // 2, groups=16, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 8, 1, bias=False),
        nn.BatchNorm2d(8),
    )


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.op = slimnas.Choice({"k3": candidate(3), "k5": candidate(5), "zero": slimnas.Zero()})

    def forward(self, x):
        return x + self.op(x)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = Block()
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        return self.head(self.block(self.stem(x)).mean(dim=(2, 3)))


def build():
    torch.manual_seed(0)
    model = Net()
    x = torch.randn(4, 3, 8, 8)
    space = slimnas.trace(model, x[:1])
    return model, slimnas.Supernet(model, space).train(), x, space


def test_choice_traced_as_op_unit_with_inner_channel_units() -> None:
    _, _, _, space = build()
    assert space.units["block.op"].choices == ("k3", "k5", "zero")
    inner = [u.name for u in space.channel_units() if u.name.startswith("block.op.")]
    assert "block.op.k3.0" in inner and "block.op.k5.0" in inner
    # Soft mode mixes each candidate's unit at its own BatchNorm (graphs are told apart).
    for name in ("k3", "k5"):
        assert space.modules[f"block.op.{name}.1"]["mix"]
        assert not space.modules[f"block.op.{name}.0"]["mix"]


@pytest.mark.parametrize("paths", [("k3", "k5"), ("k3", "k5", "zero")])
def test_gate_gradient_equals_inner_product_reference(paths) -> None:
    model, supernet, x, _ = build()
    target = torch.randint(0, 5, (4,))
    captured = {}

    def keep_output(module, args, output):
        captured["input"] = args[0].detach()
        output.retain_grad()
        captured["output"] = output

    handle = model.block.op.register_forward_hook(keep_output)
    gates = model.block.op.binarize(paths, active="k5")
    loss = nn.functional.cross_entropy(supernet(x), target)
    loss.backward()
    handle.remove()

    # ∂L/∂g_k = <o_k(x), ∂L/∂y>, with o_k computed explicitly from a copy of each candidate.
    grad_y = captured["output"].grad
    reference = []
    for name in paths:
        with torch.no_grad():
            o_k = copy.deepcopy(model.block.op[name])(captured["input"])
        reference.append((o_k * grad_y).sum())
    assert torch.allclose(gates.grad, torch.stack(reference), atol=1e-6)
    assert gates.grad.abs().sum() > 0

    # Only the active path's weights learn; unused paths get no gradient at all (None).
    assert all(p.grad is not None for p in model.block.op["k5"].parameters())
    assert all(p.grad is None for p in model.block.op["k3"].parameters())


def test_active_path_weight_gradient_equals_plain_single_path() -> None:
    model, supernet, x, space = build()
    plain = supernet.export(space.max_arch().merged({"block.op": "k3"}))
    model.block.op.binarize(("k3", "k5"), active="k3")
    supernet(x).sum().backward()
    plain.train()(x).sum().backward()
    for ours, theirs in zip(model.block.op["k3"].parameters(), plain.block.op.parameters()):
        assert torch.allclose(ours.grad, theirs.grad, atol=1e-5)


def test_gate_to_logit_grad_is_the_softmax_jacobian() -> None:
    torch.manual_seed(3)
    alpha = torch.randn(4, requires_grad=True)
    gate_grad = torch.randn(4)
    probs = alpha.softmax(0)
    (probs * gate_grad).sum().backward()  # d/dα Σ_j g'_j p_j = Σ_j g'_j p_j (δ_ij − p_i)
    assert torch.allclose(gate_to_logit_grad(gate_grad, probs.detach()), alpha.grad, atol=1e-7)


def test_binarize_rejects_unknown_paths_and_activate_resets() -> None:
    model, supernet, x, space = build()
    with pytest.raises(slimnas.ArchError, match="k7"):
        model.block.op.binarize(("k3", "k7"), active="k3")
    model.block.op.binarize(("k3", "k5"), active="k3")
    supernet.activate(space.max_arch())
    assert model.block.op.gates is None and model.block.op.active == "k3"
