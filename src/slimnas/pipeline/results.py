"""The report stage: every result row, each method's report artifacts (`Method.artifacts`,
merged by key), into results.json and report.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slimnas.config import PipelineConfig
from slimnas.data.prepare import TrainingData
from slimnas.methods.result import Result, arch_costs
from slimnas.train import distributed


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
        if not distributed.is_main():
            return self.run_dir / "report.md"
        self.setup().write_json(self.run_dir / "results.json", results)
        return write_report(results, self.run_dir)

    def _searched(self) -> dict[str, list[Result]]:
        """The results of every configured method whose search finished."""
        found = {}
        for name in self.prepare().config.search.methods:
            path = self.run_dir / "search" / f"{name}.json"
            if path.exists():
                found[name] = [Result.from_dict(r) for r in json.loads(path.read_text())]
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
                    done = self.model_dir(method, result.budget, seed) / "result.json"
                    if done.exists():
                        rows.append(json.loads(done.read_text()))
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
                            "test_accuracy": None,
                        }
                    )
        return rows

    def _supernet_scores(self) -> dict[str, Any] | None:
        path = self.run_dir / "supernet" / "final" / "scores.json"
        return json.loads(path.read_text()) if path.exists() else None


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
