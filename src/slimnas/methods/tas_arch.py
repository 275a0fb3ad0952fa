"""TAS's architecture parameters (Dong & Yang, NeurIPS 2019, arXiv 1905.09717, §3.1–3.5): the
candidate widths and depths of each unit, Gumbel-softmax sampling (Eq. 3–6), the cost loss
(Eq. 8), the temperature schedule, and the derivation of the arch (§3.5). The search itself is
`slimnas.methods.tas`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from slimnas.cost.budget import LATENCY, Budget
from slimnas.cost.counting import expected_macs, expected_params
from slimnas.cost.latency.predict import expected_latency
from slimnas.cost.memory import expected_peak_memory
from slimnas.errors import ConfigError
from slimnas.space.space import Space
from slimnas.space.units import Arch, ChannelUnit, DepthUnit

TAS_RATIOS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

# Expected forms of the costs a TAS budget may name (§3.4 uses FLOPs; any cost with an
# expectation over independent per-unit distributions works the same way).
EXPECTED: dict[str, Callable[..., torch.Tensor]] = {
    "macs": expected_macs,
    "flops": lambda space, probs, base=None: 2 * expected_macs(space, probs, base),
    "params": expected_params,
    "memory": expected_peak_memory,
}


def expected_form(budget: Budget) -> Callable[..., torch.Tensor]:
    """The expected cost a TAS search of ``budget`` minimises: `EXPECTED`, or, for a latency
    budget with its table, `expected_latency` (the table's sums, differentiable)."""
    if budget.metric == LATENCY and budget.latency is not None:
        target = budget.latency
        return lambda space, probs, base=None: expected_latency(space, probs, target, base)
    if budget.metric not in EXPECTED:
        raise ConfigError(
            f"TAS needs an expected form of {budget.metric}: {', '.join(EXPECTED)}, or "
            f"{LATENCY} with a latency table (search.latency_table)"
        )
    return EXPECTED[budget.metric]


# ----------------------------------------------------------------------------- candidates
def tas_width_choices(channels: int, ratios: Sequence[float] = TAS_RATIOS) -> tuple[int, ...]:
    """The paper's candidate widths of a ``channels``-wide layer: int(r·C) per ratio (§4),
    deduplicated and ascending, never below 1."""
    if channels < 1:
        raise ConfigError(f"a layer needs at least one channel, got {channels}")
    return tuple(sorted({max(1, int(r * channels + 1e-9)) for r in ratios}))


def tas_depth_choices(blocks: int) -> tuple[int, ...]:
    """The official code's candidate depths of a stage of ``blocks`` blocks: all of 1 … n for
    n ≤ 3, else the odd depths 1, 3, 5, … and n."""
    if blocks <= 3:
        return tuple(range(1, blocks + 1))
    return tuple(sorted(set(range(1, blocks + 1, 2)) | {blocks}))


def snap_to_grid(wanted: Sequence[int], grid: Sequence[int]) -> tuple[int, ...]:
    """Each wanted value moved to the nearest grid value (halves up), deduplicated, ascending."""
    return tuple(sorted({min(grid, key=lambda g: (abs(g - w), -g)) for w in wanted}))


# ------------------------------------------------------------------------------ sampling
def _gumbel(shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return -torch.log(-torch.log(u.clamp(1e-12, 1 - 1e-12))).float()


def gumbel_probs(
    logits: torch.Tensor, tau: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Eq. 3: softmax((log softmax(α) + o)/τ) with Gumbel noise o, differentiable in α."""
    noise = _gumbel(logits.shape, generator).to(logits.device)
    return ((logits.log_softmax(-1) + noise) / tau).softmax(-1)


def gumbel_pair(
    logits: torch.Tensor, tau: float, generator: torch.Generator | None = None, count: int = 2
) -> tuple[list[int], torch.Tensor]:
    """§3.2: ``count`` distinct candidates drawn from the Gumbel-softmax probabilities p̂
    (without replacement), and their mixing weights, p̂ renormalised over them (Eq. 4's weights;
    they sum to 1 and keep their gradient in α)."""
    noise = _gumbel(logits.shape, generator).to(logits.device)
    tempered = (logits.log_softmax(-1) + noise) / tau
    probs = tempered.detach().softmax(-1).double().cpu() + 1e-7
    picked = torch.multinomial(probs, min(count, len(logits)), False, generator=generator)
    index = picked.sort().values.tolist()
    return index, tempered[index].softmax(-1)


def cost_loss(
    expected: torch.Tensor, actual: float, target: float, tolerance: float
) -> torch.Tensor:
    """Eq. 8: log E[cost] while the argmax arch costs more than ``target``, −log E[cost] while it
    costs less than (1 − ``tolerance``)·``target``, 0 inside the band."""
    if actual > target:
        return torch.log(expected)
    if actual < (1 - tolerance) * target:
        return -torch.log(expected)
    return expected * 0.0


def tau_at(epoch: int, epochs: int, tau_max: float, tau_min: float, schedule: str) -> float:
    """The Gumbel-softmax temperature of ``epoch`` (0-based) of ``epochs``."""
    if schedule == "linear":  # the paper: linear from tau_max to tau_min over the search
        return tau_max - (tau_max - tau_min) * epoch / max(epochs - 1, 1)
    if schedule == "cosine":  # the released script
        return tau_min + (tau_max - tau_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2
    raise ConfigError(f"unknown temperature schedule {schedule!r}; use 'linear' or 'cosine'")


# ------------------------------------------------------------------- architecture params
class TASArch(nn.Module):
    """Logits over each searched unit's candidates (§3.1), initialised N(0, 0.01) as the
    authors do.

    Args:
        space: the space; its searchable channel units are searched, and its searchable depth
            units when ``depth``.
        depth: search depth too.
        ratios: width ratios of the candidates (`tas_width_choices`, snapped to the grid).
        generator: draws the initial logits.
    """

    def __init__(
        self,
        space: Space,
        *,
        depth: bool = True,
        ratios: Sequence[float] = TAS_RATIOS,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.space = space
        self.names: list[str] = []
        self.candidates: list[tuple[int, ...]] = []
        for unit in space.searchable.values():
            if isinstance(unit, ChannelUnit):
                wanted = tas_width_choices(unit.max_channels, ratios)
                self._add(unit.name, snap_to_grid(wanted, unit.choices))
            elif isinstance(unit, DepthUnit) and depth:
                wanted = [c for c in tas_depth_choices(max(unit.choices)) if c in unit.choices]
                self._add(unit.name, tuple(sorted({*wanted, max(unit.choices)})))
        if not self.names:
            raise ConfigError("TAS found no searchable channel or depth unit in the space")
        self.logits = nn.ParameterList(
            nn.Parameter(torch.randn(len(c), generator=generator) * 0.01) for c in self.candidates
        )

    def _add(self, name: str, candidates: tuple[int, ...]) -> None:
        if len(candidates) > 1:  # a unit with one candidate is not searched
            self.names.append(name)
            self.candidates.append(candidates)

    def units(self):
        return zip(self.names, self.candidates, self.logits)

    def probs(self) -> dict[str, torch.Tensor]:
        """Per unit, softmax of its logits over the space's choices (0 off the candidates):
        what the expected costs take (Eq. 5)."""
        out = {}
        for name, candidates, logits in self.units():
            out[name] = self._scatter(name, candidates, logits.softmax(-1))
        return out

    def _scatter(self, name: str, candidates: tuple[int, ...], values: torch.Tensor):
        choices = self.space.units[name].choices
        index = torch.tensor([choices.index(c) for c in candidates], device=values.device)
        return torch.zeros(len(choices), device=values.device, dtype=values.dtype).index_add(
            0, index, values
        )

    def argmax(self) -> Arch:
        """§3.5: the most probable candidate of every searched unit; the rest at their max."""
        arch = dict(self.space.max_arch())
        for name, candidates, logits in self.units():
            arch[name] = candidates[int(logits.argmax())]
        return Arch(arch)

    def sample(self, tau: float, generator: torch.Generator | None, detach: bool):
        """One soft sample: per channel unit two widths and their weights (Eq. 3–4), per depth
        unit weights over all its candidates (Eq. 6), ready for `Supernet.activate_soft`."""
        widths, depths = {}, {}
        for name, candidates, logits in self.units():
            logits = logits.detach() if detach else logits
            if isinstance(self.space.units[name], DepthUnit):
                depths[name] = self._scatter(name, candidates, gumbel_probs(logits, tau, generator))
            else:
                index, weights = gumbel_pair(logits, tau, generator)
                widths[name] = (tuple(candidates[i] for i in index), weights)
        return widths, depths

    def table(self) -> dict[str, dict[str, float]]:
        """Per unit, the probability of each candidate (JSON-able, for results and reports)."""
        return {
            name: {
                str(c): round(float(p), 4) for c, p in zip(candidates, logits.detach().softmax(-1))
            }
            for name, candidates, logits in self.units()
        }


def derive(arch_params: TASArch, budget: Budget) -> tuple[Arch, list[dict[str, Any]]]:
    """§3.5: the argmax arch, stepped down until it meets ``budget``: each step lowers the unit
    whose next smaller candidate loses the least log-probability. Returns the arch and the steps
    taken (empty when the argmax fits)."""
    space = arch_params.space
    arch = arch_params.argmax()
    log_probs = {n: lg.detach().log_softmax(-1) for n, _, lg in arch_params.units()}
    steps = []
    while not budget.fits(space, arch):
        best = None
        for name, candidates, _ in arch_params.units():
            i = candidates.index(arch[name])
            if i == 0:
                continue
            loss = float(log_probs[name][i] - log_probs[name][i - 1])
            if best is None or loss < best[0]:
                best = (loss, name, candidates[i - 1])
        if best is None:
            raise ConfigError(
                f"TAS cannot meet {budget.text}: every searched unit is at its smallest "
                "candidate; raise the budget"
            )
        steps.append({"unit": best[1], "from": arch[best[1]], "to": best[2]})
        arch = arch.replace(**{best[1]: best[2]})
    return arch, steps


__all__ = [
    "EXPECTED",
    "TASArch",
    "TAS_RATIOS",
    "cost_loss",
    "derive",
    "expected_form",
    "gumbel_pair",
    "gumbel_probs",
    "snap_to_grid",
    "tas_depth_choices",
    "tas_width_choices",
    "tau_at",
]
