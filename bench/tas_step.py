"""Cost of a TAS search step against a plain training step of the max arch.

For a CIFAR model of `slimnas.models.MODELS` (ResNet-20 by default) on batches of the built-in
CIFAR-10 subset, it times

(a) one TAS iteration (`slimnas.methods.tas.TASStep`: an architecture step — soft forward with
    two Gumbel-sampled widths per channel unit mixed by channel-wise interpolation and depths
    mixed over their candidates, CE + cost loss, backward to the logits, Adam — then a weight
    step: a fresh soft forward, CE, backward, SGD), and
(b) one plain step of ``supernet.export(max arch)``: forward, CE, backward, SGD,

on the same batch size (the TAS iteration reads two batches, one per half of the data), and
measures the activation memory each keeps for its backward: the bytes of the distinct storages
autograd saves during the forward (`torch.autograd.graph.saved_tensors_hooks`), parameters
excluded. That is the memory a step needs beyond the weights on any device; on CUDA the script
also reports ``torch.cuda.max_memory_allocated``. TAS's peak is that of its larger forward.

Timing alternates TAS and plain steps per round after warm-up; ``--clock cpu`` uses this
process's CPU time, steadier on a shared machine (use it with ``--threads 1``).

    .venv/bin/python bench/tas_step.py
    .venv/bin/python bench/tas_step.py --threads 1 --clock cpu --steps 10
    .venv/bin/python bench/tas_step.py --model resnet56 --batch-size 64
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

import torch
import torch.nn.functional as F

import slimnas
from slimnas.cost.budget import Budget
from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, BatchLoader, load_builtin
from slimnas.methods.tas import TAS
from slimnas.models import MODELS


class SavedBytes:
    """Bytes of the distinct non-parameter storages autograd saves while the context is open."""

    def __init__(self, model: torch.nn.Module):
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.storages: dict[int, int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.params:
            self.storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    def __enter__(self) -> SavedBytes:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="resnet20", choices=[m for m in MODELS if m != "mobilenet_v2"]
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="measured steps of each")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    torch.manual_seed(0)
    model = MODELS[args.model](num_classes=10)
    space = slimnas.trace(model, torch.randn(1, 3, 32, 32), divisor=4)
    supernet = slimnas.Supernet(model, space).to(device)
    plain = supernet.export(space.max_arch()).to(device).train()
    images, labels = load_builtin(train=True)
    rounds = args.warmup + args.steps

    def loader(part: slice, seed: int) -> BatchLoader:
        return BatchLoader(
            images[part],
            labels[part],
            args.batch_size,
            augment=False,
            drop_last=True,
            mean=CIFAR10_MEAN,
            std=CIFAR10_STD,
            seed=seed,
            device=device,
        )

    half = len(labels) // 2
    train, arch_data = loader(slice(0, half), 0), loader(slice(half, None), 1)
    budget = Budget.parse("macs<=50%", space)
    tas = TAS()
    step = tas.make_step(supernet, arch_data, budget, len(train), epochs=1)
    tas_sgd = torch.optim.SGD(supernet.parameters(), lr=0.01, momentum=0.9)
    plain_sgd = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
    batches = [b for _, b in zip(range(rounds), train)]

    def tas_step(batch) -> None:
        tas_sgd.zero_grad(set_to_none=True)
        loss, _ = step(supernet, batch, lambda loss: loss.backward())
        loss.backward()
        tas_sgd.step()

    def plain_step(batch) -> None:
        plain_sgd.zero_grad(set_to_none=True)
        F.cross_entropy(plain(batch[0]), batch[1]).backward()
        plain_sgd.step()

    def synced(fn, batch) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = clock()
        fn(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return clock() - start

    times = {"tas": [], "plain": []}
    gc.disable()
    for i, batch in enumerate(batches):
        order = [("tas", tas_step), ("plain", plain_step)]
        for name, fn in order if i % 2 == 0 else order[::-1]:
            seconds = synced(fn, batch)
            if i >= args.warmup:
                times[name].append(seconds)
    gc.enable()

    # Activation memory: one forward each, under the saved-tensor hook.
    batch = batches[0]
    with SavedBytes(supernet) as arch_fwd:
        widths, depths = tas.arch_params.sample(1.0, step.generator, detach=False)
        supernet.activate_soft(widths, depths)
        supernet(batch[0])
    with SavedBytes(plain) as plain_fwd:
        plain(batch[0])
    supernet.activate(space.max_arch())
    cuda_peak = {}
    if device.type == "cuda":
        for name, fn in (("tas", tas_step), ("plain", plain_step)):
            torch.cuda.reset_peak_memory_stats()
            fn(batch)
            cuda_peak[name] = torch.cuda.max_memory_allocated()

    tas_s, plain_s = statistics.median(times["tas"]), statistics.median(times["plain"])
    print(
        f"model {args.model}, batch {args.batch_size}, {args.steps} measured steps each, "
        f"threads {torch.get_num_threads()}, clock {args.clock}, device {device}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'':28} {'TAS iteration':>14} {'plain step':>12} {'ratio':>7}")
    print(f"{'median seconds':28} {tas_s:14.3f} {plain_s:12.3f} {tas_s / plain_s:7.2f}")
    mib = 2**20
    print(
        f"{'saved activations (MiB)':28} {arch_fwd.total / mib:14.1f} "
        f"{plain_fwd.total / mib:12.1f} {arch_fwd.total / plain_fwd.total:7.2f}"
    )
    if cuda_peak:
        print(
            f"{'CUDA peak allocated (MiB)':28} {cuda_peak['tas'] / mib:14.1f} "
            f"{cuda_peak['plain'] / mib:12.1f} {cuda_peak['tas'] / cuda_peak['plain']:7.2f}"
        )
    print(f"tas_step_seconds: {tas_s:.4f} s")
    print(f"plain_step_seconds: {plain_s:.4f} s")
    print(f"time_ratio: {tas_s / plain_s:.2f} x")
    print(f"activation_ratio: {arch_fwd.total / plain_fwd.total:.2f} x")


if __name__ == "__main__":
    main()
