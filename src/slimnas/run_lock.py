"""The run-directory lock: one process at a time writes a run directory.

Every command that writes a run directory (`slimnas run`, `search`, `export`, `evaluate`,
`report`, `train`) holds an OS file lock (``flock``) on ``<run.dir>/run.lock`` for its whole
life. The file says who holds it (JSON: PID, host, start time, command), so that a second
process on the same directory stops at once with one line naming the holder. The kernel drops
the lock when its process ends however it ends (``kill -9`` included); the file such a process
leaves behind names a holder that no longer holds the lock: the next process takes it over and
logs a warning. A normal end, an error or Ctrl-C removes the file.

Under torchrun only rank 0 takes the lock, and every rank learns whether it got it (one
all-reduce), so that all ranks stop together rather than wait for each other.

The lock file is not part of the run: the checks that refuse to overwrite a run look at
``config.json`` and checkpoints, never at ``run.lock``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slimnas.errors import ConfigError, LockError

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
# How long a busy lock is tried again before it is reported held: a process probing the lock
# (`check_unlocked`) holds it shared for an instant, which must not read as a run.
_RETRY_SECONDS = 0.5
_BUSY = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)


@dataclass
class _Holding:
    fd: int
    path: Path
    count: int = 0


# Locks this process holds, by resolved run directory. flock conflicts between two opens of one
# file even within a process, so a second `RunLock` on a directory this process holds already
# (e.g. two Pipelines of one run) shares the first's lock instead of refusing itself.
_HELD: dict[Path, _Holding] = {}


class RunLock:
    """The lock on one run directory: `acquire` takes it, `release` gives it back; also a
    context manager.

    Args:
        run_dir: the run directory (created by `acquire` when missing).
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir).expanduser()
        self.path = self.run_dir / LOCK_NAME
        self._key: Path | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._key is not None

    def acquire(self) -> RunLock:
        """Take the lock. Changes the file system: creates the directory and ``run.lock``.

        Returns:
            self.

        Raises:
            LockError: another live process holds it.
            ConfigError: the run directory cannot be created or written.
        """
        if self._key is not None:
            return self
        key = self.run_dir.resolve()
        holding = _HELD.get(key)
        if holding is None:
            fd = None
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                fd = _lock_file(self.path, self.run_dir)
                _write_holder(fd, self.path, self.run_dir)
            except OSError as err:
                if fd is not None:
                    os.close(fd)
                raise ConfigError(
                    f"run.dir {self.run_dir} cannot be written ({err.strerror or err}); choose "
                    "a directory you can write to"
                ) from None
            holding = _HELD[key] = _Holding(fd, self.path)
        holding.count += 1
        self._key = key
        return self

    def release(self) -> None:
        """Give the lock back; the last holder in this process removes ``run.lock`` and drops
        the OS lock. Nothing when not held."""
        if self._key is None:
            return
        key, self._key = self._key, None
        holding = _HELD[key]
        holding.count -= 1
        if holding.count > 0:
            return
        del _HELD[key]
        # Unlink while still holding the lock: a process that opened the old file meanwhile
        # sees that it is gone (`_lock_file` compares inodes) and makes a new one.
        try:
            holding.path.unlink(missing_ok=True)
        except OSError as err:  # e.g. the directory was removed under us
            log.debug("could not remove %s: %s", holding.path, err)
        os.close(holding.fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _lock_file(path: Path, run_dir: Path) -> int:
    """Open and flock ``path``; the fd.

    Raises:
        LockError: another process holds it.
    """
    deadline = time.monotonic() + _RETRY_SECONDS
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in _BUSY:
                return _without_flock(fd, path, run_dir, err)
            os.close(fd)
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise LockError(held_message(run_dir, read_holder(path))) from None
        # The holder before us may have unlinked the file after we opened it: lock the file
        # that is at the path now.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _without_flock(fd: int, path: Path, run_dir: Path, err: OSError) -> int:
    """The fd of ``path`` on a file system without flock (some network and FUSE mounts): the
    lock is then only as good as the PID its file names, alive or not on this host."""
    holder = read_holder(path)
    if holder and holder.get("host") == socket.gethostname() and _alive(holder.get("pid")):
        os.close(fd)
        raise LockError(held_message(run_dir, holder))
    log.warning(
        "run.dir %s: the file system cannot lock files (%s); two runs on other hosts would "
        "not see each other",
        run_dir,
        err.strerror,
    )
    return fd


def _alive(pid: Any) -> bool:
    """Whether process ``pid`` runs on this host (other than this process)."""
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _write_holder(fd: int, path: Path, run_dir: Path) -> None:
    """Write who holds the lock into its file, after warning about a holder left behind."""
    previous = read_holder(path)
    if previous and previous.get("pid") != os.getpid():
        log.warning(
            "run.dir %s: taking over the lock left by PID %s on host %s (started %s), which "
            "holds it no longer (it ended or was killed)",
            run_dir,
            previous.get("pid"),
            previous.get("host"),
            previous.get("started"),
        )
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200],
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
    os.fsync(fd)


