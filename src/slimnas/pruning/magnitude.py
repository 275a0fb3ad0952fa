"""Global magnitude pruning: the classic L1-norm filter pruning baseline, as an arch.

Li, Kadav, Durdanovic, Samet, Graf 2017, "Pruning Filters for Efficient ConvNets" (arXiv
1608.08710) score each filter by the L1 norm of its weights and remove the smallest. Here every
channel of every searchable channel unit is scored by the L1 norm of its producers' filters
divided by the square root of their fan-in (averaged over the producers of a unit: the branches
of a residual add). That per-layer normalisation makes layers of different fan-in comparable, so
channels can be removed *globally*, lowest first, until the budget holds: the L1 norm of ``n``
He-initialised weights grows like ``sqrt(n)`` (``n`` weights of scale ``1 / sqrt(n)``), so
untrained filters score alike in every layer, and a layer scores low only for what training did
to it. Dividing by ``n`` instead (the mean ``|w|``) prunes the widest-fan-in layers first: on the
trained ResNet-20 at 50 % MACs, before any fine-tuning, with BatchNorm recalibrated, it kept 17 %
accuracy on 1,000 built-in test images against 42 % with ``sqrt(n)``. Li et al. prune layer by
layer with ratios chosen from a sensitivity analysis; the global variant with normalised scores
is the common baseline (Torch-Pruning's ``global_pruning`` with a normaliser).

Differences from the paper: channels come and go per unit (a residual add's branches together)
and each unit keeps the smallest of its choices (divisor rounding) that holds all its channels
above the threshold, so the result is an arch of the space, priced by the space's analytic costs;
as choices are coarse, units are then widened back one choice at a time (the highest-scored added
channels first) while the budget still holds. The kept channels are a unit's *leading* ones, so
by default `magnitude_arch` first reorders the supernet's channels by these scores
(`slimnas.ranking.permute_channels`: the function is unchanged), and the exported arch keeps
exactly the top-scored filters.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Mapping

import torch

from slimnas.cost.budget import Budget
from slimnas.errors import BudgetError
from slimnas.ranking.permute import importance_order, permutable_units, permute_channels
from slimnas.ranking.slots import GROUPED, PRODUCER, channel_slots
from slimnas.space.space import Space
from slimnas.space.units import Arch, ChannelUnit
from slimnas.supernet import Supernet

log = logging.getLogger(__name__)


def filter_scores(supernet: Supernet) -> dict[str, torch.Tensor]:
    """Per searchable channel unit, each channel's producer-filter L1 norm over ``sqrt(fan-in)``,
    averaged over the unit's producers (the branches of a residual add).

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
        for slot in chosen:
            weight = supernet.model.get_submodule(slot.module).weight.detach()
            rows = weight.narrow(0, slot.offset, slot.size).reshape(slot.size, -1)
            total += rows.abs().sum(1).double().cpu() / math.sqrt(rows.shape[1])
        scores[unit.name] = total / len(chosen)
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


def magnitude_arch(supernet: Supernet, budget: Budget | str, *, rank: bool = True) -> Arch:
    """The arch left by removing channels globally, lowest normalised filter L1 first, until
    ``budget`` holds (see the module docstring).

    Args:
        supernet: the supernet, holding trained weights.
        budget: a `Budget`, or its text (``"macs<=50%"``: relative to the max arch).
        rank: first reorder every unit by these scores, in place (the function is unchanged,
            see `slimnas.ranking`), so that the arch keeps exactly its top-scored channels. With
            ``False`` the current order is kept, and a warning names units whose leading
            channels are not the top-scored ones.

    Returns:
        The arch of the lowest global threshold that meets the budget, widened back while it
        holds; depth and op units at their defaults.

    Raises:
        BudgetError: the budget cannot be read, or even every unit at its min exceeds it.
    """
    space = supernet.space
    if isinstance(budget, str):
        budget = Budget.parse(budget, space)
    scores = filter_scores(supernet)
    if rank:
        scores = _rank(supernet, scores)
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
    arch = _grow_back(space, scores, budget, _arch_at(space, scores, candidates[low], base))
    _warn_unranked(space, scores, arch)
    return arch


def _grow_back(
    space: Space, scores: Mapping[str, torch.Tensor], budget: Budget, arch: Arch
) -> Arch:
    """Widen units one choice at a time while the budget holds, the unit whose added channels
    score highest (by their mean) first: with coarse choices the threshold alone can stop far
    below the budget (a 16-channel unit goes from 16 to 8 at once)."""
    while True:
        best, best_score = None, float("-inf")
        for name, score in scores.items():
            choices = space.units[name].choices
            at = choices.index(arch[name])
            if at + 1 == len(choices):
                continue
            wider = arch.merged({name: choices[at + 1]})
            added = torch.sort(score, descending=True).values[arch[name] : choices[at + 1]]
            if added.mean() > best_score and budget.fits(space, wider):
                best, best_score = wider, float(added.mean())
        if best is None:
            return arch
        arch = best


def rank_by_filter_scores(supernet: Supernet) -> None:
    """Reorder every permutable unit by `filter_scores`, highest first, in place (the function
    is unchanged): what `magnitude_arch` with ``rank=True`` does before choosing."""
    _rank(supernet, filter_scores(supernet))


def _rank(supernet: Supernet, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Permute the permutable units by ``scores``; the scores in the new order."""
    units, _ = permutable_units(supernet.space)
    orders = {
        u.name: importance_order(scores[u.name], u.granularity) for u in units if u.name in scores
    }
    permute_channels(supernet.model, supernet.space, orders)
    return {n: s[orders[n]] if n in orders else s for n, s in scores.items()}


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
            "%d units (first: %s); call magnitude_arch with rank=True",
            len(unranked),
            unranked[0],
        )
