"""AutoSlim's greedy slimming (Yu & Huang 2019, "AutoSlim: Towards One-Shot Architecture Search
for Channel Numbers", arXiv 1903.11728, §3.2 and Fig. 2).

Starting from the max arch of a trained slimmable supernet, every iteration tries shrinking each
channel unit by one step (its next smaller choice: the space's grid of ``k/12`` of the max width
rounded by the divisor), scores every candidate on held-out *training* images with the inherited
weights, and keeps the one that loses the least accuracy (the lower loss breaks ties, then the
unit's order). As soon as the current arch meets a budget it is recorded for that budget, so one
pass gives a result for every budget: a whole cost–accuracy front.

Differences from the released code (``slimming()`` in JiahuiYu/slimmable_networks): candidates
are scored on a fixed held-out set of ``score_images`` images rather than one augmented batch;
ties go to the lower loss before the unit order; BatchNorm uses the scoring batches' statistics
by default (see `slimnas.methods.scoring`; the released code's mode cannot be recovered); and
the search state is saved after every iteration so that a killed search resumes where it
stopped and returns the same archs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from slimnas.cost.budget import Budget
from slimnas.errors import BudgetError, CheckpointError
from slimnas.io import atomic_write_text
from slimnas.methods.base import Method, register
from slimnas.methods.base import Options as BaseOptions
from slimnas.methods.result import Result, arch_costs
from slimnas.methods.scoring import Score
from slimnas.settings import flag
from slimnas.space.space import Space
from slimnas.space.units import Arch, ChannelUnit, DepthUnit
from slimnas.train import distributed

log = logging.getLogger(__name__)


def shrink_candidates(space: Space, arch: Arch, depth: bool = False) -> list[tuple[str, Arch]]:
    """``(unit, arch)`` for every unit that can take one step down: channel units (and depth
    units when ``depth``) at their next smaller choice, in the space's unit order."""
    kinds = (ChannelUnit, DepthUnit) if depth else (ChannelUnit,)
    out = []
    for name, unit in space.searchable.items():
        if not isinstance(unit, kinds):
            continue
        index = unit.choices.index(arch[name])
        if index > 0:
            out.append((name, arch.merged({name: unit.choices[index - 1]})))
    return out


def _fingerprint(space: Space, budgets: Sequence[Budget], depth: bool) -> str:
    """What a saved search state must match to be resumed: the space, the budgets, the mode."""
    text = json.dumps([space.to_json(), [(b.metric, b.limit) for b in budgets], depth])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def greedy_slim(
    space: Space,
    scorer: Any,
    budgets: Sequence[Budget],
    *,
    depth: bool = False,
    state_path: str | Path | None = None,
    progress: bool = True,
) -> list[Result]:
    """AutoSlim's greedy search: one pass from the max arch down to the smallest budget.

    Args:
        space: the searched space (units not searched should be fixed in it).
        scorer: has ``score_many(archs) -> [Score]`` (`slimnas.methods.ArchScorer`).
        budgets: one result each; any metrics, in any order.
        depth: also try dropping the last block of a residual stage (not in the paper).
        state_path: JSON file the search state is written to after every iteration (rank 0
            only); an existing one from the same space and budgets is resumed.
        progress: a tqdm bar over the iterations (quiet when stderr is not a terminal).

    Returns:
        The results in the order of ``budgets``; each ``info`` holds the iteration it was found
        at, and the first result's ``info["trajectory"]`` the whole front (cost and score of the
        arch after every iteration).

    Raises:
        BudgetError: a budget that no arch of the space meets.
    """
    reachable = space  # the archs the search can reach: only channels (and depths) shrink
    for name, unit in space.searchable.items():
        if not isinstance(unit, ChannelUnit) and not (depth and isinstance(unit, DepthUnit)):
            reachable = reachable.fix(name)
    for budget in budgets:
        budget.check_feasible(reachable)
    key = _fingerprint(space, budgets, depth)
    state = _load_state(state_path, key)
    if state is None:
        arch = space.max_arch()
        (score,) = scorer.score_many([arch])
        state = {
            "fingerprint": key,
            "arch": dict(arch),
            "accuracy": score.accuracy,
            "loss": score.loss,
            "iteration": 0,
            "evaluations": 1,
            "found": {},
            "trajectory": [_point(space, arch, score.accuracy, score.loss, None)],
        }
    pending = lambda: [i for i, b in enumerate(budgets) if str(i) not in state["found"]]  # noqa: E731
    bar = tqdm(
        total=None,
        desc="autoslim",
        unit="it",
        initial=state["iteration"],
        disable=not progress or not sys.stderr.isatty(),
    )
    try:
        while True:
            arch = Arch(state["arch"])
            for i in pending():
                if budgets[i].fits(space, arch):
                    state["found"][str(i)] = {
                        "arch": dict(arch),
                        "accuracy": state["accuracy"],
                        "loss": state["loss"],
                        "iteration": state["iteration"],
                    }
            _save_state(state_path, state)
            if not pending():
                break
            candidates = shrink_candidates(space, arch, depth)
            if not candidates:  # cannot happen for feasible budgets and monotone costs
                raise BudgetError(
                    f"autoslim reached the smallest arch without meeting "
                    f"{budgets[pending()[0]].text!r}"
                )
            scores = scorer.score_many([c for _, c in candidates])
            # AutoSlim §3.2: keep the candidate with the smallest accuracy drop.
            best = min(
                range(len(candidates)),
                key=lambda j: (-scores[j].accuracy, scores[j].loss, j),
            )
            unit, arch = candidates[best]
            state["arch"] = dict(arch)
            state["accuracy"], state["loss"] = scores[best].accuracy, scores[best].loss
            state["iteration"] += 1
            state["evaluations"] += len(candidates)
            state["trajectory"].append(
                _point(space, arch, scores[best].accuracy, scores[best].loss, unit)
            )
            bar.update(1)
            bar.set_postfix(acc=f"{scores[best].accuracy:.3f}", left=len(pending()))
    finally:
        bar.close()
    results = []
    for i, budget in enumerate(budgets):
        found = state["found"][str(i)]
        info = {
            "iteration": found["iteration"],
            "iterations": state["iteration"],
            "evaluations": state["evaluations"],
        }
        if i == 0:
            info["trajectory"] = state["trajectory"]
        score = Score(found["accuracy"], found["loss"], 0)
        results.append(Result.of("autoslim", budget, space, found["arch"], score, **info))
    return results


