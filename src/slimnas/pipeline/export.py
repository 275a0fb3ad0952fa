"""The export stage: each found arch as a plain model with its supernet's (recalibrated)
weights, checked against its budget as counted on the exported module, and as ONNX."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from slimnas.cost.measured import module_macs, module_params
from slimnas.errors import ExportError
from slimnas.io import save_tensors
from slimnas.methods.result import Result
from slimnas.pipeline.finished import finished_files, write_finished_json
from slimnas.run_dir import budget_slug
from slimnas.train import distributed

log = logging.getLogger("slimnas.pipeline")


class ExportStage:
    """`stage_export`, `check_budget`, `write_onnx`."""

    def stage_export(self) -> list[Path]:
        """Export every found arch into ``exports/<method>/<budget>/``."""
        self.stage_supernet()
        written = []
        for method, results in self.stage_search().items():
            for result in results:
                out = self.run_dir / "exports" / method / budget_slug(result.budget)
                written.append(out)
                if finished_files(out, ("arch.json",), ("model.safetensors",)):
                    continue  # (a damaged file is set aside and the arch exported again)
                model = self.export_inherited(result.arch, method, result.budget)
                self.check_budget(model, result)
                if distributed.is_main():
                    write_finished_json(out / "arch.json", dict(result.arch))
                    self.write_onnx(model, out / "model.onnx")
                    save_tensors(model.state_dict(), out / "model.safetensors")
        return written

    def check_budget(self, model: nn.Module, result: Result) -> None:
        """The exported model must cost exactly what its arch was searched for."""
        p = self.prepare()
        counted = {
            "macs": module_macs(model, p.example.to(next(model.parameters()).device)),
            "params": module_params(model),
        }
        for metric, value in counted.items():
            if value != result.costs[metric]:
                raise ExportError(
                    f"the exported {result.method} model for {result.budget} has {metric} "
                    f"{value} but its arch counts {result.costs[metric]}; please report this"
                )
        budget = next(b for b in p.budgets if b.text == result.budget)
        if not budget.fits(p.space, result.arch) and not result.info.get("reference"):
            raise ExportError(f"{result.method} found an arch over its budget {budget.text}")

    def write_onnx(self, model: nn.Module, path: Path) -> None:
        try:
            from slimnas.onnx_export import export_onnx

            example = self.prepare().example.to(next(model.parameters()).device)
            export_onnx(model, example, path)
        except ExportError as err:  # onnx not installed, or an op it cannot express
            log.warning("no ONNX file for %s: %s", path.parent, err)


__all__ = ["ExportStage"]
