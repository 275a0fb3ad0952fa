"""Channel propagation through a traced graph: which tensors must share channel counts.

Every tensor's channel dimension is a *layout*: a sequence of segments, each a `ChannelSets`
element. Most tensors have one segment; a concatenation along the channels lays its inputs'
segments side by side (DenseNet, Inception, SqueezeNet), so a layer reading it takes the leading
channels of each segment. Convs and linears start new elements; BatchNorm, activations and pooling
pass layouts on; residual adds merge them segment by segment; depthwise convs tie input to output;
grouped convs tie them in whole groups. Whatever no rule covers is opaque: the channels it reads
and writes are fixed, which makes the space smaller but never wrong.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from slimnas.dynamic.choice import Choice
from slimnas.errors import TraceError
from slimnas.space import rules
from slimnas.space.channels import ChannelSets
from slimnas.space.depth import ResidualBlock, find_residual_blocks
from slimnas.space.fx_nodes import Value, node_path, reads_tensor, shape_of


@dataclass
class Propagation:
    """Walks graphs, filling a union-find of channel elements and the records costs need."""

    model: nn.Module
    trace_candidate: Callable[[nn.Module, torch.Tensor], fx.GraphModule]
    sets: ChannelSets = field(default_factory=ChannelSets)
    layers: list[dict] = field(default_factory=list)
    tensors: list[dict] = field(default_factory=list)  # name, elements, positions, path
    uses: list[list[int]] = field(default_factory=list)  # per step: tensors read
    steps: list[list[int]] = field(default_factory=list)  # per step: tensors written
    modules: dict[str, dict] = field(default_factory=dict)
    blocks: list[ResidualBlock] = field(default_factory=list)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    prefix: str = ""  # path of the Choice candidate being walked ("" for the model itself)
    inference_paths: set[str] | None = None  # module paths that run at inference (None: all)

    # ----------------------------------------------------------------------------- helpers
    def node_id(self, node: fx.Node) -> str:
        """A node name unique across the model's graph and its Choice candidates' graphs."""
        return f"{self.prefix}:{node.name}"

    def at_inference(self, path: str) -> bool:
        """False for modules that run only in training (auxiliary heads)."""
        if self.inference_paths is None or not path or self.prefix:
            return True
        return path in self.inference_paths

    def width(self, value: Value) -> int:
        return sum(self.sets.size[self.sets.find(e)] for e in value.elements)

    def _tensor(self, name: str, elements, shape: Sequence[int], cdim: int, path: str) -> int:
        positions = math.prod(s for d, s in enumerate(shape) if d not in (0, cdim))
        self.tensors.append(
            {
                "name": name,
                "elements": tuple(elements),
                "positions": positions,
                "path": path,
                "inference": self.at_inference(path),
            }
        )
        return len(self.tensors) - 1

    def _new(self, node, path, size, cdim, shape, *, producer=None, fixed=None) -> Value:
        element = self.sets.new(size, label=path or node.name, producer=producer, fixed=fixed)
        return Value((element,), cdim, [self._tensor(node.name, (element,), shape, cdim, path)])

    def _fix(self, values: Iterable[Value], reason: str) -> None:
        for value in values:
            for element in value.elements:
                self.sets.fix(element, reason)

    def _opaque(self, node, path, shape, args, reason: str) -> Value:
        self._fix(args, reason)
        cdim = 1 if len(shape) >= 2 else 0
        return self._new(node, path or node.name, shape[cdim], cdim, shape, fixed=reason)

    def _tie(self, a: Value, b: Value, path: str) -> bool:
        """Merge two layouts segment by segment; False (and both fixed) if they differ."""
        sizes = self.sets.size
        if len(a.elements) == len(b.elements) and all(
            sizes[self.sets.find(x)] == sizes[self.sets.find(y)]
            for x, y in zip(a.elements, b.elements)
        ):
            for x, y in zip(a.elements, b.elements):
                self.sets.union(x, y)
            return True
        self._fix([a, b], f"joins differently concatenated tensors at '{path}'")
        return False

    # ------------------------------------------------------------------------------- walk
    def walk(self, gm: fx.GraphModule, prefix: str, inputs: list[Value] | None) -> list[Value]:
        """Propagate channel elements through ``gm``; returns the values of its outputs."""
        outer_prefix, self.prefix = self.prefix, prefix
        values: dict[fx.Node, Value] = {}
        placeholders = iter(inputs or [])
        outputs: list[Value] = []
        for node in gm.graph.nodes:
            shape = shape_of(node)
            path = node_path(node, prefix)
            args = [values[a] for a in node.all_input_nodes if a in values]
            self.uses.append([t for v in args for t in v.tensors])
            self.steps.append([])
            if node.op == "placeholder":
                given = next(placeholders, None)
                if given is not None:
                    values[node] = given
                elif shape is not None and len(shape) >= 2:
                    values[node] = self._new(
                        node, "input", shape[1], 1, shape, fixed="network input"
                    )
                continue
            if node.op == "output":
                if inputs is None:
                    self._fix(args, "network output")
                outputs = args
                continue
            if node.op == "get_attr":
                continue
            module = gm.get_submodule(node.target) if node.op == "call_module" else None
            value = self._node(node, module, path, shape, args, values)
            if value is not None:
                if not value.tensors and shape is not None:
                    value.tensors = [
                        self._tensor(node.name, value.elements, shape, value.cdim, path)
                    ]
                self.steps[-1] = list(value.tensors)
                values[node] = value
        if inputs is None:
            self.blocks += find_residual_blocks(gm)
        self.prefix = outer_prefix
        return outputs

    def _node(self, node, module, path, shape, args, values) -> Value | None:
        target = node.target
        if isinstance(module, Choice):
            return self._choice(module, path, args, node)
        if target is getattr or (isinstance(target, str) and target in rules.META_METHODS):
            return None
        if target is operator.getitem:
            return self._getitem(node, path, shape, args)
        if shape is None:  # a tuple (split, chunk) or a size: its parts are opaque
            self._fix(args, f"read by '{path or node.name}'")
            return None
        kind = rules.classify(target, module)
        if kind == "pass" and module is not None and next(module.parameters(), None) is not None:
            kind = "opaque"  # its parameters follow the channel count: we cannot slice them
        if kind == "cat":
            return self._cat(node, path, shape, values)
        inplace = bool(args) and rules.is_inplace(target, module, node.kwargs)
        if kind in ("pass", "norm") and args:
            value = Value(args[0].elements, args[0].cdim)
            if kind == "norm":
                self._norm(module, path, value, node)
            if inplace:
                value.tensors = list(args[0].tensors)
            return value
        if kind == "join":
            value = self._join(node, path, shape, values)
            if inplace and value is not None and value.elements == args[0].elements:
                value.tensors = list(args[0].tensors)
            return value
        if kind == "reshape" and args:
            return self._reshape(node, path, shape, args[0])
        if kind in ("conv", "linear") and not args and reads_tensor(node):
            args = [self._constant_input(node, kind, path)]  # reads a buffer or parameter
        if kind == "conv" and args:
            return self._conv(module, node, path, shape, args[0])
        if kind == "linear" and args:
            return self._linear(module, node, path, shape, args[0])
        return self._opaque(
            node, path, shape, args, f"read by '{path or node.name}', which slimnas does not slice"
        )

    # ------------------------------------------------------------------------------ rules
    def _getitem(self, node, path, shape, args) -> Value | None:
        if shape is None:
            return None  # an element of a size or of a non-tensor tuple
        if not args:  # one tensor of a tuple (split, chunk): opaque
            return self._opaque(node, path, shape, [], f"taken from a tuple at '{path}'")
        value, index = args[0], node.args[1]
        keeps = (
            isinstance(index, tuple)
            and len(index) > value.cdim
            and all(isinstance(i, slice) and i == slice(None) for i in index[: value.cdim + 1])
        )
        if keeps:
            return Value(value.elements, value.cdim)
        return self._opaque(node, path, shape, args, f"indexed by '{path or node.name}'")

    def _cat(self, node, path, shape, values) -> Value:
        items = node.args[0] if node.args else node.kwargs.get("tensors", ())
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        dim = dim % len(shape)
        parts = [values.get(n) if isinstance(n, fx.Node) else None for n in items]
        known = [p for p in parts if p is not None]
        if len(known) != len(parts):
            return self._opaque(node, path, shape, known, f"concatenated at '{path}'")
        if all(p.cdim == dim for p in parts):
            # Concatenation along the channels: the layouts are laid side by side.
            return Value(tuple(e for p in parts for e in p.elements), dim)
        # Along another axis (tokens): every part must have the same channels.
        if all(p.cdim == parts[0].cdim for p in parts) and all(
            self._tie(parts[0], p, path) for p in parts[1:]
        ):
            return Value(parts[0].elements, parts[0].cdim)
        return self._opaque(node, path, shape, parts, f"concatenated at '{path}'")

    def _join(self, node, path, shape, values) -> Value | None:
        """Elementwise op with broadcasting: operands whose channel dims line up share units."""
        rank = len(shape)
        operands = [(shape_of(n), values.get(n)) for n in node.all_input_nodes]
        carriers = [(s, v) for s, v in operands if v is not None and s is not None]
        if not carriers:
            return None
        # Broadcasting aligns trailing dimensions: input dim d is output dim d + rank - len(s).
        cdim = max(v.cdim + rank - len(s) for s, v in carriers)
        result: Value | None = None
        for in_shape, value in carriers:
            aligned = value.cdim + rank - len(in_shape)
            if aligned == cdim and in_shape[value.cdim] == shape[cdim]:
                if result is None:
                    result = Value(value.elements, cdim)
                elif not self._tie(result, value, path):
                    return self._opaque(node, path, shape, [result, value], "mismatched join")
            elif in_shape[value.cdim] != 1:
                self._fix([value], f"joined with a different layout at '{path}'")
        if result is None:
            return self._opaque(node, path, shape, [], f"joined at '{path}'")
        # A tensor operand without channel facts (a parameter, a buffer) that varies along the
        # channels would have to be sliced too: the units are pinned instead.
        for in_shape, value in operands:
            offset = cdim - (rank - len(in_shape)) if in_shape is not None else -1
            if value is None and in_shape is not None and offset >= 0 and in_shape[offset] != 1:
                self._fix([result], f"combined with an unsliced tensor at '{path}'")
        return result

    def _reshape(self, node, path, shape, value) -> Value | None:
        in_shape = shape_of(node.all_input_nodes[0])
        if in_shape is None:
            return None
        if list(shape) == list(in_shape):
            return Value(value.elements, value.cdim)
        flat = (
            value.cdim == 1
            and len(shape) >= 2
            and shape[0] == in_shape[0]
            and shape[1] == self.width(value)
            and all(s == 1 for s in shape[2:])
        )
        if flat:
            return Value(value.elements, 1)
        reason = f"reshaped by '{path or node.name}' from {tuple(in_shape)} to {tuple(shape)}"
        return self._opaque(node, path, shape, [value], reason)

    def _constant_input(self, node: fx.Node, kind: str, path: str) -> Value:
        """A fixed layout for a layer whose input is not an activation (Swin v2's position-bias
        MLP reads a buffer): the layer is still sliced on its output side and counted."""
        in_shape = shape_of(node.all_input_nodes[0])
        dim = 1 if kind == "conv" else len(in_shape) - 1
        element = self.sets.new(in_shape[dim], label=path, fixed=f"'{path}' reads a constant")
        return Value((element,), dim)

    def _reading(self, value: Value, dim: int, size: int, path: str) -> Value:
        """The layout a layer reads along ``dim``: ``value``'s when that is its channel
        dimension, else a fixed element of ``size`` (e.g. a linear over a permuted NCHW map)."""
        if value.cdim == dim:
            return value
        reason = f"'{path}' reads dimension {dim}, not the channels"
        self._fix([value], reason)
        return Value((self.sets.new(size, label=path, fixed=reason),), dim, list(value.tensors))

    def _record(self, path: str, info: dict) -> bool:
        """Remember a parameterised module; a repeated call ties its layouts. True if first."""
        known = self.modules.get(path)
        if known is None:
            self.modules[path] = info
            return True
        for key in ("in", "out"):
            self._tie(Value(known[key], 1), Value(info[key], 1), path)
        return False

    def _layer(self, path, kind, inp, out, *, positions, kernel, group_width, bias, first):
        self.layers.append(
            {
                "path": path,
                "kind": kind,
                "in": inp,
                "out": out,
                "positions": positions,
                "kernel": kernel,
                "group_width": group_width,
                "bias": bias,
                "count_params": first,
                "inference": self.at_inference(path),
            }
        )

    def _conv(self, conv: nn.Conv2d, node, path, shape, value) -> Value:
        value = self._reading(value, 1, conv.in_channels, path)
        groups, cin, cout = conv.groups, conv.in_channels, conv.out_channels
        group_width = cin // groups if groups > 1 else 0
        tied = groups > 1 and cin == cout and (group_width == 1 or len(value.elements) == 1)
        if groups == 1:
            out = self._new(node, path, cout, 1, shape, producer=path)
        elif tied:
            # Depthwise (groups == channels) and grouped convs with equal in/out: input and
            # output channels are one layout, changed in whole groups.
            for element in value.elements:
                self.sets.require_multiple(element, group_width)
            out = Value(value.elements, 1)
        else:
            self._fix([value], f"read by grouped conv '{path}'")
            out = self._new(node, path, cout, 1, shape, fixed=f"written by grouped conv '{path}'")
        for element in value.elements:
            self.sets.add_member(element, path)
        first = self._record(
            path,
            {
                "kind": "conv",
                "in": value.elements,
                "out": out.elements,
                "group_width": group_width,
                "producer": groups == 1,
                "node": self.node_id(node),
            },
        )
        self._layer(
            path,
            "conv",
            value.elements,
            out.elements,
            positions=math.prod(shape[2:]),
            kernel=math.prod(conv.kernel_size),
            group_width=group_width,
            bias=conv.bias is not None,
            first=first,
        )
        return out

    def _linear(self, linear: nn.Linear, node, path, shape, value) -> Value:
        rank = len(shape_of(node.all_input_nodes[0]))
        value = self._reading(value, rank - 1, linear.in_features, path)
        out = self._new(node, path, linear.out_features, len(shape) - 1, shape, producer=path)
        for element in value.elements:
            self.sets.add_member(element, path)
        first = self._record(
            path,
            {
                "kind": "linear",
                "in": value.elements,
                "out": out.elements,
                "group_width": 0,
                "producer": True,
                "node": self.node_id(node),
            },
        )
        self._layer(
            path,
            "linear",
            value.elements,
            out.elements,
            positions=math.prod(shape[1:-1]),
            kernel=1,
            group_width=0,
            bias=linear.bias is not None,
            first=first,
        )
        return out

    def _norm(self, norm: nn.Module, path: str, value: Value, node: fx.Node) -> None:
        for element in value.elements:
            self.sets.add_member(element, path)
        source = node.all_input_nodes[0]
        first = self._record(
            path,
            {
                "kind": "norm",
                "in": value.elements,
                "out": value.elements,
                "group_width": 0,
                "producer": False,
                "node": self.node_id(node),
                "after": self.node_id(source),
            },
        )
        self._layer(
            path,
            "norm",
            value.elements,
            value.elements,
            positions=1,
            kernel=1,
            group_width=0,
            bias=bool(norm.affine),
            first=first,
        )

    def _choice(self, choice: Choice, path: str, args: list[Value], node: fx.Node) -> Value:
        if len(args) != 1:
            raise TraceError(f"Choice '{path}' must take exactly one tensor input")
        example = torch.zeros(shape_of(node.all_input_nodes[0]))
        outputs: list[Value] = []
        for name, candidate in choice.items():
            gm = self.trace_candidate(candidate, example)
            inner = Value(args[0].elements, args[0].cdim, list(args[0].tensors))
            result = self.walk(gm, f"{path}.{name}", [inner])
            if len(result) != 1:
                raise TraceError(f"candidate '{name}' of Choice '{path}' must return one tensor")
            outputs.append(result[0])
        for out in outputs[1:]:
            self._tie(outputs[0], out, path)
        self.choices[path] = tuple(choice.keys())
        # The choice's output occupies whichever candidate's output tensor ran.
        return Value(
            outputs[0].elements, outputs[0].cdim, [t for out in outputs for t in out.tensors]
        )
