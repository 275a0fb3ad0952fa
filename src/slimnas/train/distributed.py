"""Data-parallel training across processes: the process group and the collectives the Trainer uses.

A script launched by ``torchrun --nproc_per_node=K`` calls `init_from_env` first: it joins the
process group that torchrun describes in the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), on NCCL when CUDA is available and gloo
otherwise, and returns the device this rank trains on. Without those variables it does nothing,
and every function here behaves as in a single process (rank 0 of 1, reductions are identities).

The Trainer does not wrap the model in `DistributedDataParallel`: after a step's backward passes
it averages the gradients of all ranks itself, in one coalesced all-reduce
(`average_gradients_`), and copies rank 0's buffers to every rank (`broadcast_`).
docs/training.md says why: the sandwich rule runs several backward passes per step on a network
whose used parameters change between them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from slimnas.errors import ConfigError
from slimnas.train.rng import rng_state

log = logging.getLogger(__name__)

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

# Tensors are flattened into buckets of at most this size for one collective each: few large
# messages are much faster than many small ones, and the copy costs at most this much memory.
BUCKET_BYTES = 64 * 2**20


def init_from_env(timeout: timedelta | None = None) -> torch.device:
    """Join the process group torchrun describes, or stay a single process when not launched so.

    Changes global state: initialises ``torch.distributed`` (backend ``"nccl"`` when CUDA is
    available, else ``"gloo"``) and, on NCCL, makes ``cuda:LOCAL_RANK`` the current device. A
    second call returns at once.

    Args:
        timeout: how long a collective waits for the other ranks; None keeps torch's default.

    Returns:
        The device this process should train on: ``cuda:LOCAL_RANK`` (or ``cuda`` in a single
        process) when CUDA is available, else the CPU.

    Raises:
        ConfigError: some of torchrun's variables are set but not all of them.
    """
    present = [name for name in TORCHRUN_ENV if name in os.environ]
    if dist.is_available() and dist.is_initialized():
        return _default_device()
    if not present:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    missing = [name for name in TORCHRUN_ENV if name not in os.environ]
    if missing:
        raise ConfigError(
            f"environment sets {', '.join(present)} but not {', '.join(missing)}; launch with "
            "torchrun, or unset them for a single process"
        )
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run a single process")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    options = {} if timeout is None else {"timeout": timeout}
    store = _attempt_store(timeout)
    if store is None:
        dist.init_process_group(backend=backend, init_method="env://", **options)
    else:
        dist.init_process_group(
            backend=backend,
            store=store,
            rank=int(os.environ["RANK"]),
            world_size=int(os.environ["WORLD_SIZE"]),
            **options,
        )
    log.info("rank %d of %d on %s (%s)", rank(), world_size(), _default_device(), backend)
    return _default_device()


def _attempt_store(timeout: timedelta | None) -> Any:
    """The torchrun agent's store, seen through a prefix of this attempt, or None when the
    agent does not host one.

    After a worker dies, torchrun (``--max-restarts``) starts every rank again against the same
    agent store; with the keys of the dead attempt still there, gloo's ranks could read the
    addresses the dead ranks published and time out connecting to them. Each attempt's keys
    are kept apart by its ``TORCHELASTIC_RESTART_COUNT``.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != str(True):
        return None
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        is_master=False,
        timeout=timeout or timedelta(minutes=30),
    )
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"/slimnas/attempt_{attempt}", store)


def rank() -> int:
    """This process's rank in the process group; 0 without one."""
    return dist.get_rank() if _initialized() else 0


def world_size() -> int:
    """Processes in the process group; 1 without one."""
    return dist.get_world_size() if _initialized() else 1


def is_main() -> bool:
    """Whether this is rank 0, the process that writes files and logs progress."""
    return rank() == 0


def is_distributed() -> bool:
    """Whether more than one process trains together."""
    return world_size() > 1


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for in a single process)."""
    if _initialized():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group, if any. Changes global state."""
    if _initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor | float) -> torch.Tensor | float:
    """The mean of ``value`` over the ranks: a new tensor on ``value``'s device, or a float for
    a number."""
    number = not isinstance(value, torch.Tensor)
    if not is_distributed():
        return float(value) if number else value
    tensor = torch.tensor(float(value), dtype=torch.float64) if number else value.detach()
    total = tensor.to(_default_device(), copy=True)
    dist.all_reduce(total)
    mean = total / world_size()
    return float(mean) if number else mean.to(tensor.device)


def all_reduce_sum_(tensors: Sequence[torch.Tensor]) -> None:
    """Replace every tensor by its sum over the ranks, in place, with few collectives.

    Tensors are grouped by device and dtype and flattened into buckets of `BUCKET_BYTES`, one
    collective each. Every rank must pass tensors of the same shapes in the same order.
    """
    _coalesced(tensors, dist.all_reduce)


