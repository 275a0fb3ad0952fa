"""The fault campaign of issue #21 on a tiny config (built-in data): for each class of fault, how
many were tried and how many the run survived with nothing lost, and what the campaign took.

- ``sigkill``: `slimnas run` processes killed with SIGKILL at random points of every stage
  (supernet, each method's search, export, retrain, report), each followed by ``--resume``;
  survived when the chain's final results.json equals an uninterrupted run's (wall-clock
  figures left out). Every registered method runs: the ResNet-20 methods in one config,
  ProxylessNAS and its fixed-op reference in an op-only one.
- ``full_disk``: ENOSPC from the fsync of the Nth file write, for N spread over a whole run:
  survived when the command exits 2 with one line, every checkpoint is whole, no temporary
  file is left, and ``--resume`` with space again ends with the same results.
- ``corrupt_file``: each kind of file a run writes truncated, one bit flipped, or replaced by a
  pickle whose loading would create a marker file: survived when the resume ends with the same
  results or stops with one line naming the file, and the marker never appears.
- ``changed_config``: a resume with an edited config: refused with one line naming the setting
  and nothing written, or (methods, seeds) only the new work run and the rest unchanged.
- ``invalid_config``: every setting given values its rule refuses, and malformed argument
  lists: exit 2, one line, no traceback, no run directory.
- ``torchrun_kill``: 2 gloo ranks under ``torchrun --max-restarts 1``, rank 1 SIGKILLed
  mid-epoch: the job ends with the weights of an uninterrupted one, bit for bit.

    .venv/bin/python bench/faults.py [--kills 16] [--seed 0] [--only sigkill,full_disk,...]

About 15 minutes on 2 busy cores (most of it the SIGKILL chains).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slimnas.cli import main  # noqa: E402
from slimnas.config import PipelineConfig, schema  # noqa: E402
from slimnas.errors import ConfigError  # noqa: E402
from slimnas.train.checkpoint import load_checkpoint  # noqa: E402
from tests.helpers.faults import (  # noqa: E402
    CORRUPTIONS,
    comparable,
    corrupt,
    tiny_run_config,
    toml_of,
)
from tests.helpers.faults import write_config as write_config_raw  # noqa: E402

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
BUDGET = "macs-le-60pct"
# Every registered method: the ResNet-20 ones, and ProxylessNAS on its op-only space.
WIDE = {
    "search__methods": [
        "autoslim",
        "uniform",
        "random",
        "evolution",
        "magnitude",
        "torch_pruning",
        "tas",
        "tas_width",
        "joslim",
    ],
    "search__torch_pruning": {"steps": 20},
    "search__joslim": {"refit_every": 1, "warmup": 2, "pool": 16, "refresh_images": 40},
}
OPS = {
    "model__name": "proxyless_cifar_small",
    "model__width_mult": 0.25,
    "space__channels": False,
    "search__methods": ["proxyless", "fixed"],
    "search__budgets": ["macs<=90%"],
    "search__proxyless": {"warmup_epochs": 1, "arch_every": 1, "arch_lr": 0.05},
}
# Kill points: (stage, a file whose appearance starts the stage, seconds to wait at most).
WIDE_POINTS = [
    ("supernet", "supernet/metrics.csv", 1.5),
    ("autoslim", "search/autoslim.state.json", 3.0),
    ("random", "search/uniform.json", 0.6),
    ("evolution", "search/random.json", 0.8),
    ("torch_pruning", "search/magnitude.json", 1.5),
    ("tas", "search/tas", 1.5),
    ("tas_width", "search/tas.json", 1.5),
    ("joslim", "search/joslim", 3.0),
    ("export", "exports", 1.0),
    ("retrain", "models", 4.0),
    ("report", "models/joslim", 2.0),
]
OPS_POINTS = [
    ("proxyless", "search/proxyless", 3.0),
    ("fixed", "search/proxyless.json", 1.0),
    ("export", "exports", 1.0),
    ("retrain", "models", 3.0),
    ("report", "models/fixed", 2.0),
]


class Tally:
    def __init__(self) -> None:
        self.rows: dict[str, list] = {}

    def add(self, fault: str, survived: bool, note: str = "") -> None:
        row = self.rows.setdefault(fault, [0, 0, 0.0, []])
        row[0] += 1
        row[1] += bool(survived)
        if not survived and note:
            row[3].append(note)


def run_cli(config: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "slimnas.cli", "run", str(config), *args]
    return subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def write_config(folder: Path, name: str, changes: dict) -> tuple[Path, Path]:
    run_dir = folder / name
    config = folder / f"{name}.toml"
    config.write_text(toml_of(tiny_run_config(run_dir, **changes)))
    return config, run_dir


def results_of(run_dir: Path) -> dict | None:
    path = run_dir / "results.json"
    return comparable(json.loads(path.read_text())) if path.exists() else None


def sigkill_chain(folder, name, changes, points, kills, rng, tally) -> None:
    """A reference run, then one run killed at ``kills`` of ``points`` (in stage order), each
    kill followed by a resume, compared at the end."""
    config, run_dir = write_config(folder, f"{name}-whole", changes)
    whole = run_cli(config)
    _, err = whole.communicate()
    if whole.returncode != 0:
        raise SystemExit(f"the uninterrupted {name} run failed:\n{err.decode()[-2000:]}")
    reference = results_of(run_dir)
    config, run_dir = write_config(folder, f"{name}-killed", changes)
    chosen = sorted(rng.sample(range(len(points)), min(kills, len(points))))
    done_kills, resumes = [], 0
    for index in chosen:
        stage, trigger, longest = points[index]
        process = run_cli(config, *(["--resume"] if resumes or done_kills else []))
        deadline = time.monotonic() + 900
        while not (run_dir / trigger).exists() and process.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0, longest))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            done_kills.append(stage)
        else:
            print(f"  {name}: the {stage} point came too late (the run had ended)")
        resumes += 1
        if (run_dir / "results.json").exists():
            break
    final = run_cli(config, "--resume")
    _, err = final.communicate()
    survived = final.returncode == 0 and results_of(run_dir) == reference
    note = f"{name} killed at {', '.join(done_kills)}" + (
        "" if final.returncode == 0 else f": {err.decode().strip().splitlines()[-1:]}"
    )
    print(f"  {name}: killed in {', '.join(done_kills)}; results equal: {survived}")
    for _ in done_kills:
        tally.add("sigkill", survived, note)


def quietly(call: Callable[[], int]) -> tuple[int, str]:
    """``call()``'s status (SystemExit included) and what it wrote to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = call()
        except SystemExit as exit_:
            status = exit_.code
    return status, err.getvalue()


