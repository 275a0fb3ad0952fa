"""Dynamic conv: the weight reused without grad follows in-place updates of the weight."""

from __future__ import annotations

import torch

import slimnas


def test_no_grad_weight_copy_follows_in_place_updates() -> None:
    torch.manual_seed(0)
    model = slimnas.models.resnet20().eval()
    x = torch.randn(2, 3, 32, 32)
    space = slimnas.trace(model, x[:1])
    supernet = slimnas.Supernet(model, space).eval()
    arch = space.uniform_arch(0.5)
    supernet.activate(arch)
    with torch.no_grad():
        before = supernet(x)
        again = supernet(x)
    assert torch.equal(before, again)
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.5)
    supernet.train()
    supernet(x).square().mean().backward()  # a training step at this arch, with grad
    optimizer.step()
    supernet.eval()
    with torch.no_grad():
        after = supernet(x)
        exported = supernet.export(arch).eval()(x)
    assert not torch.allclose(after, before)
    assert torch.allclose(after, exported, atol=1e-5)
    model.load_state_dict(
        {k: v + 0.01 for k, v in model.state_dict().items() if v.is_floating_point()}, strict=False
    )
    with torch.no_grad():
        assert torch.allclose(supernet(x), supernet.export(arch).eval()(x), atol=1e-5)
