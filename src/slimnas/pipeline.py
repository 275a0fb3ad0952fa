"""``slimnas run``: a config → one run directory, stage by stage, resumable at every stage.

    trace ─▶ supernet (sandwich rule) ─▶ search (each method, every budget) ─▶ export
          ─▶ retrain each found arch per seed ─▶ test once ─▶ results.json + report.md

Layout of the run directory::

    config.json               the resolved config
    space.json                the traced search space
    supernet/                 Trainer checkpoints and metrics.csv of the supernet
    supernet/final/           the trained supernet (safetensors + JSON) and its held-out scores
    search/<method>.json      the method's results, one per budget (autoslim.state.json: resume)
    search/joslim/            Joslim's own supernet: checkpoints, metrics.csv, final/ (the
                              supernet and the step's state), front.json (held-out scores)
    search/<method>.front.json
                              with joslim: the fronts of joslim and random, tested (report)
    exports/<method>/<budget>/
                              each found arch as a plain model with the supernet's weights
                              (BatchNorm recalibrated): arch.json, model.safetensors, model.onnx
    models/<method>/<budget>/seed<k>/
                              retraining checkpoints, metrics.csv, model.safetensors, arch.json,
                              model.onnx, result.json (test accuracy at the final epoch)
    results.json, report.md, *.png

Every stage skips what is already finished and resumes what was interrupted, so running the
same command again (``--resume``) continues where a killed run stopped. Everything a config can
get wrong (model, data, budgets below the smallest arch) is checked before the directory is
created, so that a mistake leaves nothing half-written.

Final models are trained on the training split minus the held-out images (the held-out images
only score archs), and tested once, on the test split, after their last epoch.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimnas.config import PipelineConfig, SupernetConfig
from slimnas.cost.budget import LATENCY, Budget
from slimnas.cost.latency import check_target, measure_latencies, onnxruntime_available
from slimnas.cost.latency_table import LatencyTarget, load_latency_target
from slimnas.cost.measured import module_macs, module_params
from slimnas.cost.memory import peak_memory
from slimnas.data.augment import normalize
from slimnas.data.prepare import TrainingData, load_training_data, make_loader, resolve_device
from slimnas.data.split import class_balanced_split
from slimnas.errors import ConfigError, ExportError, SlimnasError
from slimnas.fronts import (
    FRONT_METHODS,
    compare_fronts,
    evaluate_archs,
    explored_range,
    scored_front,
)
from slimnas.io import atomic_write_text, load_tensors, save_tensors
from slimnas.methods.autoslim import greedy_slim
from slimnas.methods.baselines import evolution_search, random_search, uniform_search
from slimnas.methods.joslim import Joslim, check_width_budgets, visited_archs
from slimnas.methods.joslim_acquisition import botorch_modules
from slimnas.methods.one_budget import OneBudgetSearch
from slimnas.methods.proxyless import (
    ProxylessNAS,
    WarmupStep,
    check_op_space,
    fixed_op_results,
)
from slimnas.methods.proxyless_paths import ProxylessArch
from slimnas.methods.result import Result, arch_costs
from slimnas.methods.scoring import ArchScorer, Score
from slimnas.methods.tas import TAS
from slimnas.models.build import build_model
from slimnas.run_dir import check_resumed_config
from slimnas.space.space import Space
from slimnas.space.trace import trace
from slimnas.space.units import Arch
from slimnas.supernet import Supernet
from slimnas.train import Trainer, checkpoint_dirs, distributed, evaluate, recalibrate_bn
from slimnas.train.recipe import trainer_from_recipe
from slimnas.train.slimmable import sandwich_step
from slimnas.train.step import kd_step, plain_step
from slimnas.train.trainer import METRICS_FILE

log = logging.getLogger(__name__)

STAGES = ("supernet", "search", "export", "retrain", "report")
JOSLIM_STATE = "joslim_step.json"  # in search/joslim/final/, beside the supernet
# A final model's latency: interleaved rounds with the max arch, timed calls per round.
LATENCY_ROUNDS, LATENCY_REPEATS = 10, 10

# Settings a resumed run may change: where it lives, where an invocation stops, which methods
# and seeds it adds. Anything else that differs from the saved config is refused.
RESUMABLE_CHANGES = (
    "run.dir",
    "supernet.max_steps",
    "retrain.max_steps",
    "retrain.seeds",
    "search.methods",
)


def budget_slug(text: str) -> str:
    """A folder name for a budget: ``macs<=50%`` → ``macs-le-50pct``."""
    slug = text.replace("<=", "-le-").replace("%", "pct").replace(" ", "")
    return re.sub(r"[^A-Za-z0-9._-]", "_", slug)


@dataclass
class Prepared:
    """What every stage needs: the checked config, data, space and budgets."""

    config: PipelineConfig
    data: TrainingData
    space: Space
    budgets: list[Budget]
    example: torch.Tensor
    device: torch.device


class Pipeline:
    """Runs a `PipelineConfig` in its run directory.

    Args:
        config: the run's config.
        resume: continue the run in ``config.run.dir``; without it, a directory that holds a
            run already is refused.
        progress: progress bars (quiet when stderr is not a terminal).
    """

    def __init__(self, config: PipelineConfig, *, resume: bool = False, progress: bool = True):
        self.config = config
        self.resume = resume
        self.progress = progress
        self.run_dir = Path(config.run.dir).expanduser()
        self._prepared: Prepared | None = None
        self._supernet: Supernet | None = None
        self._calibration_batches: list | None = None
        self._teacher_model: nn.Module | None = None
        self._max_arch_model: nn.Module | None = None  # the latency reference
        self._joslim_trained: tuple[Supernet, list[Arch]] | None = None

    # ------------------------------------------------------------------------------ prepare
    def prepare(self) -> Prepared:
        """Check everything the config says, then create the run directory.

        Raises:
            ConfigError, BudgetError, TraceError: a mistake in the config; nothing is written.
        """
        if self._prepared is not None:
            return self._prepared
        config, run_dir = self.config, self.run_dir
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"run.dir {run_dir} exists and is not a directory; choose another")
        holds_run = (run_dir / "config.json").exists()
        if holds_run and not self.resume:
            raise ConfigError(
                f"run.dir {run_dir} holds a run already; pass --resume to continue it, or set "
                "run.dir to a new directory"
            )
        if holds_run:
            check_resumed_config(
                run_dir,
                config.to_dict(),
                fixed_prefixes=("model.", "data.", "space.", "supernet.", "search.", "retrain."),
                free=RESUMABLE_CHANGES,
            )
        device = resolve_device(config.supernet)
        resolve_device(config.retrain)
        data = load_training_data(config.data)
        num_classes = config.model.num_classes or data.num_classes
        if num_classes < data.num_classes:
            raise ConfigError(
                f"model.num_classes is {num_classes} but the data has {data.num_classes} "
                "classes; raise it or leave it out"
            )
        config = replace(config, model=replace(config.model, num_classes=num_classes))
        for section in (config.supernet, config.retrain):
            if len(data.train[1]) < section.batch_size:
                raise ConfigError(
                    f"{section.section}.batch_size {section.batch_size} is more than the "
                    f"{len(data.train[1])} training images; lower it"
                )
        example = normalize(data.train[0][:1], data.mean, data.std)
        model = self._model(config, config.supernet.seed)
        space = self._space(config, model, example)
        if config.retrain.teacher is not None:
            state = load_teacher_state(Path(config.retrain.teacher))
            try:
                self._model(config, 0).load_state_dict(state)
            except RuntimeError as err:
                raise ConfigError(
                    f"retrain.teacher {config.retrain.teacher} does not hold {config.model.name} "
                    f"weights ({str(err).splitlines()[0]}); give the unpruned model's"
                ) from None
        latency = self._latency_target(config, space)
        budgets = [Budget.parse(text, space, latency) for text in config.search.budgets]
        for budget in budgets:
            budget.check_feasible(space)
        check_op_space(space, config.search.methods, config.search.fixed_op)
        if "joslim" in config.search.methods:
            check_width_budgets(space, budgets)
            botorch_modules()  # a missing extra stops the run now, not after a supernet
        self.config = config
        if distributed.is_main():
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=1))
            atomic_write_text(run_dir / "space.json", space.to_json())
        self._prepared = Prepared(config, data, space, budgets, example, device)
        return self._prepared

    @staticmethod
    def _model(config: PipelineConfig, seed: int) -> nn.Module:
        torch.manual_seed(seed)  # the initial weights
        kwargs: dict[str, Any] = {"num_classes": config.model.num_classes}
        if config.model.width_mult != 1.0:
            kwargs["width_mult"] = config.model.width_mult
        model, _ = build_model(config.model.name, **kwargs)
        return model

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
        check_target(_latency_runtime(options), options.latency_device, options.latency_threads)
        if options.latency_table is None:
            return None
        target = load_latency_target(
            options.latency_table,
            runtime=options.latency_runtime,
            threads=options.latency_threads,
            batch=options.latency_batch,
            device=options.latency_device,
        )
        target.calibration(space)  # refuses a table built for another model
        return target

    def _loader(self, split, batch_size: int, train: bool, seed: int = 0):
        p = self.prepare()
        return make_loader(
            p.data,
            split,
            batch_size,
            train=train,
            seed=seed,
            augment=p.config.data.augment,
            device=p.device,
            rank=distributed.rank() if train else 0,
            world_size=distributed.world_size() if train else 1,
        )

    # ----------------------------------------------------------------------------- run
    def run(self, stages: tuple[str, ...] = STAGES) -> Path:
        """Run ``stages`` (in pipeline order) and return the run directory."""
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise ConfigError(f"unknown stage {unknown[0]!r}; the stages are {', '.join(STAGES)}")
        self.prepare()
        for stage in STAGES:
            if stage in stages:
                getattr(self, f"stage_{stage}")()
        return self.run_dir

    # -------------------------------------------------------------------------- supernet
    def stage_supernet(self) -> Supernet:
        """Train the supernet with the sandwich rule (or load the finished one)."""
        if self._supernet is not None:
            return self._supernet
        p = self.prepare()
        recipe = p.config.supernet
        final = self.run_dir / "supernet" / "final"
        model = self._model(p.config, recipe.seed)
        if (final / "supernet.json").exists():
            supernet = Supernet.load(model, final).to(p.device)
            supernet.activate(supernet.max_arch())
            self._supernet = supernet
            return supernet
        supernet = Supernet(model, p.space).to(p.device)
        loader = self._loader(p.data.train, recipe.batch_size, train=True, seed=recipe.seed)
        generator = torch.Generator().manual_seed(recipe.seed)
        step = sandwich_step(
            supernet, recipe.sandwich_n, generator, recipe.label_smoothing, recipe.distill
        )
        trainer = self._trainer(supernet, loader, recipe, step, self.run_dir / "supernet")
        self._announce("supernet", trainer, f"sandwich rule, n={recipe.sandwich_n}")
        if not self._fit(trainer, recipe.max_steps, "supernet.max_steps"):
            raise StageStopped()
        scores = self._score_supernet(supernet)
        if distributed.is_main():
            supernet.save(final)
            atomic_write_text(final / "scores.json", json.dumps(scores, indent=1))
        self._supernet = supernet
        return supernet

    def _trainer(self, model, loader, recipe, step, run_dir: Path) -> Trainer:
        resume = bool(checkpoint_dirs(run_dir))
        return trainer_from_recipe(
            model,
            loader,
            recipe,
            step_fn=step,
            run_dir=run_dir,
            resume=resume,
            progress=self.progress,
        )

    def _announce(self, what: str, trainer: Trainer, detail: str) -> None:
        resumed = f", resuming at step {trainer.step}" if trainer.step else ""
        log.info("training %s (%s): %d steps%s", what, detail, trainer.total_steps, resumed)

    @staticmethod
    def _fit(trainer: Trainer, max_steps: int | None, setting: str) -> bool:
        """Train; False when stopped early by ``max_steps``."""
        trainer.fit(until_step=max_steps)
        if trainer.step < trainer.total_steps:
            log.warning(
                "stopped at step %d of %d (%s); run again with --resume to continue",
                trainer.step,
                trainer.total_steps,
                setting,
            )
            return False
        return True

    def _score_supernet(self, supernet: Supernet) -> dict[str, Any]:
        """Held-out top-1 of the max and min archs after BatchNorm recalibration."""
        p = self.prepare()
        heldout = list(self._loader(p.data.heldout, 500, train=False))
        scores = {}
        # The max arch last: its statistics stay in the supernet, which teaches retraining (KD).
        for name, arch in (("min", supernet.min_arch()), ("max", supernet.max_arch())):
            recalibrate_bn(supernet, arch, self._calibration())
            result = evaluate(supernet, heldout)
            scores[name] = {"accuracy": result.accuracy, "loss": result.loss}
        return scores

    def _export_inherited(self, arch: Arch, method: str | None = None) -> nn.Module:
        """``arch`` as a plain model with the weights of ``method``'s supernet (`_supernet_for`)
        and BatchNorm statistics recalibrated for it; the supernet gets its max arch's
        statistics back."""
        supernet = self._supernet_for(method)
        recalibrate_bn(supernet, arch, self._calibration())
        model = supernet.export(arch)
        recalibrate_bn(supernet, supernet.max_arch(), self._calibration())
        return model

    def _calibration(self) -> list:
        """The training batches every BatchNorm recalibration uses: drawn once (the loader is
        seeded, so every draw would give the same batches) and reused by every arch."""
        if self._calibration_batches is None:
            p = self.prepare()
            recipe = p.config.supernet
            seed = recipe.seed + 1
            loader = self._loader(p.data.train, recipe.batch_size, train=True, seed=seed)
            batches = itertools.islice(iter(loader), p.config.retrain.bn_batches)
            self._calibration_batches = list(batches)
        return self._calibration_batches

    # ---------------------------------------------------------------------------- search
    def stage_search(self) -> dict[str, list[Result]]:
        """Run each method of ``search.methods`` on the trained supernet, every budget at once."""
        p = self.prepare()
        supernet = self.stage_supernet()
        options = p.config.search
        found: dict[str, list[Result]] = {}
        scorer = None
        for method in options.methods:
            path = self.run_dir / "search" / f"{method}.json"
            if path.exists():
                found[method] = [Result.from_dict(r) for r in json.loads(path.read_text())]
                continue
            if scorer is None:
                scorer = self._scorer(supernet)
            started = time.perf_counter()
            results = self._search(method, p, scorer)
            seconds = time.perf_counter() - started
            results = [replace(r, info=r.info | {"seconds": round(seconds, 2)}) for r in results]
            if distributed.is_main():
                atomic_write_text(path, json.dumps([r.to_dict() for r in results], indent=1))
            found[method] = results
            log.info("%s: %d archs in %.0f s", method, len(results), seconds)
        return found

    def _scorer(self, supernet: Supernet, bn: str | None = None) -> ArchScorer:
        p = self.prepare()
        options = p.config.search
        bn = bn or options.bn
        images, labels = p.data.heldout
        count = min(options.score_images, len(labels))
        split = (images[:count], labels[:count])
        batches = list(self._loader(split, options.score_batch, train=False))
        calibration = self._calibration() if bn == "recalibrate" else None
        return ArchScorer(supernet, batches, bn, calibration)

    def _search(self, method: str, p: Prepared, scorer: ArchScorer) -> list[Result]:
        options = p.config.search
        if method == "autoslim":
            state = self.run_dir / "search" / "autoslim.state.json"
            return greedy_slim(
                p.space,
                scorer,
                p.budgets,
                depth=p.config.space.depth,
                state_path=state,
                progress=self.progress,
            )
        if method == "uniform":
            return uniform_search(p.space, p.budgets, scorer)
        if method == "random":
            return self._random_search(p, scorer, {})
        if method == "evolution":
            return evolution_search(
                p.space,
                scorer,
                p.budgets,
                population=options.population,
                generations=options.generations,
                seed=options.seed,
                progress=self.progress,
            )
        if method in ("tas", "tas_width"):
            return [self._tas(method, budget) for budget in p.budgets]
        if method == "joslim":
            return self._joslim(p)
        if method == "proxyless":
            return [self._proxyless(budget) for budget in p.budgets]
        if method == "fixed":
            return fixed_op_results(p.space, p.budgets, p.config.search.fixed_op, scorer)
        raise ConfigError(f"unknown method {method!r}")  # the config checks names already

    def _tas(self, method: str, budget: Budget) -> Result:
        """One TAS search of ``budget`` (``tas_width``: widths only) in
        ``search/<method>/<budget>``: a fresh copy of the model trained with the ``[supernet]``
        recipe on one half of the training split while the architecture learns on the other
        (TAS §3.4); resumable. The derived arch is scored on the held-out images with the
        search's own weights."""
        p = self.prepare()
        options, recipe = p.config.search, p.config.supernet
        recipe = replace(recipe, epochs=options.tas_epochs or recipe.epochs)
        out = self.run_dir / "search" / method / budget_slug(budget.text)
        done = self._finished_search(out, method)
        if done is not None:
            return done
        supernet = Supernet(self._model(p.config, recipe.seed), p.space).to(p.device)
        images, labels = p.data.train
        weight_half, arch_half = class_balanced_split(labels, 0.5, seed=recipe.seed)
        train = self._loader(
            (images[weight_half], labels[weight_half]), recipe.batch_size, True, recipe.seed
        )
        arch_data = self._loader(
            (images[arch_half], labels[arch_half]), recipe.batch_size, True, recipe.seed + 1
        )
        tas = TAS(
            depth=method == "tas",
            epochs=recipe.epochs,
            seed=options.seed,
            cost_weight=options.tas_cost_weight,
            tolerance=options.tas_tolerance,
            tau_max=options.tas_tau_max,
            tau_min=options.tas_tau_min,
            tau_schedule=options.tas_tau_schedule,
            arch_lr=options.tas_arch_lr,
        )
        label = (f"{method} {budget.text}", "TAS search")
        return self._one_budget(tas, method, supernet, train, arch_data, budget, recipe, out, label)

    def _finished_search(self, out: Path, method: str) -> Result | None:
        """The result of a one-budget search (TAS, ProxylessNAS) that finished in ``out``, or
        None; these searches refuse to run under torchrun."""
        if (out / "result.json").exists():
            return Result.from_dict(json.loads((out / "result.json").read_text()))
        if distributed.is_distributed():
            raise ConfigError(f"{method} runs in one process; run it without torchrun")
        return None

    def _one_budget(
        self,
        search: OneBudgetSearch,
        method: str,
        supernet: Supernet,
        train: Iterable,
        arch_data: Iterable,
        budget: Budget,
        recipe: SupernetConfig,
        out: Path,
        label: tuple[str, str],
    ) -> Result:
        """Fit a one-budget search of ``budget`` with ``recipe`` in ``out`` (resumable), then
        score its derived arch on the held-out images with the search's own weights (BatchNorm
        recalibrated) and write ``out/result.json``. ``label``: what `_announce` prints."""
        step = search.make_step(supernet, arch_data, budget, len(train))
        trainer = self._trainer(supernet, train, recipe, step, out)
        self._announce(label[0], trainer, label[1])
        try:
            if not self._fit(trainer, recipe.max_steps, "supernet.max_steps"):
                raise StageStopped()
        finally:
            supernet.activate(supernet.max_arch())
        result = search.result(self._scorer(supernet, "recalibrate"), method=method)
        if distributed.is_main():
            atomic_write_text(out / "result.json", json.dumps(result.to_dict(), indent=1))
        return result

    def _proxyless_warmup(self) -> Supernet:
        """The weight warm-up shared by every ProxylessNAS search (§3.2; the authors warm up
        once, then search): ``search.proxyless_warmup_epochs`` epochs of one random path per
        step on the training split with the ``[supernet]`` recipe and its own LR schedule, in
        ``search/proxyless/warmup/`` (resumable; the weights in ``final/``). A fresh model when
        the warm-up is 0 epochs."""
        p = self.prepare()
        options, recipe = p.config.search, p.config.supernet
        model = self._model(p.config, recipe.seed)
        out = self.run_dir / "search" / "proxyless" / "warmup"
        if (out / "final" / "supernet.json").exists():
            return Supernet.load(model, out / "final").to(p.device)
        supernet = Supernet(model, p.space).to(p.device)
        if options.proxyless_warmup_epochs == 0:
            return supernet
        recipe = replace(recipe, epochs=options.proxyless_warmup_epochs)
        train = self._loader(p.data.train, recipe.batch_size, True, recipe.seed)
        paths = ProxylessArch(p.space, generator=torch.Generator().manual_seed(options.seed))
        generator = torch.Generator().manual_seed(options.seed)
        step = WarmupStep(supernet, paths, recipe.label_smoothing, generator)
        trainer = self._trainer(supernet, train, recipe, step, out)
        self._announce("proxyless warm-up", trainer, "one random path per step")
        try:
            if not self._fit(trainer, recipe.max_steps, "supernet.max_steps"):
                raise StageStopped()
        finally:
            supernet.activate(supernet.max_arch())
        if distributed.is_main():
            supernet.save(out / "final")
        return supernet

    def _proxyless(self, budget: Budget) -> Result:
        """One ProxylessNAS search of ``budget`` in ``search/proxyless/<budget>``, from the
        shared warm-up's weights (`_proxyless_warmup`): the weights train on the training split
        (one binarized path per step) while the path logits learn on the held-out split (§3.2;
        the ``[supernet]`` recipe, ``search.proxyless_epochs`` epochs with a fresh LR schedule,
        as the authors restart theirs after the warm-up); resumable. The derived arch is scored
        on the held-out images with the search's own weights (BatchNorm recalibrated)."""
        p = self.prepare()
        options, recipe = p.config.search, p.config.supernet
        recipe = replace(recipe, epochs=options.proxyless_epochs or recipe.epochs)
        out = self.run_dir / "search" / "proxyless" / budget_slug(budget.text)
        done = self._finished_search(out, "proxyless")
        if done is not None:
            return done
        supernet = self._proxyless_warmup()
        train = self._loader(p.data.train, recipe.batch_size, True, recipe.seed)
        arch_data = self._loader(p.data.heldout, recipe.batch_size, True, recipe.seed + 1)
        method = ProxylessNAS(
            epochs=recipe.epochs,
            seed=options.seed,
            warmup_epochs=0,
            mode=options.proxyless_mode,
            arch_every=options.proxyless_arch_every,
            arch_lr=options.proxyless_arch_lr,
            loss_form=options.proxyless_loss,
            loss_alpha=options.proxyless_loss_alpha,
            loss_beta=options.proxyless_loss_beta,
            loss_lambda=options.proxyless_loss_lambda,
            band_weight=options.proxyless_band_weight,
            tolerance=options.proxyless_tolerance,
            label_smoothing=recipe.label_smoothing,
        )
        label = (f"proxyless {budget.text}", f"ProxylessNAS ({options.proxyless_mode})")
        args = (supernet, train, arch_data, budget, recipe, out, label)
        return self._one_budget(method, "proxyless", *args)

    def _random_search(
        self, p: Prepared, scorer: ArchScorer, scored: dict[Arch, Score]
    ) -> list[Result]:
        """Random search; every arch it scored goes into ``scored`` and
        ``search/random.scored.json`` (the two-stage baseline's front, `_fronts`)."""
        options = p.config.search
        results = random_search(
            p.space,
            scorer,
            p.budgets,
            samples=options.random_samples,
            seed=options.seed,
            progress=self.progress,
            scored=scored,
        )
        if distributed.is_main():
            entries = [
                {"arch": dict(a), "accuracy": s.accuracy, "loss": s.loss, "samples": s.samples}
                for a, s in scored.items()
            ]
            atomic_write_text(self.run_dir / "search" / "random.scored.json", json.dumps(entries))
        return results

    def _joslim(self, p: Prepared) -> list[Result]:
        """Joslim on its own supernet (`_joslim_supernet`): per budget, the arch of the Pareto
        front of the widths its training visited that fits with the lowest held-out loss
        (BatchNorm recalibrated). The front goes to ``search/joslim/front.json`` for `_fronts`."""
        supernet, visited = self._joslim_supernet()
        scorer = self._scorer(supernet, "recalibrate")
        method = self._joslim_method()
        method.attach(supernet, scorer.batches, scorer.calibration, visited=visited)
        results = method.search(p.budgets)
        if distributed.is_main():
            front = [
                {k: v for k, v in point.items() if k not in ("accuracy", "loss")}
                | {"heldout_accuracy": point["accuracy"], "heldout_loss": point["loss"]}
                for point in method.front()
            ]
            path = self.run_dir / "search" / "joslim" / "front.json"
            atomic_write_text(path, json.dumps(front, indent=1))
        return results

    def _joslim_method(self) -> Joslim:
        p = self.prepare()
        options, recipe = p.config.search, p.config.supernet
        return Joslim(
            cost=options.joslim_cost,
            refit_every=options.joslim_refit_every,
            visits=options.joslim_visits,
            warmup=options.joslim_warmup,
            pool=options.joslim_pool,
            epochs=recipe.epochs,
            sandwich_n=recipe.sandwich_n,
            distill=recipe.distill,
            label_smoothing=recipe.label_smoothing,
            seed=recipe.seed,
            bn_batches=p.config.retrain.bn_batches,
            progress=self.progress,
        )

    def _joslim_supernet(self) -> tuple[Supernet, list[Arch]]:
        """Joslim's own supernet and the archs its training visited: a fresh copy of the model
        (the sandwich-rule supernet's initial weights and data order) trained with the
        ``[supernet]`` recipe on GP-chosen widths in ``search/joslim/``, resumable (the step's
        state is in every checkpoint), then saved with the step's state in ``final/``."""
        if self._joslim_trained is not None:
            return self._joslim_trained
        p = self.prepare()
        recipe = p.config.supernet
        out = self.run_dir / "search" / "joslim"
        model = self._model(p.config, recipe.seed)
        if (out / "final" / JOSLIM_STATE).exists():
            supernet = Supernet.load(model, out / "final").to(p.device)
            supernet.activate(supernet.max_arch())
            state = json.loads((out / "final" / JOSLIM_STATE).read_text())
            self._joslim_trained = supernet, visited_archs(state, p.space)
            return self._joslim_trained
        supernet = Supernet(model, p.space).to(p.device)
        loader = self._loader(p.data.train, recipe.batch_size, train=True, seed=recipe.seed)
        images, labels = p.data.heldout
        count = min(p.config.search.joslim_refresh_images, len(labels))
        refresh = list(self._loader((images[:count], labels[:count]), count, train=False))
        step = self._joslim_method().training_step(supernet, loader, refresh)
        trainer = self._trainer(supernet, loader, recipe, step, out)
        self._announce("joslim supernet", trainer, f"new widths every {step.refit_every} steps")
        if not self._fit(trainer, recipe.max_steps, "supernet.max_steps"):
            raise StageStopped()
        if distributed.is_main():
            supernet.save(out / "final")
            atomic_write_text(out / "final" / JOSLIM_STATE, json.dumps(step.state_dict()))
        self._joslim_trained = supernet, list(step.archs)
        return self._joslim_trained

    def _supernet_for(self, method: str | None) -> Supernet:
        """The supernet whose weights ``method``'s archs inherit (exports, ``init = "inherit"``,
        fronts): Joslim's own; the shared sandwich-rule supernet for every other method."""
        return self._joslim_supernet()[0] if method == "joslim" else self.stage_supernet()

    # ---------------------------------------------------------------------------- export
    def stage_export(self) -> list[Path]:
        """Each found arch as a plain model with the supernet's (recalibrated) weights, checked
        against its budget as counted on the exported module, and as ONNX."""
        p = self.prepare()
        self.stage_supernet()
        written = []
        for method, results in self.stage_search().items():
            for result in results:
                out = self.run_dir / "exports" / method / budget_slug(result.budget)
                written.append(out)
                if (out / "model.safetensors").exists():
                    continue
                model = self._export_inherited(result.arch, method)
                self._check_budget(model, result, p)
                if distributed.is_main():
                    atomic_write_text(out / "arch.json", result.arch.to_json())
                    self._write_onnx(model, out / "model.onnx", p)
                    save_tensors(model.state_dict(), out / "model.safetensors")
        return written

    # --------------------------------------------------------------------------- retrain
    def stage_retrain(self) -> list[dict[str, Any]]:
        """Export and train every found arch once per seed; test each once, at the end."""
        p = self.prepare()
        rows = []
        for method, results in self.stage_search().items():
            for result, seed in itertools.product(results, p.config.retrain.seeds):
                rows.append(self._retrain_one(method, result, seed))
        return rows

    def model_dir(self, method: str, budget: str, seed: int) -> Path:
        return self.run_dir / "models" / method / budget_slug(budget) / f"seed{seed}"

    def _retrain_one(self, method: str, result: Result, seed: int) -> dict[str, Any]:
        p = self.prepare()
        recipe = replace(p.config.retrain, seed=seed)
        out = self.model_dir(method, result.budget, seed)
        if (out / "result.json").exists():
            return json.loads((out / "result.json").read_text())
        if recipe.init == "inherit":
            model = self._export_inherited(result.arch, method)
        else:  # a freshly initialised model of the same kind, sliced to the arch
            model = Supernet(self._model(p.config, seed), p.space).export(result.arch)
        model.to(p.device)
        self._check_budget(model, result, p)
        if recipe.distill:
            step = kd_step(self._teacher(), recipe.kd_alpha, recipe.kd_temperature)
        else:
            step = plain_step(recipe.label_smoothing)
        loader = self._loader(p.data.train, recipe.batch_size, train=True, seed=seed)
        trainer = self._trainer(model, loader, recipe, step, out)
        self._announce(f"{method} {result.budget} seed {seed}", trainer, "retrain")
        started = time.perf_counter()
        if not self._fit(trainer, recipe.max_steps, "retrain.max_steps"):
            raise StageStopped()
        seconds = time.perf_counter() - started
        test = evaluate(model, self._loader(p.data.test, 500, train=False)) if p.data.test else None
        row = {
            "method": method,
            "budget": result.budget,
            "seed": seed,
            "arch": dict(result.arch),
            "macs": module_macs(model, p.example.to(p.device)),
            "params": module_params(model),
            "memory": peak_memory(p.space, result.arch),
            "search_accuracy": result.accuracy,
            "test_accuracy": test.accuracy if test else None,
            "test_loss": test.loss if test else None,
            "epochs": recipe.epochs,
            "train_seconds": round(seconds, 1),  # of this invocation (not before a resume)
        }
        if distributed.is_main():
            row.update(self._measured_latency(model, result))
            save_tensors(model.state_dict(), out / "model.safetensors")
            atomic_write_text(out / "arch.json", result.arch.to_json())
            self._write_onnx(model, out / "model.onnx", p)
            atomic_write_text(out / "result.json", json.dumps(row, indent=1))
        return row

    def _measured_latency(self, model: nn.Module, result: Result) -> dict[str, Any]:
        """The final model's measured latency (search.latency_* settings), in interleaved rounds
        with the space's max arch, and under a latency budget its limit, the table's prediction
        and the measurement at the table's speed (docs/latency.md, "Budgets")."""
        p = self.prepare()
        options = p.config.search
        shape = (options.latency_batch, *p.example.shape[1:])
        runtime = _latency_runtime(options)
        device, threads = options.latency_device, options.latency_threads
        if self._max_arch_model is None:
            fresh = Supernet(self._model(p.config, 0), p.space)
            self._max_arch_model = fresh.export(p.space.max_arch()).to(p.device)
        latency, largest = measure_latencies(
            [model, self._max_arch_model],
            shape,
            runtime=runtime,
            device=device,
            threads=threads,
            rounds=LATENCY_ROUNDS,
            repeats=LATENCY_REPEATS,
        )
        columns = {
            "latency_ms": latency.median_ms,
            "latency_p10_ms": latency.p10_ms,
            "latency_p90_ms": latency.p90_ms,
            "latency_std_ms": latency.std_ms,
            "latency_max_arch_ms": largest.median_ms,
            "latency_setting": f"{runtime}, {threads} thread(s), batch {latency.batch}, "
            f"{latency.device_name}, median of {latency.repeats}",
        }
        budget = next((b for b in p.budgets if b.text == result.budget), None)
        if budget is not None and budget.metric == LATENCY:
            columns["latency_budget_ms"] = budget.limit
            columns["predicted_latency_ms"] = budget.cost(p.space, result.arch)
            # The machine's speed now against when the table was calibrated: the max arch as
            # measured in the same rounds against its prediction (Budget.cost of the max arch).
            factor = budget.cost(p.space, p.space.max_arch()) / largest.median_ms
            columns["latency_at_table_speed_ms"] = latency.median_ms * factor
            columns["latency_p10_at_table_speed_ms"] = latency.p10_ms * factor
        return columns

    def _teacher(self) -> nn.Module:
        """The KD teacher of retraining: ``retrain.teacher`` (the unpruned model's weights), or
        the supernet at its max arch."""
        if self._teacher_model is None:
            p = self.prepare()
            path = p.config.retrain.teacher
            if path is None:
                return self.stage_supernet()
            model = self._model(p.config, 0)
            model.load_state_dict(load_teacher_state(Path(path)))
            self._teacher_model = model.to(p.device)
        return self._teacher_model

    @staticmethod
    def _check_budget(model: nn.Module, result: Result, p: Prepared) -> None:
        """The exported model must cost exactly what its arch was searched for."""
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

    @staticmethod
    def _write_onnx(model: nn.Module, path: Path, p: Prepared) -> None:
        try:
            from slimnas.onnx_export import export_onnx

            export_onnx(model, p.example.to(next(model.parameters()).device), path)
        except ExportError as err:  # onnx not installed, or an op it cannot express
            log.warning("no ONNX file for %s: %s", path.parent, err)

    # ---------------------------------------------------------------------------- report
    def stage_report(self) -> Path:
        """Gather every result into results.json and write report.md with its figures."""
        from slimnas.report import write_report

        p = self.prepare()
        rows = self._rows(p)
        config = p.config
        max_costs = arch_costs(p.space, p.space.max_arch())  # exports count the same (tested)
        results = {
            "title": f"{', '.join(config.search.methods)} on {config.model.name}",
            "model": config.model.name,
            "data": _describe_data(config, p.data),
            "recipe": _recipe(config),
            "max": {
                "macs": max_costs["macs"],
                "params": max_costs["params"],
                "memory": max_costs["memory"],
            },
            "units": [
                {"name": u.name, "kind": u.kind, "max": u.choices[-1]}
                for u in p.space.searchable.values()
            ],
            "supernet": self._supernet_scores(),
            "front": self._autoslim_front(),
            "tas": self._tas_traces(),
            "proxyless": self._proxyless_traces(),
            "fronts": self._fronts(),
            "rows": rows,
        }
        if not distributed.is_main():
            return self.run_dir / "report.md"
        atomic_write_text(self.run_dir / "results.json", json.dumps(results, indent=1))
        return write_report(results, self.run_dir)

    def _rows(self, p: Prepared) -> list[dict[str, Any]]:
        rows = []
        for method in p.config.search.methods:
            path = self.run_dir / "search" / f"{method}.json"
            if not path.exists():
                continue
            for result in (Result.from_dict(r) for r in json.loads(path.read_text())):
                for seed in p.config.retrain.seeds:
                    done = self.model_dir(method, result.budget, seed) / "result.json"
                    if done.exists():
                        rows.append(json.loads(done.read_text()))
                    else:
                        rows.append(
                            {
                                "method": method,
                                "budget": result.budget,
                                "seed": seed,
                                "arch": dict(result.arch),
                                "macs": result.costs["macs"],
                                "params": result.costs["params"],
                                "memory": result.costs["memory"],
                                "search_accuracy": result.accuracy,
                                "test_accuracy": None,
                            }
                        )
        return rows

    def _autoslim_front(self) -> list[dict[str, Any]]:
        """AutoSlim's greedy path (cost and held-out accuracy after every iteration)."""
        path = self.run_dir / "search" / "autoslim.json"
        if not path.exists():
            return []
        return json.loads(path.read_text())[0]["info"].get("trajectory", [])

    def _tas_traces(self) -> dict[str, list[dict[str, float]]]:
        """Per TAS search (``"<method> <budget>"``), the epoch means of its metrics.csv."""
        p = self.prepare()
        traces = {}
        for method in ("tas", "tas_width"):
            if method not in p.config.search.methods:
                continue
            for budget in p.config.search.budgets:
                path = self.run_dir / "search" / method / budget_slug(budget) / METRICS_FILE
                if path.exists():
                    traces[f"{method} {budget}"] = _epoch_means(
                        path, ("tau", "acc", "cost_expected", "cost_argmax")
                    )
        return traces

    def _proxyless_traces(self) -> dict[str, list[dict[str, float]]]:
        """Per ProxylessNAS search (``"proxyless <budget>"``), the epoch means of its
        metrics.csv (architecture columns over the epochs that ran architecture steps)."""
        p = self.prepare()
        traces = {}
        if "proxyless" in p.config.search.methods:
            for budget in p.config.search.budgets:
                path = self.run_dir / "search" / "proxyless" / budget_slug(budget) / METRICS_FILE
                if path.exists():
                    traces[f"proxyless {budget}"] = _epoch_means(
                        path, ("acc", "arch_acc", "cost_expected", "cost_argmax", "entropy")
                    )
        return traces

    def _fronts(self) -> dict[str, Any]:
        """With joslim among the methods: its front and the two-stage baseline's (random search
        on the sandwich-rule supernet), each arch tested with its own supernet's weights, as
        `compare_fronts` sums them up; {} without joslim, a test split or a finished search."""
        p = self.prepare()
        done = [
            m
            for m in FRONT_METHODS
            if m in p.config.search.methods and (self.run_dir / "search" / f"{m}.json").exists()
        ]
        if "joslim" not in done or not p.data.test:
            return {}
        cost = p.config.search.joslim_cost
        fronts = {method: self._tested_front(method, cost) for method in done}
        return compare_fronts(fronts, p.space, p.budgets, cost)

    def _tested_front(self, method: str, cost: str) -> dict[str, Any]:
        """``method``'s front (held-out loss vs ``cost``) with each arch's test top-1 after
        BatchNorm recalibration (``points``) and the ``cost`` range of the archs it scored
        (``explored``), from ``search/<method>.front.json`` or computed into it. The test set
        only reports: the front was chosen on held-out data."""
        path = self.run_dir / "search" / f"{method}.front.json"
        if path.exists():
            return json.loads(path.read_text())
        p = self.prepare()
        if method == "joslim":
            front = json.loads((self.run_dir / "search" / "joslim" / "front.json").read_text())
            seen = [*self._joslim_supernet()[1], *(point["arch"] for point in front)]
        else:
            scored = self._random_scored()
            front, seen = scored_front(p.space, scored, cost), list(scored)
        test = list(self._loader(p.data.test, 500, train=False))
        archs = [point["arch"] for point in front]
        supernet = self._supernet_for(method)
        found = evaluate_archs(supernet, archs, self._calibration(), test, self.progress)
        points = [
            point | {"test_accuracy": e.accuracy, "test_loss": e.loss}
            for point, e in zip(front, found)
        ]
        tested = {"explored": explored_range(p.space, seen, cost), "points": points}
        if distributed.is_main():
            atomic_write_text(path, json.dumps(tested, indent=1))
        log.info("%s front: %d archs tested", method, len(points))
        return tested

    def _random_scored(self) -> dict[Arch, Score]:
        """Every arch random search scored, with its held-out score: from
        ``search/random.scored.json``, or by searching again (same seed and weights: the same
        archs and scores) for a run searched before the file was written."""
        path = self.run_dir / "search" / "random.scored.json"
        if path.exists():
            return {
                Arch(e["arch"]): Score(e["accuracy"], e["loss"], e["samples"])
                for e in json.loads(path.read_text())
            }
        scored: dict[Arch, Score] = {}
        self._random_search(self.prepare(), self._scorer(self.stage_supernet()), scored)
        return scored

    def _supernet_scores(self) -> dict[str, Any] | None:
        path = self.run_dir / "supernet" / "final" / "scores.json"
        return json.loads(path.read_text()) if path.exists() else None


