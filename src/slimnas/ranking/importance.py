"""Channel importance: one score per channel of every channel unit.

Criteria (a larger score means a more important channel):

* ``l1`` / ``l2``: the L1 / L2 norm of all conv and linear weights that touch the channel, taken
  as one group (Torch-Pruning's group norm, Fang et al. 2023, arXiv 2301.12900). ``side`` picks
  which weights: ``"both"`` (default) the producers' output filters, the consumers' input slices
  and the rows of depthwise / grouped convs that carry the unit; ``"consumer"`` the consumers'
  input slices only, which is what Once-for-All (Cai et al. 2020, arXiv 1908.09791,
  ``re_organize_middle_weights``: L1 over the next layer's input slices) and NVIDIA ModelOpt
  FastNAS (L2 over the next layer's input slices) sort by; ``"producer"`` the output filters
  only (Li et al. 2017, arXiv 1608.08710). Biases are not counted.
* ``bn``: ``|gamma|`` of the BatchNorms that normalise the unit, summed over them (Network
  Slimming, Liu et al. 2017, arXiv 1708.06519). A unit without an affine BatchNorm falls back to
  ``l1`` (logged).
* ``taylor``: first-order Taylor estimate of the loss change when the channel is removed
  (Molchanov et al. 2019, arXiv 1906.10771, eq. 8 on the whole group): per batch
  ``(sum over every weight, bias and BatchNorm parameter of the channel of w * dL/dw)^2``,
  averaged over the batches. The model runs in eval mode (running statistics, no update), where
  the paper uses training mode; no parameter or buffer is changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from slimnas.errors import ConfigError
from slimnas.ranking.slots import CONSUMER, GROUPED, NORM, PRODUCER, ChannelSlot, channel_slots
from slimnas.space.space import Space

log = logging.getLogger(__name__)

CRITERIA = ("l1", "l2", "bn", "taylor")
SIDES = {
    "both": (PRODUCER, CONSUMER, GROUPED),
    "producer": (PRODUCER,),
    "consumer": (CONSUMER,),
}

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def check_criterion(criterion: str, side: str = "both") -> None:
    """Raise `ConfigError` for an unknown criterion or side."""
    if criterion not in CRITERIA:
        raise ConfigError(
            f"unknown channel importance criterion {criterion!r}; use one of {', '.join(CRITERIA)}"
        )
    if side not in SIDES:
        raise ConfigError(f"unknown weight side {side!r}; use one of {', '.join(SIDES)}")


def _channel_rows(module: nn.Module, slot: ChannelSlot) -> torch.Tensor | None:
    """The slot's range as ``[size, -1]``, one row per channel (``None`` if the tensor is)."""
    tensor = getattr(module, slot.tensor, None)
    if tensor is None:
        return None
    part = tensor.detach().narrow(slot.dim, slot.offset, slot.size)
    return part.movedim(slot.dim, 0).reshape(slot.size, -1)


def _norm_scores(model: nn.Module, slots: list[ChannelSlot], p: int, roles) -> torch.Tensor | None:
    total = None
    for slot in slots:
        if slot.role not in roles or slot.tensor != "weight":
            continue
        rows = _channel_rows(model.get_submodule(slot.module), slot)
        if rows is None:
            continue
        part = rows.abs().sum(1) if p == 1 else rows.pow(2).sum(1)
        part = part.double().cpu()
        total = part if total is None else total + part
    if total is None:
        return None
    return total if p == 1 else total.sqrt()


def _bn_scores(model: nn.Module, slots: list[ChannelSlot]) -> torch.Tensor | None:
    total = None
    for slot in slots:
        if slot.role != NORM or slot.tensor != "weight":
            continue
        rows = _channel_rows(model.get_submodule(slot.module), slot)
        if rows is not None:
            part = rows.abs().sum(1).double().cpu()
            total = part if total is None else total + part
    return total


def _taylor_scores(
    model: nn.Module,
    slots: dict[str, list[ChannelSlot]],
    batches: Batches,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> dict[str, torch.Tensor]:
    tensors: dict[tuple[str, str], nn.Parameter] = {}
    for unit_slots in slots.values():
        for slot in unit_slots:
            param = getattr(model.get_submodule(slot.module), slot.tensor, None)
            if isinstance(param, nn.Parameter):
                tensors[(slot.module, slot.tensor)] = param
    keys = list(tensors)
    params = [tensors[k] for k in keys]
    flags = [p.requires_grad for p in params]
    modes = {m: m.training for m in model.modules()}
    device = params[0].device if params else torch.device("cpu")
    totals = {name: torch.zeros(s[0].size, dtype=torch.float64) for name, s in slots.items()}
    count = 0
    try:
        model.eval()
        for p in params:
            p.requires_grad_(True)
        for x, y in batches:
            loss = loss_fn(model(x.to(device)), y.to(device))
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            products = {
                k: (g * p).detach() for k, p, g in zip(keys, params, grads) if g is not None
            }
            for name, unit_slots in slots.items():
                score = torch.zeros(unit_slots[0].size, dtype=torch.float64)
                for slot in unit_slots:
                    product = products.get((slot.module, slot.tensor))
                    if product is not None:
                        part = product.narrow(slot.dim, slot.offset, slot.size)
                        part = part.movedim(slot.dim, 0).reshape(slot.size, -1)
                        score += part.sum(1).double().cpu()
                totals[name] += score.pow(2)
            count += 1
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        for module, mode in modes.items():
            module.train(mode)
    if count == 0:
        raise ConfigError("the taylor criterion needs at least one batch of (images, labels)")
    return {name: total / count for name, total in totals.items()}


def channel_importance(
    model: nn.Module,
    space: Space,
    criterion: str = "l1",
    *,
    side: str = "both",
    batches: Batches | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> dict[str, torch.Tensor]:
    """One importance score per channel of every channel unit (see the module docstring).

    Args:
        model: the model ``space`` was traced from (or a `Supernet`'s ``model``).
        space: its traced space.
        criterion: "l1", "l2", "bn" or "taylor".
        side: for l1 / l2, which weights count: "both", "producer" or "consumer".
        batches: (images, labels) pairs, needed by "taylor" only (a few suffice).
        loss_fn: the loss the Taylor estimate differentiates.

    Returns:
        Per unit name, a float64 CPU tensor of ``max_channels`` scores in the model's current
        channel order. Units with no weights of the requested kind are left out.

    Raises:
        ConfigError: unknown criterion or side, or "taylor" without batches.
    """
    check_criterion(criterion, side)
    slots = channel_slots(space, with_buffers=False)
    if criterion == "taylor":
        if batches is None:
            raise ConfigError(
                "the taylor criterion needs batches=[(images, labels), ...] to differentiate"
            )
        return _taylor_scores(model, slots, batches, loss_fn)
    scores: dict[str, torch.Tensor] = {}
    fallback = []
    for name, unit_slots in slots.items():
        if criterion == "bn":
            score = _bn_scores(model, unit_slots)
            if score is None:
                score = _norm_scores(model, unit_slots, 1, SIDES["both"])
                fallback.append(name)
        else:
            score = _norm_scores(model, unit_slots, 1 if criterion == "l1" else 2, SIDES[side])
        if score is not None:
            scores[name] = score
    if fallback:
        log.info("units without a BatchNorm scored by l1 instead of bn: %s", ", ".join(fallback))
    return scores
