"""`slimnas.trace(model, example_input) -> Space`: discover a model's units with torch.fx.

The model is traced symbolically (`slimnas.Choice` modules and modules with a registered rule are
kept as leaves; Choice candidates are traced one by one), shapes are propagated with the example
input, and `walk.Propagation` finds which channel slots must share a count. Each resulting set is a
`ChannelUnit`; residual stages become `DepthUnit`s and Choices `OpUnit`s. The network input and
the graph outputs are fixed.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from slimnas.dynamic.choice import Choice
from slimnas.errors import TraceError
from slimnas.space import rules
from slimnas.space.channels import channel_choices
from slimnas.space.depth import group_stages
from slimnas.space.space import Gate, Layer, Space, TensorRecord
from slimnas.space.units import ChannelUnit, Choice_, OpUnit, Unit
from slimnas.space.walk import Propagation

log = logging.getLogger(__name__)


class _Tracer(fx.Tracer):
    """fx tracer that keeps `Choice` modules, modules with a registered rule, user-named
    classes, subclasses of torch's layers that compute what their base does and norm +
    activation modules (`rules.is_layer_subclass`, `rules.is_norm_act`) as leaves, and
    remembers which module was being traced when tracing failed."""

    def __init__(self, leaves: Iterable[type[nn.Module]] = ()):
        super().__init__()
        self.leaves = (Choice, *rules.registered_modules(), *leaves)
        self.failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (
            isinstance(m, self.leaves)
            or rules.is_layer_subclass(m)
            or rules.is_norm_act(m)
            or super().is_leaf_module(m, qualname)
        )

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
        text = str(err).strip()
        first_line = text.splitlines()[0] if text else type(err).__name__
        raise TraceError(
            f"torch.fx cannot trace module '{module}'{where}: {first_line}; keep it whole with "
            "trace(..., leaf_modules=[ItsClass]) or slimnas.register_rule(ItsClass, 'opaque') "
            "(its channels are then fixed), see docs/engine.md"
        ) from None
    return fx.GraphModule(root, graph)


def _propagate_shapes(gm: fx.GraphModule, example: torch.Tensor) -> None:
    modes = {m: m.training for m in gm.modules()}
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example)
    except Exception as err:
        cause = err.__cause__ or err  # ShapeProp wraps the op's own error with a graph dump
        text = str(cause).strip()
        raise TraceError(
            f"running the traced model on an example of shape {tuple(example.shape)} failed: "
            f"{text.splitlines()[0] if text else type(err).__name__}; check the example "
            "input's shape and dtype"
        ) from None
    finally:
        for m, mode in modes.items():
            m.train(mode)


def _module_paths(gm: fx.GraphModule) -> set[str]:
    paths = set()
    for node in gm.graph.nodes:
        if node.op == "call_module":
            paths.add(str(node.target))
        paths.update(v[0] for v in (node.meta.get("nn_module_stack") or {}).values())
    return paths


def _model_graph(
    model: nn.Module, leaves
) -> tuple[fx.GraphModule, set[str] | None, fx.GraphModule | None]:
    """The graph to analyse, and the module paths that run at inference.

    Models branch on ``self.training`` (GoogLeNet's and Inception's auxiliary heads run only in
    training), and fx freezes such branches at trace time. The inference graph is traced in eval
    mode; if the training graph calls modules the inference graph does not, the training graph is
    analysed instead (so those heads are sliced too) and the extra modules are marked
    training-only: they count in parameters but not in MACs or memory. Returns the graph, the
    inference module paths (None when there is no training-only module) and the inference
    graph to fall back on.
    """
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        inference = _trace_graph(model, leaves)
        model.train()
        training = _trace_graph(model, leaves)
    finally:
        for m, mode in modes.items():
            m.train(mode)
    paths = _module_paths(inference)
    if _module_paths(training) <= paths:
        return inference, None, None
    return training, paths, inference


def _trace_candidate(candidate: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    gm = _trace_graph(candidate, ())
    _propagate_shapes(gm, example)
    return gm


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
    if divisor < 1 or steps < 1:
        raise TraceError(f"divisor and steps must be positive, got {divisor} and {steps}")
    gm, inference_paths, inference_graph = _model_graph(model, leaf_modules)
    try:
        _propagate_shapes(gm, example_input)
    except TraceError as err:
        if inference_graph is None:
            raise
        # The training-only branch cannot run at this input size (Inception's aux head needs
        # 299x299): analyse inference alone; that branch then keeps its original channels.
        log.warning(
            "training-only modules are not sliced (%s); the exported model is for "
            "inference; trace with a larger example input to slice them",
            err,
        )
        gm, inference_paths = inference_graph, None
        _propagate_shapes(gm, example_input)
    walk = Propagation(model, _trace_candidate, inference_paths=inference_paths)
    walk.walk(gm, "", None)
    space = _build_space(walk, gm, tuple(example_input.shape), divisor, min_ratio, steps)
    for name in fix:
        space = space.fix(name)
    for name, values in (choices or {}).items():
        space = space.with_choices(name, values)
    return space


def _channel_units(w: Propagation, divisor, min_ratio, steps) -> tuple[dict, dict[int, str]]:
    sets = w.sets
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
    return units, names


def _build_space(w: Propagation, gm, input_shape, divisor, min_ratio, steps) -> Space:
    units, names = _channel_units(w, divisor, min_ratio, steps)

    def unit_names(elements) -> tuple[str, ...]:
        return tuple(names[w.sets.find(e)] for e in elements)

    stages = group_stages(w.blocks, gm)
    for stage in stages:
        units[stage.name] = stage
    for path, candidates in w.choices.items():
        units[path] = OpUnit(name=path, choices=candidates)
    gate_of: dict[str, Gate] = {}
    for stage in stages:
        for i, block in enumerate(stage.blocks):
            gate_of[block] = (stage.name, stage.base + i)
    for path, candidates in w.choices.items():
        for name in candidates:
            gate_of[f"{path}.{name}"] = (path, name)

    def gates(path: str) -> tuple[Gate, ...]:
        parts = path.split(".")
        found = (gate_of.get(".".join(parts[:i])) for i in range(1, len(parts) + 1))
        return tuple(g for g in found if g is not None)

    layers = [
        Layer(
            path=r["path"],
            kind=r["kind"],
            in_units=unit_names(r["in"]),
            out_units=unit_names(r["out"]),
            positions=r["positions"],
            kernel=r["kernel"],
            group_width=r["group_width"],
            bias=r["bias"],
            count_params=r["count_params"],
            gates=gates(r["path"]),
            inference=r["inference"],
        )
        for r in w.layers
    ]
    for path, param in w.model.named_parameters():
        owner = path.rsplit(".", 1)[0] if "." in path else ""
        if owner not in w.modules:
            layers.append(
                Layer(path=path, kind="other", fixed_params=param.numel(), gates=gates(owner))
            )
    tensors = tuple(
        TensorRecord(
            name=t["name"],
            units=unit_names(t["elements"]),
            elements=t["positions"],
            gates=gates(t["path"]),
            inference=t["inference"],
        )
        for t in w.tensors
    )
    return Space(
        units=units,
        layers=tuple(layers),
        tensors=tensors,
        live=_liveness(w.steps, w.uses, len(tensors)),
        input_shape=input_shape,
        modules=_module_table(w, unit_names, stages),
    )


def _module_table(w: Propagation, unit_names, stages) -> dict[str, dict]:
    """What the supernet needs per module: its layouts, and where soft mixing happens.

    In soft mode each unit's sampled widths are mixed once, right after the layer that produces
    it: at the BatchNorm that directly follows a producing conv, else at the conv itself.
    """
    followers = {info["after"]: path for path, info in w.modules.items() if "after" in info}
    table: dict[str, dict] = {}
    for path, info in w.modules.items():
        table[path] = {
            "kind": info["kind"],
            "in_units": list(unit_names(info["in"])),
            "out_units": list(unit_names(info["out"])),
            "group_width": info["group_width"],
            "mix": False,
        }
    for path, info in w.modules.items():
        if info["producer"]:
            norm = followers.get(info["node"])
            table[norm if norm in table else path]["mix"] = True
    for stage in stages:
        for i, block in enumerate(stage.blocks):
            table[block] = {"kind": "block", "depth_unit": stage.name, "index": stage.base + i}
    for path in w.choices:
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