def broadcast_(tensors: Sequence[torch.Tensor], src: int = 0) -> None:
    """Copy rank ``src``'s values of every tensor to all ranks, in place, with few collectives."""
    _coalesced(tensors, lambda flat: dist.broadcast(flat, src))


def average_gradients_(
    parameters: Sequence[torch.Tensor], scalars: Sequence[float] = ()
) -> list[float]:
    """Average the ``.grad`` of ``parameters`` over the ranks, in place, and sum ``scalars``.

    One coalesced all-reduce carries the gradients, the scalars and, per parameter, how many
    ranks gave it a gradient. A parameter that no rank gave one keeps ``grad=None``, so the
    optimizer skips it (no weight decay, no momentum) on every rank, as in one process; one
    that only some ranks used gets their sum divided by the world size, the mean over the global
    batch. Every rank must pass the same parameters in the same order. Changes their gradients.

    Returns:
        The sums of ``scalars`` over the ranks.
    """
    if not is_distributed():
        return [float(x) for x in scalars]
    device = parameters[0].device if parameters else _default_device()
    used = [float(p.grad is not None) for p in parameters]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    counts = torch.tensor([*scalars, *used], dtype=torch.float64, device=device)
    all_reduce_sum_([counts, *grads])
    size = world_size()
    totals = counts.tolist()
    for param, grad, users in zip(parameters, grads, totals[len(scalars) :]):
        param.grad = grad.div_(size) if users else None
    return totals[: len(scalars)]


def check_loader_shard(loader: object) -> None:
    """Check that a loader which says which shard it yields (``rank``, ``world_size``, as
    `slimnas.data.BatchLoader` does) yields this rank's.

    Raises:
        ConfigError: it yields another shard, or shards for another number of ranks.
    """
    size, rank_ = world_size(), rank()
    have = getattr(loader, "world_size", size), getattr(loader, "rank", rank_)
    if have != (size, rank_):
        raise ConfigError(
            f"the loader yields shard {have[1]} of {have[0]} but this process is rank {rank_} "
            f"of {size}; build it with rank=distributed.rank(), "
            "world_size=distributed.world_size()"
        )


def check_random_states(step_state: Any, step: int, starting: bool = False) -> None:
    """Check that every rank holds the same random states (one or two collectives).

    The step's own state (``step_state``, JSON-able: the sandwich step's generator) must agree,
    or the ranks would train different archs. So must the global generators: a step may draw
    from them, and a checkpoint saves rank 0's for every rank. When ``starting``, differing
    global generators are an error; later (uneven last batches with dropout make them drift)
    a warning that a resume will not be bit-exact.

    Raises:
        ConfigError: the step's states differ, or the global ones do when ``starting``.
    """
    if step_state is not None and not agree(json.dumps(step_state, sort_keys=True)):
        raise ConfigError(
            f"the step's random state (the sandwich step's generator) differs between ranks at "
            f"step {step}: they would train different archs. Seed the step's generator alike on "
            "every rank"
        )
    own = {k: v for k, v in rng_state().items() if k != "cuda"}  # CUDA's: per device
    if agree(json.dumps(own, sort_keys=True)):
        return
    if starting:
        raise ConfigError(
            "the ranks' global random generators differ: give every rank the same Trainer seed "
            "(a step drawing from them, such as sandwich_step without a generator, would train "
            "different archs on different ranks)"
        )
    log.warning(
        "the ranks' global random generators drifted apart by step %d (uneven last batches "
        "with dropout?); checkpoints keep rank 0's, so a resume is not bit-exact. Use a loader "
        "with drop_last=True",
        step,
    )


def agree(text: str) -> bool:
    """Whether every rank passed the same ``text`` (one collective; the answer is the same on
    every rank). Used to check that states meant to be identical on all ranks are."""
    if not is_distributed():
        return True
    digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")  # fits int64
    extremes = torch.tensor([digest, -digest], dtype=torch.int64, device=_default_device())
    dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
    return int(extremes[0]) == -int(extremes[1])  # max == min


def _coalesced(tensors: Sequence[torch.Tensor], collective: Callable[[torch.Tensor], object]):
    if not is_distributed():
        return
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.device, tensor.dtype), []).append(tensor)
    for group in groups.values():
        for bucket in _buckets(group):
            flat = torch.cat([t.detach().reshape(-1) for t in bucket])
            collective(flat)
            with torch.no_grad():
                for tensor, part in zip(bucket, flat.split([t.numel() for t in bucket])):
                    tensor.copy_(part.view_as(tensor))


def _buckets(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    buckets: list[list[torch.Tensor]] = [[]]
    size = 0
    for tensor in tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if buckets[-1] and size + nbytes > BUCKET_BYTES:
            buckets.append([])
            size = 0
        buckets[-1].append(tensor)
        size += nbytes
    return [bucket for bucket in buckets if bucket]


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def _default_device() -> torch.device:
    """Where this rank's collectives run: its current CUDA device on NCCL, else the CPU."""
    if _initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    if not _initialized() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")
