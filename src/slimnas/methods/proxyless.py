"""ProxylessNAS: Direct Neural Architecture Search on Target Task and Hardware (Cai, Zhu & Han,
ICLR 2019, arXiv 1812.00332), on any model whose searched blocks are `slimnas.Choice`s.

Every searchable `OpUnit` gets architecture logits α over its candidates (§3.1, initialised
N(0, 10⁻³) as the authors do) and path probabilities p = softmax(α). One search per budget:

1. **weight step** on the training half (§3.2, "binarized paths"): one path per unit drawn from
   p, the supernet activated at it in hard mode, so only that path runs, holds activations and
   gets gradients; unused paths get ``grad = None``, so SGD's momentum and weight decay do not
   touch them. Label-smoothed CE (0.1, the authors'), SGD through the `Trainer`.
2. **architecture step** on a held-out class-balanced split of the training data, every
   ``arch_every`` weight steps after ``warmup_epochs`` of weight steps only (the authors: every 5
   iterations after a warm-up). Modes (`ProxylessStep`):

   - ``"two"`` (the paper's §3.2.1): per unit two distinct paths {a, b} drawn from p, their
     probabilities renormalised p' = softmax(α_a, α_b), the active one drawn from p'; the
     `Choice` runs both with binary gates g (only the active one keeps its weight graph), so
     autograd gives ∂L/∂g_k = ⟨o_k, ∂L/∂y⟩; Eq. 4 maps it to α through the softmax Jacobian
     (`gate_to_logit_grad`) over the two; after the Adam step both logits are shifted by one
     offset so that e^α_a + e^α_b is unchanged, which leaves every unsampled path's probability
     exactly as it was (`rescale_pair`);
   - ``"full"``: one active path, all N run with gates (N outputs in memory), Jacobian over all
     N with the full softmax; for comparison (the official ``full`` mode);
   - ``"reinforce"`` (§3.2.2, ProxylessNAS-R): ``reinforce_samples`` archs drawn from p are
     scored on the batch without gradient, reward R = acc · (T / cost)^w, and α steps on
     −(R − b)·∇ log p(arch) with a moving-average baseline b (`Reinforce`); works for any cost,
     differentiable or not.

   The loss adds the cost term of §3.3 on the *expected* cost under the same probabilities as
   the gates use (p' scattered on the sampled pair, or p): for a latency budget
   E[LAT] = fixed parts + Σ_blocks Σ_i p_i · F(op_i) from the latency table of the device in use
   (`expected_latency`; the zero op costs nothing but its residual add), for MACs / params /
   memory their expected forms. Forms (`cost_loss`): ``"mul_log"``
   α_r · CE · (log E / log T)^β (α_r = 0.2, β = 0.3, the authors' defaults),
   ``"add_linear"`` CE + λ · (E − T) / T (λ = 0.1); ``"band"`` (not in the paper: TAS's Eq. 8)
   seeks the budget from both sides. Adam with β₁ = 0 (the authors'), so entries
   whose gradient is zero in a step do not move.
3. **derivation** (§3.4): the argmax op of every unit (`ProxylessArch.argmax`); a chosen zero op
   removes its block on export. The loss is a soft trade-off, so the argmax can miss the budget:
   then units step to cheaper candidates, least log-probability lost per unit of cost saved
   first, and the result lists the steps (``info["adjusted"]``).

Deviations from the paper and the official code, stated:

- **zero op**: the official block returns its input when Zero is the active path, so that unit
  gets no architecture gradient that step; here the `Choice` still runs the other sampled path
  (detached) with its gate, so the other path's gate gradient exists and Zero's is ⟨0, ∂L/∂y⟩ = 0;
  the unit is updated every architecture step;
- **mul_log units**: both E and T are rescaled so that T reads 80 (the authors' mobile target,
  80 ms) before the logs, so the strength of the penalty does not depend on the unit a cost is
  counted in (with T = 80 ms it is the official loss); below 1 in any unit the official form
  would change sign;
- **REINFORCE baseline**: a true moving average b ← 0.9·b + 0.1·R̄ (the official update keeps
  only 1 % of the old baseline);
- **warm-up**: as the authors, the weights warm up once (``warmup_epochs``, one random path per
  step, its own LR schedule) and every budget's search starts from them with a fresh schedule;
  the architecture step of an iteration comes before its weight step; the architecture forward
  uses train-mode BatchNorm, as the authors'. ``warmup_draw`` defaults to ``"inherit"``, not
  the paper's: the largest candidate of every block trains alone for half the warm-up, then
  the others start from slices of its weights (Once-for-All-style) and the paper's draw
  follows; with the paper's draw (``"paper"``: every path from p, zero op included) the
  warm-up of the CPU control stays near chance (2.16 nats after 420 steps, against 1.85 with
  ``"inherit"``; docs/results/proxyless_warmup.md). ``"no_zero"`` and ``"largest_first"`` are
  the other measured draws.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from slimnas.cost.budget import Budget
from slimnas.errors import ConfigError
from slimnas.methods.base import Options as BaseOptions
from slimnas.methods.base import register
from slimnas.methods.one_budget import OneBudgetMethod
from slimnas.methods.proxyless_paths import LOSS_FORMS, ProxylessArch, derive
from slimnas.methods.proxyless_step import MODES, ProxylessStep
from slimnas.methods.proxyless_warmup import WARMUP_DRAWS, WarmupStep
from slimnas.methods.setup import Setup, load_weights
from slimnas.settings import choice, integer, number, positive
from slimnas.space.space import Space
from slimnas.train import distributed


@dataclass(frozen=True)
class ProxylessOptions(BaseOptions):
    """ProxylessNAS's hyper-parameters (`ProxylessStep`)."""

    epochs: int | None = integer(
        None,
        1,
        "epochs of each budget's search after the shared warm-up (unset: supernet.epochs, with "
        "the [supernet] recipe)",
        True,
    )
    warmup_epochs: int = integer(
        1, 0, "epochs of weight steps only, shared by every budget's search"
    )
    warmup_draw: str = choice(
        "inherit",
        WARMUP_DRAWS,
        "the warm-up's paths: from p with the zero op (the paper), without it, largest "
        "candidate first (a curriculum), or inherit: the largest alone for half the warm-up, "
        "then the others start from its weights (Once-for-All-style; the last two not in "
        "the paper)",
    )
    mode: str = choice("two", MODES, "architecture gradient (two paths, all paths, or REINFORCE)")
    arch_every: int = integer(5, 1, "weight steps per architecture step")
    arch_lr: float = number(1e-3, "a positive number", positive, "Adam lr of the path logits")
    loss: str = choice(
        "mul_log",
        LOSS_FORMS,
        "cost term, alpha*CE*(log E/log T)^beta, CE + lambda*(E - T)/T, or band (TAS's Eq. 8: "
        "seeks [(1 - tolerance) T, T])",
    )
    loss_alpha: float = number(0.2, "a positive number", positive, "alpha of mul_log")
    loss_beta: float = number(0.3, "a number >= 0", lambda v: v >= 0, "beta of mul_log")
    loss_lambda: float = number(0.1, "a number >= 0", lambda v: v >= 0, "lambda of add_linear")
    band_weight: float = number(2.0, "a number >= 0", lambda v: v >= 0, "weight of the band loss")
    tolerance: float = number(
        0.05, "a number in [0, 1)", lambda v: 0 <= v < 1, "band below the budget"
    )
    reinforce_samples: int = integer(10, 1, "reinforce: archs per update (the authors: 10)")
    reinforce_exponent: float = number(
        0.1, "a number >= 0", lambda v: v >= 0, "reinforce: w of the reward acc * (T / cost)^w"
    )


