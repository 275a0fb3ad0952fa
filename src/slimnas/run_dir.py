"""Run directories: refuse to overwrite a finished run, and refuse to resume with settings that
change what the saved weights or batches mean."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from slimnas.errors import CheckpointError, ConfigError
from slimnas.io import load_json
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
    path = run_dir / "config.json"
    if not path.exists():
        return
    saved = load_json(path)  # damaged: one line naming it, never a silent mix of two configs
    try:
        old = {f"{s}.{k}": v for s, table in saved.items() for k, v in table.items()}
    except AttributeError:
        raise CheckpointError(
            f"{path} is not a slimnas config (damaged?); restore it, or use a new run directory"
        ) from None
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


def budget_slug(text: str) -> str:
    """A folder name for a budget: ``macs<=50%`` → ``macs-le-50pct``."""
    slug = text.replace("<=", "-le-").replace("%", "pct").replace(" ", "")
    return re.sub(r"[^A-Za-z0-9._-]", "_", slug)


def build_model_of(config, seed: int):
    """The model of a config's ``[model]`` section, its initial weights drawn with ``seed``
    (`slimnas.models.build.build_configured`: which settings each kind of model gets)."""
    import torch

    from slimnas.models.build import build_configured

    torch.manual_seed(seed)  # the initial weights
    return build_configured(config.model, config.model.num_classes)


def load_teacher_state(path: Path) -> dict:
    """A model's state dict from a ``.safetensors`` file or the newest checkpoint of a
    ``slimnas train`` run directory (never unpickled)."""
    from slimnas.io import load_tensors
    from slimnas.train.checkpoint import load_latest

    if path.is_dir() and checkpoint_dirs(path):
        return load_latest(path).state["model"]
    if path.is_file() and path.suffix == ".safetensors":
        return load_tensors(path)
    raise ConfigError(
        f"retrain.teacher {path} is neither a slimnas train run directory with checkpoints nor "
        "a .safetensors file; point it at the unpruned model's weights"
    )


def load_exported(model_dir: str | Path):
    """The plain model in ``model_dir`` (``models/<method>/<budget>/seed<k>`` after retraining,
    or ``exports/<method>/<budget>``), rebuilt from its run's config.json and space.json and the
    folder's arch.json, with the weights of its model.safetensors."""
    from slimnas.config import PipelineConfig
    from slimnas.io import load_tensors
    from slimnas.space.space import Space
    from slimnas.space.units import Arch
    from slimnas.supernet import Supernet

    model_dir = Path(model_dir).resolve()
    run_dir = next((d for d in model_dir.parents if (d / "space.json").exists()), model_dir)
    try:
        config = PipelineConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        space = Space.from_json((run_dir / "space.json").read_text())
        arch = Arch.from_json((model_dir / "arch.json").read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{model_dir} is not a model folder of a slimnas run: {err}") from None
    model = Supernet(build_model_of(config, 0), space).export(arch)
    model.load_state_dict(load_tensors(model_dir / "model.safetensors"))
    return model
