"""Budget-constrained evolutionary search (Guo et al., "Single Path One-Shot Neural Architecture
Search with Uniform Sampling", arXiv 1904.00420, §3.4), one of AutoSlim's baselines (see
`slimnas.methods.baselines` for the shared sampler and the other two).

Differences from the paper: the first generation comes from `BudgetSampler` (with
``start="uniform"``, plus the uniform-width arch of the budget, so the search returns nothing
worse than uniform width on its own score), and children that break the budget are shrunk until
they fit (`BudgetSampler.repair`) rather than discarded. The
search saves its progress after every generation (`SearchState`), so that a killed search
resumes and returns the archs of an uninterrupted one.
"""

from __future__ import annotations

import binascii
import logging
from collections.abc import Container
from pathlib import Path

import torch

from slimnas.errors import CheckpointError, ConfigError
from slimnas.methods.baselines import (
    _TRIES,
    Budgets,
    BudgetSampler,
    Scorer,
    _bar,
    _budgets,
    _distinct,
    _randint,
    _rank_key,
    _score_new,
    uniform_search,
)
from slimnas.methods.result import Result
from slimnas.methods.search_state import (
    SearchState,
    generator_state,
    search_fingerprint,
    set_generator_state,
)
from slimnas.space.space import Space
from slimnas.space.units import Arch

log = logging.getLogger(__name__)

STARTS = ("random", "uniform")


def evolution_search(
    space: Space,
    scorer: Scorer,
    budgets: Budgets,
    population: int = 32,
    generations: int = 10,
    parents: int = 8,
    mutation_prob: float = 0.1,
    seed: int = 0,
    progress: bool = True,
    state_path: str | Path | None = None,
    start: str = "random",
) -> list[Result]:
    """Budget-constrained evolution (SPOS §3.4) per budget.

    Generation 1 is ``population`` distinct `BudgetSampler` archs. After each generation the
    ``parents`` best archs seen so far (accuracy, ties: lower loss) breed the next: half by
    mutation (every unit redrawn uniformly with probability ``mutation_prob``), half by uniform
    crossover of two parents. Children over the budget are repaired with `BudgetSampler.repair`;
    children already seen are discarded. Scores are cached by arch (across budgets too), so no
    arch is scored twice.

    Args:
        space: the space to search.
        scorer: scores archs on held-out data (an `ArchScorer`).
        budgets: the budgets.
        population: archs per generation.
        generations: generations, the random first one included.
        parents: archs kept as parents.
        mutation_prob: per-unit probability that a mutation redraws the unit.
        seed: seed of the search; each budget starts a generator from it.
        progress: show a progress bar (only when stderr is a terminal, on rank 0).
        state_path: JSON file the progress is written to after every chunk of scored archs and
            every generation (rank 0 only, `SearchState`); an existing one of the same search
            is resumed, to the same results.
        start: ``"random"``: generation 1 is sampled; ``"uniform"``: its first member is the
            budget's uniform-width arch (`uniform_search`), the rest sampled.

    Returns:
        One result per budget: the best arch seen. ``info["evaluations"]`` is the distinct archs
        evaluated for the budget, ``info["generations"]`` the generations run (fewer than asked
        when the space runs out of new archs).

    Raises:
        BudgetError: a budget that no arch of the space meets.
        CheckpointError: ``state_path`` holds a state of another search, or a damaged one.
    """
    budgets = _budgets(budgets, space)
    if population < 2 or generations < 1 or parents < 1 or not 0.0 <= mutation_prob <= 1.0:
        raise ConfigError(
            "evolution needs population >= 2, generations >= 1, parents >= 1 and mutation_prob "
            f"in [0, 1]; got {population}, {generations}, {parents}, {mutation_prob}"
        )
    if start not in STARTS:
        raise ConfigError(f"evolution start must be one of {STARTS}, got {start!r}")
    settings = dict(population=population, generations=generations, parents=parents)
    if start != "random":  # fingerprints of searches before the option stay valid
        settings["start"] = start
    key = search_fingerprint(space, budgets, mutation_prob=mutation_prob, seed=seed, **settings)
    state = SearchState(state_path, "evolution", key)
    cache, saved = state.scores, state.progress
    finished = saved.setdefault("finished", [])  # per budget done: arch, evaluations, gens
    try:
        results = [
            Result.of("evolution", b, space, f["arch"], cache[Arch(f["arch"])], **f["info"])
            for b, f in zip(budgets, finished)
        ]
    except (KeyError, TypeError) as err:
        raise CheckpointError(
            f"the evolution search state {state.path} is malformed ({err!r}); delete it to "
            "search afresh"
        ) from None
    current = saved.get("current")  # the budget being searched: where it stands
    initial = len(finished) * generations + (current["done"] if current else 0)
    total = len(budgets) * generations
    with _bar(progress, "evolution", "generation", total=total, initial=initial) as bar:
        for index in range(len(finished), len(budgets)):
            budget = budgets[index]
            sampler, generator = BudgetSampler(space, budget), torch.Generator().manual_seed(seed)
            if current is not None:
                seen, members, done = _restore(current, generator, state.path)
                current = None
            else:
                members = _distinct(sampler, generator, population)
                if start == "uniform":
                    first = uniform_search(space, [budget])[0].arch
                    members = [first, *(a for a in members if a != first)][:population]
                seen, done = {}, 0
                saved["current"] = _position(seen, members, done, generator)
                state.save()
            top = sorted(seen, key=lambda a: _rank_key(cache[a]))[:parents]
            while members and done < generations:
                _score_new(scorer, members, cache, after_chunk=state.save)
                seen.update(dict.fromkeys(members))
                top = sorted(seen, key=lambda a: _rank_key(cache[a]))[:parents]
                done += 1
                bar.update(1)
                members = []
                if done < generations:
                    members = _children(sampler, top, population, mutation_prob, generator, seen)
                saved["current"] = _position(seen, members, done, generator)
                state.save()
            bar.update(generations - done)
            best = top[0]
            info = {"evaluations": len(seen), "generations": done}
            results.append(Result.of("evolution", budget, space, best, cache[best], **info))
            finished.append({"arch": dict(best), "info": info})
            saved["current"] = None
            state.save()
            log.info("evolution %s: accuracy %.4f", budget.text, cache[best].accuracy)
    return results


