"""What the channel walk (`slimnas.space.walk`) reads off a traced graph's nodes: their shapes,
their module paths, and the channel facts it keeps per tensor-valued node (`Value`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import fx


@dataclass
class Value:
    """Channel facts of one tensor-valued node."""

    elements: tuple[int, ...]  # segments along the channel dimension, in order
    cdim: int  # which dimension holds the channels
    tensors: list[int] = field(default_factory=list)  # memory records the value occupies


def shape_of(node: fx.Node) -> list[int] | None:
    meta = node.meta.get("tensor_meta")
    return list(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def reads_tensor(node: fx.Node) -> bool:
    """Whether ``node`` reads a tensor (its first input has a shape)."""
    return bool(node.all_input_nodes) and shape_of(node.all_input_nodes[0]) is not None


def node_path(node: fx.Node, prefix: str) -> str:
    """The module path of ``node`` (its own, or the innermost module it runs in) under
    ``prefix``."""
    if node.op == "call_module":
        path = str(node.target)
    else:
        stack = node.meta.get("nn_module_stack") or {}
        path = list(stack.values())[-1][0] if stack else ""
    return ".".join(p for p in (prefix, path) if p)


__all__ = ["Value", "node_path", "reads_tensor", "shape_of"]
