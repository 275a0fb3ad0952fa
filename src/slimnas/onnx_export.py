"""ONNX export of plain torch modules, checked against onnxruntime.

`export_onnx` writes a model to an ``.onnx`` file with the TorchScript exporter
(``torch.onnx.export(..., dynamo=False)``): the default dynamo exporter needs ``onnxscript``, which
slimnas does not depend on. The file is written atomically (temporary file in the same directory,
checked with ``onnx.checker``, then ``os.replace``), so a failed export never leaves a half-written
file and never touches an existing one. `run_onnx` runs a file with onnxruntime on CPU, and
`verify_onnx` is the golden test: torch and onnxruntime, on the same input, must agree within
``atol``.

The graph has one input named ``"input"`` (several inputs, for the latency table's segments, are
``"input"``, ``"input1"``, ...) and one output named ``"output"``; a model that returns several
tensors is not supported. Models over 2 GB (ONNX external data) are not supported either.

``onnx`` and ``onnxruntime`` are optional (``pip install 'slimnas[onnx]'``) and imported lazily.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from slimnas.errors import ExportError

__all__ = ["export_onnx", "run_onnx", "verify_onnx"]

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "output"


def _import_optional(name: str) -> ModuleType:
    """Import ``onnx`` or ``onnxruntime``, or say how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ExportError(
            f"{name} is not installed; install the 'onnx' extra: pip install 'slimnas[onnx]'"
        ) from exc


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (exporters append whole graphs)."""
    for line in str(exc).splitlines():
        if line.strip():
            return f"{type(exc).__name__}: {line.strip()}"
    return type(exc).__name__


def _joined_lines(exc: BaseException) -> str:
    """An exception's whole message on one line (onnxruntime spreads short messages over lines)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, then restore each one's own training flag.

    Flags are restored per module rather than with ``model.train(flag)``, so that a model whose
    submodules were deliberately in mixed modes (e.g. frozen BN in a training model) gets them back.
    """
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def export_onnx(
    model: nn.Module,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    path: str | Path,
    *,
    opset: int = 17,
    dynamic_batch: bool = True,
) -> Path:
    """Export a model to an ONNX file, atomically.

    The model is traced in eval mode; its training flags are restored afterwards.

    Args:
        model: The module to export; it takes one tensor (or several) and returns one tensor.
        example_input: An input the model is traced with (on the model's device); a tuple for a
            model with several inputs, named ``input``, ``input1``, ``input2``, ...
        path: Where to write the ``.onnx`` file; an existing file is replaced only on success.
        opset: ONNX opset version.
        dynamic_batch: Make dimension 0 of the input and output symbolic ("batch").

    Returns:
        The path written.

    Raises:
        ExportError: If onnx is missing, the exporter fails, the result does not pass the ONNX
            checker, or the file cannot be written.
    """
    onnx = _import_optional("onnx")
    path = Path(path)
    name = type(model).__name__
    # A unique name in the target's own directory, so that os.replace is an atomic rename on the
    # same filesystem; created by the exporter itself, so it gets the usual umask permissions.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    input_names = [INPUT_NAME] + [f"{INPUT_NAME}{i}" for i in range(1, len(inputs))]
    axes = {name: {0: "batch"} for name in [*input_names, OUTPUT_NAME]}
    dynamic_axes = axes if dynamic_batch else None
    try:
        with _eval_mode(model), warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of the dynamo one (needs onnxscript).
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            try:
                torch.onnx.export(
                    model,
                    inputs,
                    str(tmp),
                    input_names=input_names,
                    output_names=[OUTPUT_NAME],
                    opset_version=opset,
                    dynamic_axes=dynamic_axes,
                    dynamo=False,
                )
            except OSError as exc:
                raise ExportError(f"cannot write ONNX file {path}: {_first_line(exc)}") from exc
            except Exception as exc:
                raise ExportError(
                    f"ONNX export of {name} failed: {_first_line(exc)}; "
                    "check that the model runs on example_input and uses only operations the "
                    "TorchScript exporter supports at this opset"
                ) from exc
        try:
            onnx.checker.check_model(str(tmp))
        except Exception as exc:
            raise ExportError(
                f"ONNX export of {name} produced an invalid model: {_first_line(exc)}"
            ) from exc
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise ExportError(f"cannot write ONNX file {path}: {_first_line(exc)}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("exported %s to %s (opset %d)", name, path, opset)
    return path


def run_onnx(
    path: str | Path,
    inputs: torch.Tensor | np.ndarray,
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Run an ONNX file with onnxruntime on CPU.

    Args:
        path: An ONNX file with one input; its first output is returned.
        inputs: The input batch; a tensor is detached and moved to CPU.
        threads: Intra-op thread count; onnxruntime's default when None.

    Returns:
        The first output of the graph.

    Raises:
        ExportError: If onnxruntime is missing, the file cannot be loaded, or the run fails.
    """
    ort = _import_optional("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX file {path} does not exist; export the model first")
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise ExportError(f"onnxruntime cannot load {path}: {_joined_lines(exc)}") from exc
    graph_inputs = session.get_inputs()
    if len(graph_inputs) != 1:
        raise ExportError(
            f"{path} has {len(graph_inputs)} inputs; run_onnx supports single-input graphs only"
        )
    try:
        outputs = session.run(None, {graph_inputs[0].name: np.asarray(inputs)})
    except Exception as exc:
        raise ExportError(
            f"onnxruntime failed to run {path} on input of shape {tuple(np.shape(inputs))} "
            f"(the graph expects {graph_inputs[0].shape}): {_joined_lines(exc)}"
        ) from exc
    return outputs[0]


def verify_onnx(
    model: nn.Module,
    path: str | Path,
    example_input: torch.Tensor,
    *,
    atol: float = 1e-4,
) -> float:
    """Check that an ONNX file computes what its torch model computes.

    Args:
        model: The source module; run in eval mode under no_grad, its training flags restored.
        path: The ONNX file exported from ``model``.
        example_input: The input both are run on; use a fresh one, not the traced one.
        atol: Largest allowed absolute difference.

    Returns:
        The maximum absolute difference between the two outputs.

    Raises:
        ExportError: If the outputs differ in shape, or by more than ``atol``, or are not finite.
    """
    with _eval_mode(model), torch.no_grad():
        expected = model(example_input)
    if not isinstance(expected, torch.Tensor):
        raise ExportError(
            f"{type(model).__name__} returned {type(expected).__name__}; "
            "verify_onnx supports models that return one tensor"
        )
    expected_np = expected.detach().cpu().numpy()
    actual = run_onnx(path, example_input)
    if actual.shape != expected_np.shape:
        raise ExportError(
            f"ONNX output shape {actual.shape} != torch output shape {expected_np.shape} "
            f"for {path}; re-export the model"
        )
    if actual.size == 0:
        return 0.0
    diff = float(np.max(np.abs(actual.astype(np.float64) - expected_np.astype(np.float64))))
    if not diff <= atol:  # also catches NaN
        raise ExportError(
            f"ONNX output of {path} differs from torch by {diff:.3g} (tolerance {atol:g}); "
            "re-export the model or loosen atol"
        )
    logger.info("verified %s: max abs diff %.3g (atol %g)", path, diff, atol)
    return diff