def _position(seen: dict[Arch, None], members: list[Arch], done: int, generator) -> dict:
    """Where a budget's evolution stands: the archs seen (in order), the next generation
    (drawn, not yet scored), the generations done, the generator after drawing."""
    return {
        "seen": [dict(a) for a in seen],
        "members": [dict(a) for a in members],
        "done": done,
        "generator": generator_state(generator),
    }


def _restore(
    position: dict, generator: torch.Generator, path: Path | None
) -> tuple[dict[Arch, None], list[Arch], int]:
    """``(seen, members, done)`` of a saved `_position`; sets ``generator``'s state."""
    try:
        set_generator_state(generator, position["generator"])
        seen = dict.fromkeys(Arch(a) for a in position["seen"])
        return seen, [Arch(a) for a in position["members"]], int(position["done"])
    except (KeyError, TypeError, ValueError, RuntimeError, binascii.Error) as err:
        raise CheckpointError(
            f"the evolution search state {path} is malformed ({err}); delete it to search afresh"
        ) from None


def _children(
    sampler: BudgetSampler,
    parents: list[Arch],
    count: int,
    mutation_prob: float,
    generator: torch.Generator,
    seen: Container[Arch],
) -> list[Arch]:
    """``count`` distinct children of ``parents`` not in ``seen``: the first half mutants, the
    rest crossovers."""
    units = list(sampler.space.searchable.values())
    children: dict[Arch, None] = {}
    for _ in range(_TRIES * count):
        if len(children) == count:
            break
        if len(children) < count // 2:
            parent = parents[_randint(len(parents), generator)]
            redraw, picks = torch.rand(2, len(units), generator=generator).tolist()
            child = parent.merged(
                {
                    u.name: u.choices[int(p * len(u.choices))]
                    for u, r, p in zip(units, redraw, picks)
                    if r < mutation_prob
                }
            )
        else:
            a = parents[_randint(len(parents), generator)]
            b = parents[_randint(len(parents), generator)]
            take = torch.rand(len(units), generator=generator).tolist()
            child = Arch({u.name: (a if t < 0.5 else b)[u.name] for u, t in zip(units, take)})
        child = sampler.repair(child, generator)
        if child is not None and child not in seen:
            children.setdefault(child, None)
    return list(children)


__all__ = ["STARTS", "evolution_search"]
