"""`slimnas.trace(model, example_input) -> Space`: discover a model's units with torch.fx.

The model is traced symbolically (`slimnas.Choice` modules are kept as leaves and their candidates
traced one by one), shapes are propagated with the example input, and every tensor's channel
dimension becomes an element of a union-find (`ChannelSets`). Convs and linears start new elements;
BatchNorm, activations and pooling pass them on; residual adds merge them; depthwise convs tie
input to output; grouped convs tie input to output in whole groups. Whatever no rule covers is
opaque: its channels are fixed. The network input and the graph outputs are fixed too.
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from slimnas.dynamic.choice import Choice
from slimnas.errors import TraceError
from slimnas.space import rules
from slimnas.space.channels import ChannelSets, channel_choices
from slimnas.space.depth import ResidualBlock, find_residual_blocks, group_stages
from slimnas.space.space import Gate, Layer, Space, TensorRecord
from slimnas.space.units import ChannelUnit, Choice_, OpUnit, Unit

log = logging.getLogger(__name__)


class _Tracer(fx.Tracer):
    """fx tracer that keeps `Choice` modules (and user-named modules) as leaves and remembers
    which module was being traced when tracing failed."""

    def __init__(self, leaves: Iterable[type[nn.Module]] = ()):
        super().__init__()
        self.leaves = (Choice, *leaves)
        self.failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = self.path_of_module(m) or type(m).__name__
            raise


def _trace_graph(root: nn.Module, leaves: Sequence[type[nn.Module]]) -> fx.GraphModule:
    tracer = _Tracer(leaves)
    try:
        graph = tracer.trace(root)
    except Exception as err:
        frames = [
            f
            for f in traceback.extract_tb(err.__traceback__)
            if "/torch/" not in f.filename and "/slimnas/space/" not in f.filename
        ]
        where = f" ({frames[-1].filename}:{frames[-1].lineno}: {frames[-1].line})" if frames else ""
        module = tracer.failed_in or type(root).__name__
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TraceError(
            f"torch.fx cannot trace module '{module}'{where}: {first_line}; pass its class in "
            "trace(..., leaf_modules=[...]) to keep it whole (its channels are then fixed)"
        ) from None
    return fx.GraphModule(root, graph)


@dataclass
class _Value:
    """Channel facts of one tensor-valued node."""

    element: int  # ChannelSets element of the channel dimension
    cdim: int  # which dimension holds the channels
    tensors: list[int] = field(default_factory=list)  # TensorRecord indices it occupies


@dataclass
class _Analysis:
    model: nn.Module
    sets: ChannelSets = field(default_factory=ChannelSets)
    layers: list[dict] = field(default_factory=list)
    tensors: list[dict] = field(default_factory=list)  # name, element, elements, path
    uses: list[list[int]] = field(default_factory=list)  # per step: tensors read
    steps: list[list[int]] = field(default_factory=list)  # per step: tensors written
    modules: dict[str, dict] = field(default_factory=dict)
    blocks: list[ResidualBlock] = field(default_factory=list)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)

    prefix: str = ""  # path of the Choice candidate being walked ("" for the model itself)

    # ----------------------------------------------------------------------------- helpers
    def _node_id(self, node: fx.Node) -> str:
        """A node name unique across the model's graph and its Choice candidates' graphs."""
        return f"{self.prefix}:{node.name}"

    def _tensor(self, name: str, element: int, shape: Sequence[int], cdim: int, path: str) -> int:
        per_channel = math.prod(s for d, s in enumerate(shape) if d not in (0, cdim))
        self.tensors.append(
            {"name": name, "element": element, "elements": per_channel, "path": path}
        )
        return len(self.tensors) - 1

    def _new_value(
        self,
        node: fx.Node,
        path: str,
        size: int,
        cdim: int,
        shape,
        *,
        producer: str | None = None,
        fixed: str | None = None,
    ) -> _Value:
        element = self.sets.new(size, label=path or node.name, producer=producer, fixed=fixed)
        return _Value(element, cdim, [self._tensor(node.name, element, shape, cdim, path)])

    def _fix_all(self, values: Iterable[_Value], reason: str) -> None:
        for value in values:
            self.sets.fix(value.element, reason)

    # ------------------------------------------------------------------------------- walk
    def walk(self, gm: fx.GraphModule, prefix: str, inputs: list[_Value] | None) -> list[_Value]:
        """Propagate channel elements through ``gm``; returns the values of its outputs."""
        outer_prefix, self.prefix = self.prefix, prefix
        values: dict[fx.Node, _Value] = {}
        placeholders = iter(inputs or [])
        outputs: list[_Value] = []
        for node in gm.graph.nodes:
            shape = _shape(node)
            path = _node_path(node, prefix)
            args = [values[a] for a in node.all_input_nodes if a in values]
            self.uses.append([t for v in args for t in v.tensors])
            self.steps.append([])
            if node.op == "placeholder":
                given = next(placeholders, None)
                if given is not None:
                    values[node] = given
                elif shape is not None and len(shape) >= 2:
                    values[node] = self._new_value(
                        node, "input", shape[1], 1, shape, fixed="network input"
                    )
                continue
            if node.op == "output":
                if inputs is None:
                    self._fix_all(args, "network output")
                outputs = args
                continue
            if node.op == "get_attr":
                continue
            module = gm.get_submodule(node.target) if node.op == "call_module" else None
            value = self._node(node, module, path, shape, args, values)
            if value is not None:
                if value.tensors == [] and shape is not None:
                    value.tensors = [
                        self._tensor(node.name, value.element, shape, value.cdim, path)
                    ]
                self.steps[-1] = list(value.tensors)
                values[node] = value
        if inputs is None:
            self.blocks += find_residual_blocks(gm)
        self.prefix = outer_prefix
        return outputs

    def _node(self, node: fx.Node, module: nn.Module | None, path: str, shape, args, values):
        target = node.target
        if isinstance(module, Choice):
            return self._choice(module, path, args, node)
        if target is getattr or (isinstance(target, str) and target in rules.META_METHODS):
            return None
        if target is __import__("operator").getitem:
            return self._getitem(node, path, shape, args)
        if shape is None:  # a non-tensor result (tuple, size, ...)
            self._fix_all(args, f"read by '{path or node.name}'")
            return None
        kind = rules.classify(target, module)
        if kind == "opaque" and getattr(target, "__name__", "") == "stochastic_depth":
            kind = "pass"
        inplace = args and rules.is_inplace(target, module, node.kwargs)
        if kind in ("pass", "norm") and args:
            value = _Value(args[0].element, args[0].cdim)
            if kind == "norm":
                self._norm(module, path, value, node)
            if inplace:
                value.tensors = list(args[0].tensors)
            return value
        if kind == "join":
            value = self._join(node, path, shape, values)
            if inplace and value is not None and value.element == args[0].element:
                value.tensors = list(args[0].tensors)
            return value
        if kind == "reshape" and args:
            return self._reshape(node, path, shape, args[0])
        if kind == "conv" and args:
            return self._conv(module, node, path, shape, args[0])
        if kind == "linear" and args:
            return self._linear(module, node, path, shape, args[0])
        reason = f"read by '{path or node.name}', which slimnas does not slice"
        self._fix_all(args, reason)
        cdim = 1 if len(shape) >= 2 else 0
        return self._new_value(node, path or node.name, shape[cdim], cdim, shape, fixed=reason)

    # ------------------------------------------------------------------------------ rules
    def _getitem(self, node, path, shape, args):
        source = node.args[0]
        index = node.args[1]
        if not args or shape is None or not isinstance(source, fx.Node):
            return None  # indexing a tuple or a size: no tensor of ours
        value = args[0]
        keeps_channels = (
            isinstance(index, tuple)
            and len(index) > value.cdim
            and all(isinstance(i, slice) and i == slice(None) for i in index[: value.cdim + 1])
        )
        if keeps_channels:
            return _Value(value.element, value.cdim)
        reason = f"indexed by '{path or node.name}'"
        self.sets.fix(value.element, reason)
        return self._new_value(
            node,
            path or node.name,
            shape[min(1, len(shape) - 1)],
            min(1, len(shape) - 1),
            shape,
            fixed=reason,
        )

    def _join(self, node, path, shape, values):
        """Elementwise op with broadcasting: operands whose channel dims line up share a unit."""
        rank = len(shape)
        operands = [(n, _shape(n), values.get(n)) for n in node.all_input_nodes]
        carriers = [(s, v) for _, s, v in operands if v is not None and s is not None]
        if not carriers:
            return None
        # Broadcasting aligns trailing dimensions: input dim d is output dim d + rank - len(s).
        cdim = max(v.cdim + rank - len(s) for s, v in carriers)
        result = None
        for in_shape, value in carriers:
            aligned = value.cdim + rank - len(in_shape)
            size = in_shape[value.cdim]
            if aligned == cdim and size == shape[cdim]:
                result = value.element if result is None else self.sets.union(result, value.element)
            elif size != 1:
                self.sets.fix(value.element, f"joined with a different layout at '{path}'")
        if result is None:
            reason = f"joined with a different layout at '{path}'"
            return self._new_value(node, path or node.name, shape[cdim], cdim, shape, fixed=reason)
        # A tensor operand without channel facts (a parameter, a buffer) that varies along the
        # channels would have to be sliced too: the unit is pinned instead.
        for _, in_shape, value in operands:
            offset = cdim - (rank - len(in_shape)) if in_shape is not None else -1
            if value is None and in_shape is not None and 0 <= offset and in_shape[offset] != 1:
                self.sets.fix(result, f"combined with an unsliced tensor at '{path}'")
        return _Value(result, cdim)

    def _reshape(self, node, path, shape, value):
        in_shape = _shape(node.all_input_nodes[0])
        channels = self.sets.size[self.sets.find(value.element)]
        if in_shape is None:
            return None
        if list(shape) == list(in_shape):
            return _Value(value.element, value.cdim)
        if value.cdim == 1 and len(shape) >= 2 and shape[0] == in_shape[0] and shape[1] == channels:
            if all(s == 1 for s in shape[2:]):
                return _Value(value.element, 1)
        reason = f"reshaped by '{path or node.name}' from {tuple(in_shape)} to {tuple(shape)}"
        self.sets.fix(value.element, reason)
        cdim = min(1, len(shape) - 1)
        return self._new_value(node, path or node.name, shape[cdim], cdim, shape, fixed=reason)

    def _record_module(self, path: str, info: dict) -> bool:
        """Remember a parameterised module; on a repeated call, tie its units. Returns whether
        this is the first call."""
        known = self.modules.get(path)
        if known is None:
            self.modules[path] = info
            return True
        for key in ("in_element", "out_element"):
            if key in info and key in known:
                self.sets.union(known[key], info[key])
        return False

    def _reading(self, value: _Value, dim: int, size: int, path: str) -> _Value:
        """The value a layer reads along ``dim``: ``value`` itself when that is its channel
        dimension, else a fixed element of ``size`` (e.g. a linear over a permuted NCHW map)."""
        if value.cdim == dim:
            return value
        reason = f"'{path}' reads dimension {dim}, not the channels"
        self.sets.fix(value.element, reason)
        return _Value(self.sets.new(size, label=path, fixed=reason), dim, list(value.tensors))

    def _conv(self, conv: nn.Conv2d, node, path, shape, value):
        value = self._reading(value, 1, conv.in_channels, path)
        groups, cin, cout = conv.groups, conv.in_channels, conv.out_channels
        group_width = 0
        if groups == 1:
            out = self._new_value(node, path, cout, 1, shape, producer=path)
        elif cin == cout and groups > 1:
            # Depthwise (groups == channels) and grouped convs with equal in/out: input and
            # output channels are one unit, changed in whole groups.
            group_width = cin // groups
            self.sets.require_multiple(value.element, group_width)
            out = _Value(value.element, 1)
        else:
            self.sets.fix(value.element, f"read by grouped conv '{path}' with in != out")
            out = self._new_value(
                node, path, cout, 1, shape, fixed=f"written by grouped conv '{path}' with in != out"
            )
        self.sets.add_member(value.element, path)
        first = self._record_module(
            path,
            {
                "kind": "conv",
                "in_element": value.element,
                "out_element": out.element,
                "group_width": group_width,
                "producer": group_width == 0,
                "node": self._node_id(node),
            },
        )
        self.layers.append(
            {
                "path": path,
                "kind": "conv",
                "in": value.element,
                "out": out.element,
                "positions": math.prod(shape[2:]),
                "kernel": math.prod(conv.kernel_size),
                "group_width": group_width,
                "bias": conv.bias is not None,
                "count_params": first,
            }
        )
        return out

    def _linear(self, linear: nn.Linear, node, path, shape, value):
        value = self._reading(
            value, len(_shape(node.all_input_nodes[0])) - 1, linear.in_features, path
        )
        out = self._new_value(node, path, linear.out_features, len(shape) - 1, shape, producer=path)
        self.sets.add_member(value.element, path)
        first = self._record_module(
            path,
            {
                "kind": "linear",
                "in_element": value.element,
                "out_element": out.element,
                "group_width": 0,
                "producer": True,
                "node": self._node_id(node),
            },
        )
        self.layers.append(
            {
                "path": path,
                "kind": "linear",
                "in": value.element,
                "out": out.element,
                "positions": math.prod(shape[1:-1]),
                "kernel": 1,
                "group_width": 0,
                "bias": linear.bias is not None,
                "count_params": first,
            }
        )
        return out

    def _norm(self, norm: nn.Module, path: str, value: _Value, node: fx.Node) -> None:
        self.sets.add_member(value.element, path)
        source = node.all_input_nodes[0]
        first = self._record_module(
            path,
            {
                "kind": "norm",
                "in_element": value.element,
                "out_element": value.element,
                "group_width": 0,
                "producer": False,
                "node": self._node_id(node),
                "after": self._node_id(source),
            },
        )
        self.layers.append(
            {
                "path": path,
                "kind": "norm",
                "in": value.element,
                "out": value.element,
                "positions": 1,
                "kernel": 1,
                "group_width": 0,
                "bias": bool(norm.affine),
                "count_params": first,
            }
        )

    def _choice(self, choice: Choice, path: str, args: list[_Value], node: fx.Node) -> _Value:
        if len(args) != 1:
            raise TraceError(f"Choice '{path}' must take exactly one tensor input")
        example = torch.zeros(_shape(node.all_input_nodes[0]))
        outputs: list[_Value] = []
        for name, candidate in choice.items():
            gm = _trace_graph(candidate, ())
            _propagate_shapes(gm, example)
            result = self.walk(
                gm, f"{path}.{name}", [_Value(args[0].element, args[0].cdim, list(args[0].tensors))]
            )
            if len(result) != 1:
                raise TraceError(f"candidate '{name}' of Choice '{path}' must return one tensor")
            outputs.append(result[0])
        shapes = {tuple(_shape(node) or ())}
        if len(shapes) != 1:
            raise TraceError(f"candidates of Choice '{path}' give different output shapes")
        element = outputs[0].element
        for out in outputs[1:]:
            element = self.sets.union(element, out.element)
        self.choices[path] = tuple(choice.keys())
        # The choice's output occupies whichever candidate's output tensor ran.
        return _Value(element, 1, [t for out in outputs for t in out.tensors])


def _shape(node: fx.Node) -> list[int] | None:
    meta = node.meta.get("tensor_meta")
    return list(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _node_path(node: fx.Node, prefix: str) -> str:
    if node.op == "call_module":
        path = str(node.target)
    else:
        stack = node.meta.get("nn_module_stack") or {}
        path = list(stack.values())[-1][0] if stack else ""
    return ".".join(p for p in (prefix, path) if p)


def _propagate_shapes(gm: fx.GraphModule, example: torch.Tensor) -> None:
    modes = {m: m.training for m in gm.modules()}
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example)
    except Exception as err:
        raise TraceError(
            f"running the traced model on an example of shape {tuple(example.shape)} failed: "
            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}; check the example "
            "input's shape and dtype"
        ) from None
    finally:
        for m, mode in modes.items():
            m.train(mode)


def trace(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    divisor: int = 8,
    min_ratio: float = 0.25,
    steps: int = 12,
    fix: Iterable[str] = (),
    choices: Mapping[str, Sequence[Choice_]] | None = None,
    leaf_modules: Sequence[type[nn.Module]] = (),
) -> Space:
    """Discover the search space of ``model``.

    Args:
        model: any CNN made of torch modules; it is not changed.
        example_input: one input batch (its shape sets spatial sizes for the cost models).
        divisor: channel choices are multiples of it (never rounded more than 10 % down).
        min_ratio: smallest channel choice as a fraction of the original width.
        steps: channel choices are the ratios ``k/steps`` between ``min_ratio`` and 1.
        fix: unit names to fix at their original size.
        choices: per unit name, choices replacing the discovered ones.
        leaf_modules: module classes to keep whole (their channels are fixed).

    Returns:
        The `Space` of the model.

    Raises:
        TraceError: the model cannot be traced (the message names the module and line).
    """
    if not isinstance(model, nn.Module):
        raise TraceError(f"trace needs a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor):
        raise TraceError(f"example_input must be a tensor, got {type(example_input).__name__}")
    if not 0.0 < min_ratio <= 1.0:
        raise TraceError(f"min_ratio must be in (0, 1], got {min_ratio}")
    gm = _trace_graph(model, leaf_modules)
    _propagate_shapes(gm, example_input)
    analysis = _Analysis(model)
    analysis.walk(gm, "", None)
    space = _build_space(analysis, gm, tuple(example_input.shape), divisor, min_ratio, steps)
    for name in fix:
        space = space.fix(name)
    for name, values in (choices or {}).items():
        space = space.with_choices(name, values)
    return space


def _build_space(a: _Analysis, gm: fx.GraphModule, input_shape, divisor, min_ratio, steps) -> Space:
    sets = a.sets
    names: dict[int, str] = {}
    units: dict[str, Unit] = {}
    for root in sets.roots():
        producers = sets.producers[root]
        base = producers[0] if producers else sets.label[root]
        name, k = base, 1
        while name in units:
            k += 1
            name = f"{base}@{k}"
        names[root] = name
        size = sets.size[root]
        reason = sets.fixed[root] or (None if producers else "no layer produces it")
        choices = (
            (size,)
            if reason
            else channel_choices(size, divisor, sets.granularity[root], min_ratio, steps)
        )
        units[name] = ChannelUnit(
            name=name,
            max_channels=size,
            choices=choices,
            granularity=sets.granularity[root],
            members=tuple(sets.members[root]),
            fixed_reason=reason,
        )

    def unit_of(element: int) -> str:
        return names[sets.find(element)]

    stages = group_stages(a.blocks, gm)
    for stage in stages:
        units[stage.name] = stage
    for path, candidates in a.choices.items():
        units[path] = OpUnit(name=path, choices=candidates)
    gate_of = _gate_table(stages, a.choices)

    def gates(path: str) -> tuple[Gate, ...]:
        found: list[Gate] = []
        parts = path.split(".")
        for i in range(1, len(parts) + 1):
            gate = gate_of.get(".".join(parts[:i]))
            if gate is not None:
                found.append(gate)
        return tuple(found)

    layers = [
        Layer(
            path=r["path"],
            kind=r["kind"],
            in_unit=unit_of(r["in"]),
            out_unit=unit_of(r["out"]),
            positions=r["positions"],
            kernel=r["kernel"],
            group_width=r["group_width"],
            bias=r["bias"],
            count_params=r["count_params"],
            gates=gates(r["path"]),
        )
        for r in a.layers
    ]
    sliced = set(a.modules)
    for path, param in a.model.named_parameters():
        owner = path.rsplit(".", 1)[0] if "." in path else ""
        if owner not in sliced:
            layers.append(
                Layer(path=path, kind="other", fixed_params=param.numel(), gates=gates(owner))
            )
    tensors = tuple(
        TensorRecord(
            name=t["name"],
            unit=unit_of(t["element"]),
            elements=t["elements"],
            gates=gates(t["path"]),
        )
        for t in a.tensors
    )
    modules = _module_table(a, unit_of, stages)
    return Space(
        units=units,
        layers=tuple(layers),
        tensors=tensors,
        live=_liveness(a.steps, a.uses, len(tensors)),
        input_shape=input_shape,
        modules=modules,
    )


def _gate_table(stages, choices) -> dict[str, Gate]:
    table: dict[str, Gate] = {}
    for stage in stages:
        for i, block in enumerate(stage.blocks):
            table[block] = (stage.name, stage.base + i)
    for path, candidates in choices.items():
        for name in candidates:
            table[f"{path}.{name}"] = (path, name)
    return table


def _module_table(a: _Analysis, unit_of, stages) -> dict[str, dict]:
    """What the supernet needs per module: its units, and where soft mixing happens.

    In soft mode each unit's sampled widths are mixed once, right after the layer that produces
    it: at the BatchNorm that directly follows a producing conv, else at the conv itself.
    """
    followers: dict[str, str] = {}
    for path, info in a.modules.items():
        if info["kind"] == "norm":
            followers[info["after"]] = path
    table: dict[str, dict] = {}
    for path, info in a.modules.items():
        entry = {
            "kind": info["kind"],
            "in_unit": unit_of(info["in_element"]),
            "out_unit": unit_of(info["out_element"]),
            "group_width": info["group_width"],
            "mix": False,
        }
        table[path] = entry
    for path, info in a.modules.items():
        if info["producer"]:
            norm = followers.get(info["node"])
            table[norm if norm in table else path]["mix"] = True
    for stage in stages:
        for i, block in enumerate(stage.blocks):
            table[block] = {
                "kind": "block",
                "depth_unit": stage.name,
                "index": stage.base + i,
                "last": i == len(stage.blocks) - 1,
            }
    for path in a.choices:
        table[path] = {"kind": "choice"}
    return table


def _liveness(steps: list[list[int]], uses: list[list[int]], count: int):
    """Per step, the tensors alive: from the step that writes one to the last step reading it."""
    born: list[int | None] = [None] * count
    dies = [0] * count
    for i, written in enumerate(steps):
        for t in written:
            if born[t] is None:  # an in-place op writes again into a tensor already alive
                born[t] = i
            dies[t] = max(dies[t], i)
    for i, read in enumerate(uses):
        for t in read:
            dies[t] = max(dies[t], i)
    return tuple(
        tuple(t for t in range(count) if (born[t] or 0) <= i <= dies[t]) for i in range(len(steps))
    )
