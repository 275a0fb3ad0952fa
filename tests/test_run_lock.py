"""The run-directory lock (`slimnas.run_lock`) with real processes: a second process on a held
directory gets one line naming the holder and exit 2 and writes nothing; a lock left by a
killed process is taken over; an unwritable run directory is one line, exit 2."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slimnas.cli import main
from slimnas.errors import LockError
from slimnas.run_lock import LOCK_NAME, RunLock, check_unlocked

HOLD = (
    "import sys, time\n"
    "from slimnas.run_lock import RunLock\n"
    "RunLock(sys.argv[1]).acquire()\n"
    "print('locked', flush=True)\n"
    "time.sleep(600)\n"
)

TINY = """
[data]
heldout = 0.2
max_train_images = 200
max_test_images = 50

[supernet]
epochs = {epochs}
batch_size = 20
warmup_epochs = 0.0

[search]
methods = ["uniform"]
budgets = ["macs<=60%"]
score_images = 40
score_batch = 40

[retrain]
epochs = 1
batch_size = 40
warmup_epochs = 0.0
seeds = [0]

[run]
dir = "{run_dir}"
"""


def env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1")


def tiny_toml(path: Path, run_dir: Path | str, epochs: int = 1) -> Path:
    path.write_text(TINY.format(run_dir=run_dir, epochs=epochs))
    return path


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    """Another process that holds the lock of ``tmp_path / "run"`` (killed at the end)."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], env=env(), stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "locked"
    yield process, run_dir
    process.kill()
    process.wait()


def test_a_held_lock_names_its_holder_and_a_killed_holder_is_taken_over(holder, caplog) -> None:
    process, run_dir = holder
    saved = json.loads((run_dir / LOCK_NAME).read_text())
    assert saved["pid"] == process.pid and saved["host"] == socket.gethostname()
    for attempt in (lambda: check_unlocked(run_dir), lambda: RunLock(run_dir).acquire()):
        with pytest.raises(LockError, match=f"PID {process.pid} on host {socket.gethostname()}"):
            attempt()
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (run_dir / LOCK_NAME).exists()  # left behind: a kill runs no cleanup
    check_unlocked(run_dir)  # the kernel dropped the lock with the process
    with caplog.at_level(logging.WARNING, logger="slimnas.run_lock"):
        lock = RunLock(run_dir).acquire()
    assert f"left by PID {process.pid}" in caplog.text and "no longer" in caplog.text
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (run_dir / LOCK_NAME).exists()


def test_locks_of_one_process_share_and_the_last_release_removes_the_file(tmp_path) -> None:
    run_dir = tmp_path / "new" / "run"
    with RunLock(run_dir) as first:  # creates the directory
        second = RunLock(run_dir).acquire()  # the same process: shared, not refused
        check_unlocked(run_dir)
        second.release()
        assert first.held and (run_dir / LOCK_NAME).exists()
        with pytest.raises(RuntimeError):  # an error inside still gives the lock back
            with RunLock(run_dir):
                raise RuntimeError
        assert (run_dir / LOCK_NAME).exists()
    assert not (run_dir / LOCK_NAME).exists() and run_dir.is_dir()


