"""Which timm CNNs slimnas supports, and what it finds in them.

For each named timm model (random weights, 10 classes): trace it at 64 px, count its searchable
channel and depth units, check that the exported plain module equals the supernet at the min,
the max and one random arch (max abs diff ≤ 1e-4), and that the analytic MACs of each arch equal
the MACs counted on the exported module with hooks. Prints a table and ends with
``timm_coverage: N/M``.

    .venv/bin/python bench/timm_coverage.py                  # the default handful (~1 min)
    .venv/bin/python bench/timm_coverage.py resnet18 efficientnet_b0
"""

from __future__ import annotations

import argparse
import time
import warnings

import timm
import torch

import slimnas
from slimnas.cost.measured import module_macs

DEFAULT = (
    "resnet10t resnet18 resnet50 seresnext26d_32x4d resnext26ts cspresnet50 dla34 dpn68 "
    "densenet121 mobilenetv2_100 mobilenetv3_small_050 mobilenetv3_large_100 efficientnet_b0 "
    "mnasnet_100 fbnetc_100 mixnet_s lcnet_050 ghostnet_100 rexnet_100 regnetx_002 regnety_002 "
    "convnext_atto vgg11"
).split()


def check(name: str, size: int = 64) -> tuple[str, int, int, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    example = torch.randn(1, 3, size, size)
    try:
        space = slimnas.trace(model, example)
    except slimnas.TraceError as err:
        return name, 0, 0, f"unsupported: {str(err)[:100]}"
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
        if slimnas.macs(space, arch) != module_macs(small, x):
            return name, *counts, "MACs differ"
    return name, *counts, "supported" if worst <= 1e-4 else f"export differs by {worst:.2e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="timm model names (default: a handful)")
    args = parser.parse_args()
    names = args.models or DEFAULT
    print(f"{'model':<24} {'channel units':>13} {'depth units':>11}  status")
    supported = 0
    start = time.perf_counter()
    for name in names:
        try:
            row = check(name)
        except Exception as err:  # a bench reports every failure instead of stopping
            row = (name, 0, 0, f"error: {type(err).__name__}: {str(err).splitlines()[0][:80]}")
        supported += row[3] == "supported"
        print(f"{row[0]:<24} {row[1]:>13} {row[2]:>11}  {row[3]}", flush=True)
    print(f"\n{supported} of {len(names)} supported in {time.perf_counter() - start:.0f} s")
    print(f"timm_coverage: {supported}/{len(names)}")


if __name__ == "__main__":
    main()
