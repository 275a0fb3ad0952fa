"""Memory of ProxylessNAS's steps against a plain training step of the single path they train.

ProxylessNAS (Cai, Zhu & Han 2019, arXiv 1812.00332, §3.2) claims that binarized paths bring the
memory of a search down to that of training one compact net. For a `slimnas.models.proxyless_*`
op space (`proxyless_cifar_small` by default; every channel and depth unit fixed, as
`slimnas.methods.proxyless` searches operators only), batch 64 of random 32x32 inputs, and
``--archs`` paths drawn from p with a seeded generator (`ProxylessArch.sample` → `arch_of`), it
measures

(a) a **weight step**: the supernet in hard mode at the drawn path (`Supernet.activate`),
    forward, CE, backward;
(b) a **static step**: the same path exported as a plain module (`Supernet.export`), forward,
    CE, backward: the denominator of every ratio;
(c) an **architecture step** in the two-path mode (`ProxylessStep(mode="two").arch_gradients`:
    two paths per block run with binary gates, Eq. 4), and
(d) the same in the all-paths mode (``mode="full"``: every candidate of every block runs);

(c) and (d) draw their own paths, so each is divided by the static step of the path it left
active. Per step two figures:

- **saved activations**: the peak of the bytes of the distinct non-parameter storages that
  autograd holds for backward (`tas_step.SavedBytes`'s saved-tensor hooks, here also told when
  autograd lets a saved tensor go, so that tensors saved and freed within the forward, as the
  gated forward's detached paths are, count only while alive). Device-independent.
- **peak allocated**: on CPU the highest net total of the tensor allocations torch's allocator
  made during the step (forward and backward, weight gradients included), from the profiler's
  memory timeline (``profile_memory=True``; a private torch API: if it fails the column reads
  "n/a"); on CUDA ``torch.cuda.max_memory_allocated`` above what was allocated before the step.
  Neither counts the weights themselves, which the supernet holds for every candidate. RSS is
  not used: glibc keeps freed memory, so it does not show a step's peak.

The acceptance figure is ``weight_step_ratio`` (goal ≤ 1.5), against the all-paths mode's ratio.

    .venv/bin/python bench/proxyless_memory.py
    .venv/bin/python bench/proxyless_memory.py --archs 5 --batch 128 --device cuda
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable

import torch
import torch.nn.functional as F
from tas_step import SavedBytes  # the sibling bench script: run from the repository root

import slimnas
from slimnas.cost.budget import Budget
from slimnas.methods.proxyless import ProxylessStep
from slimnas.methods.proxyless_paths import ProxylessArch
from slimnas.models import MODELS

MIB = 2**20


class _Held:
    """What the pack hook hands autograd: the saved tensor, and a call when autograd drops it."""

    __slots__ = ("tensor", "release")

    def __init__(self, tensor: torch.Tensor, release: Callable[[], None]):
        self.tensor, self.release = tensor, release

    def __del__(self) -> None:
        self.release()


class LiveSavedBytes(SavedBytes):
    """`SavedBytes` that also follows when autograd frees what it saved: ``peak`` is the most
    bytes of distinct non-parameter storages held for backward at any one time."""

    def __init__(self, model: torch.nn.Module):
        super().__init__(model)
        self.refs: Counter[int] = Counter()
        self.sizes: dict[int, int] = {}
        self.live = 0
        self.peak = 0

    def pack(self, tensor: torch.Tensor) -> torch.Tensor | _Held:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in self.params:
            return tensor
        super().pack(tensor)
        if self.refs[key] == 0:
            self.sizes[key] = storage.nbytes()
            self.live += self.sizes[key]
            self.peak = max(self.peak, self.live)
        self.refs[key] += 1
        return _Held(tensor, lambda: self._release(key))

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            self.live -= self.sizes.pop(key)

    @staticmethod
    def unpack(packed: torch.Tensor | _Held) -> torch.Tensor:
        return packed.tensor if isinstance(packed, _Held) else packed

    def __enter__(self) -> LiveSavedBytes:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)
        self._hooks.__enter__()
        return self


def cpu_peak(fn: Callable[[], None]) -> int | None:
    """Highest net bytes allocated by torch on CPU while ``fn`` runs (profiler memory timeline)."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action

    try:
        with profile(
            activities=[ProfilerActivity.CPU],
            profile_memory=True,
            record_shapes=True,
            with_stack=True,
        ) as prof:
            fn()
        timeline = prof._memory_profile().timeline
    except Exception:  # a private API: report what we can rather than fail the bench
        return None
    live = peak = 0
    for _, action, _, size in timeline:
        if action == Action.CREATE:
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    return peak


