"""The Torch-Pruning baseline: DepGraph group pruning of a plain trained module to a MACs target.

Fang, Ma, Song, Mi, Wang 2023, "DepGraph: Towards Any Structural Pruning" (arXiv 2301.12900),
through the ``torch-pruning`` package (an optional extra: ``pip install 'slimnas[prune]'``). As
its CIFAR benchmark does (``benchmarks/main.py --method group_norm``): group L2-norm importance
(`GroupMagnitudeImportance(p=2)`, normalised by its mean per group), channel sparsity 1.0 reached
in many small iterative steps (400 by default), the final classifier left whole, and
``pruner.step()`` repeated until the model's MACs are at most the target.

Differences from the benchmark: the stopping test counts MACs with slimnas' own counter
(`slimnas.cost.measured.module_macs`: conv and linear multiply-accumulates, as `slimnas.macs`
prices archs), so that "50 % MACs" means the same for every row of a comparison; Torch-Pruning's
own count is returned beside it. No sparsity training (``--reg``) precedes pruning, and the
input model is copied, not changed.
"""

from __future__ import annotations

import copy
import logging
import sys
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from slimnas.cost.measured import module_macs
from slimnas.errors import ConfigError, PruningError
from slimnas.ranking.slots import GROUPED, NORM, PRODUCER, channel_slots
from slimnas.space.space import Space

log = logging.getLogger(__name__)


@dataclass
class PrunedModel:
    """A module pruned by Torch-Pruning.

    Attributes:
        model: the pruned plain module (a copy of the input).
        macs: its conv + linear MACs at batch 1, counted by slimnas.
        base_macs: the input model's MACs, counted the same way.
        tp_macs: its MACs as Torch-Pruning's ``count_ops_and_params`` counts them.
        steps: pruner steps taken.
    """

    model: nn.Module
    macs: int
    base_macs: int
    tp_macs: int
    steps: int

    @property
    def ratio(self) -> float:
        return self.macs / self.base_macs


def _torch_pruning():
    try:
        import torch_pruning
    except ImportError:
        raise ConfigError(
            "the Torch-Pruning baseline needs torch-pruning: pip install 'slimnas[prune]'"
        ) from None
    return torch_pruning


def _classifiers(model: nn.Module, example_input: torch.Tensor) -> list[nn.Module]:
    """Linears that write the network output (kept whole, as Torch-Pruning's benchmark does)."""
    with torch.no_grad():
        output = model(example_input)
    if not isinstance(output, torch.Tensor):
        raise PruningError(
            f"the model returns {type(output).__name__}, not a tensor; wrap it so that "
            "forward returns the logits"
        )
    classes = output.shape[-1]
    return [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == classes]


def prune_with_torch_pruning(
    model: nn.Module,
    example_input: torch.Tensor,
    macs_ratio: float,
    *,
    global_pruning: bool = True,
    iterative_steps: int = 400,
    round_to: int | None = None,
    max_pruning_ratio: float = 1.0,
    ignored_layers: list[nn.Module] | None = None,
    progress: bool = True,
) -> PrunedModel:
    """Prune a copy of ``model`` with Torch-Pruning until its MACs are ``<= macs_ratio`` of the
    original's.

    Args:
        model: a plain trained module (not a `Supernet`); not changed.
        example_input: one input batch (batch 1 is used for counting).
        macs_ratio: target MACs as a fraction of the original's, in (0, 1].
        global_pruning: rank channel groups across layers (the benchmark's ``--global-pruning``)
            rather than pruning every layer by the same ratio.
        iterative_steps: steps over which channel sparsity grows to 1.0; each ``step()`` prunes
            about ``1 / iterative_steps`` of the channels.
        round_to: keep channel counts multiples of this (Torch-Pruning's ``round_to``).
        max_pruning_ratio: no layer loses more than this share of its channels.
        ignored_layers: modules to leave whole; default the classifier(s) writing the output.
        progress: show a progress bar (on a terminal only); each step takes about 0.3 s for
            ResNet-20 on a CPU.

    Returns:
        The `PrunedModel`.

    Raises:
        ConfigError: ``torch-pruning`` is not installed, or the ratio is out of range.
        PruningError: Torch-Pruning cannot build the model's dependency graph or prune it, or
            the target is not reached before every channel group is at its limit.
    """
    tp = _torch_pruning()
    if not 0.0 < macs_ratio <= 1.0:
        raise ConfigError(f"the target MACs ratio must be in (0, 1], got {macs_ratio}")
    was_training = model.training
    pruned = copy.deepcopy(model).eval()
    x = example_input[:1]
    base = module_macs(pruned, x)
    target = macs_ratio * base
    ignored = (
        _classifiers(pruned, x)
        if ignored_layers is None
        else _same_modules(model, pruned, ignored_layers)
    )
    try:
        pruner = tp.pruner.MetaPruner(
            pruned,
            x,
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            global_pruning=global_pruning,
            pruning_ratio=1.0,
            iterative_steps=iterative_steps,
            round_to=round_to,
            max_pruning_ratio=max_pruning_ratio,
            ignored_layers=ignored,
        )
    except Exception as err:  # Torch-Pruning raises plain exceptions on graphs it cannot read
        raise PruningError(
            f"Torch-Pruning cannot build this model's dependency graph ({_reason(err)}); "
            "leave this baseline out for it"
        ) from None
    macs, steps = base, 0
    bar = tqdm(
        total=iterative_steps,
        desc="torch-pruning",
        unit="step",
        disable=not progress or not sys.stderr.isatty(),
    )
    try:
        while macs > target:
            if steps >= iterative_steps:
                raise PruningError(
                    f"Torch-Pruning reached only {macs / base:.1%} of the MACs after {steps} "
                    f"steps, above the target {macs_ratio:.1%}; its prunable layers are exhausted"
                )
            try:
                pruner.step()
                macs = module_macs(pruned, x)
            except Exception as err:
                raise PruningError(
                    f"Torch-Pruning failed to prune this model ({_reason(err)}); "
                    "leave this baseline out for it"
                ) from None
            steps += 1
            bar.update()
            bar.set_postfix(macs=f"{macs / base:.1%}")
    finally:
        bar.close()
    tp_macs, _ = tp.utils.count_ops_and_params(pruned, x)
    log.info(
        "Torch-Pruning: %d steps, MACs %d -> %d (%.1f%%; its own count %d)",
        steps,
        base,
        macs,
        100 * macs / base,
        tp_macs,
    )
    pruned.train(was_training)
    return PrunedModel(pruned, macs, base, int(tp_macs), steps)


