"""Latency segments: a traced model cut into pieces whose measured latencies add up.

ProxylessNAS (Cai et al. 2019, arXiv 1812.00332, §3.3 and its ``latency_estimator.py``) predicts a
network's latency as the sum of per-block entries of a lookup table measured on the device, keyed
by the block's type and input/output shapes. We cut finer and without hand-written block types:
every conv or linear layer of the space (and every BatchNorm that does not follow one) starts a
*segment*, and the ops that consume its output in a chain join it — BatchNorm, activations, the
residual add that closes a block (its other operand becomes a second input), pooling, flatten —
as long as they run under the same depth/op gates. A segment therefore holds what a runtime fuses
(conv + BN + ReLU + add), and its latency depends on the layer's input and output channels only.

A segment's *template* names its ops and shapes with the channels left out
(``conv2d k3x3 s1x1 p1x1 d1x1 dense bias0 in32x32 > BatchNorm2d > ReLU(inplace=True)``); its
*signature* at given channels, ``template|cin>cout``, keys the latency table. Ops outside every
segment (the stem's input handling, the classifier's reshapes, option-A shortcuts) do not depend on
the searched channels much; the table's measured fixed overhead covers them.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from slimnas.errors import LatencyError
from slimnas.space import rules
from slimnas.space.space import Space
from slimnas.space.units import DepthUnit, OpUnit

_FOLLOWERS = ("norm", "pass", "join", "reshape")


@dataclass(frozen=True)
class Segment:
    """One piece of the model: the layer record ``layer`` of the space and its followers."""

    layer: int  # index of the root layer in ``space.layers``
    template: str
    inputs: int = 1  # the layer's input, then the other operands of its joins

    def signature(self, cin: int, cout: int) -> str:
        return f"{self.template}|{cin}>{cout}"


def space_key(space: Space) -> str:
    """What a layout is valid for: the layer records and input size, not the unit choices (a
    narrowed copy of a space, `Space.fix` / `with_choices`, keeps its key)."""
    layers = [
        (r.path, r.kind, r.in_units, r.out_units, r.positions, r.kernel, r.group_width, r.gates)
        for r in space.layers
    ]
    text = json.dumps([layers, list(space.input_shape[1:])], default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _shape(node: fx.Node) -> list[int] | None:
    meta = node.meta.get("tensor_meta")
    return list(meta.shape) if meta is not None and hasattr(meta, "shape") else None


@dataclass
class _Piece:
    """A segment under construction, with what is needed to rebuild it at other channels."""

    layer: int
    kind: str  # "conv", "linear" or "norm"
    root: fx.Node
    module: nn.Module
    modules: Callable[[str], nn.Module]  # module path in the graph -> module
    gates: tuple
    followers: list[fx.Node] = field(default_factory=list)
    closed: bool = False

    def segment(self) -> Segment:
        return Segment(self.layer, self.template(), self.inputs())

    def inputs(self) -> int:
        chain = {self.root, *self.followers}
        others = {n for f in self.followers for n in f.all_input_nodes if n not in chain}
        return 1 + len(others)

    @property
    def tail(self) -> fx.Node:
        return self.followers[-1] if self.followers else self.root

    def out_channels(self) -> int:
        shape = _shape(self.root)
        return shape[-1] if self.kind == "linear" else shape[1]

    # ------------------------------------------------------------------------- description
    def template(self) -> str:
        shape = _shape(self.root.all_input_nodes[0])
        m = self.module
        if self.kind == "conv":
            pairs = (
                ("k", m.kernel_size),
                ("s", m.stride),
                ("p", m.padding),
                ("d", m.dilation),
            )
            geometry = " ".join(f"{k}{'x'.join(map(str, v))}" for k, v in pairs)
            group_width = m.in_channels // m.groups
            grouping = (
                "dense" if m.groups == 1 else "dw" if group_width == 1 else f"gw{group_width}"
            )
            mode = "" if m.padding_mode == "zeros" else f" {m.padding_mode}"
            text = f"conv2d {geometry} {grouping} bias{int(m.bias is not None)}{mode}"
            text += f" in{'x'.join(map(str, shape[2:]))}"
        elif self.kind == "linear":
            text = f"linear bias{int(m.bias is not None)} in{'x'.join(map(str, shape[1:-1]))}"
        else:
            text = f"{type(m).__name__} in{'x'.join(map(str, shape[2:]))}"
        return " > ".join([text, *(self._describe(n) for n in self.followers)])

    def _describe(self, node: fx.Node) -> str:
        if node.op == "call_module":
            module = self.modules(node.target)
            extra = "" if rules.classify(None, module) == "norm" else module.extra_repr()
            name = f"{type(module).__name__}({extra})"
        else:
            name = node.target if isinstance(node.target, str) else node.target.__name__
        args = [self._argument(a) for a in node.args]
        args += [f"{k}={self._argument(v)}" for k, v in node.kwargs.items()]
        return name if node.op == "call_module" and len(args) == 1 else f"{name}[{','.join(args)}]"

    def _argument(self, value) -> str:
        if isinstance(value, fx.Node):
            if value is self.root or value in self.followers:
                return "x"
            shape = _shape(value)
            if len(shape) > 1 and shape[1] == self.out_channels():
                shape[1] = "C"  # the layer's output channels
            return "t" + "x".join("B" if d == 0 else str(s) for d, s in enumerate(shape))
        if isinstance(value, (tuple, list)):
            return "(" + ",".join(self._argument(v) for v in value) + ")"
        return repr(value)

    # ---------------------------------------------------------------------------- rebuild
    def build(self, cin: int, cout: int, batch: int) -> tuple[nn.Module, list[list[int]]]:
        """The segment as a standalone module at ``cin``/``cout`` channels, and its input shapes
        (the layer's input first, then the other operands of its joins)."""
        graph = fx.Graph()
        modules: dict[str, nn.Module] = {"root": self._root_module(cin, cout)}
        shape = _shape(self.root.all_input_nodes[0])
        shape[0] = batch
        shape[-1 if self.kind == "linear" else 1] = cin
        shapes = [shape]
        env: dict[fx.Node, fx.Node] = {
            self.root: graph.call_module("root", (graph.placeholder("x"),))
        }
        original = self.out_channels()

        def value(node: fx.Node) -> fx.Node:
            if node not in env:  # another operand of a join: one more input
                other = _shape(node)
                other[0] = batch
                if len(other) > 1 and other[1] == original:
                    other[1] = cout
                shapes.append(other)
                env[node] = graph.placeholder(f"x{len(shapes) - 1}")
            return env[node]

        for k, node in enumerate(self.followers):
            args = fx.node.map_arg(node.args, value)
            kwargs = fx.node.map_arg(node.kwargs, value)
            if node.op == "call_module":
                module = self.modules(node.target)
                name = f"m{k}"
                modules[name] = (
                    _norm_like(module, cout) if _is_norm(module) else copy.deepcopy(module)
                )
                env[node] = graph.call_module(name, args, kwargs)
            else:
                env[node] = graph.create_node(node.op, node.target, args, kwargs)
        graph.output(env[self.tail])
        return fx.GraphModule(modules, graph).eval(), shapes

    def _root_module(self, cin: int, cout: int) -> nn.Module:
        m = self.module
        if self.kind == "norm":
            return _norm_like(m, cout)
        if self.kind == "linear":
            return nn.Linear(cin, cout, bias=m.bias is not None)
        group_width = m.in_channels // m.groups
        if m.groups > 1 and cin % group_width:
            raise LatencyError(f"conv '{self.root.target}' cannot take {cin} channels in groups")
        return nn.Conv2d(
            cin,
            cout,
            m.kernel_size,
            m.stride,
            m.padding,
            m.dilation,
            groups=1 if m.groups == 1 else cin // group_width,
            bias=m.bias is not None,
            padding_mode=m.padding_mode,
        )


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, rules.NORM_MODULES)


