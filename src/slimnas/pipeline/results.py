"""The report stage: every result row, each method's report artifacts (`Method.artifacts`,
merged by key), into results.json and report.md."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from slimnas.config import PipelineConfig
from slimnas.data.prepare import TrainingData
from slimnas.methods.result import Result, arch_costs
from slimnas.pipeline.finished import finished_json
from slimnas.train import distributed

log = logging.getLogger("slimnas.pipeline")


class ResultsStage:
    """`stage_report`."""

    def stage_report(self) -> Path:
        """Gather every result into results.json and write report.md with its figures."""
        from slimnas.report import write_report

        p = self.prepare()
        config = p.config
        max_costs = arch_costs(p.space, p.space.max_arch())  # exports count the same (tested)
        results = {
            "title": f"{', '.join(config.search.methods)} on {config.model.name}",
            "model": config.model.name,
            "data": describe_data(config, p.data),
            "recipe": recipe_rows(config),
            "max": {key: max_costs[key] for key in ("macs", "params", "memory")},
            "units": [
                {"name": u.name, "kind": u.kind, "max": u.choices[-1]}
                for u in p.space.searchable.values()
            ],
            "supernet": self._supernet_scores(),
            **self._artifacts(),
            "rows": self._rows(),
        }
        results["compute"] = self._compute(results["rows"])
        if not distributed.is_main():
            return self.run_dir / "report.md"
        self.setup().write_json(self.run_dir / "results.json", results)
        return write_report(results, self.run_dir)

    def _searched(self) -> dict[str, list[Result]]:
        """The results of every configured method whose search finished."""
        found = {}
        for name in self.prepare().config.search.methods:
            saved = finished_json(self.run_dir / "search" / f"{name}.json")
            if saved is not None:
                found[name] = [Result.from_dict(r) for r in saved]
        return found

    def _artifacts(self) -> dict[str, Any]:
        """Every finished method's `Method.artifacts`, merged by key (dicts of one key from
        several methods, e.g. the traces of two TAS variants, are joined)."""
        p = self.prepare()
        merged: dict[str, Any] = {}
        searched = self._searched()
        # The shared supernet's methods first: the others' artifacts compare against theirs.
        order = sorted(searched, key=lambda n: not p.config.search.method(n).shared_supernet)
        for name in order:
            results = searched[name]
            method = self._methods.get(name) or p.config.search.method(name)
            setup = self.setup(self.run_dir / "search" / name)
            for key, value in method.artifacts(setup, results, p.budgets).items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key] = merged[key] | value
                else:
                    merged[key] = value
        return merged

    def _rows(self) -> list[dict[str, Any]]:
        rows = []
        for method, results in self._searched().items():
            for result in results:
                for seed in self.prepare().config.retrain.seeds:
                    folder = self.model_dir(method, result.budget, seed)
                    done = finished_json(folder / "result.json")
                    if done is not None:  # with its inherited score as the search gives it now
                        scored_by = result.info.get("scored_by")
                        rows.append(
                            done | {"search_accuracy": result.accuracy, "scored_by": scored_by}
                        )
                        continue
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
                            "scored_by": result.info.get("scored_by"),
                            "test_accuracy": None,
                        }
                    )
        return rows

    def _compute(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Per method, the training compute spent after the model's starting weights (the
        trained ``model.weights``, or a fresh initialisation): image passes (one image through
        one arch, forward and backward) and wall seconds of this machine, of the supernet
        training its archs inherit from, its search, and each fine-tune (per arch and seed)."""
        p = self.prepare()
        config = p.config
        images = len(p.data.train[1])
        supernet_seconds = _seconds(self.run_dir / "supernet" / "metrics.csv")
        out: dict[str, Any] = {"weights": config.model.weights, "methods": {}}
        for method, results in self._searched().items():
            cls = config.search.method(method)
            if cls.shared_supernet:
                passes = config.supernet.epochs * images * config.supernet.sandwich_n
                seconds = supernet_seconds
            elif not cls.trains:
                passes, seconds = 0, 0.0
            else:  # its own training (Joslim, TAS, ProxylessNAS): see its section
                passes = None
                seconds = _seconds_under(self.run_dir / "search" / method)
            own = [r for r in rows if r["method"] == method and r.get("train_seconds")]
            out["methods"][method] = {
                "supernet_passes": passes,
                "supernet_seconds": seconds,
                "search_seconds": max((r.info.get("seconds", 0.0) for r in results), default=0),
                "finetune_passes": config.retrain.epochs * images,
                "finetune_seconds": (
                    sum(r["train_seconds"] for r in own) / len(own) if own else None
                ),
            }
        return out

    def _supernet_scores(self) -> dict[str, Any] | None:
        return finished_json(self.run_dir / "supernet" / "final" / "scores.json")


def _seconds(metrics: Path) -> float:
    """The summed ``seconds`` column of a metrics.csv (0 when there is none)."""
    if not metrics.exists():
        return 0.0
    total = 0.0
    try:
        with metrics.open(newline="") as handle:
            for row in csv.DictReader(handle):
                total += float(row.get("seconds") or 0)
    except (UnicodeDecodeError, ValueError, TypeError, csv.Error) as err:  # a damaged file
        log.warning("%s is damaged (%s); its seconds are left out of the compute", metrics, err)
    return round(total, 1)


def _seconds_under(folder: Path) -> float | None:
    """Summed training seconds of every metrics.csv under ``folder``; None when none."""
    files = sorted(folder.rglob("metrics.csv")) if folder.exists() else []
    return round(sum(_seconds(f) for f in files), 1) if files else None


def describe_data(config: PipelineConfig, data: TrainingData) -> str:
    test = len(data.test[1]) if data.test else 0
    held = len(data.heldout[1]) if data.heldout else 0
    return (
        f"{config.data.source}: {len(data.train[1])} train / {held} held-out / {test} test images"
    )


def recipe_rows(config: PipelineConfig) -> dict[str, Any]:
    """The recipe table of the report: each training, the scoring, each method's options."""
    s, r, q = config.supernet, config.retrain, config.search
    rows = {
        "supernet": f"{s.epochs} epochs, batch {s.batch_size}, lr {s.lr} {s.schedule}, "
        f"sandwich n={s.sandwich_n}, distill {s.distill}",
        "search": f"{q.score_images} held-out images per arch, BN {q.bn}, seed {q.seed}; "
        f"found archs reported on the next {q.report_images} held-out images",
    }
    for name in q.methods:
        described = q.method(name).options.describe()
        if described:
            rows[f"search.{name}"] = described
    rows["retrain"] = (
        f"{r.epochs} epochs, batch {r.batch_size}, lr {r.lr} {r.schedule}, "
        f"init {r.init}, distill {r.distill}, seeds {list(r.seeds)}"
    )
    rows["space"] = (
        f"divisor {config.space.divisor}, min ratio {config.space.min_ratio}, "
        f"steps {config.space.steps}, depth {config.space.depth}"
    )
    return rows


__all__ = ["ResultsStage", "describe_data", "recipe_rows"]