def cuda_peak(fn: Callable[[], None], device: torch.device) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def measure(fn: Callable[[], None], model: torch.nn.Module, device: torch.device):
    """(peak saved-activation bytes, peak allocated bytes or None) of one call of ``fn``."""
    model.zero_grad(set_to_none=True)  # every step allocates its weight gradients afresh
    saved = LiveSavedBytes(model)

    def hooked() -> None:  # the hooks hold no tensor memory of their own: one run gives both
        with saved:
            fn()

    peak = cuda_peak(hooked, device) if device.type == "cuda" else cpu_peak(hooked)
    if saved.peak == 0:  # the profiler failed before the step ran
        hooked()
    model.zero_grad(set_to_none=True)
    return saved.peak, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default="proxyless_cifar_small",
        choices=[m for m in MODELS if m.startswith("proxyless")],
    )
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=None, help="default 224 or 32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--archs", type=int, default=3, help="paths drawn and measured")
    parser.add_argument("--budget", default="macs<=80%", help="the arch steps' cost term")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    size = args.resolution or (224 if "imagenet" in args.model else 32)
    started = time.perf_counter()

    torch.manual_seed(args.seed)
    model = MODELS[args.model](width_mult=args.width)
    space = slimnas.trace(model, torch.randn(1, 3, size, size))
    for unit in [*space.channel_units(), *space.depth_units()]:  # an op-only space
        space = space.fix(unit.name)
    supernet = slimnas.Supernet(model, space).to(device).train()
    arch = ProxylessArch(space, generator=torch.Generator().manual_seed(args.seed)).to(device)
    budget = Budget.parse(args.budget, space)
    steps = {
        mode: ProxylessStep(
            supernet,
            arch,
            [],
            budget,
            steps_per_epoch=1,
            mode=mode,
            generator=torch.Generator().manual_seed(args.seed + 1),
        )
        for mode in ("two", "full")
    }
    images = torch.randn(args.batch, 3, size, size, device=device)
    labels = torch.randint(0, 10, (args.batch,), device=device)
    draws = torch.Generator().manual_seed(args.seed)

    def static_step(path) -> tuple[int, int | None]:
        static = supernet.export(path).to(device).train()

        def run() -> None:
            F.cross_entropy(static(images), labels).backward()

        return measure(run, static, device)

    def active_path():
        picks = {}
        for unit in arch.units:
            picks[unit.name] = unit.choices.index(model.get_submodule(unit.name).active)
        return arch.arch_of(picks)

    rows: list[tuple[str, int, int, int | None, int, int | None]] = []
    for i in range(args.archs):
        path = arch.arch_of(arch.sample(draws))

        def weight_step(path=path) -> None:
            supernet.activate(path)
            F.cross_entropy(model(images), labels).backward()

        saved, peak = measure(weight_step, model, device)
        rows.append(("weight step (hard)", i, saved, peak, *static_step(path)))
        for mode, label in (("two", "arch step, two paths"), ("full", "arch step, all paths")):
            step = steps[mode]

            def arch_step(step=step) -> None:
                step.arch_gradients(model, images, labels)

            saved, peak = measure(arch_step, model, device)
            rows.append((label, i, saved, peak, *static_step(active_path())))

    have_peak = all(r[3] is not None and r[5] is not None for r in rows)
    print(
        f"model {args.model} x{args.width}, batch {args.batch}, {size}x{size}, seed {args.seed}, "
        f"{args.archs} drawn paths, device {device}, threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    peak_name = "CUDA peak" if device.type == "cuda" else "CPU peak"
    print(
        f"{'mode':22} {'path':>4} {'saved MiB':>10} {'static':>8} {'ratio':>6} "
        f"{peak_name + ' MiB':>14} {'static':>8} {'ratio':>6}"
    )
    ratios: dict[str, list[float]] = {}
    peak_ratios: dict[str, list[float]] = {}
    for label, i, saved, peak, static_saved, static_peak in rows:
        ratio = saved / static_saved
        ratios.setdefault(label, []).append(ratio)
        line = f"{label:22} {i:4d} {saved / MIB:10.1f} {static_saved / MIB:8.1f} {ratio:6.2f}"
        if have_peak:
            peak_ratios.setdefault(label, []).append(peak / static_peak)
            line += f" {peak / MIB:14.1f} {static_peak / MIB:8.1f} {peak / static_peak:6.2f}"
        else:
            line += f" {'n/a':>14} {'n/a':>8} {'n/a':>6}"
        print(line)
    seconds = time.perf_counter() - started
    print(f"ratios: each step ÷ the static step of the path it trains; {seconds:.0f} s in all")
    names = {
        "weight step (hard)": "weight_step",
        "arch step, two paths": "two_path_arch_step",
        "arch step, all paths": "all_paths_arch_step",
    }
    for label, name in names.items():
        print(f"{name}_ratio: {statistics.mean(ratios[label]):.2f} x")
    prefix = "cuda" if device.type == "cuda" else "cpu"
    for label, name in names.items():
        if label in peak_ratios:
            print(f"{name}_{prefix}_peak_ratio: {statistics.mean(peak_ratios[label]):.2f} x")


if __name__ == "__main__":
    main()
