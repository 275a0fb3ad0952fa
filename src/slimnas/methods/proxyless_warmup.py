"""ProxylessNAS's weight warm-up (Cai, Zhu & Han, ICLR 2019, arXiv 1812.00332, §3.2): weight
steps only, one path per unit, before the searches (`WarmupStep`), with the authors' draw and
three that are not the paper's (`WARMUP_DRAWS`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from slimnas.dynamic.choice import Zero
from slimnas.errors import ConfigError
from slimnas.methods.proxyless_paths import ProxylessArch
from slimnas.models.proxyless import MBConv
from slimnas.train.losses import cross_entropy
from slimnas.train.rng import generator_state, set_generator_state
from slimnas.train.step import Backward, top1

WARMUP_DRAWS = ("paper", "no_zero", "largest_first", "inherit")


def _inheritors(choice) -> int:
    """How many candidates of ``choice`` can take a slice of its first one's weights."""
    first, *others = choice.values()
    return sum(isinstance(op, MBConv) for op in others) if isinstance(first, MBConv) else 0


class WarmupStep:
    """Weight steps only, one path per unit drawn from ``arch_params``' p (§3.2; near uniform
    before any architecture step): the warm-up the authors run once before their searches
    (40 epochs, its own cosine), which `slimnas run` shares between its budgets' searches.

    Draws (``draw``):

    - ``"paper"``: every unit's candidate from p, zero op included (the authors');
    - ``"no_zero"``: from p renormalised over the non-zero candidates;
    - ``"largest_first"`` (not in the paper, a curriculum): a unit draws from p renormalised over
      its first n candidates (the candidates' order in the `Choice`: the ProxylessNAS models
      put the largest first and ``zero`` last), n growing from 1 at the first step to all of
      them at half of ``total_steps``, then the paper's draw;
    - ``"inherit"`` (not in the paper; Once-for-All's progressive shrinking, Cai et al. 2020,
      §3.2, in two phases): the first half of ``total_steps`` trains only every unit's first
      (largest) candidate, as a fixed net; then every other candidate that can
      (`MBConv.inherit_from`) takes a slice of its unit's largest one's trained weights, and the
      paper's draw follows. A unit with no candidate that can inherit (not MBConvs) draws the
      paper's way throughout. Measured in docs/results/proxyless_warmup.md: the candidates of a
      block then start as nearly one function instead of unrelated random ones.

    Args:
        supernet, arch_params: as `ProxylessStep`.
        label_smoothing: of the CE.
        generator: path draws; saved in checkpoints.
        draw: one of `WARMUP_DRAWS`.
        total_steps: the warm-up's steps (``"largest_first"`` and ``"inherit"`` need them).

    Metrics: ``acc`` (weight batch).
    """

    def __init__(
        self,
        supernet,
        arch_params: ProxylessArch,
        label_smoothing: float = 0.1,
        generator: torch.Generator | None = None,
        draw: str = "paper",
        total_steps: int | None = None,
    ):
        if draw not in WARMUP_DRAWS:
            raise ConfigError(f"warm-up draw must be one of {WARMUP_DRAWS}, got {draw!r}")
        if draw in ("largest_first", "inherit") and not total_steps:
            raise ConfigError(f"the {draw} warm-up draw needs the warm-up's total_steps")
        self.supernet = supernet
        self.arch = arch_params
        self.label_smoothing = label_smoothing
        self.generator = generator if generator is not None else torch.Generator()
        self.draw, self.total_steps = draw, total_steps
        self.switch = (total_steps or 0) // 2  # "inherit": the step the other candidates join
        self.steps = 0
        model = getattr(supernet, "model", supernet)
        self.choices = [model.get_submodule(unit.name) for unit in arch_params.units]
        # "inherit" holds back only the units whose other candidates can inherit (MBConvs)
        self.inheriting = [_inheritors(choice) > 0 for choice in self.choices]
        self.zero = [
            torch.tensor([isinstance(choice[name], Zero) for name in unit.choices])
            for choice, unit in zip(self.choices, arch_params.units)
        ]

    def allowed(self) -> list[torch.Tensor]:
        """Per unit, which candidates this step may draw (a bool mask in the unit's order)."""
        masks = []
        for zero, inheriting in zip(self.zero, self.inheriting):
            mask = torch.ones(len(zero), dtype=torch.bool)
            if self.draw == "no_zero" and not zero.all():
                mask = ~zero
            elif self.draw == "inherit" and self.steps < self.switch and inheriting:
                mask[1:] = False
            elif self.draw == "largest_first":
                ramp = max(1.0, self.total_steps / 2)
                n = max(1, math.ceil(len(zero) * (self.steps + 1) / ramp))
                mask[n:] = False
            masks.append(mask)
        return masks

    def inherit(self) -> int:
        """Every unit's candidates that can (`MBConv.inherit_from`) take a slice of the unit's
        first candidate's weights; returns how many did."""
        inherited = 0
        for choice, inheriting in zip(self.choices, self.inheriting):
            if inheriting:
                first, *others = choice.values()
                for op in others:
                    if isinstance(op, MBConv):
                        op.inherit_from(first)
                        inherited += 1
        return inherited

    def sample(self) -> dict[str, int]:
        """One candidate index per unit, drawn as ``draw`` says."""
        if self.draw == "paper" or (self.draw == "inherit" and self.steps >= self.switch):
            return self.arch.sample(self.generator)
        picks = {}
        for name, logits, mask in zip(self.arch.names, self.arch.logits, self.allowed()):
            probs = logits.detach().softmax(-1).cpu() * mask
            picks[name] = int(torch.multinomial(probs, 1, generator=self.generator))
        return picks

    def __call__(self, model: nn.Module, batch: Any, backward: Backward) -> tuple:
        images, labels = batch
        if self.draw == "inherit" and self.steps == self.switch:
            self.inherit()
        self.supernet.activate(self.arch.arch_of(self.sample()))
        self.steps += 1
        out = model(images)
        loss = cross_entropy(out, labels, self.label_smoothing)
        return loss, {"acc": top1(out.detach(), labels)}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": generator_state(self.generator), "steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        set_generator_state(self.generator, state["generator"])
        self.steps = int(state.get("steps", 0))


__all__ = ["WARMUP_DRAWS", "WarmupStep"]
