"""`IterableBatches`: any re-iterable of ``(images, labels)`` batches as a resumable loader.

slimnas trains and scores on its own `BatchLoader` (epochs, ``len``, a ``state_dict`` naming the
next batch). A user who already has a ``torch.utils.data.DataLoader`` (workers, a
``DistributedSampler`` under torchrun, their own transforms) passes it instead: the `Trainer`,
`ArchScorer`, `recalibrate_bn`, `evaluate` and `Setup` wrap it with `as_batch_loader`, which
gives it the same protocol:

- an epoch counter; each ``for batch in loader`` is one pass of the wrapped iterable, and the
  wrapper calls ``set_epoch(epoch)`` on it or on its sampler first (``DistributedSampler`` and any
  sampler with that method reshuffle per epoch that way);
- ``len`` from the iterable (or ``length=``): the Trainer's schedule needs it;
- ``state_dict`` / ``load_state_dict``: the epoch and the batches already taken. A resumed
  loader starts the epoch again and *skips* (reads and drops) those batches, so it continues at
  the same batch when the epoch's order is a function of the epoch: a sampler with
  ``set_epoch``, or one that draws from a generator. For the latter the wrapper saves the
  states of the DataLoader's and the sampler's generators (and of torch's global one, which an
  unseeded ``DataLoader(shuffle=True)`` and its workers' seeds draw from) as they were when the
  epoch began, and replays them on resume;
- batches moved to ``device`` (the model's) when they are elsewhere.

What is exact and what is not compared with `BatchLoader` is in docs/data.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from slimnas.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

# The methods that make an object a slimnas loader already (BatchLoader's protocol).
_PROTOCOL = ("epoch", "position", "set_epoch", "state_dict", "load_state_dict", "__len__")


def is_batch_loader(batches: Any) -> bool:
    """True when ``batches`` has `BatchLoader`'s protocol (epoch, position, set_epoch, len,
    state_dict, load_state_dict) and needs no wrapping."""
    return all(hasattr(batches, name) for name in _PROTOCOL)


def as_batch_loader(batches: Any, device: torch.device | str | None = None) -> Any:
    """``batches`` itself when it is a slimnas loader, else an `IterableBatches` over it moving
    batches to ``device``."""
    if is_batch_loader(batches):
        return batches
    return IterableBatches(batches, device=device)


def to_device(batch: Any, device: torch.device | str | None) -> Any:
    """``batch`` (a tensor, or a tuple/list of them) with its tensors on ``device`` (no copy of
    those already there; asynchronous from pinned memory)."""
    if device is None:
        return batch
    device = torch.device(device)
    if isinstance(batch, torch.Tensor):
        if batch.device == device:
            return batch
        return batch.to(device, non_blocking=batch.is_pinned())
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(item, device) for item in batch)
    return batch


def model_device(model: torch.nn.Module) -> torch.device | None:
    """The device of ``model``'s first parameter (or buffer); None when it has neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return None


def moved(batches: Iterable, device: torch.device | str | None) -> Iterator:
    """The batches of ``batches`` on ``device``, one at a time."""
    for batch in batches:
        yield to_device(batch, device)


def images_between(batches: Iterable, start: int, stop: int) -> list:
    """The ``(images, labels)`` batches of images ``start … stop−1`` of one pass of
    ``batches`` (batches cut where the range cuts them); stops reading at ``stop``."""
    taken, seen = [], 0
    for images, labels in batches:
        first, last = max(start - seen, 0), min(stop - seen, len(labels))
        if first < last:
            taken.append((images[first:last], labels[first:last]))
        seen += len(labels)
        if seen >= stop:
            break
    return taken