def one_line(status: int, err: str) -> bool:
    return status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def full_disk(folder: Path, points: int, tally: Tally) -> None:
    config, run_dir = write_config(folder, "disk-whole", {})
    calls = [0]
    real_fsync = os.fsync

    def counting(fd: int) -> None:
        calls[0] += 1
        real_fsync(fd)

    os.fsync = counting
    try:
        quietly(lambda: main(["run", str(config)]))
    finally:
        os.fsync = real_fsync
    reference, total = results_of(run_dir), calls[0]
    for k in range(points):
        full_at = 1 + round(k * (total - 1) / max(1, points - 1))
        config, run_dir = write_config(folder, f"disk-{k}", {})
        calls[0] = 0

        def full(fd: int, at=full_at) -> None:
            calls[0] += 1
            if calls[0] >= at:
                raise OSError(28, "No space left on device")
            real_fsync(fd)

        os.fsync = full
        try:
            status, err = quietly(lambda config=config: main(["run", str(config)]))
        finally:
            os.fsync = real_fsync
        whole = True
        for ckpt in run_dir.rglob("ckpt-*"):
            try:
                load_checkpoint(ckpt)
            except Exception:
                whole = False
        clean = not list(run_dir.rglob("*.tmp"))
        again, _ = quietly(lambda config=config: main(["run", str(config), "--resume"]))
        survived = one_line(status, err) and whole and clean and again == 0
        survived = survived and results_of(run_dir) == reference
        tally.add("full_disk", survived, f"fsync {full_at} of {total}: {err.strip()[:200]}")