def _norm_like(module: nn.Module, channels: int) -> nn.Module:
    return type(module)(
        channels,
        eps=module.eps,
        momentum=module.momentum,
        affine=module.affine,
        track_running_stats=module.track_running_stats,
    )


class _Cutter:
    """Walks a traced graph (and the graphs of `slimnas.Choice` candidates) into `_Piece`s."""

    def __init__(self, space: Space):
        self.space = space
        self.queue: dict[tuple[str, str], deque[int]] = defaultdict(deque)
        for index, layer in enumerate(space.layers):
            if layer.kind in ("conv", "linear", "norm") and layer.inference:
                self.queue[(layer.path, layer.kind)].append(index)
        self.gate_of: dict[str, tuple] = {}
        for unit in space.units.values():
            if isinstance(unit, DepthUnit):
                for i, block in enumerate(unit.blocks):
                    self.gate_of[block] = (unit.name, unit.base + i)
            elif isinstance(unit, OpUnit):
                for name in unit.choices:
                    self.gate_of[f"{unit.name}.{name}"] = (unit.name, name)
        self.pieces: list[_Piece] = []

    def gates(self, path: str) -> tuple:
        parts = path.split(".")
        found = (self.gate_of.get(".".join(parts[:i])) for i in range(1, len(parts) + 1))
        return tuple(g for g in found if g is not None)

    def walk(self, gm: fx.GraphModule, prefix: str) -> None:
        from slimnas.dynamic.choice import Choice
        from slimnas.space.trace import _trace_candidate

        owner: dict[fx.Node, _Piece] = {}  # the open piece whose tail a node is

        def modules(target: str) -> nn.Module:
            return gm.get_submodule(target)

        for node in gm.graph.nodes:
            path = _node_path(node, prefix)
            module = modules(node.target) if node.op == "call_module" else None
            if isinstance(module, Choice):
                example = torch.zeros(_shape(node.all_input_nodes[0]))
                for name, candidate in module.items():
                    self.walk(_trace_candidate(candidate, example), f"{path}.{name}")
                continue
            if node.op not in ("call_module", "call_function", "call_method"):
                continue
            kind = rules.classify(node.target, module)
            layer_kind = kind if kind in ("conv", "linear", "norm") else None
            piece = self._follows(node, kind, path, owner)
            if piece is not None:
                if layer_kind == "norm" and self.queue[(path, "norm")]:
                    self._take(path, "norm")
                piece.followers.append(node)
                piece.closed = kind == "reshape"
                owner[node] = piece
                continue
            if layer_kind is None or not self.queue[(path, layer_kind)]:
                continue
            if isinstance(module, (nn.Conv2d, nn.Linear, *rules.NORM_MODULES)):
                index = self._take(path, layer_kind)
                piece = _Piece(index, layer_kind, node, module, modules, self.gates(path))
                self.pieces.append(piece)
                owner[node] = piece

    def _take(self, path: str, kind: str) -> int:
        return self.queue[(path, kind)].popleft()

    def _follows(self, node: fx.Node, kind: str, path: str, owner) -> _Piece | None:
        """The open piece ``node`` extends, if it consumes that piece's tail and nothing else
        but other whole tensors, under the same gates."""
        if kind not in _FOLLOWERS:
            return None
        inputs = node.all_input_nodes
        tails = [n for n in inputs if n in owner and owner[n].tail is n and len(n.users) == 1]
        if not tails:
            return None
        piece = owner[tails[0]]
        if piece.closed or self.gates(path) != piece.gates:
            return None
        if kind in ("pass", "norm", "reshape") and len(inputs) != 1:
            return None
        original = piece.out_channels()
        for other in inputs:
            if other is tails[0]:
                continue
            shape = _shape(other)
            if other.op == "get_attr" or shape is None:
                return None
            if piece.kind != "linear" and len(shape) > 1 and shape[1] not in (1, original):
                return None
        return piece


