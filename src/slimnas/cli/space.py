"""``slimnas space``: trace a model and print the searchable units found in it."""

from __future__ import annotations

import argparse

import torch

from slimnas.cli.model_options import model_kwargs, parse_shape
from slimnas.models.build import build_model


def cmd_space(args: argparse.Namespace) -> int:
    """Print the search space of ``args.model``; returns the exit status."""
    from slimnas.space import trace

    model, default = build_model(args.model, "--model", **model_kwargs(args.kwargs))
    space = trace(model, torch.randn(parse_shape(args.input, default)))
    print(space.summary())
    print(f"\n{len(space)} searchable units, {space.size():.3g} archs")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``space`` command to the subcommands ``sub``."""
    space = sub.add_parser(
        "space",
        help="print the search space of a model",
        description="Trace a model and print the searchable units slimnas finds in it.",
    )
    space.add_argument(
        "--model",
        default="resnet20",
        help="a reference model (resnet20, mobilenet_v2, ...), tv:<torchvision name>, "
        "timm:<timm name> (random weights) or package.module:callable (a function or class "
        "returning the nn.Module, imported from the working directory or the installed "
        "packages); see model.name in docs/config.md",
    )
    space.add_argument(
        "--kwargs",
        help="keyword arguments of the model, a TOML inline table or JSON object, e.g. "
        "'{num_classes = 10, depth = 3}'",
    )
    space.add_argument(
        "--input",
        help="example input shape N,C,H,W (default: 32 px for the CIFAR models, the timm "
        "model's input size, else 224 px with the first conv's input channels)",
    )
    space.set_defaults(run=cmd_space)