def corrupt_files(folder: Path, tally: Tally) -> None:
    config, original = write_config(folder, "corrupt-whole", {})
    quietly(lambda: main(["run", str(config)]))
    reference = results_of(original)
    kinds = sorted(
        str(p.relative_to(original))
        for p in original.rglob("*")
        if p.is_file() and p.suffix in (".json", ".safetensors", ".csv") and p.name != "run.lock"
    )
    for kind in kinds:
        for how in CORRUPTIONS:
            work = Path(tempfile.mkdtemp(dir=folder))
            run_dir = work / "run"
            shutil.copytree(original, run_dir)
            config = work / "run.toml"
            config.write_text(toml_of(tiny_run_config(run_dir)))
            marker = work / "code-ran"
            corrupt(run_dir / kind, how, marker)
            status, err = quietly(lambda config=config: main(["run", str(config), "--resume"]))
            if status == 0:
                survived = results_of(run_dir) == reference
            else:
                survived = one_line(status, err) and Path(kind).name in err
            survived = survived and not marker.exists()
            tally.add("corrupt_file", survived, f"{kind} {how}: {err.strip()[:200]}")
            shutil.rmtree(work)


REFUSED = [
    ("search__budgets", ["macs<=50%"]),
    ("supernet__epochs", 2),
    ("supernet__lr", 0.05),
    ("data__max_train_images", 120),
    ("space__divisor", 4),
    ("model__width_mult", 0.5),
    ("search__random", {"samples": 4}),
    ("search__score_images", 20),
    ("retrain__epochs", 2),
    ("retrain__init", "inherit"),
]
ACCEPTED = [
    ("search__methods", ["uniform", "random", "evolution"]),
    ("search__methods", ["uniform"]),
    ("retrain__seeds", [0, 1]),
]


