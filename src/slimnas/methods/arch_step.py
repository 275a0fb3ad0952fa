"""`ArchStep`: the state that the `Trainer` steps of TAS and ProxylessNAS keep between
iterations — the architecture logits, their Adam optimiser, the generator of the samples, the
step count and the place in the held-out loader the architecture learns on — saved in every
checkpoint, so that a resumed search continues exactly where the interrupted one stopped.

The weights are the `Trainer`'s; each step's ``__call__`` (architecture update, then the weight
batch's loss) is its method's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from slimnas.errors import ConfigError
from slimnas.train.rng import generator_state, set_generator_state


class CyclingBatches:
    """The next batch of a loader on every `next` call, starting its next epoch when one ends;
    its place is the loader's own (``state_dict`` / ``load_state_dict``), so a resumed step
    reads on where the interrupted one stopped."""

    def __init__(self, loader: Any):
        self.loader = loader
        self._batches = None

    def next(self):
        if self._batches is None:
            self._batches = iter(self.loader)
        batch = next(self._batches, None)
        if batch is None:  # the loader's epoch is exhausted: its next one
            self._batches = iter(self.loader)
            batch = next(self._batches, None)
        if batch is None:
            raise ConfigError(
                "the architecture steps' held-out loader gives no batch: hold out more images "
                "(data.heldout) or lower the batch size"
            )
        return batch

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: Any) -> None:
        """Move the loader to ``state``; the next batch comes from there."""
        self.loader.load_state_dict(state)
        self._batches = None


class ArchStep:
    """Base of a step that learns architecture logits beside the weights (module doc).

    Args:
        arch_params: the module of logits (``.logits``, a `ParameterList`).
        arch_loader: batches the architecture learns on.
        optimizer: Adam over ``arch_params`` (each method its own betas).
        generator: the samples' randomness; a fresh one when None.
    """

    def __init__(
        self,
        arch_params: torch.nn.Module,
        arch_loader: Any,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator | None,
    ):
        self.arch = arch_params
        self._held = CyclingBatches(arch_loader)
        self.optimizer = optimizer
        self.generator = generator if generator is not None else torch.Generator()
        self.steps = 0

    def _arch_batch(self):
        return self._held.next()

    def apply_arch_grads(self, grads) -> None:
        """Set the logits' gradients to ``grads`` and take one Adam step."""
        for param, grad in zip(self.arch.parameters(), grads):
            param.grad = grad
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def extra_state(self) -> dict[str, Any]:
        """What a subclass keeps besides the shared state."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what `extra_state` gave."""

    def state_dict(self) -> dict[str, Any]:
        """Logits, Adam state, step count, generator, the held-out loader's place (and the
        subclass's `extra_state`)."""
        return {
            "logits": {str(i): p.detach().clone() for i, p in enumerate(self.arch.logits)},
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
            "generator": generator_state(self.generator),
            "arch_loader": self._held.state_dict(),
            **self.extra_state(),
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
        self.load_extra_state(state)


__all__ = ["ArchStep", "CyclingBatches"]
