"""Zero-initialised residual branches: each residual block starts as the identity.

BigNAS ("BigNAS: Scaling Up Neural Architecture Search with Big Single-Stage Models", Yu et al.,
arXiv 2003.11142, §3.1 "stabilize the training") zero-initialises the scale γ of the last
BatchNorm of every residual block, so that a supernet whose subnets skip blocks and cut channels
starts from the same function at every depth (and Goyal et al., arXiv 1706.02677, §5.1, for
plain ResNets). The blocks are found in the model's graph rather than by class: an addition
whose operands include a BatchNorm output is a residual join, and of its BatchNorm operands the
one with the longer chain of convolutions behind it (the residual branch, not a projection
shortcut, nor an identity operand that other layers also read) is zeroed. A tie (two equally
long branches) zeroes neither.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

_ADDS = {operator.add, operator.iadd, torch.add}


def _branch_convs(node: fx.Node, modules: dict[str, nn.Module]) -> int:
    """Convolutions on the single-input chain that ends at ``node``, back to a fork or a join.

    A node that other layers read too is the fork itself (the identity operand of the add): 0.
    """
    if len(node.users) > 1:
        return 0
    count = 0
    while node.op in ("call_module", "call_function", "call_method"):
        inputs = [a for a in node.all_input_nodes]
        if node.op == "call_module" and isinstance(modules.get(node.target), nn.Conv2d):
            count += 1
        if len(inputs) != 1 or len(inputs[0].users) > 1:
            break
        node = inputs[0]
    return count


@torch.no_grad()
def zero_init_residual_bn(model: nn.Module) -> list[str]:
    """Set γ = 0 of the last BatchNorm of every residual branch of ``model``; return their names.

    Changes the model's weights. Models torch.fx cannot trace are left alone (empty list).
    """
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - any tracing failure means: no graph to read
        return []
    modules = dict(model.named_modules())
    zeroed: list[str] = []
    for node in graph.nodes:
        is_add = (node.op == "call_function" and node.target in _ADDS) or (
            node.op == "call_method" and node.target in ("add", "add_")
        )
        if not is_add:
            continue
        norms = [
            a
            for a in node.all_input_nodes
            if a.op == "call_module" and isinstance(modules.get(a.target), nn.BatchNorm2d)
        ]
        if not norms:
            continue
        depths = {a.target: _branch_convs(a, modules) for a in norms}
        longest = max(depths.values())
        winners = [name for name, depth in depths.items() if depth == longest]
        if len(winners) == 1 and (len(norms) == 1 or longest > 0):
            norm = modules[winners[0]]
            if norm.weight is not None:
                norm.weight.zero_()
                zeroed.append(winners[0])
    return zeroed


__all__ = ["zero_init_residual_bn"]