class StageStopped(SlimnasError):
    """A training stage stopped at its max_steps; the run continues with --resume."""

    def __init__(self) -> None:
        super().__init__("stopped at max_steps; run again with --resume to continue")


def _latency_runtime(options) -> str:
    """search.latency_runtime, or torch when onnxruntime is missing and no table needs it."""
    runtime = options.latency_runtime
    if runtime == "onnxruntime" and not onnxruntime_available() and not options.latency_table:
        return "torch"
    return runtime


def _describe_data(config: PipelineConfig, data: TrainingData) -> str:
    test = len(data.test[1]) if data.test else 0
    held = len(data.heldout[1]) if data.heldout else 0
    return (
        f"{config.data.source}: {len(data.train[1])} train / {held} held-out / {test} test images"
    )


def _recipe(config: PipelineConfig) -> dict[str, Any]:
    s, r, q = config.supernet, config.retrain, config.search
    return {
        "supernet": f"{s.epochs} epochs, batch {s.batch_size}, lr {s.lr} {s.schedule}, "
        f"sandwich n={s.sandwich_n}, distill {s.distill}",
        "search": f"{q.score_images} held-out images per arch, BN {q.bn}; random "
        f"{q.random_samples} samples; evolution {q.population}x{q.generations}",
        "retrain": f"{r.epochs} epochs, batch {r.batch_size}, lr {r.lr} {r.schedule}, "
        f"init {r.init}, distill {r.distill}, seeds {list(r.seeds)}",
        "space": f"divisor {config.space.divisor}, min ratio {config.space.min_ratio}, "
        f"steps {config.space.steps}, depth {config.space.depth}",
    }


