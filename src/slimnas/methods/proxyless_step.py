"""The `Trainer` steps of ProxylessNAS (Cai, Zhu & Han, ICLR 2019, arXiv 1812.00332; the
method and its deviations: `slimnas.methods.proxyless`): `ProxylessStep`, an architecture step
now and then (§3.2–3.3) before a weight step on one binarized path. The warm-up's
`WarmupStep` is in `slimnas.methods.proxyless_warmup`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from slimnas.cost.budget import Budget
from slimnas.dynamic.choice import Choice, gate_to_logit_grad
from slimnas.errors import ConfigError
from slimnas.methods.arch_step import ArchStep
from slimnas.methods.proxyless_paths import (
    LOSS_FORMS,
    ProxylessArch,
    Reinforce,
    cost_loss,
    rescale_pair,
    sample_pair,
)
from slimnas.methods.tas_arch import expected_form
from slimnas.train.losses import cross_entropy
from slimnas.train.step import Backward, Metrics, top1
from slimnas.train.trainer import TrainingError

MODES = ("two", "full", "reinforce")


# --------------------------------------------------------------------------------- step
class ProxylessStep(ArchStep):
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
        # β1 = 0: an entry whose gradient is 0 in a step (an unsampled path) gets no update.
        optimizer = torch.optim.Adam(
            arch_params.parameters(), lr=arch_lr, betas=(0.0, 0.999), eps=1e-8, weight_decay=0.0
        )
        super().__init__(arch_params, arch_loader, optimizer, generator)
        self.supernet = supernet
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
        self.expected_cost = expected_cost
        self.reinforce = Reinforce()
        self.arch_steps = 0
        self.last: Metrics = {
            k: float("nan")
            for k in ("arch_loss", "arch_acc", "cost_expected", "cost_argmax", "entropy")
        }

    # ------------------------------------------------------------------------ helpers
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
                "lower search.proxyless.arch_lr or the learning rate"
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

    def extra_state(self) -> dict[str, Any]:
        """The architecture-step count, REINFORCE's baseline and the last metrics."""
        return {
            "arch_steps": self.arch_steps,
            "baseline": self.reinforce.baseline,
            "last": {k: float(v) for k, v in self.last.items()},
        }

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.arch_steps = int(state["arch_steps"])
        self.reinforce.baseline = state["baseline"]
        self.last = dict(state["last"])


__all__ = ["MODES", "ProxylessStep"]
