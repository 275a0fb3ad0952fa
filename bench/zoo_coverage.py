"""Which torchvision classification models slimnas supports, and what it finds in them.

For every model of ``torchvision.models.list_models(module=torchvision.models)``: trace it, count
its searchable channel and depth units, and check that the exported plain module equals the
supernet at the min, the max and one random arch (max abs diff ≤ 1e-4) with ``params`` exact.
Prints a table and ends with ``zoo_coverage: N/M``.

    .venv/bin/python bench/zoo_coverage.py            # all models (about 15 min on 2 cores)
    .venv/bin/python bench/zoo_coverage.py resnet18 densenet121
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import torchvision

import slimnas

TRANSFORMERS = ("vit", "swin", "maxvit")


def input_size(name: str) -> int:
    if name == "inception_v3":
        return 299
    return 224 if name.startswith(TRANSFORMERS) else 64


def check(name: str) -> tuple[str, int, int, str]:
    kwargs = {"init_weights": False} if name in ("googlenet", "inception_v3") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torchvision.models.get_model(name, **kwargs).eval()
    size = input_size(name)
    try:
        space = slimnas.trace(model, torch.randn(1, 3, size, size))
    except slimnas.TraceError as err:
        return name, 0, 0, f"unsupported: {err}"
    supernet = slimnas.Supernet(model, space).eval()
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for arch in (space.min_arch(), space.max_arch(), space.sample(generator)):
        supernet.activate(arch)
        small = supernet.export(arch).eval()
        x = torch.randn(1, 3, size, size, generator=generator)
        with torch.no_grad():
            worst = max(worst, (small(x) - supernet(x)).abs().max().item())
        if sum(p.numel() for p in small.parameters()) != slimnas.params(space, arch):
            return name, len(space.channel_units()), len(space.depth_units()), "params differ"
    status = "supported" if worst <= 1e-4 else f"export differs by {worst:.2e}"
    return name, len(space.channel_units()), len(space.depth_units()), status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model names (default: all)")
    args = parser.parse_args()
    names = args.models or torchvision.models.list_models(module=torchvision.models)
    print(f"{'model':<22} {'channel units':>13} {'depth units':>11}  status")
    supported = 0
    start = time.perf_counter()
    for name in names:
        try:
            row = check(name)
        except Exception as err:  # a bench reports every failure instead of stopping
            row = (name, 0, 0, f"error: {type(err).__name__}: {str(err).splitlines()[0][:80]}")
        supported += row[3] == "supported"
        print(f"{row[0]:<22} {row[1]:>13} {row[2]:>11}  {row[3]}", flush=True)
    print(f"\n{supported} of {len(names)} supported in {time.perf_counter() - start:.0f} s")
    print(f"zoo_coverage: {supported}/{len(names)}")


if __name__ == "__main__":
    main()
