"""The pipeline's first stage: check everything the config says, then create the run
directory; and what every later stage shares (`Setup`, the model, the latency target)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimnas.config import PipelineConfig
from slimnas.configured_model import build_checked, image_channels
from slimnas.cost.budget import Budget
from slimnas.cost.latency.measure import check_target, onnxruntime_available
from slimnas.cost.latency.table import LatencyTarget, load_latency_target
from slimnas.data.augment import normalize
from slimnas.data.prepare import TrainingData, load_training_data, resolve_device
from slimnas.errors import CheckpointError, ConfigError
from slimnas.io import atomic_write_text
from slimnas.methods.setup import Setup
from slimnas.run_dir import build_model_of, check_resumed_config, load_teacher_state
from slimnas.run_lock import RunLock, check_unlocked_on_main, lock_run_dir
from slimnas.space.space import Space
from slimnas.space.trace import trace
from slimnas.supernet import Supernet
from slimnas.train import distributed
from slimnas.weights import load_weights as load_trained

STAGES = ("supernet", "search", "export", "retrain", "report")

# Settings a resumed run may change: where it lives, where an invocation stops, which methods
# and seeds it adds. Anything else that differs from the saved config is refused.
RESUMABLE_CHANGES = (
    "run.dir",
    "supernet.max_steps",
    "retrain.max_steps",
    "retrain.seeds",
    "search.methods",
)


@dataclass
class Prepared:
    """What every stage needs: the checked config, data, space and budgets."""

    config: PipelineConfig
    data: TrainingData
    space: Space
    budgets: list[Budget]
    example: torch.Tensor
    device: torch.device


class PrepareStage:
    """`prepare` and the shared pieces: `setup`, `new_supernet`, `_model`."""

    def __init__(self, config: PipelineConfig, *, resume: bool = False, progress: bool = True):
        self.config = config
        self.resume = resume
        self.progress = progress
        self.run_dir = Path(config.run.dir).expanduser()
        self._prepared: Prepared | None = None
        self._setup: Setup | None = None
        self._supernet: Supernet | None = None
        self._methods: dict[str, Any] = {}
        self._teacher_model: nn.Module | None = None
        self._max_arch_model: nn.Module | None = None  # the latency reference
        self._lock: RunLock | None = None

    def prepare(self) -> Prepared:
        """Check everything the config says, then create the run directory.

        Raises:
            ConfigError, BudgetError, TraceError: a mistake in the config; nothing is written.
            LockError: another process runs in the directory.
        """
        if self._prepared is not None:
            return self._prepared
        config, run_dir = self.config, self.run_dir
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"run.dir {run_dir} exists and is not a directory; choose another")
        check_unlocked_on_main(run_dir)  # another process runs there: say so before any work
        holds_run = self._check_not_overwriting()
        if holds_run:
            check_resumed_config(
                run_dir,
                config.to_dict(),
                fixed_prefixes=("model.", "data.", "space.", "supernet.", "search.", "retrain."),
                free=RESUMABLE_CHANGES,
            )
        device = resolve_device(config.supernet)
        resolve_device(config.retrain)
        data = load_training_data(config.data, channels=image_channels(config))
        for section in (config.supernet, config.retrain):
            if len(data.train[1]) < section.batch_size:
                raise ConfigError(
                    f"{section.section}.batch_size {section.batch_size} is more than the "
                    f"{len(data.train[1])} training images; lower it"
                )
        example = normalize(data.train[0][:1], data.mean, data.std)
        config, model = build_checked(config, data, example, config.supernet.seed)
        if config.model.weights is not None:
            try:
                load_trained(model, config.model.weights)
            except CheckpointError as err:  # one line that names the setting, exit 2
                raise CheckpointError(f"model.weights: {err}") from None
        space = self._space(config, model, example)
        if config.retrain.teacher is not None:
            state = load_teacher_state(Path(config.retrain.teacher))
            try:
                build_model_of(config, 0).load_state_dict(state)
            except RuntimeError as err:
                raise ConfigError(
                    f"retrain.teacher {config.retrain.teacher} does not hold {config.model.name} "
                    f"weights ({str(err).splitlines()[0]}); give the unpruned model's"
                ) from None
        latency = self._latency_target(config, space)
        budgets = [Budget.parse(text, space, latency) for text in config.search.budgets]
        for budget in budgets:
            budget.check_feasible(space)
        for name in config.search.methods:
            config.search.method(name).check(space, budgets)
        self.config = config
        self.lock_run_dir()
        if distributed.is_main():
            self._check_not_overwriting()  # a run that started meanwhile and ended
            atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=1))
            atomic_write_text(run_dir / "space.json", space.to_json())
        self._prepared = Prepared(config, data, space, budgets, example, device)
        return self._prepared

    def _check_not_overwriting(self) -> bool:
        """Whether the run directory holds a run; refused without ``resume``."""
        holds_run = (self.run_dir / "config.json").exists()
        if holds_run and not self.resume:
            raise ConfigError(
                f"run.dir {self.run_dir} holds a run already; pass --resume to continue it, or "
                "set run.dir to a new directory"
            )
        return holds_run

    def lock_run_dir(self) -> None:
        """Take the run directory's lock (`slimnas.run_lock`) if not held: creates the
        directory; under torchrun a collective, rank 0 holds it. Released by `release`.

        Raises:
            LockError: another process runs in the directory.
            ConfigError: the directory cannot be written.
        """
        if self._lock is None:
            self._lock = lock_run_dir(self.run_dir)

    def release(self) -> None:
        """Give back the run directory's lock (taken by `prepare`); nothing when not held."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @staticmethod
    def _model(config: PipelineConfig, seed: int) -> nn.Module:
        return build_model_of(config, seed)

    @staticmethod
    def _space(config: PipelineConfig, model: nn.Module, example: torch.Tensor) -> Space:
        options = config.space
        space = trace(
            model,
            example,
            divisor=options.divisor,
            min_ratio=options.min_ratio,
            steps=options.steps,
        )
        if not options.depth:
            for unit in space.depth_units():
                space = space.fix(unit.name)
        if not options.channels:
            for unit in space.channel_units():
                space = space.fix(unit.name)
        if not space.searchable:
            raise ConfigError(f"model {config.model.name} has no searchable unit; nothing to do")
        return space

    @staticmethod
    def _latency_target(config: PipelineConfig, space: Space) -> LatencyTarget | None:
        """The latency table target that latency budgets predict with (search.latency_*),
        checked to be of this machine and this model; None without a table."""
        options = config.search
        check_target(latency_runtime(options), options.latency_device, options.latency_threads)
        if options.latency_table is None:
            return None
        try:
            target = load_latency_target(
                options.latency_table,
                runtime=options.latency_runtime,
                threads=options.latency_threads,
                batch=options.latency_batch,
                device=options.latency_device,
            )
            target.calibration(space)  # refuses a table built for another model
        except ConfigError as err:  # one line that names the setting
            raise ConfigError(f"search.latency_table: {err}") from None
        return target

    def setup(self, folder: Path | None = None) -> Setup:
        """The `Setup` of the run (``[supernet]`` recipe, search seed and scoring), writing
        into ``folder``."""
        if self._setup is None:
            p = self.prepare()
            config = p.config
            self._setup = Setup(
                p.data,
                config.supernet,
                seed=config.search.seed,
                score_images=config.search.score_images,
                report_images=config.search.report_images,
                score_batch=config.search.score_batch,
                bn=config.search.bn,
                calibration_batches=config.retrain.bn_batches,
                augment=config.data.augment,
                device=p.device,
                progress=self.progress,
                new_supernet=self.new_supernet,
                shared=self.stage_supernet,
            )
        return self._setup.for_folder(folder)

    def new_supernet(self) -> Supernet:
        """A fresh supernet of the model: the initial weights of ``supernet.seed``, or the
        trained ``model.weights``; its channels ranked by ``model.rank`` (`rank_channels`: the
        function is unchanged, narrower archs keep each unit's most important channels)."""
        p = self.prepare()
        model = self._model(p.config, p.config.supernet.seed)
        if p.config.model.weights is not None:
            load_trained(model, p.config.model.weights)
        supernet = Supernet(model, p.space).to(p.device)
        criterion = p.config.model.criterion
        if criterion is not None:
            batches = self.setup().calibration() if criterion == "taylor" else None
            supernet.rank_channels(criterion, batches)
        return supernet


def latency_runtime(options) -> str:
    """search.latency_runtime, or torch when onnxruntime is missing and no table needs it."""
    runtime = options.latency_runtime
    if runtime == "onnxruntime" and not onnxruntime_available() and not options.latency_table:
        return "torch"
    return runtime


__all__ = ["RESUMABLE_CHANGES", "STAGES", "PrepareStage", "Prepared", "latency_runtime"]
