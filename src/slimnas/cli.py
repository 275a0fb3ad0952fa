"""The ``slimnas`` command line.

    slimnas demo                 trace a built-in model, sample archs, print their costs,
                                 export one and verify it (torch and ONNX Runtime)
    slimnas space --model NAME   print the search space discovered in a model

User mistakes print one line and exit with status 2; nothing already written is damaged.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from slimnas.errors import ConfigError, SlimnasError

log = logging.getLogger("slimnas")


def _build_model(name: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """A reference model by name (``resnet20``, ...) or a torchvision one (``tv:resnet18``)."""
    from slimnas.models import MODELS

    if name.startswith("tv:"):
        try:
            import torchvision
        except ImportError:
            raise ConfigError(
                "torchvision models need the 'vision' extra: pip install 'slimnas[vision]'"
            ) from None
        known = torchvision.models.list_models(module=torchvision.models)
        if name[3:] not in known:
            raise ConfigError(
                f"unknown torchvision model {name[3:]!r}; see torchvision.models.list_models()"
            )
        return torchvision.models.get_model(name[3:]), (1, 3, 224, 224)
    if name not in MODELS:
        raise ConfigError(
            f"unknown model {name!r}; choose one of {', '.join(MODELS)} or tv:<torchvision name>"
        )
    shape = (1, 3, 224, 224) if name == "mobilenet_v2" else (1, 3, 32, 32)
    return MODELS[name](), shape


def _parse_shape(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    if text is None:
        return default
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--input must be comma-separated integers like 1,3,32,32, got {text!r}"
        ) from None
    if len(shape) != 4 or min(shape) < 1:
        raise ConfigError(f"--input must be N,C,H,W with positive sizes, got {text!r}")
    return shape


def _builtin_batches(shape: tuple[int, ...], count: int = 5, size: int = 64) -> list:
    """Normalised batches of the built-in CIFAR-10 subset when the model takes 3x32x32 inputs."""
    if tuple(shape[1:]) != (3, 32, 32):
        return []
    from slimnas.data import load_builtin, normalize

    images, _ = load_builtin(train=True)
    return [normalize(images[i * size : (i + 1) * size]) for i in range(count)]


def _cost_row(space, arch) -> tuple[float, float, float]:
    from slimnas.cost import macs, params, peak_memory

    return macs(space, arch) / 1e6, params(space, arch) / 1e6, peak_memory(space, arch) / 1e6


def cmd_space(args: argparse.Namespace) -> int:
    from slimnas.space import trace

    model, default = _build_model(args.model)
    space = trace(model, torch.randn(_parse_shape(args.input, default)))
    print(space.summary())
    print(f"\n{len(space)} searchable units, {space.size():.3g} archs")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from slimnas.io import atomic_write_text, save_tensors
    from slimnas.onnx_export import export_onnx, verify_onnx
    from slimnas.space import trace
    from slimnas.supernet import Supernet
    from slimnas.train.bn import recalibrate_bn

    if args.archs < 1:
        raise ConfigError(f"--archs must be at least 1, got {args.archs}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory; choose another path")
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    model, default = _build_model(args.model)
    shape = _parse_shape(args.input, default)
    images = _builtin_batches(shape)
    example = images[0][:1] if images else torch.randn(shape, generator=generator)

    space = trace(model, example)
    print(
        f"model {args.model}: {len(space.channel_units())} channel units, "
        f"{len(space.depth_units())} depth units, {len(space.op_units())} op units, "
        f"{space.size():.3g} archs"
    )
    supernet = Supernet(model, space).eval()
    archs = {"max": space.max_arch(), "min": space.min_arch(), "x0.5": space.uniform_arch(0.5)}
    for i in range(args.archs):
        archs[f"random{i}"] = space.sample(generator)

    print(f"\n{'arch':<10} {'MACs (M)':>10} {'params (M)':>11} {'peak mem (MB)':>14}")
    for name, arch in archs.items():
        m, p, mem = _cost_row(space, arch)
        print(f"{name:<10} {m:>10.2f} {p:>11.4f} {mem:>14.3f}")

    chosen = archs["x0.5"]
    if images:  # BatchNorm statistics of the chosen subnet, from real training images
        recalibrate_bn(supernet, chosen, images[1:])
    small = supernet.export(chosen).eval()
    x = images[0] if images else torch.randn(shape, generator=generator)
    with torch.no_grad():
        supernet.activate(chosen)
        torch_diff = (supernet(x) - small(x)).abs().max().item()
    exported_params = sum(p.numel() for p in small.parameters())
    out.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=3, desc="export", disable=not sys.stderr.isatty())
    atomic_write_text(out / "arch.json", chosen.to_json())
    atomic_write_text(out / "space.json", space.to_json())
    steps.update()
    save_tensors(small.state_dict(), out / "model.safetensors")
    steps.update()
    onnx_path = export_onnx(small, x, out / "model.onnx")
    onnx_diff = verify_onnx(small, onnx_path, x, atol=1e-4)
    steps.update()
    steps.close()
    summary = {
        "model": args.model,
        "arch": dict(chosen),
        "macs": _cost_row(space, chosen)[0] * 1e6,
        "params": exported_params,
        "supernet_vs_export_max_abs_diff": torch_diff,
        "torch_vs_onnxruntime_max_abs_diff": onnx_diff,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    print(f"\nexported arch x0.5 to {out}/ (model.safetensors, model.onnx, arch.json)")
    print(f"  params {exported_params} (predicted {round(_cost_row(space, chosen)[1] * 1e6)})")
    print(f"  supernet vs exported: max abs diff {torch_diff:.2e}")
    print(f"  torch vs ONNX Runtime: max abs diff {onnx_diff:.2e}")
    if torch_diff > 1e-4:
        raise SlimnasError(f"exported model differs from the supernet by {torch_diff:.2e}")
    print("verified")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slimnas", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="trace, sample archs, cost table, export and verify")
    demo.add_argument("--model", default="resnet20", help="reference model or tv:<name>")
    demo.add_argument("--input", help="example input shape N,C,H,W")
    demo.add_argument("--archs", type=int, default=5, help="random archs to sample")
    demo.add_argument("--out", default="runs/demo", help="directory for the exported model")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=cmd_demo)

    space = sub.add_parser("space", help="print the search space of a model")
    space.add_argument("--model", default="resnet20", help="reference model or tv:<name>")
    space.add_argument("--input", help="example input shape N,C,H,W")
    space.set_defaults(run=cmd_space)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.run(args)
    except SlimnasError as err:
        print(f"slimnas: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
