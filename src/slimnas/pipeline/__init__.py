"""``slimnas run``: a config → one run directory, stage by stage, resumable at every stage.

    trace ─▶ supernet (sandwich rule) ─▶ search (each method, every budget) ─▶ export
          ─▶ retrain each found arch per seed ─▶ test once ─▶ results.json + report.md

Layout of the run directory::

    config.json               the resolved config
    space.json                the traced search space
    supernet/                 Trainer checkpoints and metrics.csv of the shared supernet
    supernet/final/           the trained supernet (safetensors + JSON) and its held-out scores
    search/<method>.json      the method's results, one per budget
    search/<method>/          what the method keeps while it searches (its own trainings'
                              checkpoints, one folder per budget for one-budget methods)
    search/<method>.<what>.json
                              the method's other files (state, scored archs, fronts)
    exports/<method>/<budget>/
                              each found arch as a plain model with its supernet's weights
                              (BatchNorm recalibrated): arch.json, model.safetensors, model.onnx
    models/<method>/<budget>/seed<k>/
                              retraining checkpoints, metrics.csv, model.safetensors, arch.json,
                              model.onnx, result.json (test accuracy at the final epoch)
    results.json, report.md, *.png

The pipeline knows no method by name: the search stage runs each configured name through the
`Method` protocol (`slimnas.methods.base`). Every stage skips what is already finished and
resumes what was interrupted, so running the same command again (``--resume``) continues where
a killed run stopped. Everything a config can get wrong (model, data, budgets below the smallest
arch, a method's own pre-flight check) is checked before the directory is created.

Final models are trained on the training split minus the held-out images (the held-out images
only score archs), and tested once, on the test split, after their last epoch.
"""

from __future__ import annotations

from slimnas.errors import ConfigError
from slimnas.methods.setup import StageStopped
from slimnas.pipeline.export import ExportStage
from slimnas.pipeline.prepare import STAGES, Prepared, PrepareStage
from slimnas.pipeline.results import ResultsStage
from slimnas.pipeline.retrain import RetrainStage
from slimnas.pipeline.search import SearchStage
from slimnas.pipeline.supernet import SupernetStage
from slimnas.run_dir import budget_slug, load_exported


class Pipeline(PrepareStage, SupernetStage, SearchStage, ExportStage, RetrainStage, ResultsStage):
    """Runs a `PipelineConfig` in its run directory, one stage per mixin.

    Args:
        config: the run's config.
        resume: continue the run in ``config.run.dir``; without it, a directory that holds a
            run already is refused.
        progress: progress bars (quiet when stderr is not a terminal).
    """

    def run(self, stages: tuple[str, ...] = STAGES):
        """Run ``stages`` (in pipeline order) and return the run directory, holding its lock
        (`slimnas.run_lock`) meanwhile: a second process on the directory gets `LockError`."""
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise ConfigError(f"unknown stage {unknown[0]!r}; the stages are {', '.join(STAGES)}")
        try:
            self.prepare()
            self.lock_run_dir()  # again, when an earlier run() gave it back
            for stage in STAGES:
                if stage in stages:
                    getattr(self, f"stage_{stage}")()
        finally:
            self.release()
        return self.run_dir


__all__ = ["STAGES", "Pipeline", "Prepared", "StageStopped", "budget_slug", "load_exported"]