def changed_configs(folder: Path, tally: Tally) -> None:
    config, original = write_config(folder, "config-whole", {})
    quietly(lambda: main(["run", str(config)]))
    reference = json.loads((original / "results.json").read_text())
    for key, value in REFUSED + ACCEPTED:
        work = Path(tempfile.mkdtemp(dir=folder))
        run_dir = work / "run"
        shutil.copytree(original, run_dir)
        config = work / "run.toml"
        config.write_text(toml_of(tiny_run_config(run_dir, **{key: value})))
        before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
        status, err = quietly(lambda config=config: main(["run", str(config), "--resume"]))
        if (key, value) in REFUSED:
            name = key.replace("__", ".")
            unchanged = before == {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
            survived = one_line(status, err) and name in err and unchanged
        else:  # the rows of the methods and seeds that were there before are unchanged
            after = comparable(json.loads((run_dir / "results.json").read_text()))["rows"]
            kept = {(r["method"], r["seed"]) for r in after}
            old = [r for r in comparable(reference)["rows"] if (r["method"], r["seed"]) in kept]
            survived = status == 0 and all(r in after for r in old)
        tally.add("changed_config", survived, f"{key}={value}: {err.strip()[:200]}")
        shutil.rmtree(work)


WRONG = [-1, 0, 1.5, -0.5, 2.0, "x", "", "none", True, [], [1], ["x"], {"a": 1}, math.nan]


def invalid_configs(folder: Path, tally: Tally) -> None:
    for key, _, rule, _ in schema(PipelineConfig):
        if key == "run.dir":
            continue
        for value in WRONG:
            try:
                rule.check(key, value)
                continue  # a valid value of this setting
            except ConfigError:
                pass
            work = Path(tempfile.mkdtemp(dir=folder))
            config, run_dir = work / "run.toml", work / "run"
            write_config_raw(config, run_dir, key, value)
            status, err = quietly(lambda config=config: main(["run", str(config)]))
            survived = one_line(status, err) and key in err and not run_dir.exists()
            tally.add("invalid_config", survived, f"{key}={value!r}: {err.strip()[:200]}")
            shutil.rmtree(work)
    work = Path(tempfile.mkdtemp(dir=folder))
    config, run_dir = work / "run.toml", work / "run"
    write_config_raw(config, run_dir)
    for argv in (
        ["run"], ["nope"], ["run", str(config), "--resum"], ["run", str(config), "--set"],
        ["run", str(config), "--set", "nokey"], ["run", str(config), "--set", "search.x=1"],
        ["run", str(work / "missing.toml")], ["run", str(work)], ["train", str(config)],
        ["latency-table", str(config), "--batch", "0"],
        ["latency-table", str(config), "--threads", "x"],
    ):  # fmt: skip
        status, err = quietly(lambda argv=argv: main(argv))
        survived = one_line(status, err) and not run_dir.exists()
        tally.add("invalid_config", survived, f"{argv}: {err.strip()[:200]}")


def torchrun_kill(folder: Path, tally: Tally) -> None:
    script = ROOT / "tests" / "train" / "killed_rank.py"
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    outs = []
    for name, fault in (("whole", []), ("killed", ["5", str(folder / "rank1-killed")])):
        command = [torchrun, "--standalone", "--nproc-per-node", "2", "--max-restarts", "1",
                   "--monitor-interval", "0.5", str(script), str(folder / f"tr-{name}"),
                   str(folder / f"tr-{name}.safetensors"), *fault]  # fmt: skip
        env = dict(ENV, CUDA_VISIBLE_DEVICES="")
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        outs.append(done.returncode)
    survived = outs == [0, 0] and (folder / "rank1-killed").exists()
    if survived:
        from slimnas.io import load_tensors

        whole = load_tensors(folder / "tr-whole.safetensors")
        killed = load_tensors(folder / "tr-killed.safetensors")
        survived = all(bool((whole[k] == killed[k]).all()) for k in whole)
    tally.add("torchrun_kill", survived, f"torchrun exit codes {outs}")


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=16, help="SIGKILLs in all (>= 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--disk-points", type=int, default=6)
    parser.add_argument("--only", help="comma-separated fault classes")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    rng = random.Random(args.seed)
    tally = Tally()
    started = time.perf_counter()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="slimnas-faults-") as tmp:
        folder = Path(tmp)
        wide = max(1, args.kills - len(OPS_POINTS))
        classes = {
            "sigkill": lambda: (
                sigkill_chain(folder, "wide", WIDE, WIDE_POINTS, wide, rng, tally),
                sigkill_chain(folder, "ops", OPS, OPS_POINTS, args.kills - wide, rng, tally),
            ),
            "full_disk": lambda: full_disk(folder, args.disk_points, tally),
            "corrupt_file": lambda: corrupt_files(folder, tally),
            "changed_config": lambda: changed_configs(folder, tally),
            "invalid_config": lambda: invalid_configs(folder, tally),
            "torchrun_kill": lambda: torchrun_kill(folder, tally),
        }
        for name, run in classes.items():
            if only and name not in only:
                continue
            begun = time.perf_counter()
            print(f"{name} ...", flush=True)
            run()
            tally.rows.setdefault(name, [0, 0, 0.0, []])[2] = time.perf_counter() - begun
    total = time.perf_counter() - started
    print()
    print("| fault | tried | survived, nothing lost | seconds |")
    print("|---|---:|---:|---:|")
    for name, (tried, survived, seconds, _) in tally.rows.items():
        print(f"| {name} | {tried} | {survived} | {seconds:.0f} |")
    for name, (_, _, _, notes) in tally.rows.items():
        for note in notes[:5]:
            print(f"lost: {name}: {note}")
    print(f"load average at start {load:.2f}, {os.cpu_count()} CPUs")
    for name, (tried, survived, _, _) in tally.rows.items():
        print(f"{name}_tried: {tried} faults")
        print(f"{name}_survived: {survived} faults")
    print(f"campaign_seconds: {total:.0f} s")


if __name__ == "__main__":
    main_bench()
