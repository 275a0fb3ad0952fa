"""`Supernet`: a model whose layers run any arch of its space, and export to plain modules.

``Supernet(model, space)`` turns the model's convs, linears and BatchNorms into dynamic layers
and its residual blocks into skippable ones *in place* (classes are swapped; parameter names and
the state dict are unchanged, and at the max arch the model computes exactly what it did).
``activate(arch)`` selects a subnet (hard mode), ``activate_soft`` a TAS mixture, and
``export(arch)`` returns a plain `torch.nn.Module` with the sliced weights.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from slimnas.dynamic.block import SkippableBlock, convert_class, restore_class
from slimnas.dynamic.choice import Choice
from slimnas.dynamic.conv import DynamicConv2d, DynamicLinear
from slimnas.dynamic.mixed import DepthMix, WidthMix
from slimnas.dynamic.norm import DynamicBatchNorm1d, DynamicBatchNorm2d
from slimnas.errors import ArchError, CheckpointError
from slimnas.io import atomic_write_text, load_tensors, save_tensors
from slimnas.ranking.permute import Ranking, rank_channels
from slimnas.space.space import Space
from slimnas.space.units import Arch, ChannelUnit, Choice_, DepthUnit

_DYNAMIC = {"conv": DynamicConv2d, "linear": DynamicLinear}


def _dynamic_norm(module: nn.Module) -> type:
    return DynamicBatchNorm1d if isinstance(module, nn.BatchNorm1d) else DynamicBatchNorm2d


class Supernet(nn.Module):
    """A model that runs every arch of ``space``.

    Args:
        model: the model that ``space`` was traced from; converted in place.
        space: its `Space` (possibly narrowed with ``fix`` / ``with_choices``).
    """

    def __init__(self, model: nn.Module, space: Space):
        super().__init__()
        self.model = model
        self.space = space
        for path, info in space.modules.items():
            try:
                module = model.get_submodule(path)
            except AttributeError:
                raise ArchError(
                    f"the space names module '{path}', which the model lacks; trace "
                    "this model again"
                ) from None
            kind = info["kind"]
            if kind in _DYNAMIC:
                convert_class(module, _DYNAMIC[kind])
                if kind == "conv":
                    module.slim_group_width = info["group_width"]
            elif kind == "norm":
                convert_class(module, _dynamic_norm(module))
            elif kind == "block":
                convert_class(module, SkippableBlock)
                module.slim_index = info["index"]
                module.slim_first = info["index"] == space.units[info["depth_unit"]].base
        self.arch = self.activate(space.max_arch())

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def _set_layers(self, choice: Mapping[str, Choice_], mixes: Mapping[str, WidthMix]) -> None:
        """Give every dynamic layer its active channels (and soft mixes) under ``choice``."""
        for path, info in self.space.modules.items():
            kind = info["kind"]
            if kind not in ("conv", "linear", "norm"):
                continue
            module = self.model.get_submodule(path)
            device = module.weight.device if module.weight is not None else None
            ins, outs = info["in_units"], info["out_units"]
            if kind == "norm":
                module.slim_index = layout_index(self.space, ins, choice, device)
            else:
                module.slim_in_index = layout_index(self.space, ins, choice, device)
                module.slim_out_index = layout_index(self.space, outs, choice, device)
                module.slim_out = None if len(outs) > 1 else choice[outs[0]]
            mix = mixes.get(outs[0]) if info["mix"] and len(outs) == 1 else None
            module.slim_mix = mix

    # ------------------------------------------------------------------------------- archs
    def activate(self, arch: Mapping[str, Choice_]) -> Arch:
        """Run ``arch`` from now on (hard mode); returns it validated as an `Arch`."""
        arch = self.space.validate(arch)
        choice = self.space.resolve(arch)
        self._set_layers(choice, {})
        for path, info in self.space.modules.items():
            if info["kind"] == "block":
                module = self.model.get_submodule(path)
                module.slim_runs = choice[info["depth_unit"]] > info["index"]
                module.slim_depth_mix = None
            elif info["kind"] == "choice":
                self.model.get_submodule(path).activate(choice[path])
        self.arch = arch
        return arch

    def activate_soft(
        self,
        widths: Mapping[str, tuple[tuple[int, ...], torch.Tensor]],
        depths: Mapping[str, torch.Tensor] | None = None,
        base: Mapping[str, Choice_] | None = None,
    ) -> None:
        """Soft mode (TAS): mix sampled widths per channel unit and depths per depth unit.

        Args:
            widths: per channel unit, the sampled widths and their mixing weights (a tensor
                with grad, typically renormalised Gumbel-softmax probabilities).
            depths: per depth unit, weights over all of its ``choices``.
            base: choices of the units not mixed (default: the max arch).
        """
        arch = dict(self.space.max_arch())
        arch.update(base or {})
        self.activate(arch)
        choice = self.space.resolve(self.arch)
        mixes: dict[str, WidthMix] = {}
        for name, (values, weights) in widths.items():
            unit = self.space.units.get(name)
            if not isinstance(unit, ChannelUnit) or any(v not in unit.choices for v in values):
                raise ArchError(f"soft widths {values} do not fit channel unit {name!r}")
            if len(weights) != len(values):
                raise ArchError(f"unit {name!r}: {len(values)} widths but {len(weights)} weights")
            mixes[name] = WidthMix(tuple(values), weights)
            choice[name] = max(values)
        self._set_layers(choice, mixes)
        for name, weights in (depths or {}).items():
            unit = self.space.units.get(name)
            if not isinstance(unit, DepthUnit) or len(weights) != len(unit.choices):
                raise ArchError(f"soft depth weights do not fit depth unit {name!r}")
            mix = DepthMix(unit.choices, weights)
            for block in unit.blocks:
                self.model.get_submodule(block).slim_depth_mix = mix

    def sample(self, generator: torch.Generator | None = None) -> Arch:
        """Activate and return a uniformly random arch."""
        return self.activate(self.space.sample(generator))

    def max_arch(self) -> Arch:
        return self.space.max_arch()

    def min_arch(self) -> Arch:
        return self.space.min_arch()

    def uniform_arch(self, ratio: float) -> Arch:
        return self.space.uniform_arch(ratio)

    def rank_channels(
        self, criterion: str = "l1", batches: Iterable | None = None, *, side: str = "both"
    ) -> Ranking:
        """Reorder every channel unit most important first, in place; the function at the max
        arch is unchanged. Criteria "l1", "l2", "bn", "taylor" (which needs ``batches`` of
        (images, labels)); see `slimnas.ranking.rank_channels`."""
        return rank_channels(self, criterion, side=side, batches=batches)

    # ------------------------------------------------------------------------------ export
    def export(self, arch: Mapping[str, Choice_] | None = None) -> nn.Module:
        """A plain copy of the model at ``arch`` (default: the active one) with sliced weights.

        The result holds only the model's own and torch's module classes; its outputs equal the
        supernet's at ``arch``. The supernet itself is not changed.
        """
        arch = self.space.validate(self.arch if arch is None else arch)
        choice = self.space.resolve(arch)
        model = copy.deepcopy(self.model)
        replaced: dict[str, nn.Module] = {}
        for path, info in self.space.modules.items():
            module = model.get_submodule(path)
            kind = info["kind"]
            if kind in ("conv", "linear", "norm"):
                device = module.weight.device if module.weight is not None else None
                ins = layout_index(self.space, info["in_units"], choice, device, always=True)
                outs = layout_index(self.space, info["out_units"], choice, device, always=True)
                _slice_layer(module, kind, ins, outs)
            elif kind == "block" and choice[info["depth_unit"]] <= info["index"]:
                replaced[path] = nn.Identity()
            elif kind == "choice":
                replaced[path] = module[choice[path]]
        for module in model.modules():
            restore_class(module)
            if isinstance(module, Choice):
                module.paths, module.gates = (), None
        # Replace deepest paths first so that a chosen candidate is itself already exported.
        for path in sorted(replaced, key=lambda p: -p.count(".")):
            parent, _, name = path.rpartition(".")
            owner = model.get_submodule(parent) if parent else model
            owner._modules[name] = replaced[path]
        return model

    # -------------------------------------------------------------------------------- files
    def save(self, directory: str | Path) -> Path:
        """Write ``supernet.safetensors`` (weights) and ``supernet.json`` (space, arch)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_tensors(self.model.state_dict(), directory / "supernet.safetensors")
        meta = {"space": json.loads(self.space.to_json()), "arch": dict(self.arch)}
        atomic_write_text(directory / "supernet.json", json.dumps(meta))
        return directory

    @classmethod
    def load(cls, model: nn.Module, directory: str | Path) -> Supernet:
        """Rebuild a supernet saved by `save` around a freshly built ``model`` of the same kind."""
        directory = Path(directory)
        meta_path = directory / "supernet.json"
        try:
            meta = json.loads(meta_path.read_text())
            space = Space.from_json(json.dumps(meta["space"]))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(
                f"cannot read {meta_path}: {err}; save the supernet again"
            ) from None
        weights = directory / "supernet.safetensors"
        state = load_tensors(weights)
        present = dict(model.named_modules())
        missing = [p for p in space.modules if p not in present]
        own = model.state_dict()
        mismatch = (
            missing[:1]
            or [
                k
                for k in sorted(set(own) | set(state))
                if k not in own or k not in state or own[k].shape != state[k].shape
            ][:1]
        )
        if mismatch:
            raise CheckpointError(
                f"{weights} was saved from another model (first difference: '{mismatch[0]}'); "
                "build the same model as when saving"
            )
        supernet = cls(model, space)
        model.load_state_dict(state, strict=True)
        supernet.activate(meta["arch"])
        return supernet


