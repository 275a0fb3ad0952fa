"""ProxylessNAS's architecture parameters and their updates (Cai, Zhu & Han 2019,
arXiv 1812.00332): path logits (§3.1), the two-path draw and rescale (§3.2.1), the hardware-aware
loss (§3.3), REINFORCE (§3.2.2) and the derivation (§3.4). `slimnas.methods.proxyless` runs them;
its module doc states the deviations from the paper and the official code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from slimnas.cost.budget import Budget
from slimnas.errors import ConfigError
from slimnas.methods.tas_arch import cost_loss as band_loss
from slimnas.space.space import Space
from slimnas.space.units import Arch

LOSS_FORMS = ("mul_log", "add_linear", "band")
MUL_LOG_REFERENCE = 80.0  # the authors' mobile latency target (ms), the scale of mul_log's logs


# ------------------------------------------------------------------- architecture params
class ProxylessArch(nn.Module):
    """Logits α over the candidates of every searchable `OpUnit` of ``space`` (§3.1).

    Logits are float64, so that the two-path rescale holds to machine precision. Units other than
    op units stay at ``base`` (default: the space's max arch).

    Args:
        space: the space; all its searchable op units are searched.
        base: choices of the other units.
        init_std: standard deviation of the initial logits (the authors': 10⁻³).
        generator: draws the initial logits.
    """

    def __init__(
        self,
        space: Space,
        base: Mapping | None = None,
        init_std: float = 1e-3,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.space = space
        self.units = space.op_units()
        if not self.units:
            raise ConfigError(
                "ProxylessNAS found no searchable op unit in the space: mark the searched "
                "blocks with slimnas.Choice (or use a model of slimnas.models.proxyless_*)"
            )
        self.names = [u.name for u in self.units]
        self.base = space.validate(base if base is not None else space.max_arch())
        self.logits = nn.ParameterList(
            nn.Parameter(
                torch.randn(len(u.choices), generator=generator, dtype=torch.float64) * init_std
            )
            for u in self.units
        )

    def probs(self) -> dict[str, torch.Tensor]:
        """p = softmax(α) per unit, differentiable."""
        return {n: lg.softmax(-1) for n, lg in zip(self.names, self.logits)}

    def arch_of(self, picks: Mapping[str, int]) -> Arch:
        """The arch taking candidate ``picks[unit]`` (an index) on every unit, ``base`` else."""
        ops = {u.name: u.choices[picks[u.name]] for u in self.units}
        return self.base.merged(ops)

    def argmax(self) -> Arch:
        """§3.4: the most probable candidate of every unit."""
        return self.arch_of({n: int(lg.argmax()) for n, lg in zip(self.names, self.logits)})

    def sample(self, generator: torch.Generator | None = None) -> dict[str, int]:
        """One candidate index per unit drawn from p (a weight step's binarized path)."""
        return {
            n: int(torch.multinomial(lg.detach().softmax(-1).cpu(), 1, generator=generator))
            for n, lg in zip(self.names, self.logits)
        }

    def entropy(self) -> float:
        """Mean entropy of p over units, normalised by log N (1 = uniform, 0 = decided)."""
        total = 0.0
        for lg in self.logits:
            p = lg.detach().softmax(-1)
            total += float(-(p * p.clamp_min(1e-30).log()).sum()) / math.log(len(p))
        return total / len(self.logits)

    def table(self) -> dict[str, dict[str, float]]:
        """Per unit, the probability of each candidate (JSON-able, for results and reports)."""
        return {
            u.name: {c: round(float(p), 4) for c, p in zip(u.choices, lg.detach().softmax(-1))}
            for u, lg in zip(self.units, self.logits)
        }


def sample_pair(
    logits: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[list[int], torch.Tensor, int]:
    """§3.2.1: two distinct candidates drawn from softmax(α), their renormalised probabilities
    p' = softmax(α_a, α_b) (differentiable), and the active one drawn from p' (an index into the
    pair)."""
    probs = logits.detach().softmax(-1).cpu()
    pair = sorted(torch.multinomial(probs, 2, False, generator=generator).tolist())
    renormalised = logits[pair].softmax(-1)
    active = int(torch.multinomial(renormalised.detach().cpu(), 1, generator=generator))
    return pair, renormalised, active


def rescale_pair(logits: torch.Tensor, old: torch.Tensor, pair: Sequence[int]) -> None:
    """§3.2.1: after a step on the logits of ``pair``, shift both by one offset so that
    Σ_pair e^α is what it was (``old``): the probabilities of the other paths do not change.
    Changes ``logits`` in place."""
    with torch.no_grad():
        offset = torch.logsumexp(logits[pair], 0) - torch.logsumexp(old[pair], 0)
        logits[pair] -= offset


def cost_loss(
    ce: torch.Tensor,
    expected: torch.Tensor,
    target: float,
    form: str = "mul_log",
    alpha: float = 0.2,
    beta: float = 0.3,
    lam: float = 0.1,
    actual: float | None = None,
    band_weight: float = 2.0,
    tolerance: float = 0.05,
) -> torch.Tensor:
    """§3.3's hardware-aware loss on the expected cost ``expected`` against ``target``.

    ``mul_log``: α · CE · (log E' / log T')^β with E, T rescaled so that T' = 80 (module doc);
    ``add_linear``: CE + λ · (E − T) / T. Both always reward a cheaper arch, so how close the
    result lands to T depends on how strongly CE pulls back. ``band`` (not in the paper: TAS's
    Eq. 8, Dong & Yang 2019) seeks the target: CE + w · (±log E) with the sign from ``actual``,
    the argmax arch's cost: down above T, up below (1 − tolerance)·T, 0 in between.
    """
    if form == "mul_log":
        scale = MUL_LOG_REFERENCE / target
        ratio = torch.log(expected * scale) / math.log(MUL_LOG_REFERENCE)
        return alpha * ce * ratio.clamp_min(1e-6) ** beta
    if form == "add_linear":
        return ce + lam * (expected - target) / target
    if form == "band":
        if actual is None:
            raise ConfigError("the band loss needs the argmax arch's cost (actual)")
        return ce + band_weight * band_loss(expected, actual, target, tolerance)
    raise ConfigError(
        f"unknown ProxylessNAS loss form {form!r}; use one of {', '.join(LOSS_FORMS)}"
    )


class Reinforce:
    """§3.2.2 (ProxylessNAS-R): REINFORCE on the path logits with a moving-average baseline.

    ``update(logits, picks, rewards)`` sets ``logit.grad`` to the gradient of
    −(1/M) Σ_m (R_m − b) · log p(arch_m) (the caller steps the optimizer), then moves the baseline
    b ← decay · b + (1 − decay) · mean R (the first call sets b = mean R).

    Args:
        decay: weight of the old baseline.
    """

    def __init__(self, decay: float = 0.9):
        self.decay = decay
        self.baseline: float | None = None

    def update(
        self,
        logits: Sequence[torch.Tensor],
        picks: Sequence[Sequence[int]],
        rewards: Sequence[float],
    ) -> float:
        """``picks[m][u]``: the candidate sample m took on unit u. Returns the baseline used."""
        mean = sum(rewards) / len(rewards)
        baseline = mean if self.baseline is None else self.baseline
        objective = 0.0
        for pick, reward in zip(picks, rewards):
            log_prob = sum(lg.log_softmax(-1)[i] for lg, i in zip(logits, pick))
            objective = objective + (reward - baseline) * log_prob
        grads = torch.autograd.grad(-objective / len(rewards), list(logits))
        for lg, grad in zip(logits, grads):
            lg.grad = grad
        self.baseline = (
            mean
            if self.baseline is None
            else (self.decay * self.baseline + (1 - self.decay) * mean)
        )
        return baseline


def derive(arch_params: ProxylessArch, budget: Budget) -> tuple[Arch, list[dict[str, Any]]]:
    """§3.4: the argmax arch; while it breaks ``budget``, move the unit to the cheaper candidate
    that loses the least log-probability per unit of cost saved. Returns the arch and the steps
    taken (empty when the argmax fits)."""
    space = arch_params.space
    arch = arch_params.argmax()
    log_probs = {
        n: lg.detach().log_softmax(-1) for n, lg in zip(arch_params.names, arch_params.logits)
    }
    steps = []
    while not budget.fits(space, arch):
        cost = budget.cost(space, arch)
        best = None
        for unit in arch_params.units:
            now = unit.choices.index(arch[unit.name])
            for i, candidate in enumerate(unit.choices):
                moved = arch.merged({unit.name: candidate})
                saved = cost - budget.cost(space, moved)
                if saved <= 0:
                    continue
                lost = float(log_probs[unit.name][now] - log_probs[unit.name][i]) / saved
                if best is None or lost < best[0]:
                    best = (lost, unit.name, candidate, moved)
        if best is None:
            raise ConfigError(
                f"ProxylessNAS cannot meet {budget.text}: no op choice lowers the cost further; "
                "raise the budget"
            )
        steps.append({"unit": best[1], "from": arch[best[1]], "to": best[2]})
        arch = best[3]
    return arch, steps


__all__ = [
    "LOSS_FORMS",
    "MUL_LOG_REFERENCE",
    "ProxylessArch",
    "Reinforce",
    "cost_loss",
    "derive",
    "rescale_pair",
    "sample_pair",
]
