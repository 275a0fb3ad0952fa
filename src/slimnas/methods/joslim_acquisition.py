"""Joslim's surrogate models and acquisition (Chin, Marculescu & Morcos, "Joslim: Joint Widths
and Weights Optimization for Slimmable Neural Networks", arXiv 2007.11752; code:
cmu-enyac/Joslim): the Gaussian-process models of loss and cost over width vectors, the augmented
Tchebyshev scalarisation of their upper confidence bounds, the bisection of its weight towards a
target cost, and the Pareto front of (loss, cost) points. `slimnas.methods.joslim` trains with
them; the step numbers in the comments are those of the authors' training loop as the method
notes (papers/autoslim_joslim.md §3.3) number them.

Differences from the authors' code are listed in `slimnas.methods.joslim`; here: the cost
model is a sum of 1-D Matern kernels with their own lengthscales (gpytorch deprecated the
authors' ``AdditiveStructureKernel``), and fits are warm-started from the previous fit.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import nn

from slimnas.errors import ConfigError

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------- surrogate models
def botorch_modules() -> SimpleNamespace:
    """botorch and gpytorch, imported on first use (the optional ``joslim`` extra)."""
    try:
        with warnings.catch_warnings():  # gpytorch's torch.jit deprecation notices at import
            warnings.simplefilter("ignore", FutureWarning)
            from botorch import acquisition, exceptions, fit, models
            from gpytorch import kernels, mlls, priors
    except ImportError:
        raise ConfigError(
            "joslim needs botorch for its Gaussian-process models: pip install 'slimnas[joslim]'"
        ) from None
    return SimpleNamespace(
        ucb=acquisition.UpperConfidenceBound,
        fitting_error=exceptions.ModelFittingError,
        fit=fit.fit_gpytorch_mll,
        gp=models.SingleTaskGP,
        additive=kernels.AdditiveKernel,
        matern=kernels.MaternKernel,
        scale=kernels.ScaleKernel,
        mll=mlls.ExactMarginalLogLikelihood,
        gamma=priors.GammaPrior,
    )


def _standardise(y: torch.Tensor) -> torch.Tensor:
    return (y - y.mean()) / y.std().clamp_min(1e-9) if len(y) > 1 else y - y.mean()


class ObjectiveModels:
    """GP models of loss and cost over width vectors in [0, 1]^D (loop steps 2.1–2.3).

    Loss: exact GP, Matern-5/2 with one lengthscale and the authors' priors (Gamma(3, 6) on the
    lengthscale, Gamma(2, 0.15) on the output scale). Cost: an additive GP, a sum of 1-D
    Matern-5/2 kernels, one per width, under one output scale (cost is nearly additive in the
    widths; the authors' deprecated ``AdditiveStructureKernel`` shared one lengthscale, here each
    width has its own). Both are fitted on standardised outputs by exact marginal likelihood
    (botorch ``fit_gpytorch_mll``), in float64 on the CPU, under a fork of torch's RNG seeded
    with ``seed``, so that a fit neither reads nor moves the training's generators.

    Args:
        x: ``(n, D)`` width ratios of the visited archs.
        loss: ``(n,)`` their held-out losses.
        cost: ``(n,)`` their costs (ratios to the max arch's).
        seed: seeds any random restart of the fit.
        start: `hyperparameters` of an earlier fit to start from (a warm start: a refit on a
            few more points then takes a fraction of a cold fit's time).
    """

    def __init__(
        self,
        x: torch.Tensor,
        loss: torch.Tensor,
        cost: torch.Tensor,
        seed: int = 0,
        start: Mapping[str, Mapping[str, list[float]]] | None = None,
    ):
        bt = botorch_modules()
        x = x.detach().double().cpu()
        loss, cost = (y.detach().double().cpu().reshape(-1) for y in (loss, cost))
        self.cost_mean, self.cost_std = float(cost.mean()), float(cost.std().clamp_min(1e-9))
        loss_kernel = bt.scale(
            bt.matern(nu=2.5, lengthscale_prior=bt.gamma(3.0, 6.0)),
            outputscale_prior=bt.gamma(2.0, 0.15),
        )
        widths = [bt.matern(nu=2.5, active_dims=(i,)) for i in range(x.shape[1])]
        cost_kernel = bt.scale(bt.additive(*widths))
        self.models = {
            name: bt.gp(x, _standardise(y).unsqueeze(-1), covar_module=k, outcome_transform=None)
            for name, y, k in (("loss", loss, loss_kernel), ("cost", cost, cost_kernel))
        }
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for name, model in self.models.items():
                _warm_start(model, (start or {}).get(name, {}))
                try:
                    bt.fit(bt.mll(model.likelihood, model))
                except bt.fitting_error as err:  # keep the initial hyper-parameters
                    log.warning("joslim: a GP fit failed (%s); using its initial settings", err)
                model.eval()
        self._ucb = bt.ucb

    def hyperparameters(self) -> dict[str, dict[str, list[float]]]:
        """The fitted hyper-parameters (raw values by name), JSON-able, for a warm ``start``."""
        return {
            name: {k: v.detach().reshape(-1).tolist() for k, v in m.named_parameters()}
            for name, m in self.models.items()
        }

    @torch.no_grad()
    def ucb(self, x: torch.Tensor, beta: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
        """Upper confidence bounds ``mean + √β·σ`` of loss and cost at ``x`` (n, D), on the
        standardised scale. Both objectives are minimised, so the upper bound is the
        *pessimistic* one, as in the authors' code (botorch UCB with maximize=True)."""
        x = x.detach().double().cpu().unsqueeze(-2)
        return tuple(self._ucb(self.models[k], beta=beta)(x) for k in ("loss", "cost"))

    @torch.no_grad()
    def predicted_cost(self, x: torch.Tensor) -> torch.Tensor:
        """The cost model's posterior mean at ``x``, in the units it was fitted on."""
        mean = self.models["cost"].posterior(x.detach().double().cpu()).mean.reshape(-1)
        return mean * self.cost_std + self.cost_mean


@torch.no_grad()
def _warm_start(model: nn.Module, values: Mapping[str, list[float]]) -> None:
    for name, param in model.named_parameters():
        if name in values:
            param.copy_(torch.tensor(values[name], dtype=param.dtype).reshape(param.shape))


# ------------------------------------------------------------ scalarisation and weight search
def tchebyshev(
    loss: torch.Tensor,
    cost: torch.Tensor,
    weight: float,
    reference: float = -3.0,
    rho: float = 1e-6,
) -> torch.Tensor:
    """The augmented Tchebyshev scalarisation (loop step 2.5; lower is better):
    ``max((1−λ)(loss − z), λ(cost − z)) + ρ((1−λ)(loss − z) + λ(cost − z))``, λ = ``weight``,
    z = ``reference`` (the authors' −3: three standard deviations below the mean), ρ = 1e-6.
    Unlike a weighted sum, its minimisers reach non-convex parts of a front."""
    a, b = (1.0 - weight) * (loss - reference), weight * (cost - reference)
    return torch.maximum(a, b) + rho * (a + b)


@dataclass(frozen=True)
class WeightChoice:
    """What `weight_search` found: the pool ``index``, its ``weight`` λ and ``cost``, whether
    the cost is within tolerance of the target (``hit``) and the bisection ``steps`` taken."""

    index: int
    weight: float
    cost: float
    hit: bool
    steps: int


def weight_search(
    loss: torch.Tensor,
    cost: torch.Tensor,
    cost_of: Callable[[int], float],
    target: float,
    *,
    tolerance: float = 0.02,
    steps: int = 10,
    reference: float = -3.0,
    rho: float = 1e-6,
    available: torch.Tensor | None = None,
) -> WeightChoice:
    """Bisect the scalarisation weight λ in [0, 1] so that the chosen candidate's cost lands
    within ``tolerance`` of ``target`` (loop step 2.7: the authors' 10 steps from λ = 0.5).

    Args:
        loss: the candidates' loss UCBs (the scalarised objectives, standardised).
        cost: the candidates' cost UCBs.
        cost_of: the cost checked against the target for candidate ``i`` (Joslim: the exact
            cost ratio; any predicted cost works).
        target: the cost to hit.
        tolerance: how close counts as a hit.
        steps: bisection steps at most.
        reference, rho: of `tchebyshev`.
        available: a boolean mask of the candidates that may be chosen (default: all).

    Returns:
        The first hit, or else the candidate whose cost came closest.
    """
    lo, hi, weight = 0.0, 1.0, 0.5
    best: WeightChoice | None = None
    for step in range(1, steps + 1):
        value = tchebyshev(loss, cost, weight, reference, rho)
        if available is not None:
            value = value.masked_fill(~available, math.inf)
        index = int(torch.argmin(value))
        found = cost_of(index)
        hit = abs(found - target) <= tolerance
        if best is None or abs(found - target) < abs(best.cost - target):
            best = WeightChoice(index, weight, found, hit, step)
        if hit:
            break
        # More weight on cost makes the chosen arch cheaper (with z below every bound).
        lo, hi = (lo, weight) if found < target else (weight, hi)
        weight = (lo + hi) / 2
    return WeightChoice(best.index, best.weight, best.cost, best.hit, step)


__all__ = [
    "ObjectiveModels",
    "WeightChoice",
    "botorch_modules",
    "tchebyshev",
    "weight_search",
]