def _node_path(node: fx.Node, prefix: str) -> str:
    if node.op == "call_module":
        path = str(node.target)
    else:
        stack = node.meta.get("nn_module_stack") or {}
        path = list(stack.values())[-1][0] if stack else ""
    return ".".join(p for p in (prefix, path) if p)


def cut_segments(model: nn.Module, space: Space, example_input: torch.Tensor) -> list[_Piece]:
    """The model's segments, in execution order, each able to rebuild itself at other channels.

    Args:
        model: the model ``space`` was traced from (not changed).
        space: its space.
        example_input: an input of the traced size.

    Raises:
        LatencyError: a conv or linear layer of the space runs where no segment covers it.
    """
    from slimnas.space.trace import _propagate_shapes, _trace_graph

    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        gm = _trace_graph(model, ())
    finally:
        for m, mode in modes.items():
            m.train(mode)
    _propagate_shapes(gm, example_input[:1])
    cutter = _Cutter(space)
    cutter.walk(gm, "")
    missing = [
        space.layers[i].path
        for (_, kind), left in cutter.queue.items()
        if kind in ("conv", "linear")
        for i in left
    ]
    if missing:
        raise LatencyError(
            f"layer '{missing[0]}' of the space is not a torch Conv2d or Linear the latency "
            "table can rebuild; latency of this model cannot be predicted"
        )
    return cutter.pieces


__all__ = ["Segment", "cut_segments", "space_key"]
