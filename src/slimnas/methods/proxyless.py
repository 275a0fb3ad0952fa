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
- **one schedule**: warm-up and search share the Trainer's LR schedule (the authors restart a
  cosine after a 40-epoch warm-up); the architecture step of an iteration comes before its weight
  step; the architecture forward uses train-mode BatchNorm, as the authors'.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimnas.cost.budget import Budget
from slimnas.dynamic.choice import Choice, gate_to_logit_grad
from slimnas.errors import ConfigError
from slimnas.methods.one_budget import CyclingBatches, OneBudgetSearch
from slimnas.methods.proxyless_paths import (
    LOSS_FORMS,
    ProxylessArch,
    Reinforce,
    cost_loss,
    derive,
    rescale_pair,
    sample_pair,
)
from slimnas.methods.result import Result
from slimnas.methods.tas import expected_form
from slimnas.space.space import Space
from slimnas.train.losses import cross_entropy
from slimnas.train.rng import generator_state, set_generator_state
from slimnas.train.step import Backward, Metrics, top1
from slimnas.train.trainer import TrainingError

MODES = ("two", "full", "reinforce")

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------- step
class ProxylessStep:
    """The `Trainer` step of a ProxylessNAS search (module doc): now and then an architecture
    step, then a weight step on one binarized path.

    Args:
        supernet: the supernet the Trainer trains.
        arch_params: the `ProxylessArch` being learned (not in the Trainer's optimizer).
        arch_loader: batches of the held-out split the architecture learns on.
        budget: the target; gradient modes need an expected form of its cost
            (`slimnas.methods.tas.expected_form`).
        steps_per_epoch: of the Trainer (the warm-up is counted in epochs).
        warmup_epochs: epochs of weight steps only before the first architecture step.
        mode: ``"two"``, ``"full"`` or ``"reinforce"`` (module doc).
        arch_every: weight steps per architecture step.
        arch_lr: Adam's learning rate on the logits (β = (0, 0.999), the authors').
        loss_form, loss_alpha, loss_beta, loss_lambda, band_weight, tolerance: the cost term
            (`cost_loss`).
        label_smoothing: of the weight steps' CE (the architecture steps use plain CE).
        reinforce_samples: archs per REINFORCE update (the authors: 10).
        reinforce_exponent: w of the reward acc · (T / cost)^w (the authors: 0.1).
        generator: path draws; saved in checkpoints.
        expected_cost: the expected form of the budget's cost; default `expected_form`.

    Metrics: ``acc`` (weight batch); from the last architecture step: ``arch_loss``, ``arch_acc``,
    ``cost_expected`` (E[cost] / budget), ``cost_argmax`` (argmax arch's cost / budget) and
    ``entropy`` (`ProxylessArch.entropy`); ``arch_step`` is 1 on iterations that ran one.
    """

    def __init__(
        self,
        supernet,
        arch_params: ProxylessArch,
        arch_loader: Any,
        budget: Budget,
        *,
        steps_per_epoch: int,
        warmup_epochs: float = 0.0,
        mode: str = "two",
        arch_every: int = 5,
        arch_lr: float = 1e-3,
        loss_form: str = "mul_log",
        loss_alpha: float = 0.2,
        loss_beta: float = 0.3,
        loss_lambda: float = 0.1,
        band_weight: float = 2.0,
        tolerance: float = 0.05,
        label_smoothing: float = 0.1,
        reinforce_samples: int = 10,
        reinforce_exponent: float = 0.1,
        generator: torch.Generator | None = None,
        expected_cost: Callable[..., torch.Tensor] | None = None,
    ):
        if mode not in MODES:
            raise ConfigError(f"unknown ProxylessNAS mode {mode!r}; use one of {', '.join(MODES)}")
        if loss_form not in LOSS_FORMS:
            raise ConfigError(
                f"unknown ProxylessNAS loss form {loss_form!r}; use one of {', '.join(LOSS_FORMS)}"
            )
        if arch_every < 1:
            raise ConfigError(f"arch_every must be at least 1, got {arch_every}")
        if expected_cost is None:
            try:
                expected_cost = expected_form(budget)
            except ConfigError:
                if mode != "reinforce":  # REINFORCE needs only the budget's own cost
                    raise
        self.supernet = supernet
        self.arch = arch_params
        self._held = CyclingBatches(arch_loader)
        self.budget = budget
        self.mode = mode
        self.arch_every = arch_every
        self.warmup_steps = round(warmup_epochs * steps_per_epoch)
        self.loss_options = {
            "form": loss_form,
            "alpha": loss_alpha,
            "beta": loss_beta,
            "lam": loss_lambda,
            "band_weight": band_weight,
            "tolerance": tolerance,
        }
        self.label_smoothing = label_smoothing
        self.reinforce_samples = reinforce_samples
        self.reinforce_exponent = reinforce_exponent
        self.generator = generator if generator is not None else torch.Generator()
        self.expected_cost = expected_cost
        # β1 = 0: an entry whose gradient is 0 in a step (an unsampled path) gets no update.
        self.optimizer = torch.optim.Adam(
            arch_params.parameters(), lr=arch_lr, betas=(0.0, 0.999), eps=1e-8, weight_decay=0.0
        )
        self.reinforce = Reinforce()
        self.steps = 0
        self.arch_steps = 0
        self.last: Metrics = {
            k: float("nan")
            for k in ("arch_loss", "arch_acc", "cost_expected", "cost_argmax", "entropy")
        }

    # ------------------------------------------------------------------------ helpers
    def _arch_batch(self):
        return self._held.next()

    def _choice(self, name: str) -> Choice:
        return self.supernet.model.get_submodule(name)

    def _wants_arch_step(self) -> bool:
        after = self.steps - self.warmup_steps
        return after >= 0 and after % self.arch_every == 0

    # ---------------------------------------------------------------- architecture step
    def arch_step(self, model: nn.Module) -> Metrics:
        """One architecture update on the next held-out batch (module doc, step 2)."""
        images, labels = self._arch_batch()
        if self.mode == "reinforce":
            metrics = self._reinforce_step(model, images, labels)
        else:
            metrics = self._gradient_step(model, images, labels)
        self.arch_steps += 1
        space = self.arch.space
        metrics["cost_argmax"] = self.budget.cost(space, self.arch.argmax()) / self.budget.limit
        metrics["entropy"] = self.arch.entropy()
        self.last = metrics
        return metrics

    def _gradient_step(self, model: nn.Module, images, labels) -> Metrics:
        metrics, pairs = self.arch_gradients(model, images, labels)
        logits_list = list(self.arch.logits)
        old = [lg.detach().clone() for lg in logits_list]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.mode == "two":
            for logits, before, pair in zip(logits_list, old, pairs):
                rescale_pair(logits, before, pair)
        return metrics

    def arch_gradients(self, model: nn.Module, images, labels) -> tuple[Metrics, list[list[int]]]:
        """Sample the paths, run the gated forward and set every logit's ``.grad`` (Eq. 4 on
        the gate gradients plus the cost term's direct gradient). Returns the metrics and, per
        unit, the candidate indices that ran with gates; the supernet is left in hard mode at
        the active paths."""
        space, arch = self.arch.space, self.arch
        picks, used, probs = {}, {}, {}
        for unit, logits in zip(arch.units, arch.logits):
            if self.mode == "two":
                pair, p_used, active = sample_pair(logits, self.generator)
                paths, picks[unit.name] = pair, pair[active]
            else:  # full: every path runs with its gate, the Jacobian over the full softmax
                p_used = logits.softmax(-1)
                paths = list(range(len(unit.choices)))
                picks[unit.name] = int(
                    torch.multinomial(p_used.detach().cpu(), 1, generator=self.generator)
                )
            index = torch.tensor(paths, device=logits.device)
            # §3.3: E[cost] under the probabilities the gates use (pitfall: never rebuilt from
            # floats, so it stays differentiable in α).
            probs[unit.name] = torch.zeros_like(logits).index_add(0, index, p_used)
            used[unit.name] = (index, p_used)
        self.supernet.activate(arch.arch_of(picks))
        gates = []
        for unit in arch.units:
            index, _ = used[unit.name]
            paths = [unit.choices[i] for i in index.tolist()]
            gates.append(self._choice(unit.name).binarize(paths, unit.choices[picks[unit.name]]))
        out = model(images)
        ce = cross_entropy(out, labels)
        expected = self.expected_cost(space, probs, arch.base)
        actual = None
        if self.loss_options["form"] == "band":  # the band's side is the argmax arch's cost
            actual = self.budget.cost(space, arch.argmax())
        loss = cost_loss(ce, expected, self.budget.limit, actual=actual, **self.loss_options)
        if not bool(torch.isfinite(loss.detach())):
            raise TrainingError(
                f"the ProxylessNAS architecture loss is {float(loss)} at step {self.steps + 1}; "
                "lower search.proxyless_arch_lr or the learning rate"
            )
        logits_list = list(arch.logits)
        grads = torch.autograd.grad(loss, gates + logits_list, allow_unused=True)
        gate_grads, direct = grads[: len(gates)], grads[len(gates) :]
        for unit, logits, gate_grad, grad in zip(arch.units, logits_list, gate_grads, direct):
            index, p_used = used[unit.name]
            total = torch.zeros_like(logits) if grad is None else grad.clone()
            if gate_grad is not None:  # Eq. 4: gate gradients through the softmax Jacobian
                mapped = gate_to_logit_grad(gate_grad.to(logits.dtype), p_used.detach())
                total.index_add_(0, index, mapped)
            logits.grad = total
        for unit in arch.units:  # back to hard mode
            self._choice(unit.name).activate(unit.choices[picks[unit.name]])
        metrics = {
            "arch_loss": float(loss.detach()),
            "arch_acc": float(top1(out.detach(), labels)),
            "cost_expected": float(expected.detach()) / self.budget.limit,
        }
        return metrics, [used[u.name][0].tolist() for u in arch.units]

    def _reinforce_step(self, model: nn.Module, images, labels) -> Metrics:
        space, arch = self.arch.space, self.arch
        picks, rewards, accs = [], [], []
        with torch.no_grad():
            for _ in range(self.reinforce_samples):
                pick = arch.sample(self.generator)
                sampled = arch.arch_of(pick)
                self.supernet.activate(sampled)
                acc = float(top1(model(images), labels))
                cost = self.budget.cost(space, sampled)
                # §3.2.2: reward acc · (T / cost)^w (MnasNet's trade-off, w = 0.1 here).
                rewards.append(acc * (self.budget.limit / cost) ** self.reinforce_exponent)
                picks.append([pick[n] for n in arch.names])
                accs.append(acc)
        baseline = self.reinforce.update(list(arch.logits), picks, rewards)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        expected = float("nan")
        if self.expected_cost is not None:  # logged only: REINFORCE does not need it
            with torch.no_grad():
                expected = float(self.expected_cost(space, arch.probs(), arch.base))
        return {
            "arch_loss": -(sum(rewards) / len(rewards) - baseline),
            "arch_acc": sum(accs) / len(accs),
            "cost_expected": expected / self.budget.limit,
        }

    # ---------------------------------------------------------------------- the step
    def __call__(self, model: nn.Module, batch: Any, backward: Backward) -> tuple:
        ran = self._wants_arch_step()
        if ran:
            self.arch_step(model)
        # Weight step (§3.2): one path per unit drawn from p, the others do not run.
        images, labels = batch
        self.supernet.activate(self.arch.arch_of(self.arch.sample(self.generator)))
        out = model(images)
        loss = cross_entropy(out, labels, self.label_smoothing)
        self.steps += 1
        metrics: Metrics = {"acc": top1(out.detach(), labels), "arch_step": float(ran)}
        metrics.update(self.last)
        return loss, metrics

    def state_dict(self) -> dict[str, Any]:
        """Logits, Adam state, counters, baseline, generator and the held-out loader's place."""
        return {
            "logits": {str(i): p.detach().clone() for i, p in enumerate(self.arch.logits)},
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
            "arch_steps": self.arch_steps,
            "baseline": self.reinforce.baseline,
            "last": {k: float(v) for k, v in self.last.items()},
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
        self.arch_steps = int(state["arch_steps"])
        self.reinforce.baseline = state["baseline"]
        self.last = dict(state["last"])
        set_generator_state(self.generator, state["generator"])
        self._held.load_state_dict(state["arch_loader"])


class WarmupStep:
    """Weight steps only, one path per unit drawn from ``arch_params``' p (§3.2; near uniform
    before any architecture step): the warm-up the authors run once before their searches
    (40 epochs, its own cosine), which `slimnas run` shares between its budgets' searches.

    Args:
        supernet, arch_params: as `ProxylessStep`.
        label_smoothing: of the CE.
        generator: path draws; saved in checkpoints.

    Metrics: ``acc`` (weight batch).
    """

    def __init__(
        self,
        supernet,
        arch_params: ProxylessArch,
        label_smoothing: float = 0.1,
        generator: torch.Generator | None = None,
    ):
        self.supernet = supernet
        self.arch = arch_params
        self.label_smoothing = label_smoothing
        self.generator = generator if generator is not None else torch.Generator()

    def __call__(self, model: nn.Module, batch: Any, backward: Backward) -> tuple:
        images, labels = batch
        self.supernet.activate(self.arch.arch_of(self.arch.sample(self.generator)))
        out = model(images)
        loss = cross_entropy(out, labels, self.label_smoothing)
        return loss, {"acc": top1(out.detach(), labels)}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": generator_state(self.generator)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        set_generator_state(self.generator, state["generator"])


# ------------------------------------------------------------------------------- method
class ProxylessNAS(OneBudgetSearch):
    """ProxylessNAS on a supernet (module doc): ``fit`` searches one budget, ``search`` derives
    the arch.

    ``ProxylessNAS(epochs=10).fit(supernet, weight_batches, arch_batches, "latency_ms<=3")``
    with a latency budget parsed with its table target (`Budget.parse(..., latency=target)`).

    Args:
        epochs, lr, weight_decay: the weight training (SGD, Nesterov, cosine) of the search,
            warm-up included.
        warmup_epochs, mode, arch_every, arch_lr, loss_form, loss_alpha, loss_beta,
            loss_lambda, band_weight, tolerance, label_smoothing, reinforce_samples,
            reinforce_exponent: see
            `ProxylessStep`.
        seed: initial logits, path draws and the weights' training.
        run_dir: checkpoints of the search; an interrupted `fit` resumes there.
        progress: progress bar.
        trainer_options: further `Trainer` keyword arguments.
    """

    name = "proxyless"

    def __init__(
        self,
        *,
        epochs: int = 10,
        lr: float = 0.05,
        weight_decay: float = 4e-5,
        warmup_epochs: float = 1.0,
        mode: str = "two",
        arch_every: int = 5,
        arch_lr: float = 1e-3,
        loss_form: str = "mul_log",
        loss_alpha: float = 0.2,
        loss_beta: float = 0.3,
        loss_lambda: float = 0.1,
        band_weight: float = 2.0,
        tolerance: float = 0.05,
        label_smoothing: float = 0.1,
        reinforce_samples: int = 10,
        reinforce_exponent: float = 0.1,
        seed: int = 0,
        run_dir: str | Path | None = None,
        progress: bool = True,
        trainer_options: Mapping[str, Any] | None = None,
    ):
        if warmup_epochs >= epochs:
            raise ConfigError(
                f"proxyless warm-up ({warmup_epochs} epochs) leaves no search in {epochs} "
                "epochs; lower the warm-up or add epochs"
            )
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.step_options = {
            "warmup_epochs": warmup_epochs,
            "mode": mode,
            "arch_every": arch_every,
            "arch_lr": arch_lr,
            "loss_form": loss_form,
            "loss_alpha": loss_alpha,
            "loss_beta": loss_beta,
            "loss_lambda": loss_lambda,
            "band_weight": band_weight,
            "tolerance": tolerance,
            "label_smoothing": label_smoothing,
            "reinforce_samples": reinforce_samples,
            "reinforce_exponent": reinforce_exponent,
        }
        self.seed = seed
        self.run_dir = run_dir
        self.progress = progress
        self.trainer_options = dict(trainer_options or {})
        self.arch_params: ProxylessArch | None = None
        self._step: ProxylessStep | None = None
        self.budget: Budget | None = None

    def make_step(
        self, supernet, arch_loader, budget: Budget, steps_per_epoch: int
    ) -> ProxylessStep:
        """The `ProxylessStep` of a search of ``budget`` (with fresh architecture logits)."""
        generator = torch.Generator().manual_seed(self.seed)
        arch_params = ProxylessArch(supernet.space, generator=generator)
        arch_params.to(next(supernet.parameters()).device)
        self.arch_params, self.budget = arch_params, budget
        self._step = ProxylessStep(
            supernet,
            arch_params,
            arch_loader,
            budget,
            steps_per_epoch=steps_per_epoch,
            generator=generator,
            **self.step_options,
        )
        return self._step

    def result(self, scorer=None, method: str | None = None) -> Result:
        """The `Result` of the fitted search (derived arch, probabilities, adjustments)."""
        space, budget = self.arch_params.space, self.budget
        arch, steps = derive(self.arch_params, budget)
        argmax = self.arch_params.argmax()
        info: dict[str, Any] = {
            "mode": self.step_options["mode"],
            "probabilities": self.arch_params.table(),
            "entropy": round(self.arch_params.entropy(), 4),
            "argmax_cost": budget.cost(space, argmax),
            "arch_steps": self._step.arch_steps if self._step else 0,
            "adjusted": steps,
        }
        if self._step is not None and self._step.expected_cost is not None:
            with torch.no_grad():
                probs = self.arch_params.probs()
                info["expected_cost"] = float(
                    self._step.expected_cost(space, probs, self.arch_params.base)
                )
        if steps:
            info["note"] = f"argmax broke the budget; {len(steps)} unit(s) moved to fit"
        score = scorer.score(arch) if scorer is not None else None
        return Result.of(method or self.name, budget, space, arch, score, **info)


def check_op_space(space: Space, methods: Sequence[str], fixed_op: str) -> None:
    """Refuse, before any training, ``proxyless`` or ``fixed`` on a space without the op units
    they need (`ConfigError`)."""
    wanted = [m for m in ("proxyless", "fixed") if m in methods]
    if wanted and not space.op_units():
        raise ConfigError(
            f"{' and '.join(wanted)} search op units, and model has none: use a model whose "
            "blocks are slimnas.Choice (model.name = 'proxyless_cifar', ...)"
        )
    if "fixed" in methods and not any(fixed_op in u.choices for u in space.op_units()):
        known = sorted({c for u in space.op_units() for c in u.choices})
        raise ConfigError(
            f"search.fixed_op {fixed_op!r} is no candidate of the space's op units; use one "
            f"of {', '.join(known)}"
        )


def fixed_op_results(space: Space, budgets: Sequence[Budget], op: str, scorer=None) -> list[Result]:
    """The hand-designed reference of an op space: every op unit that has candidate ``op``
    takes it (``"k3e6"``: MobileNetV2's blocks), the rest stay at the max arch. It is one arch,
    not a search, so it gets one `Result`: under the budget it fits most tightly (highest cost /
    limit), or, when it fits none, under the loosest one, marked over budget (``info["over"]``:
    its cost / limit): a reference is reported, not made to fit. ``info["reference"]`` is True.

    Raises:
        ConfigError: no op unit of ``space`` has candidate ``op``.
    """
    check_op_space(space, ["fixed"], op)
    units = [u for u in space.op_units() if op in u.choices]
    arch = space.max_arch().merged({u.name: op for u in units})
    share = {b.text: b.cost(space, arch) / b.limit for b in budgets}
    fitting = [b for b in budgets if b.fits(space, arch)]
    info: dict[str, Any] = {"op": op, "reference": True}
    if fitting:
        budget = max(fitting, key=lambda b: share[b.text])
    else:
        budget = min(budgets, key=lambda b: share[b.text])
        info["over"] = round(share[budget.text], 4)
        log.warning(
            "fixed: every op unit at %s fits none of the budgets; reported under %s at %.0f %%",
            op,
            budget.text,
            100 * share[budget.text],
        )
    score = scorer.score(arch) if scorer is not None else None
    return [Result.of("fixed", budget, space, arch, score, **info)]


__all__ = [
    "LOSS_FORMS",
    "MODES",
    "ProxylessArch",
    "ProxylessNAS",
    "ProxylessStep",
    "Reinforce",
    "WarmupStep",
    "cost_loss",
    "check_op_space",
    "derive",
    "fixed_op_results",
    "rescale_pair",
    "sample_pair",
]