def check_op_units(space: Space, name: str) -> None:
    """Refuse a space without op units (`ConfigError`): ``name`` searches them."""
    if not space.op_units():
        raise ConfigError(
            f"{name} searches op units, and model has none: use a model whose blocks are "
            "slimnas.Choice (model.name = 'proxyless_cifar', ...)"
        )


@register
class ProxylessNAS(OneBudgetMethod):
    """ProxylessNAS (module doc): a weight warm-up shared by the budgets, then per budget a
    search from the warm-up's weights; the weights learn on the training split (one binarized
    path per step) while the path logits learn on the held-out split (§3.2).

    ``ProxylessNAS(mode="two").fit(Supernet(model, space), setup).search(["latency_ms<=3"])``
    with a latency budget parsed with its table target (`Budget.parse(..., latency=target)`).
    """

    name = "proxyless"
    Options = ProxylessOptions
    legacy_prefix = "proxyless"
    legacy_keys = {"proxyless_loss": "loss"}
    trace_key = "proxyless"
    trace_columns = ("acc", "arch_acc", "cost_expected", "cost_argmax", "entropy")

    @property
    def training(self) -> str:  # type: ignore[override]
        return f"ProxylessNAS ({self.options.mode})"

    def check(self, space: Space, budgets) -> None:
        check_op_units(space, self.name)

    def warm_up(self, supernet, setup: Setup):
        """The weight warm-up shared by every budget's search (§3.2; the authors warm up once,
        then search): ``warmup_epochs`` epochs of one random path per step on the training
        split with the recipe and its own LR schedule, in ``<folder>/warmup/`` (resumable; the
        weights in ``final/``). ``supernet`` itself when the warm-up is 0 epochs."""
        folder = None if setup.folder is None else setup.folder / "warmup"
        if folder is not None and (folder / "final" / "supernet.json").exists():
            return load_weights(copy.deepcopy(supernet), folder / "final")
        if self.options.warmup_epochs == 0:
            return supernet
        supernet = copy.deepcopy(supernet)
        recipe = dataclasses.replace(setup.recipe, epochs=self.options.warmup_epochs)
        paths = ProxylessArch(supernet.space, generator=torch.Generator().manual_seed(setup.seed))
        generator = torch.Generator().manual_seed(setup.seed)
        loader = setup.train_loader()
        # The paper draws every path from the near-uniform p, zero op included (§3.2); every
        # other warmup_draw, the default "inherit" included, is a deviation.
        step = WarmupStep(
            supernet,
            paths,
            recipe.label_smoothing,
            generator,
            self.options.warmup_draw,
            recipe.epochs * len(loader),  # the Trainer's total_steps
        )
        trainer = setup.trainer(supernet, loader, step, folder, recipe)
        try:
            setup.train(trainer, "proxyless warm-up", "one random path per step", recipe)
        finally:
            supernet.activate(supernet.max_arch())
        if folder is not None and distributed.is_main():
            supernet.save(folder / "final")
        return supernet

    def loaders(self, setup: Setup) -> tuple[Any, Any]:
        """Weights on the training split, path logits on the held-out split."""
        train = setup.train_loader()
        arch_data = setup.train_loader(setup.data.heldout, setup.recipe.seed + 1)
        return train, arch_data

    def make_step(
        self, supernet, arch_data, budget: Budget, steps_per_epoch: int, epochs: int
    ) -> ProxylessStep:
        """The `ProxylessStep` of a search of ``budget`` (with fresh architecture logits)."""
        o = self.options
        arch_params, generator = self.new_arch_params(
            supernet, lambda space, g: ProxylessArch(space, generator=g)
        )
        return ProxylessStep(
            supernet,
            arch_params,
            arch_data,
            budget,
            steps_per_epoch=steps_per_epoch,
            generator=generator,
            warmup_epochs=0,
            mode=o.mode,
            arch_every=o.arch_every,
            arch_lr=o.arch_lr,
            loss_form=o.loss,
            loss_alpha=o.loss_alpha,
            loss_beta=o.loss_beta,
            loss_lambda=o.loss_lambda,
            band_weight=o.band_weight,
            tolerance=o.tolerance,
            label_smoothing=self.setup.recipe.label_smoothing,
            reinforce_samples=o.reinforce_samples,
            reinforce_exponent=o.reinforce_exponent,
        )

    def derive(self, arch_params: ProxylessArch, budget: Budget):
        return derive(arch_params, budget)

    def result_info(self, step: ProxylessStep) -> dict[str, Any]:
        """The gradient mode, the entropy of the path probabilities, the architecture steps
        taken, and the expected cost under the final probabilities."""
        arch_params = step.arch
        info: dict[str, Any] = {
            "mode": step.mode,
            "entropy": round(arch_params.entropy(), 4),
            "arch_steps": step.arch_steps,
        }
        if step.expected_cost is not None:
            with torch.no_grad():
                probs = arch_params.probs()
                expected = step.expected_cost(arch_params.space, probs, arch_params.base)
                info["expected_cost"] = float(expected)
        return info


__all__ = ["ProxylessNAS", "ProxylessOptions", "ProxylessStep", "WarmupStep", "check_op_units"]
