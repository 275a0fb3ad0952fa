"""What `zoo_coverage.py` and `timm_coverage.py` share: trace one model, check its exports at the
min, the max and one random arch against the supernet, and print the coverage table."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

import slimnas

Row = tuple[str, int, int, str]
# What a zoo checks besides the outputs: (space, arch, exported module, input) -> a failure
# status, or None when the exported module costs what the space says.
CostCheck = Callable[[slimnas.Space, dict, torch.nn.Module, torch.Tensor], "str | None"]


def check_exports(
    name: str, model: torch.nn.Module, size: int, cost_check: CostCheck, error_chars: int | None
) -> Row:
    """``(name, channel units, depth units, status)`` of ``model`` traced at ``size`` px: the
    exports equal the supernet within 1e-4 and pass ``cost_check`` (status "supported"), or
    what failed (a trace error cut to ``error_chars``)."""
    try:
        space = slimnas.trace(model, torch.randn(1, 3, size, size))
    except slimnas.TraceError as err:
        return name, 0, 0, f"unsupported: {str(err)[:error_chars]}"
    counts = len(space.channel_units()), len(space.depth_units())
    supernet = slimnas.Supernet(model, space).eval()
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for arch in (space.min_arch(), space.max_arch(), space.sample(generator)):
        supernet.activate(arch)
        small = supernet.export(arch).eval()
        x = torch.randn(1, 3, size, size, generator=generator)
        with torch.no_grad():
            worst = max(worst, (small(x) - supernet(x)).abs().max().item())
        failure = cost_check(space, arch, small, x)
        if failure:
            return name, *counts, failure
    return name, *counts, "supported" if worst <= 1e-4 else f"export differs by {worst:.2e}"


def print_coverage(names: Sequence[str], check: Callable[[str], Row], figure: str, width: int):
    """Check every model of ``names`` (a failure is a row, not a stop), print the table and
    ``figure: supported/total``."""
    print(f"{'model':<{width}} {'channel units':>13} {'depth units':>11}  status")
    supported = 0
    start = time.perf_counter()
    for name in names:
        try:
            row = check(name)
        except Exception as err:  # a bench reports every failure instead of stopping
            row = (name, 0, 0, f"error: {type(err).__name__}: {str(err).splitlines()[0][:80]}")
        supported += row[3] == "supported"
        print(f"{row[0]:<{width}} {row[1]:>13} {row[2]:>11}  {row[3]}", flush=True)
    print(f"\n{supported} of {len(names)} supported in {time.perf_counter() - start:.0f} s")
    print(f"{figure}: {supported}/{len(names)}")
