"""The supernet stage: the run's shared sandwich-rule supernet (trained once, shared by every
method that searches it), its held-out scores, and exports of archs with a supernet's weights."""

from __future__ import annotations

from typing import Any

from torch import nn

from slimnas.cost import macs
from slimnas.methods.base import train_sandwich
from slimnas.methods.baselines import nearest_uniform_arch
from slimnas.methods.setup import load_weights
from slimnas.pipeline.finished import finished_files, write_finished_json
from slimnas.space.units import Arch
from slimnas.supernet import Supernet
from slimnas.train import buffers_kept, distributed, evaluate, recalibrate_bn


class SupernetStage:
    """`stage_supernet`, `export_inherited`."""

    def stage_supernet(self) -> Supernet:
        """Train the supernet with the sandwich rule (or load the finished one)."""
        if self._supernet is not None:
            return self._supernet
        final = self.run_dir / "supernet" / "final"
        supernet = self.new_supernet()
        # A damaged file is set aside: the last training checkpoint gives the supernet again.
        if finished_files(final, ("supernet.json", "scores.json"), ("supernet.safetensors",)):
            self._supernet = load_weights(supernet, final)
            return self._supernet
        trained = self.prepare().config.supernet.epochs == 0  # model.weights as they are
        if not trained:
            train_sandwich(supernet, self.setup(self.run_dir / "supernet"))
        if trained:  # keep the trained model's own BatchNorm statistics, not a recalibration
            with buffers_kept(supernet):
                scores = self._score_supernet(supernet)
        else:  # the max arch's recalibrated statistics stay (the KD teacher of retraining)
            scores = self._score_supernet(supernet)
        if distributed.is_main():
            supernet.save(final)
            write_finished_json(final / "scores.json", scores)
        self._supernet = supernet
        return supernet

    def _score_supernet(self, supernet: Supernet) -> dict[str, Any]:
        """Held-out top-1 of the max and min archs and along the uniform path, after BatchNorm
        recalibration."""
        setup = self.setup()
        heldout = list(setup.loader(self.prepare().data.heldout, 500, train=False))
        scores: dict[str, Any] = {
            "uniform_path": self._uniform_path(supernet, heldout, setup.calibration())
        }
        # The max arch last: its statistics stay in the supernet, which teaches retraining (KD).
        for name, arch in (("min", supernet.min_arch()), ("max", supernet.max_arch())):
            recalibrate_bn(supernet, arch, setup.calibration())
            result = evaluate(supernet, heldout)
            scores[name] = {"accuracy": result.accuracy, "loss": result.loss}
        return scores

    @staticmethod
    def _uniform_path(supernet: Supernet, heldout: list, calibration: list) -> list[dict]:
        """Held-out top-1 at up to six uniform widths (BatchNorm recalibrated), narrowest first:
        a supernet that ranks archs well gets better as it gets wider (the report's check).
        Ratios that give the same arch as the one before are scored once; a space with no
        width to vary (e.g. ``space.channels = false``) has no path: []."""
        space = supernet.space
        full = macs(space, space.max_arch())
        archs: list[tuple[float, Arch]] = []
        for ratio in (0.25, 0.4, 0.55, 0.7, 0.85, 1.0):
            arch = nearest_uniform_arch(space, ratio)
            if not archs or arch != archs[-1][1]:
                archs.append((ratio, arch))
        if len(archs) < 2:
            return []
        path = []
        for ratio, arch in archs:
            recalibrate_bn(supernet, arch, calibration)
            result = evaluate(supernet, heldout)
            path.append(
                {
                    "ratio": ratio,
                    "macs_share": macs(space, arch) / full,
                    "accuracy": result.accuracy,
                    "images": result.samples,
                }
            )
        return path

    def weights_of(self, method: str, budget: str | None = None) -> Supernet:
        """The supernet whose weights ``method``'s archs (of ``budget``) inherit: its own
        (`Method.weights`), else the shared one."""
        return self.method(method).weights(budget) or self.stage_supernet()

    def export_inherited(self, arch: Arch, method: str, budget: str | None = None) -> nn.Module:
        """``arch`` as a plain model with the weights of ``method``'s supernet (`weights_of`,
        for ``budget``) and BatchNorm statistics recalibrated for it; the supernet keeps its
        own statistics (a trained model's, or its max arch's recalibrated ones)."""
        supernet = self.weights_of(method, budget)
        with buffers_kept(supernet):
            recalibrate_bn(supernet, arch, self.setup().calibration())
            model = supernet.export(arch)
        supernet.activate(supernet.max_arch())
        return model


__all__ = ["SupernetStage"]
