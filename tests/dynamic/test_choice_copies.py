"""The ProxylessNAS control of issue 18: a `Choice` whose candidates are identical copies of one op
trains, along the path it runs, exactly like the plain net with that op (forward, backward,
BatchNorm, SGD momentum and weight decay through the `Trainer`), and the copies it does not run
stay as they were."""

from __future__ import annotations

import copy

import torch

import slimnas
from slimnas.dynamic.choice import Choice
from slimnas.methods.proxyless import WarmupStep
from slimnas.methods.proxyless_paths import ProxylessArch
from slimnas.models.proxyless import CIFAR_STRIDES, ProxylessNet
from slimnas.train import Trainer


class Batches(list):
    """A fixed list of batches with the loader interface the Trainer reads."""

    epoch = 0
    position = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {}


def fixed_net() -> ProxylessNet:
    torch.manual_seed(0)
    return ProxylessNet(
        0.25,
        4,
        blocks=(1, 2, 1, 1, 1, 1),
        strides=CIFAR_STRIDES,
        stem_stride=1,
        kernels=(3,),
        expansions=(3,),
        zero=False,
        head_channels=32,
    )


def with_copies(net: ProxylessNet) -> ProxylessNet:
    net = copy.deepcopy(net)
    for module in net.modules():
        if isinstance(getattr(module, "op", None), Choice):
            (name, op), *_ = module.op.items()
            module.op = Choice({"a": copy.deepcopy(op), "b": copy.deepcopy(op)})
    return net


def test_identical_copies_train_like_the_fixed_net_along_the_path_they_run() -> None:
    plain = fixed_net()
    model = with_copies(plain)
    space = slimnas.trace(model, torch.randn(1, 3, 16, 16))
    for unit in space.channel_units():
        space = space.fix(unit.name)
    supernet = slimnas.Supernet(model, space)
    paths = ProxylessArch(space)
    with torch.no_grad():  # p(a) = 1 on every unit: the warm-up always runs the "a" copies
        for logits in paths.logits:
            logits.copy_(torch.tensor([50.0, -50.0], dtype=logits.dtype))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(4, 8, 3, 16, 16, generator=generator)
    labels = torch.randint(0, 4, (4, 8), generator=generator)
    batches = Batches(zip(images, labels))
    options = {"lr": 0.1, "weight_decay": 1e-3, "epochs": 1, "progress": False}
    Trainer(supernet, batches, step_fn=WarmupStep(supernet, paths, 0.1), **options).fit()
    Trainer(plain, batches, label_smoothing=0.1, **options).fit()

    trained = plain.state_dict()
    for key, value in model.state_dict().items():
        if ".op.b." in key:  # never run: weights, momentum-free and undecayed, and BN buffers
            assert torch.equal(value, start[key]), key
        else:
            torch.testing.assert_close(value, trained[key.replace(".op.a.", ".op.k3e3.")])
    x = torch.randn(2, 3, 16, 16)
    plain.eval(), supernet.eval()
    torch.testing.assert_close(supernet(x), plain(x))