def _epoch_means(path: Path, columns: tuple[str, ...]) -> list[dict[str, float]]:
    """Per epoch of a metrics.csv, the mean of each of ``columns``."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    means = []
    for epoch, group in itertools.groupby(rows, key=lambda r: int(r["epoch"])):
        group = list(group)
        entry = {"epoch": epoch}
        for column in columns:
            # NaN and empty cells (a value not known yet, e.g. before the first architecture
            # step) are left out of the mean; a column with none is left out of the entry.
            values = [float(r[column]) for r in group if r.get(column) not in (None, "")]
            values = [v for v in values if v == v]
            if values:
                entry[column] = sum(values) / len(values)
        means.append(entry)
    return means


def load_teacher_state(path: Path) -> dict[str, torch.Tensor]:
    """A model's state dict from a ``.safetensors`` file or the newest checkpoint of a
    ``slimnas train`` run directory (never unpickled)."""
    from slimnas.train.checkpoint import load_latest

    if path.is_dir() and checkpoint_dirs(path):
        return load_latest(path).state["model"]
    if path.is_file() and path.suffix == ".safetensors":
        return load_tensors(path)
    raise ConfigError(
        f"retrain.teacher {path} is neither a slimnas train run directory with checkpoints nor "
        "a .safetensors file; point it at the unpruned model's weights"
    )


def load_exported(model_dir: str | Path) -> nn.Module:
    """The plain model in ``model_dir`` (``models/<method>/<budget>/seed<k>`` after retraining,
    or ``exports/<method>/<budget>``), rebuilt from its run's config.json and space.json and the
    folder's arch.json, with the weights of its model.safetensors."""
    model_dir = Path(model_dir).resolve()
    run_dir = next((d for d in model_dir.parents if (d / "space.json").exists()), model_dir)
    try:
        config = PipelineConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        space = Space.from_json((run_dir / "space.json").read_text())
        arch = Arch.from_json((model_dir / "arch.json").read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{model_dir} is not a model folder of a slimnas run: {err}") from None
    model = Supernet(Pipeline._model(config, 0), space).export(arch)
    model.load_state_dict(load_tensors(model_dir / "model.safetensors"))
    return model


__all__ = ["STAGES", "Pipeline", "StageStopped", "budget_slug", "load_exported"]