def read_holder(path: Path) -> dict[str, Any] | None:
    """What a ``run.lock`` file says of its holder; None for a missing, empty or bad file."""
    try:
        holder = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def held_message(run_dir: Path, holder: dict[str, Any] | None) -> str:
    """The one line a process that finds the lock taken prints."""
    if not holder:
        who = "another process (its run.lock names none)"
    else:
        command = " ".join(str(holder.get("command", "")).split())
        who = (
            f"PID {holder.get('pid')} on host {holder.get('host')} (since "
            f"{holder.get('started')}{', ' + command if command else ''})"
        )
    return (
        f"run.dir {run_dir} is in use by {who}; wait for it to end, stop it, or set run.dir to "
        "another directory"
    )


def check_unlocked(run_dir: str | Path) -> None:
    """Refuse early, before any work and without writing anything, a run directory that another
    process holds; the lock itself is taken later, by `lock_run_dir`.

    Raises:
        LockError: another process holds the directory's lock.
    """
    run_dir = Path(run_dir).expanduser()
    path = run_dir / LOCK_NAME
    if run_dir.resolve() in _HELD or not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # gone meanwhile, or unreadable: acquire will say
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in _BUSY:
            raise LockError(held_message(run_dir, read_holder(path))) from None
    finally:
        os.close(fd)  # closing drops the shared lock


def _agreed(work, what: str):
    """Run ``work()`` on rank 0 only; under torchrun every rank learns whether it failed and
    raises too (rank 0 its own error), so that no rank waits for a rank that stopped."""
    from slimnas.errors import SlimnasError
    from slimnas.train import distributed

    value, error = None, None
    if distributed.is_main():
        try:
            value = work()
        except SlimnasError as err:
            error = err
    if distributed.is_distributed():
        failed = distributed.all_reduce_mean(1.0 if error is not None else 0.0) > 0
        if failed and error is None:
            raise LockError(f"rank 0 could not {what}; its message says why")
    if error is not None:
        raise error
    return value


def check_unlocked_on_main(run_dir: str | Path) -> None:
    """`check_unlocked` on rank 0, agreed by every rank (a collective under torchrun)."""
    _agreed(lambda: check_unlocked(run_dir), f"use run.dir {run_dir}")


def lock_run_dir(run_dir: str | Path) -> RunLock:
    """Take the lock of ``run_dir`` on rank 0 (a collective under torchrun: call it on every
    rank); other ranks get a lock that holds nothing. Release it with ``release()``.

    Raises:
        LockError: another process holds it.
        ConfigError: the directory cannot be written.
    """
    lock = _agreed(lambda: RunLock(run_dir).acquire(), f"lock run.dir {run_dir}")
    return lock if lock is not None else RunLock(run_dir)


__all__ = [
    "LOCK_NAME",
    "RunLock",
    "check_unlocked",
    "check_unlocked_on_main",
    "held_message",
    "lock_run_dir",
    "read_holder",
]
