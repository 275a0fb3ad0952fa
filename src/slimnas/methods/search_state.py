"""A search's progress on disk, so that a killed search resumes where it stopped and returns
what an uninterrupted one returns.

Random and evolutionary search keep one JSON file (``search/<method>.state.json`` in a run):
every arch scored so far with its score, and what the search needs to go on: for evolution,
the budgets finished, the current budget's archs seen, the generation drawn but not yet scored
and the random generator's state after drawing it. It is rewritten atomically after every
chunk of scored archs and every generation, on rank 0 only. Scores are JSON floats (exact
round trip), so a resumed search compares archs exactly as the uninterrupted one did.

A state belongs to one search: its fingerprint (space, budgets, settings, seed) must match,
else the file is refused with one line rather than mixed into another search.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from slimnas.cost.budget import Budget
from slimnas.errors import CheckpointError
from slimnas.io import atomic_write_text
from slimnas.methods.scoring import Score
from slimnas.space.space import Space
from slimnas.space.units import Arch
from slimnas.train import distributed

log = logging.getLogger(__name__)


def search_fingerprint(space: Space, budgets: Sequence[Budget], **settings: Any) -> str:
    """What a saved state must match to be resumed: the space, the budgets, the settings."""
    text = json.dumps(
        [space.to_json(), [(b.metric, b.limit) for b in budgets], sorted(settings.items())]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SearchState:
    """The scores and progress of one search, loaded from ``path`` when it holds this search's.

    Args:
        path: the JSON file; None keeps nothing (saving does nothing).
        method: the search's name (written in the file, checked on load).
        fingerprint: `search_fingerprint` of the search.

    Attributes:
        scores: every arch scored so far and its score (the searches' score cache).
        progress: the search's own JSON-able progress (empty for a new search).
        resumed: whether the state was read from ``path``.

    Raises:
        CheckpointError: ``path`` is unreadable, not a state of ``method``, or of another search.
    """

    def __init__(self, path: str | Path | None, method: str, fingerprint: str):
        self.path = None if path is None else Path(path)
        self.method, self.fingerprint = method, fingerprint
        self.scores: dict[Arch, Score] = {}
        self.progress: dict[str, Any] = {}
        self.resumed = False
        if self.path is not None and self.path.exists():
            self._load()

    def save(self) -> None:
        """Write the state (atomically, rank 0 only; nothing without a path)."""
        if self.path is None or not distributed.is_main():
            return
        state = {
            "method": self.method,
            "fingerprint": self.fingerprint,
            "scores": [[dict(a), s.accuracy, s.loss, s.samples] for a, s in self.scores.items()],
            "progress": self.progress,
        }
        atomic_write_text(self.path, json.dumps(state) + "\n")

    def _load(self) -> None:
        path = self.path
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise CheckpointError(
                f"cannot read the {self.method} search state {path} ({err}); delete it to "
                "search afresh"
            ) from None
        if not isinstance(state, dict) or state.get("method") != self.method:
            raise CheckpointError(
                f"{path} is not a {self.method} search state; delete it to search afresh"
            )
        if state.get("fingerprint") != self.fingerprint:
            raise CheckpointError(
                f"the search state {path} belongs to another space, other budgets or other "
                f"{self.method} settings; delete it or use another run directory"
            )
        try:
            self.scores = {
                Arch(arch): Score(float(accuracy), float(loss), int(samples))
                for arch, accuracy, loss, samples in state["scores"]
            }
            self.progress = dict(state["progress"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"the {self.method} search state {path} is malformed ({err}); delete it to "
                "search afresh"
            ) from None
        self.resumed = True
        log.info("resuming %s search: %d archs already scored", self.method, len(self.scores))


def generator_state(generator: torch.Generator) -> str:
    """A torch generator's state as text (base64 of its bytes)."""
    return base64.b64encode(generator.get_state().numpy().tobytes()).decode()


def set_generator_state(generator: torch.Generator, text: str) -> None:
    """Restore a state `generator_state` wrote. Changes ``generator``."""
    data = bytearray(base64.b64decode(text))
    generator.set_state(torch.frombuffer(data, dtype=torch.uint8).clone())


__all__ = ["SearchState", "generator_state", "search_fingerprint", "set_generator_state"]
