"""Random and evolutionary search stopped part-way (an exception at a chosen chunk of scoring,
as a kill would stop them) and resumed from their state file return, bit for bit, the results
of an uninterrupted search; a state of another search is refused. Real supernet, real scorer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from slimnas.cost.budget import Budget
from slimnas.errors import CheckpointError
from slimnas.methods.baselines import random_search
from slimnas.methods.evolution import evolution_search
from slimnas.methods.scoring import Score
from slimnas.space.units import Arch
from tests.helpers.search import tiny_data, tiny_setup, tiny_supernet


class Stopped(Exception):
    """The injected fault: the process "dies" as a scoring call starts."""


class CountingScorer:
    """A real `ArchScorer` that records the archs it scores and raises `Stopped` at the start
    of call number ``stop_at`` (1-based; None never)."""

    def __init__(self, scorer, stop_at: int | None = None):
        self.scorer, self.stop_at = scorer, stop_at
        self.calls, self.scored = 0, []

    def score_many(self, archs: Sequence[Arch]) -> list[Score]:
        self.calls += 1
        if self.calls == self.stop_at:
            raise Stopped
        self.scored.extend(archs)
        return self.scorer.score_many(archs)


@pytest.fixture(scope="module")
def scored_space():
    supernet = tiny_supernet()
    scorer = tiny_setup(data=tiny_data(train=32, heldout=16)).scorer(supernet)
    space = supernet.space
    budgets = [Budget.parse(text, space) for text in ("macs<=60%", "params<=40%")]
    return space, scorer, budgets


SEARCHES = {
    # 2 budgets x 34 archs: 2 chunks of scoring (64 + the rest), a save after each.
    "random": lambda space, scorer, budgets, path: random_search(
        space, scorer, budgets, samples=34, seed=3, progress=False, state_path=path
    ),
    # 2 budgets x 3 generations of 4: a save after every generation.
    "evolution": lambda space, scorer, budgets, path: evolution_search(
        space,
        scorer,
        budgets,
        population=4,
        generations=3,
        seed=3,
        progress=False,
        state_path=path,
    ),
}


@pytest.fixture(scope="module")
def uninterrupted(scored_space):
    space, scorer, budgets = scored_space
    found = {}
    for name, search in SEARCHES.items():
        counting = CountingScorer(scorer)
        results = search(space, counting, budgets, None)
        found[name] = ([r.to_dict() for r in results], counting.scored)
    return found


@pytest.mark.parametrize(("name", "stop_at"), [("random", 2), ("evolution", 2), ("evolution", 5)])
def test_a_stopped_search_resumes_to_the_same_results(
    scored_space, uninterrupted, tmp_path: Path, name: str, stop_at: int
) -> None:
    space, scorer, budgets = scored_space
    search, path = SEARCHES[name], tmp_path / f"{name}.state.json"
    first = CountingScorer(scorer, stop_at=stop_at)
    with pytest.raises(Stopped):
        search(space, first, budgets, path)
    saved = json.loads(path.read_text())
    assert len(saved["scores"]) == len(first.scored) > 0  # what was scored before the stop

    second = CountingScorer(scorer)
    results = search(space, second, budgets, path)
    expected, everything = uninterrupted[name]
    assert [r.to_dict() for r in results] == expected  # archs, costs, scores, info: exact
    assert not set(first.scored) & set(second.scored)  # nothing scored twice
    assert sorted(map(str, first.scored + second.scored)) == sorted(map(str, everything))

    third = CountingScorer(scorer)  # a finished state: the results again, nothing scored
    assert [r.to_dict() for r in search(space, third, budgets, path)] == expected
    assert third.scored == []


def test_a_state_of_another_search_is_refused(scored_space, tmp_path: Path) -> None:
    space, scorer, budgets = scored_space
    path = tmp_path / "evolution.state.json"
    evolution_search(space, scorer, budgets[:1], population=3, generations=1, state_path=path)
    with pytest.raises(CheckpointError, match="another space, other budgets"):
        evolution_search(
            space, scorer, budgets[:1], population=3, generations=1, seed=1, state_path=path
        )
    with pytest.raises(CheckpointError, match="not a random search state"):
        random_search(space, scorer, budgets[:1], samples=3, state_path=path)
    path.write_text(path.read_text()[:100])
    with pytest.raises(CheckpointError, match="delete it to search afresh"):
        evolution_search(space, scorer, budgets[:1], population=3, generations=1, state_path=path)
