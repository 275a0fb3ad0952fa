"""Global magnitude pruning: the classic L1-norm filter pruning baseline, as an arch.

Li, Kadav, Durdanovic, Samet, Graf 2017, "Pruning Filters for Efficient ConvNets" (arXiv
1608.08710) score each filter by the L1 norm of its weights and remove the smallest. Here every
channel of every searchable channel unit is scored by the L1 norm of its producers' filters
(all convs and linears writing the unit: every branch of a residual add counts) divided by their
fan-in, i.e. the mean ``|w|`` of the channel's filters. That per-layer normalisation makes
filters of layers with different fan-in comparable, so channels can be removed *globally*,
lowest first, until the budget holds. Li et al. prune layer by layer with ratios chosen from a
sensitivity analysis; the global variant with normalised scores is the common baseline
(Torch-Pruning's ``global_pruning`` with a normaliser).

Differences from the paper: channels come and go per unit (a residual add's branches together)
and each unit keeps the smallest of its choices (divisor rounding) that holds all its channels
above the threshold, so the result is an arch of the space, priced by the space's analytic costs;
the kept channels are a unit's *leading* ones, so rank the supernet first with
``supernet.rank_channels("l1", side="producer")`` (the same score), or the arch's exported model
keeps other channels than the ones scored highest (a warning says so).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping

import torch

from slimnas.cost.budget import Budget
from slimnas.errors import BudgetError
from slimnas.ranking.slots import GROUPED, PRODUCER, channel_slots
from slimnas.space.space import Space
from slimnas.space.units import Arch, ChannelUnit
from slimnas.supernet import Supernet

log = logging.getLogger(__name__)


def filter_scores(supernet: Supernet) -> dict[str, torch.Tensor]:
    """Per searchable channel unit, each channel's mean ``|w|`` over its producers' filters.

    Dense producers (convs with ``groups == 1``, linears) count; a unit written only by
    depthwise / grouped convs is scored by their rows.

    Returns:
        Per unit, a float64 CPU tensor of ``max_channels`` scores in the current channel order.
    """
    slots = channel_slots(supernet.space, with_buffers=False)
    scores: dict[str, torch.Tensor] = {}
    for unit in supernet.space.channel_units():
        unit_slots = [s for s in slots.get(unit.name, ()) if s.tensor == "weight"]
        for roles in ((PRODUCER,), (GROUPED,)):
            chosen = [s for s in unit_slots if s.role in roles]
            if chosen:
                break
        if not chosen:
            continue
        total = torch.zeros(unit.max_channels, dtype=torch.float64)
        fan_in = 0
        for slot in chosen:
            weight = supernet.model.get_submodule(slot.module).weight.detach()
            rows = weight.narrow(0, slot.offset, slot.size).reshape(slot.size, -1)
            total += rows.abs().sum(1).double().cpu()
            fan_in += rows.shape[1]
        scores[unit.name] = total / fan_in
    return scores


def _arch_at(
    space: Space,
    scores: Mapping[str, torch.Tensor],
    threshold: float,
    base: Arch,
) -> Arch:
    """Each scored unit at its smallest choice that keeps every channel scoring above
    ``threshold``."""
    choices = {}
    for name, score in scores.items():
        unit = space.units[name]
        kept = int((score > threshold).sum())
        choices[name] = unit.choices[
            min(bisect.bisect_left(unit.choices, kept), len(unit.choices) - 1)
        ]
    return base.merged(choices)


def magnitude_arch(supernet: Supernet, budget: Budget | str) -> Arch:
    """The arch left by removing channels globally, lowest normalised filter L1 first, until
    ``budget`` holds (see the module docstring).

    Args:
        supernet: the supernet, holding trained weights, ranked by
            ``rank_channels("l1", side="producer")`` so that kept channels are the top ones.
        budget: a `Budget`, or its text (``"macs<=50%"``: relative to the max arch).

    Returns:
        The most channels any global threshold leaves within the budget; depth and op units at
        their defaults.

    Raises:
        BudgetError: the budget cannot be read, or even every unit at its min exceeds it.
    """
    space = supernet.space
    if isinstance(budget, str):
        budget = Budget.parse(budget, space)
    scores = filter_scores(supernet)
    base = Arch({n: u.default for n, u in space.searchable.items()})
    thresholds = sorted({float(v) for s in scores.values() for v in s.tolist()})
    candidates = [float("-inf"), *thresholds]
    if not budget.fits(space, _arch_at(space, scores, candidates[-1], base)):
        raise BudgetError(
            f"budget {budget.text!r} cannot be met by channel pruning: every unit at its "
            "smallest choice exceeds it; raise the budget or lower the space's min_ratio"
        )
    # Costs fall as the threshold rises: find the lowest threshold whose arch fits.
    low, high = 0, len(candidates) - 1
    while low < high:
        middle = (low + high) // 2
        if budget.fits(space, _arch_at(space, scores, candidates[middle], base)):
            high = middle
        else:
            low = middle + 1
    arch = _arch_at(space, scores, candidates[low], base)
    _warn_unranked(space, scores, arch)
    return arch


def _warn_unranked(space: Space, scores: Mapping[str, torch.Tensor], arch: Arch) -> None:
    """Warn when a pruned unit's leading channels are not its top-scored ones."""
    unranked = []
    for name, score in scores.items():
        unit = space.units[name]
        k = arch[name]
        if isinstance(unit, ChannelUnit) and k < unit.max_channels:
            if score[:k].min() < score[k:].max():
                unranked.append(name)
    if unranked:
        log.warning(
            "magnitude pruning keeps the leading channels, which are not the top-scored ones in "
            "%d units (first: %s); call supernet.rank_channels('l1', side='producer') first",
            len(unranked),
            unranked[0],
        )