def _point(space: Space, arch: Arch, accuracy: float, loss: float, unit: str | None) -> dict:
    costs = arch_costs(space, arch)
    return {"unit": unit, "macs": costs["macs"], "params": costs["params"], "accuracy": accuracy}


def _load_state(path: str | Path | None, key: str) -> dict | None:
    if path is None or not Path(path).exists():
        return None
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"cannot read the autoslim search state {path}: {err}; delete it to search afresh"
        ) from None
    if not isinstance(state, dict) or not {"arch", "found", "iteration"} <= set(state):
        raise CheckpointError(f"{path} is not an autoslim search state; delete it to search afresh")
    if state.get("fingerprint") != key:
        raise CheckpointError(
            f"the search state {path} belongs to another space or other budgets; delete it or "
            "use another run directory"
        )
    log.info("resuming autoslim at iteration %d", state["iteration"])
    return state


def _save_state(path: str | Path | None, state: dict) -> None:
    if path is not None and distributed.is_main():
        atomic_write_text(path, json.dumps(state) + "\n")


@dataclass(frozen=True)
class AutoSlimOptions(BaseOptions):
    """AutoSlim's search options (its supernet training is the recipe's sandwich rule)."""

    depth: bool = flag(True, "also shorten residual stages, where the space searches depth")


@register
class AutoSlim(Method):
    """AutoSlim: a slimmable supernet (sandwich rule, in-place distillation), then greedy
    slimming; its state is kept in ``search/autoslim.state.json`` for resume.

    ``results = AutoSlim().fit(supernet, setup).search(budgets)``
    """

    name = "autoslim"
    default = True
    Options = AutoSlimOptions

    def search(self, budgets: Sequence[Budget | str]) -> list[Result]:
        return greedy_slim(
            self.space(),
            self.scorer,
            self.budgets(budgets),
            depth=self.options.depth,
            state_path=self.setup.file("state"),
            progress=self.setup.progress,
        )

    def artifacts(self, setup, results: Sequence[Result], budgets=()) -> dict[str, Any]:
        """``{"front": the greedy path}``: cost and held-out accuracy after every iteration."""
        return {"front": results[0].info.get("trajectory", [])} if results else {}


__all__ = ["AutoSlim", "AutoSlimOptions", "greedy_slim", "shrink_candidates"]
