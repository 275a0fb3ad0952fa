"""Where each channel unit's channels lie in a model's tensors.

A traced `Space` records, per sliced module, the units laid side by side along its input and
output channels (several after a concatenation). `channel_slots` turns those layouts into
`ChannelSlot`s: one contiguous range of one parameter or buffer along one dimension, holding one
unit's channels in order. Importance scores read these ranges and channel permutation rewrites
them; `Supernet.export` slices the same ranges (`slimnas.supernet.layout_index`), so the three
agree on which tensor entry is which channel.
"""

from __future__ import annotations

from dataclasses import dataclass

from slimnas.space.space import Space

# Roles of a slot: rows of a dense conv/linear (it writes the unit), its input columns (it reads
# the unit), rows of a depthwise/grouped conv whose input and output are the unit, and the
# per-channel vectors of a BatchNorm.
PRODUCER, CONSUMER, GROUPED, NORM = "producer", "consumer", "grouped", "norm"


@dataclass(frozen=True)
class ChannelSlot:
    """Channels ``offset .. offset + size - 1`` of ``module.<tensor>`` along ``dim`` are those of
    ``unit``, in the unit's order.

    Attributes:
        unit: channel unit name.
        module: module path.
        tensor: parameter or buffer name ("weight", "bias", "running_mean", "running_var").
        dim: the dimension holding the channels (0 for rows, 1 for input columns).
        offset: where the unit's segment starts along ``dim``.
        size: the unit's max channels.
        role: `PRODUCER`, `CONSUMER`, `GROUPED` or `NORM`.
    """

    unit: str
    module: str
    tensor: str
    dim: int
    offset: int
    size: int
    role: str


def _segments(space: Space, units: list[str]) -> list[tuple[str, int, int]]:
    """(unit, offset, size) of each segment of a layout."""
    out, offset = [], 0
    for name in units:
        size = space.units[name].max_channels
        out.append((name, offset, size))
        offset += size
    return out


def channel_slots(space: Space, with_buffers: bool = True) -> dict[str, list[ChannelSlot]]:
    """Every tensor range that holds a channel unit's channels, per unit name.

    Args:
        space: the traced space; its module table gives each layer's layouts.
        with_buffers: include BatchNorm running statistics (needed to permute, not to score).

    Returns:
        Per unit (every channel unit, searchable or fixed), its slots in module-table order.
        Biases are listed with their weights; a layer without bias simply has no such slot
        to apply (`ChannelSlot.tensor` may name a tensor that is ``None`` on the module).
    """
    slots: dict[str, list[ChannelSlot]] = {}

    def add(unit: str, module: str, tensors: tuple[str, ...], dim, offset, size, role) -> None:
        for tensor in tensors:
            slots.setdefault(unit, []).append(
                ChannelSlot(unit, module, tensor, dim, offset, size, role)
            )

    norm_tensors = ("weight", "bias", "running_mean", "running_var")
    if not with_buffers:
        norm_tensors = ("weight", "bias")
    for path, info in space.modules.items():
        kind = info["kind"]
        if kind not in ("conv", "linear", "norm"):
            continue
        outs = _segments(space, info["out_units"])
        ins = _segments(space, info["in_units"])
        if kind == "norm":
            for unit, offset, size in outs:
                add(unit, path, norm_tensors, 0, offset, size, NORM)
            continue
        grouped = kind == "conv" and info["group_width"] > 0
        role = GROUPED if grouped and info["in_units"] == info["out_units"] else PRODUCER
        for unit, offset, size in outs:
            add(unit, path, ("weight", "bias"), 0, offset, size, role)
        if not grouped:  # a grouped conv's columns are per group member, not per channel
            for unit, offset, size in ins:
                add(unit, path, ("weight",), 1, offset, size, CONSUMER)
    return slots