def _same_modules(model: nn.Module, copied: nn.Module, modules: list[nn.Module]) -> list:
    """The copies, in ``copied``, of ``modules`` of ``model``."""
    paths = {id(m): p for p, m in model.named_modules()}
    return [copied.get_submodule(paths[id(m)]) for m in modules if id(m) in paths]


def _reason(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:160]}" if lines else type(err).__name__


def kept_channels(original: nn.Module, pruned: nn.Module, space: Space) -> dict[str, list[int]]:
    """Per channel unit of ``space`` that Torch-Pruning narrowed, the indices (ascending) of the
    channels of ``original`` it kept in ``pruned``.

    Torch-Pruning slices tensors and keeps the survivors' order, so each of a unit's BatchNorm
    channels (weight, bias, running mean and variance together) is found again, unchanged, in
    the original; a unit with no BatchNorm of its own cannot be matched.

    Raises:
        PruningError: a narrowed unit without its own BatchNorm, or channels that match none of
            the original's.
    """
    slots = channel_slots(space)
    kept: dict[str, list[int]] = {}
    for unit in space.channel_units():
        norms = [
            s
            for s in slots.get(unit.name, ())
            if s.role == NORM and space.modules[s.module]["out_units"] == [unit.name]
        ]
        producers = [s for s in slots.get(unit.name, ()) if s.role in (PRODUCER, GROUPED)]
        if not producers:
            continue
        first = producers[0]
        width = getattr(pruned.get_submodule(first.module), first.tensor).shape[first.dim]
        if width == unit.max_channels:
            continue
        if not norms:
            raise PruningError(
                f"Torch-Pruning narrowed channel unit {unit.name!r}, which has no BatchNorm of "
                "its own to tell which channels it kept"
            )
        module = norms[0].module
        rows = [
            torch.stack(
                [
                    getattr(m.get_submodule(module), t).detach().double().cpu()
                    for t in ("weight", "bias", "running_mean", "running_var")
                ],
                1,
            )
            for m in (original, pruned)
        ]
        kept[unit.name] = _match_rows(rows[0], rows[1], unit.name)
    return kept


def _match_rows(full: torch.Tensor, survivors: torch.Tensor, unit: str) -> list[int]:
    """Indices into ``full`` of the rows of ``survivors``, which keep their order."""
    equal = (survivors[:, None, :] == full[None, :, :]).all(-1)
    found, start = [], 0
    for row in equal:
        hits = torch.nonzero(row[start:]).flatten()
        if len(hits) == 0:
            raise PruningError(
                f"a channel Torch-Pruning kept in unit {unit!r} matches none of the original's"
            )
        found.append(start + int(hits[0]))
        start = found[-1] + 1
    return found
