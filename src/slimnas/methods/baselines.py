"""Baseline searches for AutoSlim: uniform width multiplier, random search, evolutionary search.

AutoSlim (Yu & Huang, "AutoSlim: Towards One-Shot Architecture Search for Channel Numbers",
arXiv 1903.11728) compares its greedy slimming with the channel numbers of a uniform width
multiplier (MobileNet's "0.5×"). The other two baselines are the usual one-shot search strategies
over the same trained supernet: random search (Li & Talwalkar, "Random Search and Reproducibility
for Neural Architecture Search", arXiv 1902.07638) and the budget-constrained evolution of Single
Path One-Shot NAS (Guo et al., arXiv 1904.00420, §3.4). All three search the same `Space` under the
same `Budget`s with the supernet's inherited weights (an `ArchScorer`): only the strategy differs.

Differences from the papers: random and evolutionary search draw from `BudgetSampler`, not from
uniform per-unit choices (see why there); SPOS discards children that break the budget, here they
are shrunk until they fit (`BudgetSampler.repair`), which found better archs in our tests.
Evolution is in `slimnas.methods.evolution`. Random search and evolution save their progress as
they go (`slimnas.methods.search_state`), so that a killed search resumes to the same results.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from slimnas.cost.budget import Budget, fill_budget
from slimnas.errors import ConfigError
from slimnas.methods.result import Result
from slimnas.methods.scoring import Score
from slimnas.methods.search_state import SearchState, search_fingerprint
from slimnas.space.space import Space
from slimnas.space.units import Arch, ChannelUnit, OpUnit
from slimnas.train import distributed

log = logging.getLogger(__name__)

# Draws allowed per wanted distinct arch before a search settles for fewer (small spaces).
_TRIES = 20
# Archs per `score_many` call: enough to share out over torchrun's ranks, few enough for progress.
_CHUNK = 64


Budgets = Sequence[Budget | str] | str  # budgets, or strings: "macs<=20M", "macs<=50%"


class Scorer(Protocol):
    """What the searches need of an `ArchScorer`."""

    def score_many(self, archs: Sequence[Arch]) -> list[Score]: ...


def uniform_ratios(space: Space) -> list[float]:
    """The width multipliers at which some channel unit's `nearest_uniform_arch` choice
    changes (midpoints between neighbouring choices), ascending, 1.0 included."""
    ratios = {
        (a + b) / 2 / u.max_channels
        for u in space.channel_units()
        for a, b in zip(u.choices, u.choices[1:])
    }
    return sorted(ratios | {1.0})


def nearest_uniform_arch(space: Space, ratio: float) -> Arch:
    """Width multiplier ``ratio``: every channel unit at the choice nearest ``ratio`` × its max
    (halves round up), as slimmable networks round ``r · C`` to the divisor; depth and op units
    at their default. Nearest, not floor: flooring would shrink narrow layers (16 channels at
    0.7 → 8 with a divisor of 8) far below the multiplier and waste most of a budget."""
    choices: dict[str, Any] = {}
    for name, unit in space.searchable.items():
        if isinstance(unit, ChannelUnit):
            target = ratio * unit.max_channels
            choices[name] = min(unit.choices, key=lambda c: (abs(c - target), -c))
        else:
            choices[name] = unit.default
    return Arch(choices)


class BudgetSampler:
    """Random archs that meet ``budget`` and use most of it.

    Uniform per-unit choices (`Space.sample`) add up many independent widths, so their costs
    crowd around the middle of the space's range and a small budget rejects nearly all of them.
    Instead, each draw:

    1. picks a global ratio r uniformly in [the space's smallest channel ratio, 1] and gives every
       channel unit its uniform choice at r moved by up to ``jitter`` grid steps either way, so
       draws cover all cost levels and stray from uniform widths; searchable depth and op units
       are drawn uniformly;
    2. while the arch breaks the budget, shrinks one random unit (channel or depth) by one step
       (`repair`), which brings expensive draws down to just under the limit through varied paths;
    3. is rejected if it uses less than ``min_share`` of the budget (or of the max arch's cost, if
       lower): an arch far below the budget wastes an evaluation on a slot nobody would pick.
       After ``attempts`` rejected draws in a row, the costliest of them is returned.

    Args:
        space: the space to sample.
        budget: the budget every arch meets.
        min_share: the least share of the budget an arch must use.
        jitter: grid steps a channel unit may move from the uniform choice at r.
        attempts: draws per arch before the share is waived.

    Raises:
        BudgetError: no arch of the space meets the budget.
    """

    def __init__(
        self,
        space: Space,
        budget: Budget,
        min_share: float = 0.8,
        jitter: int = 1,
        attempts: int = 20,
    ):
        budget.check_feasible(space)
        self.space, self.budget = space, budget
        self.jitter, self.attempts = jitter, attempts
        self.channels = space.channel_units()
        self.others = [u for u in space.searchable.values() if not isinstance(u, ChannelUnit)]
        self.shrinkable = [u for u in space.searchable.values() if not isinstance(u, OpUnit)]
        self.min_ratio = min((u.choices[0] / u.max_channels for u in self.channels), default=1.0)
        self.floor = min_share * min(budget.limit, budget.cost(space, space.max_arch()))

    def sample(self, generator: torch.Generator) -> Arch:
        """One arch that meets the budget, using at least ``min_share`` of it when possible."""
        best, best_cost = None, -1.0
        for _ in range(self.attempts):
            arch = self.repair(self._draw(generator), generator)
            if arch is None:
                continue
            cost = self.budget.cost(self.space, arch)
            if cost >= self.floor:
                return arch
            if cost > best_cost:
                best, best_cost = arch, cost
        return best if best is not None else self.budget.smallest(self.space)[0]

    def repair(self, arch: Arch, generator: torch.Generator) -> Arch | None:
        """``arch`` with random units shrunk one step at a time until it meets the budget; None
        when every channel and depth unit is at its minimum and it still does not."""
        choices = dict(arch)
        while self.budget.cost(self.space, choices) > self.budget.limit:
            open_units = [u for u in self.shrinkable if choices[u.name] != u.choices[0]]
            if not open_units:
                return None
            unit = open_units[_randint(len(open_units), generator)]
            choices[unit.name] = unit.choices[unit.choices.index(choices[unit.name]) - 1]
        return Arch(choices)

    def _draw(self, generator: torch.Generator) -> Arch:
        r = self.min_ratio + (1.0 - self.min_ratio) * float(torch.rand((), generator=generator))
        steps = torch.randint(
            -self.jitter, self.jitter + 1, (len(self.channels),), generator=generator
        )
        picks = {}
        for unit, step in zip(self.channels, steps.tolist()):
            # The uniform choice at r: the largest choice <= r · max (tolerance as in uniform_arch).
            below = sum(c <= r * unit.max_channels * (1 + 1e-9) for c in unit.choices) - 1
            picks[unit.name] = unit.choices[min(max(below + step, 0), len(unit.choices) - 1)]
        for unit in self.others:
            picks[unit.name] = unit.choices[_randint(len(unit.choices), generator)]
        return Arch(picks)


def uniform_search(
    space: Space, budgets: Budgets, scorer: Scorer | None = None, *, fill: bool = True
) -> list[Result]:
    """The largest uniform width multiplier meeting each budget (AutoSlim's baseline).

    The multipliers tried are `uniform_ratios`, largest first, each turned into an arch by
    `nearest_uniform_arch`; depth and op units stay at their defaults. With ``fill`` the arch
    is then widened by `fill_budget` up to the budget, so the baseline spends what the searches
    spend (``info["filled"]``: the steps taken). When no multiplier fits but a smaller arch does
    (a shallower depth, a cheaper op), that smallest arch is returned with ``info["ratio"]``
    None and a note.

    Args:
        space: the space to search.
        budgets: the budgets.
        scorer: when given, the found archs are scored (in one `score_many` call).
        fill: widen the multiplier's arch up to the budget.

    Returns:
        One result per budget, in order; ``info["ratio"]`` is the multiplier.

    Raises:
        BudgetError: a budget that no arch of the space meets.
    """
    budgets = _budgets(budgets, space)
    ratios = uniform_ratios(space)[::-1]
    found: list[tuple[Arch, dict]] = []
    for budget in budgets:
        budget.check_feasible(space)
        fitting = (r for r in ratios if budget.fits(space, nearest_uniform_arch(space, r)))
        ratio = next(fitting, None)
        if ratio is not None:
            arch, info = nearest_uniform_arch(space, ratio), {"ratio": ratio}
            if fill:
                arch, info["filled"] = fill_budget(space, arch, budget)
            found.append((arch, info))
            continue
        smallest = space.min_arch()
        if not budget.fits(space, smallest):
            smallest = budget.smallest(space)[0]
        note = "no uniform width multiplier meets the budget; this is the space's smallest arch"
        found.append((smallest, {"ratio": None, "note": note}))
    scores = scorer.score_many([a for a, _ in found]) if scorer is not None else [None] * len(found)
    return [
        Result.of("uniform", budget, space, arch, score, **info)
        for budget, (arch, info), score in zip(budgets, found, scores)
    ]


def random_search(
    space: Space,
    scorer: Scorer,
    budgets: Budgets,
    samples: int = 100,
    seed: int = 0,
    progress: bool = True,
    scored: dict[Arch, Score] | None = None,
    state_path: str | Path | None = None,
) -> list[Result]:
    """The best of ``samples`` distinct `BudgetSampler` archs per budget.

    Each budget is searched with its own generator seeded with ``seed``, so a budget's result
    does not depend on the other budgets. The candidates of all budgets are scored together, an
    arch drawn for two budgets once.

    Args:
        space: the space to search.
        scorer: scores archs on held-out data (an `ArchScorer`).
        budgets: the budgets.
        samples: distinct archs scored per budget (fewer if the space has fewer that fit).
        seed: seed of the sampling.
        progress: show a progress bar (only when stderr is a terminal, on rank 0).
        scored: when given, every scored arch and its score are added to it (e.g. for the
            Pareto front of everything the search saw); the results are the same either way.
        state_path: JSON file the scores are written to after every chunk of archs (rank 0
            only, `SearchState`); an existing one of the same search is resumed: the
            candidates are drawn again from ``seed`` and only the unscored ones are scored.

    Returns:
        One result per budget: the highest accuracy (ties: lowest loss). ``info["samples"]`` is
        the archs scored for that budget, ``info["evaluations"]`` the archs scored in all.

    Raises:
        BudgetError: a budget that no arch of the space meets.
    """
    budgets = _budgets(budgets, space)
    if samples < 1:
        raise ConfigError(f"random search needs samples >= 1, got {samples}")
    candidates = []
    for budget in budgets:
        sampler, generator = BudgetSampler(space, budget), torch.Generator().manual_seed(seed)
        candidates.append(_distinct(sampler, generator, samples))
    everything = list(dict.fromkeys(a for group in candidates for a in group))
    key = search_fingerprint(space, budgets, samples=samples, seed=seed)
    state = SearchState(state_path, "random", key)
    cache = state.scores
    done = sum(a in cache for a in everything)
    with _bar(progress, "random search", "arch", total=len(everything), initial=done) as bar:
        _score_new(scorer, everything, cache, bar, after_chunk=state.save)
    results = []
    for budget, group in zip(budgets, candidates):
        best = min(group, key=lambda a: _rank_key(cache[a]))
        info = {"samples": len(group), "evaluations": len(cache)}
        results.append(Result.of("random", budget, space, best, cache[best], **info))
        log.info("random search %s: accuracy %.4f", budget.text, cache[best].accuracy)
    if scored is not None:
        scored.update(cache)
    return results


def _budgets(budgets: Budgets, space: Space) -> list[Budget]:
    if isinstance(budgets, (str, Budget)):
        budgets = [budgets]
    # A "%" limit ("macs<=50%") is relative to the space's max arch.
    parsed = [b if isinstance(b, Budget) else Budget.parse(b, space) for b in budgets]
    if not parsed:
        raise ConfigError("no budgets given; pass at least one, e.g. ['macs<=20M']")
    return parsed


def _distinct(sampler: BudgetSampler, generator: torch.Generator, count: int) -> list[Arch]:
    """Up to ``count`` distinct archs of ``sampler``, in the order first drawn."""
    found: dict[Arch, None] = {}
    for _ in range(_TRIES * count):
        if len(found) == count:
            break
        found.setdefault(sampler.sample(generator), None)
    return list(found)


def _score_new(
    scorer: Scorer,
    archs: Sequence[Arch],
    cache: dict[Arch, Score],
    bar=None,
    after_chunk: Callable[[], None] | None = None,
) -> None:
    """Score the archs not yet in ``cache`` (each once, in order) and add them to it, calling
    ``after_chunk`` after every chunk (to save the progress)."""
    new = [a for a in dict.fromkeys(archs) if a not in cache]
    for start in range(0, len(new), _CHUNK):
        chunk = new[start : start + _CHUNK]
        cache.update(zip(chunk, scorer.score_many(chunk)))
        if after_chunk is not None:
            after_chunk()
        if bar is not None:
            bar.update(len(chunk))


def _rank_key(score: Score) -> tuple[float, float]:
    return (-score.accuracy, score.loss)


def _randint(high: int, generator: torch.Generator) -> int:
    return int(torch.randint(high, (), generator=generator))


def _bar(progress: bool, desc: str, unit: str, total: int | None = None, initial: int = 0) -> tqdm:
    show = progress and sys.stderr.isatty() and distributed.rank() == 0
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=not show)


__all__ = [
    "BudgetSampler",
    "Scorer",
    "random_search",
    "uniform_ratios",
    "uniform_search",
]
