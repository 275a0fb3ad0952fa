"""Discovery of `DepthUnit`s: runs of residual blocks with an identity shortcut.

A block is a module ``M`` whose forward computes ``x + f(x)`` (possibly followed by an
elementwise activation) where ``x`` is ``M``'s only input: skipping ``M`` then means returning
``x``. Consecutive such blocks (each reading the previous one's output) under one parent form a
stage; its trailing blocks can be skipped, never all of them (a stage keeps at least one block,
counting a downsampling head block that precedes the run).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from torch import fx

from slimnas.space.units import DepthUnit

_ADD = {operator.add, operator.iadd, torch.add, "add", "add_"}


@dataclass(frozen=True)
class ResidualBlock:
    path: str
    input: str  # node name of the block's input x
    output: str  # node name of the block's output
    order: int  # position of the output node in the graph
    head: bool  # the input comes straight from a sibling module (a stage's head block)


def _stack(node: fx.Node) -> list[str]:
    return [v[0] for v in (node.meta.get("nn_module_stack") or {}).values()]


def _shape(node: fx.Node):
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _is_add(node: fx.Node) -> bool:
    return node.op in ("call_function", "call_method") and node.target in _ADD


def find_residual_blocks(gm: fx.GraphModule) -> list[ResidualBlock]:
    nodes = list(gm.graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    blocks: dict[str, ResidualBlock] = {}
    for add in nodes:
        if not _is_add(add) or len(add.all_input_nodes) != 2:
            continue
        stack = _stack(add)
        if not stack or stack[-1] in blocks:
            continue
        path = stack[-1]
        inside = [n for n in nodes if path in _stack(n)]
        members = set(inside)
        a, b = add.all_input_nodes
        outside = [n for n in (a, b) if n not in members]
        if len(outside) != 1:
            continue
        x = outside[0]
        if any(
            i not in members and i is not x and i.op != "get_attr"
            for n in inside
            for i in n.all_input_nodes
        ):
            continue  # the block reads something besides x
        out = inside[-1]
        if any(u not in members for n in inside if n is not out for u in n.users):
            continue  # an inner tensor escapes the block
        if not _only_activations_after(add, [n for n in inside if index[n] > index[add]]):
            continue
        if _shape(out) != _shape(x) or _shape(x) is None:
            continue
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        head = (
            any(p.rsplit(".", 1)[0] == parent and p != path for p in _stack(x)) if parent else False
        )
        blocks[path] = ResidualBlock(path, x.name, out.name, index[out], head)
    return sorted(blocks.values(), key=lambda b: b.order)


def _only_activations_after(add: fx.Node, tail: list[fx.Node]) -> bool:
    """Whether ``tail`` is a chain of single-input ops hanging off ``add`` (e.g. a ReLU)."""
    previous = add
    for node in tail:
        if node.all_input_nodes != [previous]:
            return False
        previous = node
    return True


def group_stages(blocks: list[ResidualBlock], gm: fx.GraphModule) -> list[DepthUnit]:
    """Group consecutive blocks (each reading the previous one's output) into `DepthUnit`s."""
    runs: list[list[ResidualBlock]] = []
    for block in blocks:
        run = runs[-1] if runs else None
        same_parent = run and _parent(run[-1].path) == _parent(block.path)
        if run and same_parent and run[-1].output == block.input:
            run.append(block)
        else:
            runs.append([block])
    per_parent: dict[str, int] = {}
    for run in runs:
        per_parent[_parent(run[0].path)] = per_parent.get(_parent(run[0].path), 0) + 1
    units = []
    for run in runs:
        base = 1 if run[0].head else 0
        choices = tuple(range(max(1, base), base + len(run) + 1))
        if len(choices) < 2:
            continue
        parent = _parent(run[0].path)
        if per_parent[parent] == 1 and parent:
            name = parent
        else:
            first = run[0].path.rsplit(".", 1)[-1]
            last = run[-1].path.rsplit(".", 1)[-1]
            if first.isdigit() and last.isdigit():
                name = f"{parent}[{int(first) - base}:{int(last) + 1}]"
            else:
                name = f"{run[0].path}..{last}"
        units.append(
            DepthUnit(name=name, blocks=tuple(b.path for b in run), base=base, choices=choices)
        )
    return units


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""
