"""Why the sandwich rule's middle archs slow the max arch down: their gradients, measured.

Trains a ResNet-20 supernet with the sandwich rule on the built-in CIFAR-10 subset (labels only,
no distillation, so that the teacher's quality does not enter), and at a few points of training
measures on fresh batches, for each kind of subnet (the min arch, random archs drawn per unit,
random archs at one uniform width), the gradient of its label loss on the shared weights:

- ``cos``: its cosine with the max arch's gradient (1: the same direction; 0: unrelated);
- ``norm``: its norm relative to the max arch's gradient, over the weights the max arch uses;
- ``overlap``: the share of the max arch's weights it touches.

A subnet whose gradient is large, touches most of the max arch's weights and points elsewhere
turns each optimizer step away from the max arch's descent direction.

    .venv/bin/python bench/sandwich_gradients.py [--steps 0 100 300] [--batches 8] [--threads N]
"""

from __future__ import annotations

import argparse

import torch

from slimnas.config import load_config
from slimnas.data import normalize
from slimnas.data.prepare import load_training_data, make_loader
from slimnas.models.build import build_model
from slimnas.space import trace
from slimnas.supernet import Supernet
from slimnas.train.losses import cross_entropy
from slimnas.train.slimmable import SandwichStep, sample_arch
from slimnas.train.trainer import Trainer


def gradient(supernet: Supernet, arch, images, labels) -> torch.Tensor:
    supernet.zero_grad(set_to_none=False)
    supernet.activate(arch)
    cross_entropy(supernet(images), labels, 0.1).backward()
    grads = [p.grad.flatten().clone() for p in supernet.parameters()]
    supernet.activate(supernet.max_arch())
    return torch.cat(grads)


def measure(supernet: Supernet, batches, generator) -> dict[str, list[float]]:
    kinds = {
        "min": lambda: supernet.min_arch(),
        "unit": lambda: sample_arch(supernet.space, "unit", generator),
        "uniform": lambda: sample_arch(supernet.space, "uniform", generator),
    }
    rows: dict[str, list[list[float]]] = {k: [] for k in kinds}
    supernet.train()
    for images, labels in batches:
        g_max = gradient(supernet, supernet.max_arch(), images, labels)
        for kind, draw in kinds.items():
            g = gradient(supernet, draw(), images, labels)
            touched = g != 0
            cos = torch.nn.functional.cosine_similarity(g, g_max, dim=0).item()
            rows[kind].append(
                [cos, (g.norm() / g_max.norm()).item(), touched.float().mean().item()]
            )
    return {k: torch.tensor(v).mean(0).tolist() for k, v in rows.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 100, 300])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_training_data(load_config("examples/train_resnet20.toml").data)
    torch.manual_seed(0)
    model, _ = build_model("resnet20", num_classes=10)
    space = trace(model, normalize(data.train[0][:2], data.mean, data.std))
    for name, unit in list(space.searchable.items()):
        if unit.kind == "depth":
            space = space.fix(name)  # widths only: depth is not what hurts (bench/README.md)
    supernet = Supernet(model, space)
    loader = make_loader(data, data.train, 128, train=True, seed=0)
    probe = list(make_loader(data, data.heldout, 128, train=False))[: args.batches]
    step = SandwichStep(supernet, 4, torch.Generator().manual_seed(0), 0.1, distill=False)
    total = max(args.steps)
    epochs = -(-total // len(loader))
    trainer = Trainer(supernet, loader, step_fn=step, epochs=epochs, lr=0.1, progress=False)
    print(f"{'step':>5} {'subnet':<8} {'cos':>6} {'norm':>6} {'overlap':>8}")
    lines = []
    for at in sorted(args.steps):
        if at > trainer.step:
            trainer.fit(until_step=at)
        result = measure(supernet, probe, torch.Generator().manual_seed(at))
        for kind, (cos, norm, overlap) in result.items():
            print(f"{at:>5} {kind:<8} {cos:>6.3f} {norm:>6.2f} {overlap:>8.2f}", flush=True)
            lines.append(f"cos_{kind}_step{at}: {cos:.3f}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
