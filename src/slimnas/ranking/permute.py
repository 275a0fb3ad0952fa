"""Rank channels by importance: permute every channel unit so its most important channels come
first, without changing what the model computes.

A narrower arch keeps the leading channels of each unit (slimmable networks, Yu et al. 2018,
arXiv 1812.08928). For a freshly initialised supernet that order is arbitrary and harmless; for a
*trained* model it decides which channels survive. Sorting channels by importance before
shrinking is what Once-for-All (Cai et al. 2020, arXiv 1908.09791, §3.2 "channel sorting") and
NVIDIA ModelOpt FastNAS do. The permutation is applied consistently to every tensor the unit
touches — producers' output rows and biases, BatchNorm weight, bias and running statistics,
consumers' input columns, every branch of a residual add, each segment of a concatenation,
depthwise convs and squeeze-excitation gates — which are exactly the ranges `Supernet.export`
slices (see `slimnas.ranking.slots`), so the permuted model computes the same function.

Units with a group granularity (grouped convs tying input and output) are permuted in whole
groups, ordered by their summed scores, so the group structure is kept. Units the tracer fixed
(network input and output, channels read by an op slimnas does not slice, mismatched joins) are
left in order, and `Ranking.skipped` says why: an unsliced reader might depend on their order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from slimnas.ranking.importance import Batches, channel_importance, check_criterion
from slimnas.ranking.slots import channel_slots
from slimnas.space.space import Space
from slimnas.space.units import ChannelUnit

if TYPE_CHECKING:
    from slimnas.supernet import Supernet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ranking:
    """What `rank_channels` did.

    Attributes:
        orders: per permuted unit, ``order[i]`` = the old index of the channel now at ``i``.
        scores: per permuted unit, the importance scores in the new order (non-increasing).
        skipped: per unit left in order, why.
    """

    orders: dict[str, torch.Tensor] = field(default_factory=dict)
    scores: dict[str, torch.Tensor] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def permutable_units(space: Space) -> tuple[list[ChannelUnit], dict[str, str]]:
    """Channel units whose channels may be reordered, and why each other one may not."""
    slots = channel_slots(space)
    ok: list[ChannelUnit] = []
    skipped: dict[str, str] = {}
    for unit in space.units.values():
        if not isinstance(unit, ChannelUnit):
            continue
        if unit.fixed_reason is not None:
            skipped[unit.name] = unit.fixed_reason
        elif unit.name not in slots:
            skipped[unit.name] = "no sliced layer holds its channels"
        elif unit.max_channels % unit.granularity:
            skipped[unit.name] = f"{unit.max_channels} channels are not whole groups"
        else:
            ok.append(unit)
    return ok, skipped


def importance_order(scores: torch.Tensor, granularity: int = 1) -> torch.Tensor:
    """Indices sorting ``scores`` most important first (ties keep their order); with a
    granularity, whole blocks of ``granularity`` channels move, ordered by their summed score."""
    if granularity <= 1:
        return torch.argsort(scores, descending=True, stable=True)
    blocks = scores.reshape(-1, granularity).sum(1)
    block_order = torch.argsort(blocks, descending=True, stable=True)
    return (block_order[:, None] * granularity + torch.arange(granularity)).reshape(-1)


def permute_channels(model: nn.Module, space: Space, orders: Mapping[str, torch.Tensor]) -> None:
    """Reorder channel units in place: channel ``i`` of unit ``u`` becomes old ``orders[u][i]``.

    Every parameter and buffer range that holds the unit's channels is rewritten in place, under
    ``no_grad`` (the tensors stay the same objects). Optimizer state such as momentum is *not*
    permuted: rank before building an optimizer. The caller must only pass units from
    `permutable_units`, or the function changes.
    """
    index: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
    for name, unit_slots in channel_slots(space).items():
        order = orders.get(name)
        if order is None:
            continue
        for slot in unit_slots:
            tensor = getattr(model.get_submodule(slot.module), slot.tensor, None)
            if tensor is None:
                continue
            key = (id(tensor), slot.dim)
            if key not in index:
                full = torch.arange(tensor.shape[slot.dim], device=tensor.device)
                index[key] = (tensor, full)
            full = index[key][1]
            full[slot.offset : slot.offset + slot.size] = slot.offset + order.to(full.device)
    with torch.no_grad():
        for (_, dim), (tensor, full) in index.items():
            tensor.copy_(tensor.index_select(dim, full))


def rank_channels(
    supernet: Supernet,
    criterion: str = "l1",
    *,
    side: str = "both",
    batches: Batches | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> Ranking:
    """Permute every channel unit of ``supernet`` so that its most important channels come first.

    At its max arch the supernet computes the same function afterwards (up to float rounding);
    narrower archs now keep each unit's most important channels.

    Args:
        supernet: the supernet, typically holding trained weights; changed in place.
        criterion: "l1", "l2", "bn" or "taylor" (`slimnas.ranking.importance`).
        side: for l1 / l2, "both" (producers and consumers), "producer" or "consumer".
        batches: (images, labels) pairs for "taylor".
        loss_fn: the loss "taylor" differentiates.

    Returns:
        The `Ranking`: orders and scores of the permuted units, and the units left in order.

    Raises:
        ConfigError: unknown criterion or side, or "taylor" without batches.
    """
    check_criterion(criterion, side)
    model, space = supernet.model, supernet.space
    units, skipped = permutable_units(space)
    scores = channel_importance(
        model, space, criterion, side=side, batches=batches, loss_fn=loss_fn
    )
    orders: dict[str, torch.Tensor] = {}
    sorted_scores: dict[str, torch.Tensor] = {}
    for unit in units:
        score = scores.get(unit.name)
        if score is None:
            skipped[unit.name] = f"no weights to score by {criterion}"
            continue
        order = importance_order(score, unit.granularity)
        orders[unit.name] = order
        sorted_scores[unit.name] = score[order]
    permute_channels(model, space, orders)
    searchable = [n for n in skipped if space.units[n].searchable]
    if searchable:
        log.warning("channel units left in order: %s", ", ".join(searchable))
    log.info(
        "ranked %d channel units by %s; %d left in order", len(orders), criterion, len(skipped)
    )
    return Ranking(orders, sorted_scores, skipped)