def layout_index(
    space: Space,
    units: list[str] | tuple[str, ...],
    choice: Mapping[str, Choice_],
    device: torch.device | None = None,
    always: bool = False,
) -> torch.Tensor | None:
    """Active channel indices of a layout: the leading ``choice[u]`` of each unit's segment.

    Returns ``None`` for a one-unit layout (its leading channels) unless ``always``.
    """
    if len(units) == 1 and not always:
        return None
    parts, offset = [], 0
    for name in units:
        parts.append(torch.arange(offset, offset + int(choice[name]), device=device))
        offset += space.units[name].max_channels
    return torch.cat(parts)


def _slice_layer(module: nn.Module, kind: str, ins: torch.Tensor, outs: torch.Tensor) -> None:
    """Keep the ``ins`` input and ``outs`` output channels of a layer, in place."""

    def keep(param: torch.Tensor | None, rows: torch.Tensor, cols: torch.Tensor | None = None):
        if param is None:
            return None
        data = param.detach().index_select(0, rows)
        if cols is not None:
            data = data.index_select(1, cols)
        return data.clone()

    def parameter(old: nn.Parameter, data: torch.Tensor) -> nn.Parameter:
        return nn.Parameter(data, old.requires_grad)

    cin, cout = len(ins), len(outs)
    if kind == "conv":
        group_width = module.slim_group_width
        groups = cin // group_width if group_width else module.groups
        cols = None if group_width else ins
        module.weight = parameter(module.weight, keep(module.weight, outs, cols))
        if module.bias is not None:
            module.bias = parameter(module.bias, keep(module.bias, outs))
        module.in_channels, module.out_channels, module.groups = cin, cout, groups
    elif kind == "linear":
        module.weight = parameter(module.weight, keep(module.weight, outs, ins))
        if module.bias is not None:
            module.bias = parameter(module.bias, keep(module.bias, outs))
        module.in_features, module.out_features = cin, cout
    else:
        for name in ("weight", "bias"):
            param = getattr(module, name)
            if param is not None:
                setattr(module, name, parameter(param, keep(param, outs)))
        for name in ("running_mean", "running_var"):
            if getattr(module, name) is not None:
                setattr(module, name, keep(getattr(module, name), outs))
        module.num_features = cout
