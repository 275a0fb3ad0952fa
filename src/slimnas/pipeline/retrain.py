"""The retrain stage: every found arch trained once per seed (from scratch, or from inherited
weights, with or without KD), tested once at the end, its latency measured."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from slimnas.cost.budget import LATENCY
from slimnas.cost.latency.measure import measure_latencies
from slimnas.cost.measured import module_macs, module_params
from slimnas.cost.memory import peak_memory
from slimnas.io import load_json, save_tensors
from slimnas.methods.result import Result
from slimnas.pipeline.finished import finished_files, write_finished_json
from slimnas.pipeline.prepare import latency_runtime
from slimnas.run_dir import budget_slug, load_teacher_state
from slimnas.supernet import Supernet
from slimnas.train import distributed, evaluate
from slimnas.train.native_init import apply_native_init, record_init
from slimnas.train.step import kd_step, plain_step
from slimnas.weights import load_weights as load_trained

# A final model's latency: interleaved rounds with the max arch, timed calls per round.
LATENCY_ROUNDS, LATENCY_REPEATS = 10, 10


class RetrainStage:
    """`stage_retrain`, `model_dir`."""

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
        setup = self.setup()
        recipe = replace(p.config.retrain, seed=seed)
        out = self.model_dir(method, result.budget, seed)
        # Done when its files read back; a damaged one is set aside, and the model comes back
        # from its last checkpoint (no step is trained again) to be tested and written again.
        if finished_files(out, ("result.json", "arch.json"), ("model.safetensors",)):
            return load_json(out / "result.json")
        if recipe.init == "inherit":
            model = self.export_inherited(result.arch, method, result.budget)
        else:  # the model's own initialisation at the arch's widths (train/native_init.py)
            built, init = record_init(lambda: self._model(p.config, seed))
            model = Supernet(built, p.space).export(result.arch)
            apply_native_init(model, init, seed=seed)
        model.to(p.device)
        self.check_budget(model, result)
        if recipe.distill:
            step = kd_step(self._teacher(), recipe.kd_alpha, recipe.kd_temperature)
        else:
            step = plain_step(recipe.label_smoothing)
        loader = setup.loader(p.data.train, recipe.batch_size, train=True, seed=seed)
        trainer = setup.trainer(model, loader, step, out, recipe)
        started = time.perf_counter()
        what = f"{method} {result.budget} seed {seed}"
        setup.train(trainer, what, "retrain", recipe, "retrain")
        seconds = time.perf_counter() - started
        test_data = p.data.test
        test = evaluate(model, setup.loader(test_data, 500, train=False)) if test_data else None
        row = {
            "method": method,
            "budget": result.budget,
            "seed": seed,
            "arch": dict(result.arch),
            "macs": module_macs(model, p.example.to(p.device)),
            "params": module_params(model),
            "memory": peak_memory(p.space, result.arch),
            "search_accuracy": result.accuracy,
            "scored_by": result.info.get("scored_by"),
            "test_accuracy": test.accuracy if test else None,
            "test_loss": test.loss if test else None,
            "epochs": recipe.epochs,
            "train_seconds": round(seconds, 1),  # of this invocation (not before a resume)
        }
        if distributed.is_main():
            row.update(self._measured_latency(model, result))
            save_tensors(model.state_dict(), out / "model.safetensors")
            write_finished_json(out / "arch.json", dict(result.arch))
            self.write_onnx(model, out / "model.onnx")
            write_finished_json(out / "result.json", row)
        return row

    def _measured_latency(self, model: nn.Module, result: Result) -> dict[str, Any]:
        """The final model's measured latency (search.latency_* settings), in interleaved rounds
        with the space's max arch, and under a latency budget its limit, the table's prediction
        and the measurement at the table's speed (docs/latency.md, "Budgets")."""
        p = self.prepare()
        options = p.config.search
        shape = (options.latency_batch, *p.example.shape[1:])
        runtime = latency_runtime(options)
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
        """The KD teacher of retraining: ``retrain.teacher`` (the unpruned model's weights),
        else ``model.weights`` (the trained model being shrunk), else the supernet at its max
        arch."""
        if self._teacher_model is None:
            p = self.prepare()
            path = p.config.retrain.teacher
            model = self._model(p.config, 0)
            if path is not None:
                model.load_state_dict(load_teacher_state(Path(path)))
            elif p.config.model.weights is not None:
                load_trained(model, p.config.model.weights)
            else:
                return self.stage_supernet()
            self._teacher_model = model.to(p.device)
        return self._teacher_model


__all__ = ["LATENCY_REPEATS", "LATENCY_ROUNDS", "RetrainStage"]
