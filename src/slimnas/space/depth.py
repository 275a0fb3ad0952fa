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

from slimnas.space import rules
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
    """Modules computing ``x + f(x)``: their only input ``x`` reaches the output through adds
    alone (one residual add, or several in a row as in transformer blocks), optionally followed
    by activations."""
    nodes = list(gm.graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    blocks: dict[str, ResidualBlock] = {}
    seen: set[str] = set()
    for add in nodes:
        if not _is_add(add) or not _stack(add) or _stack(add)[-1] in seen:
            continue
        path = _stack(add)[-1]
        seen.add(path)
        inside = [n for n in nodes if path in _stack(n)]
        members = set(inside)
        external = {
            i for n in inside for i in n.all_input_nodes if i not in members and i.op != "get_attr"
        }
        if len(external) != 1:
            continue  # the block reads more than one tensor from outside
        x = external.pop()
        out = inside[-1]
        if any(u not in members for n in inside if n is not out for u in n.users):
            continue  # an inner tensor escapes the block
        if _shape(out) != _shape(x) or _shape(x) is None:
            continue
        if not _identity_path(_before_activations(out, gm), x):
            continue
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        head = bool(parent) and any(p.rsplit(".", 1)[0] == parent and p != path for p in _stack(x))
        blocks[path] = ResidualBlock(path, x.name, out.name, index[out], head)
    return sorted(blocks.values(), key=lambda b: b.order)


def _before_activations(node: fx.Node, gm: fx.GraphModule) -> fx.Node:
    """Walk back from ``node`` over single-input, channel-wise activations (a ReLU after add)."""
    while not _is_add(node) and len(node.all_input_nodes) == 1:
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        if rules.classify(node.target, module) != "pass":
            break
        node = node.all_input_nodes[0]
    return node


def _identity_path(node: fx.Node, x: fx.Node, depth: int = 0) -> bool:
    """Whether ``node`` is ``x`` plus other terms: x itself, or an add with one such operand."""
    if node is x:
        return True
    if depth > 16 or not _is_add(node) or len(node.all_input_nodes) != 2:
        return False
    return any(_identity_path(i, x, depth + 1) for i in node.all_input_nodes)


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
