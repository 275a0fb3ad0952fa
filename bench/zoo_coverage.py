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
import warnings

import torchvision
from export_coverage import Row, check_exports, print_coverage

import slimnas

TRANSFORMERS = ("vit", "swin", "maxvit")


def input_size(name: str) -> int:
    if name == "inception_v3":
        return 299
    return 224 if name.startswith(TRANSFORMERS) else 64


def params_differ(space, arch, small, x) -> str | None:
    exact = sum(p.numel() for p in small.parameters()) == slimnas.params(space, arch)
    return None if exact else "params differ"


def check(name: str) -> Row:
    kwargs = {"init_weights": False} if name in ("googlenet", "inception_v3") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torchvision.models.get_model(name, **kwargs).eval()
    return check_exports(name, model, input_size(name), params_differ, error_chars=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model names (default: all)")
    args = parser.parse_args()
    names = args.models or torchvision.models.list_models(module=torchvision.models)
    print_coverage(names, check, "zoo_coverage", width=22)


if __name__ == "__main__":
    main()
