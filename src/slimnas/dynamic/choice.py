"""`Choice`: a block with candidate operators, the runtime side of an `OpUnit`.

A model's author places ``slimnas.Choice({"k3e3": block_a, "k5e6": block_b, ...})`` where an
operator is searched. In hard mode the active candidate runs. In binarized mode (ProxylessNAS §3.2,
Cai et al. 2019, arXiv 1812.00332) the output is Σ_k g_k · o_k(x) over the sampled paths with
binary gates g (one-hot on the active path); only the active path keeps its graph for the
weights, the others are detached, so autograd yields exactly the paper's gate gradient
∂L/∂g_k = ⟨o_k(x), ∂L/∂y⟩ for every sampled path. `gate_to_logit_grad` maps it to the
architecture logits through the softmax Jacobian.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from slimnas.errors import ArchError


class Zero(nn.Module):
    """The zero operator: output zeros shaped like the input (an identity-shortcut block whose
    body is Zero computes ``x + 0``, i.e. it is skipped)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class Choice(nn.ModuleDict):
    """Named candidate modules that take the same input and give outputs of the same shape."""

    def __init__(self, candidates: Mapping[str, nn.Module]):
        if not candidates:
            raise ArchError("a Choice needs at least one candidate module")
        super().__init__(candidates)
        self.active: str = next(iter(candidates))
        self.paths: tuple[str, ...] = ()
        self.gates: torch.Tensor | None = None

    def activate(self, name: str) -> None:
        if name not in self:
            raise ArchError(f"Choice has no candidate {name!r}; it has {list(self.keys())}")
        self.active = name
        self.paths, self.gates = (), None

    def binarize(self, paths: Sequence[str], active: str) -> torch.Tensor:
        """Run ``paths`` with binary gates, ``active`` being the one whose weights learn.

        Returns the gate tensor; after backward its ``.grad`` holds ⟨o_k, ∂L/∂y⟩ per path.
        """
        for name in (*paths, active):
            if name not in self:
                raise ArchError(f"Choice has no candidate {name!r}; it has {list(self.keys())}")
        if active not in paths:
            raise ArchError(f"active path {active!r} must be one of the sampled paths {paths}")
        self.active, self.paths = active, tuple(paths)
        device = next((p.device for p in self.parameters()), torch.device("cpu"))
        gates = torch.zeros(len(paths), device=device)
        gates[self.paths.index(active)] = 1.0
        self.gates = gates.requires_grad_(True)
        return self.gates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gates is None:
            return self[self.active](x)
        out = None
        for gate, name in zip(self.gates, self.paths):
            if name == self.active:
                o = self[name](x)
            else:  # a constant for the gate's gradient: no graph, nothing saved inside it
                with torch.no_grad():
                    o = self[name](x)
            term = gate * o
            out = term if out is None else out + term
        return out


def gate_to_logit_grad(gate_grad: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """ProxylessNAS Eq. 4: ∂L/∂α_i ≈ Σ_j ∂L/∂g_j · p_j (δ_ij − p_i) = p_i (g'_i − Σ_j g'_j p_j).

    ``probs`` are the path probabilities over the same paths as ``gate_grad`` (all paths, or the
    two sampled ones renormalised in the two-path mode).
    """
    return probs * (gate_grad - (gate_grad * probs).sum())