@pytest.mark.parametrize("command", ["run", "search", "train"])
def test_a_second_command_on_a_held_directory_is_one_line_exit_2(
    holder, tmp_path, capsys, command
) -> None:
    process, run_dir = holder
    before = sorted(p.name for p in run_dir.iterdir())
    toml = tiny_toml(tmp_path / "tiny.toml", run_dir)
    if command == "train":
        toml.write_text(
            f'[data]\nmax_train_images = 100\n[train]\nbatch_size = 20\n[run]\ndir = "{run_dir}"\n'
        )
    assert main([command, str(toml)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"is in use by PID {process.pid} on host {socket.gethostname()}" in err
    assert sorted(p.name for p in run_dir.iterdir()) == before == [LOCK_NAME]


@pytest.mark.parametrize("where", ["proc", "below_a_file", "read_only"])
def test_an_unwritable_run_dir_is_one_line_exit_2(tmp_path, capsys, where) -> None:
    if where == "proc":
        run_dir = Path("/proc/x/run")
    elif where == "below_a_file":
        (tmp_path / "file").write_text("")
        run_dir = tmp_path / "file" / "run"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        (tmp_path / "ro").mkdir(mode=0o500)
        run_dir = tmp_path / "ro" / "run"
    toml = tiny_toml(tmp_path / "tiny.toml", run_dir)
    assert main(["run", str(toml)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"run.dir {run_dir} cannot be written" in err, err
    assert not run_dir.exists()


def test_train_into_an_unwritable_run_dir_is_one_line_exit_2(tmp_path, capsys) -> None:
    toml = tmp_path / "train.toml"
    toml.write_text(
        '[data]\nmax_train_images = 100\n[train]\nbatch_size = 20\n[run]\ndir = "/proc/x/run"\n'
    )
    assert main(["train", str(toml)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "run.dir /proc/x/run cannot be written" in err, err


def slimnas(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "slimnas.cli", *args],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, process: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_runs_on_one_directory_one_refused_then_a_resume_takes_over(tmp_path) -> None:
    """The issue's demand: two real `slimnas run` on one directory; one runs, the other exits 2
    at once with one line; after a kill -9 of the first, a third (--resume) takes over and
    finishes."""
    run_dir = tmp_path / "run"
    toml = tiny_toml(tmp_path / "tiny.toml", run_dir, epochs=6)
    first = slimnas("run", str(toml))
    wait_for(lambda: (run_dir / "config.json").exists(), first)  # it holds the lock
    started = time.monotonic()
    second = slimnas("run", str(toml), "--resume")  # even asking to resume: refused
    out, err = second.communicate(timeout=120)
    refused_in = time.monotonic() - started
    assert second.returncode == 2, err
    assert err.strip() == err.strip().splitlines()[0]  # one line, no traceback
    assert f"is in use by PID {first.pid} on host {socket.gethostname()}" in err
    assert first.poll() is None, "the first run ended before the second was refused"
    wait_for(lambda: any((run_dir / "supernet").glob("ckpt-*")), first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (run_dir / "results.json").exists()

    third = slimnas("run", str(toml), "--resume")
    out, err = third.communicate(timeout=600)
    assert third.returncode == 0, err
    assert f"taking over the lock left by PID {first.pid}" in err
    assert "resuming at step" in err, err
    assert json.loads((run_dir / "results.json").read_text())["rows"]
    assert not (run_dir / LOCK_NAME).exists()
    print(f"second run refused in {refused_in:.1f} s")


@pytest.mark.slow
def test_ctrl_c_gives_the_lock_back(tmp_path) -> None:
    run_dir = tmp_path / "run"
    toml = tiny_toml(tmp_path / "tiny.toml", run_dir, epochs=6)
    process = slimnas("run", str(toml))
    wait_for(lambda: any((run_dir / "supernet").glob("ckpt-*")), process)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    assert process.returncode != 0
    assert not (run_dir / LOCK_NAME).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_ranks_all_stop_on_a_held_directory(holder, tmp_path) -> None:
    """Under torchrun (2 gloo ranks) only rank 0 tries the lock; both ranks stop with exit 2
    rather than rank 1 waiting for rank 0 in a collective."""
    process, run_dir = holder
    toml = tmp_path / "train.toml"
    toml.write_text(
        f'[data]\nmax_train_images = 100\n[train]\nbatch_size = 20\n[run]\ndir = "{run_dir}"\n'
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    command += [f"--master_port={free_port()}", "-m", "slimnas.cli", "train", str(toml)]
    done = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert f"is in use by PID {process.pid}" in done.stderr
    assert "rank 0 could not use run.dir" in done.stderr  # rank 1 stopped too
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME]
