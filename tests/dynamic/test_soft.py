"""Soft mode (TAS) against an explicit reference written without slimnas."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

import slimnas
from slimnas.dynamic import channel_interpolate


def reference_cwi(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Adaptive average pooling along channels, written as the explicit bin loop."""
    c = x.shape[1]
    outs = []
    for o in range(channels):
        start = (o * c) // channels
        end = math.ceil((o + 1) * c / channels)
        outs.append(x[:, start:end].mean(dim=1))
    return torch.stack(outs, dim=1)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_channel_interpolate_matches_bin_loop_and_identity() -> None:
    x = torch.randn(2, 5, 3, 3)
    assert torch.equal(channel_interpolate(x, 5), x)
    for target in (2, 3, 8, 11):
        assert torch.allclose(channel_interpolate(x, target), reference_cwi(x, target), atol=1e-6)
    up = channel_interpolate(torch.arange(4.0).view(1, 4, 1, 1), 8).flatten()
    assert up.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]  # upsampling 4 -> 8 duplicates channels


def test_soft_widths_output_and_gradients_equal_reference() -> None:
    torch.manual_seed(0)
    model = Tiny()
    plain = copy.deepcopy(model)
    x = torch.randn(4, 3, 8, 8)
    space = slimnas.trace(model, x[:1], divisor=4)
    assert space.units["conv1"].choices == (4, 8, 12, 16)
    supernet = slimnas.Supernet(model, space).train()

    logits1 = torch.randn(2, requires_grad=True)
    logits2 = torch.randn(2, requires_grad=True)
    w1, w2 = logits1.softmax(0), logits2.softmax(0)
    supernet.activate_soft({"conv1": ((8, 12), w1), "conv2": ((4, 8), w2)})
    out = supernet(x)
    out.square().mean().backward()

    # Reference: every unit computed at its largest sampled width, normalised by the shared BN,
    # fragments cut after BN, aligned by CWI and mixed (TAS Eq. 4).
    ref_l1 = logits1.detach().clone().requires_grad_(True)
    ref_l2 = logits2.detach().clone().requires_grad_(True)
    rw1, rw2 = ref_l1.softmax(0), ref_l2.softmax(0)
    p = plain.train()
    h = F.conv2d(x, p.conv1.weight[:12], p.conv1.bias[:12], padding=1)
    h = F.batch_norm(h, None, None, p.bn1.weight[:12], p.bn1.bias[:12], training=True)
    h = rw1[0] * reference_cwi(h[:, :8], 12) + rw1[1] * h[:, :12]
    h = F.relu(h)
    h = F.conv2d(h, p.conv2.weight[:8, :12], None, padding=1)
    h = F.batch_norm(h, None, None, p.bn2.weight, p.bn2.bias, training=True)
    h = rw2[0] * reference_cwi(h[:, :4], 8) + rw2[1] * h
    h = F.relu(h)
    ref = p.fc(h.mean(dim=(2, 3)))
    ref.square().mean().backward()

    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(logits1.grad, ref_l1.grad, atol=1e-5)
    assert torch.allclose(logits2.grad, ref_l2.grad, atol=1e-5)
    assert torch.allclose(model.conv1.weight.grad, p.conv1.weight.grad, atol=1e-5)
    assert torch.allclose(model.conv2.weight.grad, p.conv2.weight.grad, atol=1e-5)
    assert logits1.grad.abs().sum() > 0 and logits2.grad.abs().sum() > 0


def test_soft_depth_mixes_stage_outputs_like_reference() -> None:
    torch.manual_seed(1)
    model = slimnas.models.resnet20()
    plain = copy.deepcopy(model).eval()
    x = torch.randn(2, 3, 32, 32)
    space = slimnas.trace(model, x[:1])
    unit = space.units["layer2"]
    assert unit.choices == (1, 2, 3) and unit.base == 1
    supernet = slimnas.Supernet(model, space).eval()
    logits = torch.randn(3, requires_grad=True)
    supernet.activate_soft({}, depths={"layer2": logits.softmax(0)})
    out = supernet(x)
    out.sum().backward()

    ref_logits = logits.detach().clone().requires_grad_(True)
    q = ref_logits.softmax(0)
    p = plain
    s = p.layer1(F.relu(p.bn1(p.conv1(x))))
    h1 = p.layer2[0](s)
    h2 = p.layer2[1](h1)
    h3 = p.layer2[2](h2)
    mixed = q[0] * h1 + q[1] * h2 + q[2] * h3
    ref = p.fc(F.adaptive_avg_pool2d(p.layer3(mixed), 1).flatten(1))
    ref.sum().backward()
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(logits.grad, ref_logits.grad, atol=1e-5)

    # Back to hard mode: the model is the plain one again.
    supernet.activate(space.max_arch())
    with torch.no_grad():
        assert torch.allclose(supernet(x), plain(x), atol=1e-6)
