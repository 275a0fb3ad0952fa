"""The search stage: each configured method through the `Method` protocol, every budget at
once; ``search/<method>.json`` holds its results (a finished method is read back)."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from slimnas.methods.base import Method
from slimnas.methods.result import Result
from slimnas.methods.scoring import ArchScorer
from slimnas.pipeline.finished import finished_json, write_finished_json
from slimnas.train import buffers_kept

log = logging.getLogger("slimnas.pipeline")


class SearchStage:
    """`stage_search` and `method`."""

    def method(self, name: str) -> Method:
        """Method ``name`` of the config, fitted (its own model) or attached (the shared
        supernet) with its `Setup` in ``search/<name>/``; a finished training is read back."""
        if name not in self._methods:
            method = self.prepare().config.search.method(name)
            setup = self.setup(self.run_dir / "search" / name)
            if method.shared_supernet:
                method.attach(self.stage_supernet(), setup)
            else:
                method.fit(self.new_supernet(), setup)
            self._methods[name] = method
        return self._methods[name]

    def stage_search(self) -> dict[str, list[Result]]:
        """Run each method of ``search.methods``; returns its results by name."""
        p = self.prepare()
        self.stage_supernet()
        found: dict[str, list[Result]] = {}
        for name in p.config.search.methods:
            path = self.run_dir / "search" / f"{name}.json"
            saved = finished_json(path)  # a damaged file is set aside and searched again
            if saved is not None:
                found[name] = [Result.from_dict(r) for r in saved]
                continue
            started = time.perf_counter()
            results = self.method(name).search(p.budgets)
            seconds = time.perf_counter() - started
            results = [replace(r, info=r.info | {"seconds": round(seconds, 2)}) for r in results]
            results = self._report_scores(name, results)
            write_finished_json(path, [r.to_dict() for r in results])
            found[name] = results
            log.info("%s: %d archs in %.0f s", name, len(results), seconds)
        return found

    def _report_scores(self, name: str, results: list[Result]) -> list[Result]:
        """Each result's inherited accuracy on the report images (`Setup.report_batches`, no
        method selected on them; BatchNorm recalibrated), the search's own score kept in
        ``info["search_split_accuracy"]``; unchanged accuracies when there are no report images.
        ``info["scored_by"]`` names the network whose weights scored it (`scored_by`)."""
        setup = self.setup()
        batches = setup.report_batches()
        scored = []
        for result in results:
            info = result.info | {"scored_by": self.scored_by(name, result.budget)}
            if batches:
                supernet = self.weights_of(name, result.budget)
                # Recalibration rewrites the BatchNorm buffers; put them back, so that what
                # follows (the max arch as KD teacher) sees the same supernet as a run resumed
                # from disk.
                with buffers_kept(supernet):
                    scorer = ArchScorer(supernet, batches, "recalibrate", setup.calibration())
                    score = scorer.score(result.arch)
                info |= {"search_split_accuracy": result.accuracy, "report_images": score.samples}
                result = replace(result, accuracy=score.accuracy)
            scored.append(replace(result, info=info))
        return scored

    def scored_by(self, name: str, budget: str) -> str:
        """The network whose weights ``name``'s arch of ``budget`` inherits (`weights_of`):
        ``"supernet"`` (the run's shared one), ``name`` (the method's own, one for every
        budget: Joslim's) or ``"<name> <budget>"`` (one per budget's search: TAS's,
        ProxylessNAS's). Inherited accuracies rank archs only within one network."""
        method = self.method(name)
        if method.weights(None) is not None:
            return name
        return "supernet" if method.weights(budget) is None else f"{name} {budget}"


__all__ = ["SearchStage"]
