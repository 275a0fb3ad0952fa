"""TAS: Network Pruning via Transformable Architecture Search (Dong & Yang, NeurIPS 2019,
arXiv 1905.09717), on any traced model.

One search per budget. Each channel unit gets logits α over candidate widths and each depth unit
logits β over candidate depths (§3.1). Every iteration:

1. **architecture step** on one half of the training data (§3.4, Eq. 7): widths and depths are
   mixed by Gumbel-softmax samples (`gumbel_pair`: two widths per unit, Eq. 3; depth weights over
   all candidates, Eq. 6) in the supernet's soft mode (channel-wise interpolation, Eq. 4); the
   loss is CE + λ·`cost_loss` (Eq. 8) on the expected cost of plain softmax(α, β) (Eq. 5);
   Adam, β = (0.5, 0.999), weight decay 1e-3 (the authors' settings);
2. **weight step** on the other half: the same kind of sample with α, β detached, CE; SGD through
   the `Trainer`.

The derived arch takes the argmax of each unit (§3.5); when it breaks the budget, the units are
stepped down one candidate at a time, least probable loss first, until it fits, and the result
says so. The pruned net is then trained from scratch with KD from the unpruned one (§3.5: the
pipeline's ``retrain.distill``, α = 0.9, T = 4).

Deviations from the paper and the official code, stated:

- candidate widths are the paper's ratios {0.3, …, 1.0} of each unit's channels (int-truncated,
  deduplicated, `tas_width_choices`), each snapped to the nearest width of the space's grid so
  that every method searches one space; a 16-channel unit on a grid of 4 gets {4, 8, 12, 16};
- widths are searched per channel unit of the traced model (layers tied by a residual addition
  share one), not per conv with added 1×1 projection shortcuts as the official CIFAR ResNets do;
  the exported net keeps the model's own topology, so its MACs are the space's;
- one BatchNorm is shared across widths (slimnas soft mode) where the official code keeps one per
  candidate width;
- the cost band is [(1 − t)·R, R]: the upper edge is the budget itself, because a budget is a
  hard limit here (paper: (1 ± t)·R; official code: [R − t·MAX, R]);
- the architecture step of an iteration comes before its weight step (official: after);
- τ decays per epoch, linearly 10 → 0.1 by default (the paper); ``tau_schedule="cosine"`` with
  ``tau_max=5`` is the released script's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimnas.cost.budget import LATENCY, Budget
from slimnas.cost.counting import expected_macs, expected_params
from slimnas.cost.latency_predict import expected_latency
from slimnas.cost.memory import expected_peak_memory
from slimnas.errors import ConfigError
from slimnas.methods.one_budget import CyclingBatches, OneBudgetSearch
from slimnas.methods.result import Result
from slimnas.space.space import Space
from slimnas.space.units import Arch, ChannelUnit, DepthUnit
from slimnas.train.losses import cross_entropy
from slimnas.train.rng import generator_state, set_generator_state
from slimnas.train.step import Backward, Metrics, top1
from slimnas.train.trainer import TrainingError

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


def distribution_figures(arch_params) -> dict[str, float]:
    """How far a search has decided: over the width units and over the depth units of
    ``arch_params`` (a `TASArch`), the mean normalised entropy of softmax(logits) (1 = uniform,
    0 = one candidate) and the mean top probability. NaN for a kind with no unit."""
    sums = {k: [] for k in ("width_entropy", "width_top", "depth_entropy", "depth_top")}
    for name, _, logits in arch_params.units():
        kind = "depth" if isinstance(arch_params.space.units[name], DepthUnit) else "width"
        p = logits.detach().softmax(-1)
        entropy = -(p * p.clamp_min(1e-30).log()).sum() / math.log(len(p))
        sums[f"{kind}_entropy"].append(float(entropy))
        sums[f"{kind}_top"].append(float(p.max()))
    return {k: sum(v) / len(v) if v else float("nan") for k, v in sums.items()}


# --------------------------------------------------------------------------------- step
class TASStep:
    """The `Trainer` step of a TAS search: an architecture step, then a weight step (module doc).

    Args:
        supernet: the supernet the Trainer trains (its weights are the searched net's).
        arch_params: the `TASArch` being learned (not in the Trainer's optimizer).
        arch_loader: batches of the architecture half of the training data.
        budget: the target; its metric needs an expected form (`EXPECTED`).
        steps_per_epoch, epochs: of the Trainer, for the temperature schedule.
        cost_weight: λ of Eq. 7 (2 in the paper).
        tolerance: t of Eq. 8 (5 %).
        tau_max, tau_min, tau_schedule: the temperature schedule (`tau_at`).
        arch_lr, arch_weight_decay: Adam of the architecture step.
        generator: Gumbel noise and candidate draws; saved in checkpoints.
        expected_cost: the expected form of the budget's cost; default `expected_form`.

    Metrics: ``tau``, ``acc`` (weight batch), ``arch_loss``, ``arch_acc``, ``cost_expected`` and
    ``cost_argmax`` as fractions of the budget, and the distributions' convergence
    (`distribution_figures`: ``width_entropy``, ``width_top``, ``depth_entropy``, ``depth_top``).
    """

    def __init__(
        self,
        supernet,
        arch_params: TASArch,
        arch_loader: Any,
        budget: Budget,
        *,
        steps_per_epoch: int,
        epochs: int,
        cost_weight: float = 2.0,
        tolerance: float = 0.05,
        tau_max: float = 10.0,
        tau_min: float = 0.1,
        tau_schedule: str = "linear",
        arch_lr: float = 1e-3,
        arch_weight_decay: float = 1e-3,
        generator: torch.Generator | None = None,
        expected_cost: Callable[..., torch.Tensor] | None = None,
    ):
        expected_cost = expected_cost or expected_form(budget)
        tau_at(0, epochs, tau_max, tau_min, tau_schedule)  # an unknown schedule fails now
        self.supernet = supernet
        self.arch = arch_params
        self._held = CyclingBatches(arch_loader)
        self.budget = budget
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.cost_weight = cost_weight
        self.tolerance = tolerance
        self.tau_options = (tau_max, tau_min, tau_schedule)
        self.generator = generator if generator is not None else torch.Generator()
        self.expected_cost = expected_cost
        # β1 = 0.5, β2 = 0.999, weight decay 1e-3: the authors' architecture optimiser.
        self.optimizer = torch.optim.Adam(
            arch_params.parameters(), lr=arch_lr, betas=(0.5, 0.999), weight_decay=arch_weight_decay
        )
        self.steps = 0

    def tau(self) -> float:
        return tau_at(self.steps // self.steps_per_epoch, self.epochs, *self.tau_options)

    def _arch_batch(self):
        return self._held.next()

    def _activate(self, tau: float, detach: bool) -> None:
        widths, depths = self.arch.sample(tau, self.generator, detach)
        self.supernet.activate_soft(widths, depths)

    def __call__(self, model: nn.Module, batch: Any, backward: Backward) -> tuple:
        space, tau = self.arch.space, self.tau()
        # Architecture step (Eq. 7): CE on the other half + λ·L_cost, gradients to α and β only.
        arch_images, arch_labels = self._arch_batch()
        self._activate(tau, detach=False)
        logits = model(arch_images)
        expected = self.expected_cost(space, self.arch.probs())
        actual = self.budget.cost(space, self.arch.argmax())
        arch_ce = cross_entropy(logits, arch_labels)
        penalty = cost_loss(expected, actual, self.budget.limit, self.tolerance)
        arch_loss = arch_ce + self.cost_weight * penalty
        if not bool(torch.isfinite(arch_loss.detach())):
            raise TrainingError(
                f"the TAS architecture loss is {float(arch_loss)} at step {self.steps + 1}; "
                "lower search.tas_arch_lr or the learning rate"
            )
        params = list(self.arch.parameters())
        grads = torch.autograd.grad(arch_loss, params)
        for param, grad in zip(params, grads):
            param.grad = grad
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        # Weight step: a fresh sample with α and β detached; the Trainer backpropagates and steps.
        images, labels = batch
        self._activate(tau, detach=True)
        logits_w = model(images)
        loss = cross_entropy(logits_w, labels)
        self.steps += 1
        metrics: Metrics = {
            "tau": tau,
            "acc": top1(logits_w.detach(), labels),
            "arch_loss": arch_loss.detach(),
            "arch_acc": top1(logits.detach(), arch_labels),
            "cost_expected": float(expected.detach()) / self.budget.limit,
            "cost_argmax": actual / self.budget.limit,
            **distribution_figures(self.arch),
        }
        return loss, metrics

    def state_dict(self) -> dict[str, Any]:
        """Logits, Adam state, step count, generator and the architecture loader's position."""
        return {
            "logits": {str(i): p.detach().clone() for i, p in enumerate(self.arch.logits)},
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
            "generator": generator_state(self.generator),
            "arch_loader": self._held.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` gave. Changes the logits, optimizer, generator, loader."""
        with torch.no_grad():
            for i, p in enumerate(self.arch.logits):
                p.copy_(state["logits"][str(i)])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        set_generator_state(self.generator, state["generator"])
        self._held.load_state_dict(state["arch_loader"])


# ------------------------------------------------------------------------------- method
class TAS(OneBudgetSearch):
    """TAS on a supernet (module doc): ``fit`` searches one budget, ``search`` derives the arch.

    ``TAS(epochs=10).fit(supernet, weight_batches, arch_batches, "macs<=50%").search()``

    Args:
        depth: search the depth of stages too (TAS); False searches widths only (TAS (W)).
        epochs, lr, weight_decay: the weight training (SGD, Nesterov, cosine) of the search.
        cost_weight, tolerance, tau_max, tau_min, tau_schedule, arch_lr, arch_weight_decay:
            see `TASStep`.
        ratios: candidate width ratios.
        seed: initial logits, Gumbel noise and the weights' training.
        run_dir: checkpoints of the search; an interrupted `fit` resumes there.
        progress: progress bar.
        trainer_options: further `Trainer` keyword arguments.
    """

    name = "tas"

    def __init__(
        self,
        *,
        depth: bool = True,
        epochs: int = 10,
        lr: float = 0.1,
        weight_decay: float = 5e-4,
        cost_weight: float = 2.0,
        tolerance: float = 0.05,
        tau_max: float = 10.0,
        tau_min: float = 0.1,
        tau_schedule: str = "linear",
        arch_lr: float = 1e-3,
        arch_weight_decay: float = 1e-3,
        ratios: Sequence[float] = TAS_RATIOS,
        seed: int = 0,
        run_dir: str | Path | None = None,
        progress: bool = True,
        trainer_options: Mapping[str, Any] | None = None,
    ):
        self.depth = depth
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.step_options = {
            "cost_weight": cost_weight,
            "tolerance": tolerance,
            "tau_max": tau_max,
            "tau_min": tau_min,
            "tau_schedule": tau_schedule,
            "arch_lr": arch_lr,
            "arch_weight_decay": arch_weight_decay,
        }
        self.ratios = tuple(ratios)
        self.seed = seed
        self.run_dir = run_dir
        self.progress = progress
        self.trainer_options = dict(trainer_options or {})
        self.arch_params: TASArch | None = None
        self._step: TASStep | None = None
        self.budget: Budget | None = None
        self.supernet = None

    def make_step(self, supernet, arch_loader, budget: Budget, steps_per_epoch: int) -> TASStep:
        """The `TASStep` of a search of ``budget`` (with fresh architecture logits)."""
        generator = torch.Generator().manual_seed(self.seed)
        arch_params = TASArch(
            supernet.space, depth=self.depth, ratios=self.ratios, generator=generator
        )
        device = next(supernet.parameters()).device
        arch_params.to(device)
        self.arch_params, self.budget, self.supernet = arch_params, budget, supernet
        self._step = TASStep(
            supernet,
            arch_params,
            arch_loader,
            budget,
            steps_per_epoch=steps_per_epoch,
            epochs=self.epochs,
            generator=generator,
            **self.step_options,
        )
        return self._step

    def result(self, scorer=None, method: str | None = None) -> Result:
        """The `Result` of the fitted search (derived arch, probabilities, adjustments)."""
        space, budget = self.arch_params.space, self.budget
        arch, steps = derive(self.arch_params, budget)
        argmax = self.arch_params.argmax()
        with torch.no_grad():
            expected_cost = self._step.expected_cost if self._step else expected_form(budget)
            expected = float(expected_cost(space, self.arch_params.probs()))
        info = {
            "depth": self.depth,
            "probabilities": self.arch_params.table(),
            "argmax_cost": budget.cost(space, argmax),
            "expected_cost": expected,
            "adjusted": steps,
        }
        if steps:
            info["note"] = f"argmax broke the budget; {len(steps)} unit(s) stepped down to fit"
        score = scorer.score(arch) if scorer is not None else None
        return Result.of(method or self.name, budget, space, arch, score, **info)


__all__ = [
    "EXPECTED",
    "TAS",
    "TASArch",
    "TASStep",
    "TAS_RATIOS",
    "cost_loss",
    "derive",
    "distribution_figures",
    "expected_form",
    "gumbel_pair",
    "gumbel_probs",
    "snap_to_grid",
    "tas_depth_choices",
    "tas_width_choices",
    "tau_at",
]
