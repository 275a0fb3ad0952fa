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
import warnings

import timm
from export_coverage import Row, check_exports, print_coverage

import slimnas
from slimnas.cost.measured import module_macs

DEFAULT = (
    "resnet10t resnet18 resnet50 seresnext26d_32x4d resnext26ts cspresnet50 dla34 dpn68 "
    "densenet121 mobilenetv2_100 mobilenetv3_small_050 mobilenetv3_large_100 efficientnet_b0 "
    "mnasnet_100 fbnetc_100 mixnet_s lcnet_050 ghostnet_100 rexnet_100 regnetx_002 regnety_002 "
    "convnext_atto vgg11"
).split()


def macs_differ(space, arch, small, x) -> str | None:
    return "MACs differ" if slimnas.macs(space, arch) != module_macs(small, x) else None


def check(name: str, size: int = 64) -> Row:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    return check_exports(name, model, size, macs_differ, error_chars=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="timm model names (default: a handful)")
    args = parser.parse_args()
    print_coverage(args.models or DEFAULT, check, "timm_coverage", width=24)


if __name__ == "__main__":
    main()
