"""Run directories: refuse to overwrite a finished run, and refuse to resume with settings that
change what the saved weights or batches mean."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from slimnas.errors import ConfigError
from slimnas.train.checkpoint import checkpoint_dirs

log = logging.getLogger(__name__)


def check_run_dir(run_dir: Path, resume: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run.dir {run_dir} exists and is not a directory; choose another path")
    found = checkpoint_dirs(run_dir)
    if found and not resume:
        raise ConfigError(
            f"run.dir {run_dir} already holds checkpoints (the newest {found[-1][1].name}); pass "
            "--resume to continue that run, or set run.dir to a new directory"
        )


# What a resumed `slimnas train` must share with the saved run: the weights' shapes, the batches.
TRAIN_FIXED = ("model.", "data.", "train.batch_size", "train.seed", "train.supernet")


def check_resumed_config(
    run_dir: Path,
    config: dict,
    fixed_prefixes: tuple[str, ...] = TRAIN_FIXED,
    free: tuple[str, ...] = ("run.dir", "train.max_steps"),
) -> None:
    """Compare ``config`` with the run's saved config.json before anything is loaded.

    Args:
        run_dir: the run directory.
        config: the new config as nested dicts.
        fixed_prefixes: ``section.key`` prefixes that must not change.
        free: keys that may change silently (where the run lives, where this invocation stops);
            any other change is logged as a warning.

    Raises:
        ConfigError: a setting that fixes the model or the batches differs.
    """
    try:
        saved = json.loads((run_dir / "config.json").read_text())
        old = {f"{s}.{k}": v for s, table in saved.items() for k, v in table.items()}
    except (OSError, ValueError, AttributeError):
        return
    new = {f"{s}.{k}": v for s, table in config.items() for k, v in table.items()}
    ignored = set(free)
    if new["model.num_classes"] is None:
        ignored.add("model.num_classes")  # saved resolved from the data
    changed = [k for k, v in new.items() if k in old and old[k] != v and k not in ignored]
    fixed = [key for key in changed if key.startswith(fixed_prefixes)]
    if fixed:
        key = fixed[0]
        raise ConfigError(
            f"--resume: {key} is {new[key]!r} but the run in {run_dir} was trained with "
            f"{old[key]!r}; resume with the same setting, or use a new run directory"
        )
    if changed:
        log.warning(
            "resuming with changed settings: %s",
            ", ".join(f"{key} {old[key]!r} -> {new[key]!r}" for key in changed),
        )