class IterableBatches:
    """A re-iterable of batches (a ``DataLoader``) with `BatchLoader`'s protocol (module doc).

    Args:
        batches: iterated once per epoch; ``len(batches)`` is the number of batches of an epoch
            unless ``length`` is given.
        device: where batches go (the Trainer sets the model's when this is None).
        length: batches per epoch, for iterables without ``len``.

    Attributes:
        rank, world_size: those of a ``DistributedSampler`` (``num_replicas``), when the
            iterable's sampler is one; the Trainer checks them against the process group.
    """

    def __init__(
        self,
        batches: Iterable,
        *,
        device: torch.device | str | None = None,
        length: int | None = None,
    ) -> None:
        if isinstance(batches, Iterator):
            raise ConfigError(
                "the loader is a one-pass iterator; pass something iterable once per epoch, "
                "such as a torch.utils.data.DataLoader"
            )
        if length is None:
            try:
                length = len(batches)  # type: ignore[arg-type]
            except TypeError:
                raise ConfigError(
                    f"cannot tell how many batches an epoch of {type(batches).__name__} has; "
                    "wrap it as IterableBatches(batches, length=...)"
                ) from None
        self.batches = batches
        self.device = torch.device(device) if device is not None else None
        self.length = int(length)
        self.epoch = 0
        self.position = 0
        self._parts = _parts(batches)
        for part in self._parts:
            if hasattr(part, "num_replicas") and hasattr(part, "rank"):
                self.world_size, self.rank = int(part.num_replicas), int(part.rank)
                break
        self._generators = _generators(self._parts)
        self._started: dict[str, torch.Tensor] = {}  # generator states when this epoch began
        self._replay: dict[str, torch.Tensor] | None = None  # to restore on the next pass

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Move to the start of ``epoch``; no change when already in it (as `BatchLoader`)."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.position = 0
            self._replay = None

    def __iter__(self) -> Iterator:
        epoch, skip = self.epoch, self.position
        for part in self._parts:
            if callable(getattr(part, "set_epoch", None)):
                part.set_epoch(epoch)
        replay, self._replay = self._replay, None
        if replay is not None:
            for name, generator in self._generators.items():
                if name in replay:
                    generator.set_state(replay[name])
        self._started = self._states(include_global=True)
        if replay is not None and "global" in replay and skip:
            # Draw the epoch's seeds from the global generator as it was when the epoch began,
            # then give it back the state the Trainer restored (the rest of the run's draws).
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(replay["global"])
                self._started["global"] = replay["global"]
                batches = iter(self.batches)
                skipped = _skip(batches, skip)
        else:
            batches = iter(self.batches)
            skipped = _skip(batches, skip)
        if skipped < skip:
            raise CheckpointError(
                f"the loader gave {skipped} batches in epoch {epoch}, fewer than the {skip} "
                "a resume skips; resume with the same data loader"
            )
        for batch in batches:
            if self.position >= self.length:
                break  # an iterable longer than it said: the epoch is `length` batches
            self.position += 1  # before yielding: a state saved now names the next batch
            yield to_device(batch, self.device)
        self.epoch = epoch + 1
        self.position = 0

    def _states(self, include_global: bool) -> dict[str, torch.Tensor]:
        states = {name: g.get_state() for name, g in self._generators.items()}
        if include_global:
            states["global"] = torch.get_rng_state()
        return states

    def state_dict(self) -> dict[str, Any]:
        """The next batch ``(epoch, position)``, the epoch's length and the generator states
        the epoch's order was (position > 0) or will be (position 0) drawn from."""
        if self.position:
            generators = dict(self._started)
        else:  # the next epoch draws from the generators as they are now (global: the Trainer's)
            generators = self._states(include_global=False)
        return {
            "kind": "iterable",
            "epoch": self.epoch,
            "position": self.position,
            "batches": self.length,
            "generators": generators,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at the batch ``state`` names (the next pass skips the batches before it).
        Changes this loader's epoch and position and, on the next pass, its generators.

        Raises:
            CheckpointError: ``state`` is not an `IterableBatches` state or was saved with
                another number of batches per epoch.
        """
        if state.get("kind") != "iterable" or not {"epoch", "position", "batches"} <= set(state):
            raise CheckpointError(
                "loader state is not one of a wrapped data loader (IterableBatches); resume "
                "with the kind of loader the run was started with"
            )
        if int(state["batches"]) != self.length:
            raise CheckpointError(
                f"loader state was saved with {state['batches']} batches per epoch, this loader "
                f"has {self.length}"
            )
        if not 0 <= int(state["position"]) <= self.length:
            raise CheckpointError(
                f"loader state position {state['position']} is outside 0 … {self.length} batches"
            )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._replay = dict(state.get("generators") or {})


def _parts(batches: Any) -> list[Any]:
    """``batches`` and the samplers that order it (a DataLoader's batch sampler, the sampler
    inside that, its own ``sampler``), each once."""
    batch_sampler = getattr(batches, "batch_sampler", None)
    found: list[Any] = []
    for part in (
        batches,
        batch_sampler,
        getattr(batch_sampler, "sampler", None),
        getattr(batches, "sampler", None),
    ):
        if part is not None and all(part is not other for other in found):
            found.append(part)
    return found


def _generators(parts: list[Any]) -> dict[str, torch.Generator]:
    """The CPU generators a pass draws from (the DataLoader's, its samplers'), by name."""
    found: dict[str, torch.Generator] = {}
    for index, part in enumerate(parts):
        generator = getattr(part, "generator", None)
        if (
            isinstance(generator, torch.Generator)
            and generator.device.type == "cpu"
            and all(generator is not g for g in found.values())
        ):
            found["loader" if index == 0 else f"sampler{index}"] = generator
    return found


def _skip(batches: Iterator, count: int) -> int:
    """Read and drop ``count`` batches; the number actually read."""
    for done in range(count):
        if next(batches, None) is None:
            return done
    return count


__all__ = [
    "IterableBatches",
    "as_batch_loader",
    "images_between",
    "is_batch_loader",
    "model_device",
    "moved",
    "to_device",
]
