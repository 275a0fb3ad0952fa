"""``slimnas demo``: trace a model, cost a few archs, export one and verify the export against
the supernet and ONNX Runtime, on the built-in images when the model takes CIFAR-sized input."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from slimnas.cli.model_options import parse_shape
from slimnas.errors import ConfigError, SlimnasError
from slimnas.models.build import build_model


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


def run_demo(name: str, model: torch.nn.Module, shape: tuple[int, ...], args: Any) -> int:
    """Trace ``model`` (``name``), print the costs of a few archs, export its ×0.5 arch with
    recalibrated BatchNorm into ``args.out`` and verify it against the supernet and ONNX
    Runtime; ``args`` has ``archs``, ``seed`` and ``out``. Returns the exit status."""
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
    images = _builtin_batches(shape)
    example = images[0][:1] if images else torch.randn(shape, generator=generator)

    space = trace(model, example)
    print(
        f"model {name}: {len(space.channel_units())} channel units, "
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
        "model": name,
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


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo on ``args.model``; returns the exit status."""
    model, default = build_model(args.model, "--model")
    return run_demo(args.model, model, parse_shape(args.input, default), args)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command to the subcommands ``sub``."""
    demo = sub.add_parser("demo", help="trace, sample archs, cost table, export and verify")
    demo.add_argument(
        "--model", default="resnet20", help="any model.name form, as for slimnas space"
    )
    demo.add_argument("--input", help="example input shape N,C,H,W")
    demo.add_argument("--archs", type=int, default=5, help="random archs to sample")
    demo.add_argument("--out", default="runs/demo", help="directory for the exported model")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=cmd_demo)


__all__ = ["cmd_demo", "register", "run_demo"]
