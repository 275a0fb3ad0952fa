"""`Setup`: what a method trains and scores on — the data, the training recipe, where it writes.

`slimnas run` builds one per method (``search/<method>/`` is its folder); a user of the Python
API builds one from the same data and recipe, and gets the same archs for the same seed:

    data = load_training_data(DataConfig(heldout=0.1))
    setup = Setup(data, SupernetConfig(epochs=30), folder="runs/tas")
    results = TAS().fit(Supernet(model, space), setup).search(["macs<=50%"])

or from data loaders of their own (every method but TAS, which halves the training images):

    data = TrainingData.from_loaders(DataLoader(train_set, 128, shuffle=True, num_workers=4),
                                     heldout=DataLoader(heldout_set, 500))
    results = AutoSlim().fit(Supernet(model, space), Setup(data, recipe)).search(["macs<=50%"])

It holds the plumbing every method and the pipeline would otherwise each repeat: loaders over
the splits, a resumable `Trainer` from the recipe that stops at ``recipe.max_steps``, the
BatchNorm calibration batches, and the scorer of archs on held-out *training* images.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from slimnas.data.iterable import IterableBatches, images_between
from slimnas.data.prepare import TrainingData, is_split, make_loader
from slimnas.errors import ConfigError, SlimnasError
from slimnas.io import atomic_write_text, load_json
from slimnas.methods.scoring import ArchScorer
from slimnas.train import Trainer, checkpoint_dirs, distributed
from slimnas.train.recipe import trainer_from_recipe

log = logging.getLogger("slimnas.pipeline")


class StageStopped(SlimnasError):
    """A training stopped at its max_steps; the run continues with --resume."""

    def __init__(self) -> None:
        super().__init__("stopped at max_steps; run again with --resume to continue")


@dataclass
class Setup:
    """What `Method.fit` trains on and `Method.search` scores with.

    Attributes:
        data: the splits (training without the held-out images, held-out, test) and their
            normalisation.
        recipe: the training recipe of every training a method runs (a ``[supernet]`` section,
            `slimnas.config.SupernetConfig`); ``max_steps`` stops it (`StageStopped`).
        folder: where the method writes checkpoints and state (resumable there); None keeps
            nothing.
        seed: seed of the search itself (random draws, architecture logits).
        score_images: held-out images each arch is scored on.
        report_images: held-out images after those, on which found archs are reported
            (`report_batches`); no method ever scores on them.
        score_batch: images per scoring batch.
        bn: ``"batch"`` or ``"recalibrate"`` BatchNorm statistics of a scored arch.
        calibration_batches: training batches every BatchNorm recalibration uses.
        augment: random crop and flip of training batches.
        device: where models and batches live.
        progress: progress bars (quiet when stderr is not a terminal).
        new_supernet: a fresh supernet of the model (the initial weights of ``recipe.seed``);
            needed by methods that read their trained state back (`Method.artifacts`).
        shared: the run's sandwich-rule supernet, trained on demand (methods comparing against
            it, e.g. fronts); None outside a run.
    """

    data: TrainingData
    recipe: Any
    folder: str | Path | None = None
    seed: int = 0
    score_images: int = 1024
    report_images: int = 0
    score_batch: int = 512
    bn: str = "batch"
    calibration_batches: int = 20
    augment: bool = True
    device: torch.device | str = "cpu"
    progress: bool = True
    new_supernet: Callable[[], Any] | None = None
    shared: Callable[[], Any] | None = None
    # Drawn once and shared by every `for_folder` copy (`calibration`).
    _drawn: dict[str, list] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.folder = None if self.folder is None else Path(self.folder)

    def for_folder(self, folder: str | Path | None, **changes: Any) -> Setup:
        """This setup writing into ``folder`` (sharing the calibration batches)."""
        other = replace(self, folder=folder, **changes)
        other._drawn = self._drawn
        return other

    def file(self, what: str) -> Path | None:
        """``<folder>.<what>.json``: a file beside the method's folder (``search/<m>.<what>``)."""
        if self.folder is None:
            return None
        return self.folder.parent / f"{self.folder.name}.{what}.json"

    # ------------------------------------------------------------------------- data
    def loader(self, split, batch_size: int, train: bool, seed: int = 0):
        """Batches of ``split`` (shuffled, augmented, sharded under torchrun when ``train``);
        a user's loader (`TrainingData.from_loaders`) as it is, wrapped as `IterableBatches`."""
        if not is_split(split):
            return IterableBatches(split, device=self.device)
        return make_loader(
            self.data,
            split,
            batch_size,
            train=train,
            seed=seed,
            augment=self.augment,
            device=self.device,
            rank=distributed.rank() if train else 0,
            world_size=distributed.world_size() if train else 1,
        )

    def train_loader(self, split=None, seed: int | None = None):
        """Training batches of ``split`` (default: the training split) with the recipe's batch
        size, seeded by ``seed`` (default: the recipe's)."""
        split = self.data.train if split is None else split
        seed = self.recipe.seed if seed is None else seed
        return self.loader(split, self.recipe.batch_size, True, seed)

    def heldout_batches(self, images: int | None = None, batch: int | None = None) -> list:
        """The first ``images`` held-out images (default ``score_images``) in batches."""
        if self.data.heldout is None:
            raise ConfigError("the search scores archs on held-out data; set data.heldout > 0")
        if not is_split(self.data.heldout):
            held = self.loader(self.data.heldout, 0, train=False)
            return images_between(held, 0, images or self.score_images)
        held_images, labels = self.data.heldout
        count = min(images or self.score_images, len(labels))
        split = (held_images[:count], labels[:count])
        return list(self.loader(split, batch or self.score_batch, train=False))

    def report_batches(self) -> list:
        """Up to ``report_images`` held-out images after the ``score_images`` the searches
        select on, in batches; empty when none are left. A found arch's accuracy on these is
        an honest estimate: a method that scored hundreds of archs on the search images and
        kept the best reports an optimistic score there (the winner's curse)."""
        if self.data.heldout is None or self.report_images == 0:
            return []
        if not is_split(self.data.heldout):
            held = self.loader(self.data.heldout, 0, train=False)
            return images_between(held, self.score_images, self.score_images + self.report_images)
        held_images, labels = self.data.heldout
        start = min(self.score_images, len(labels))
        stop = min(start + self.report_images, len(labels))
        if stop <= start:
            return []
        split = (held_images[start:stop], labels[start:stop])
        return list(self.loader(split, self.score_batch, train=False))

    def calibration(self) -> list:
        """The training batches every BatchNorm recalibration uses: drawn once (the loader is
        seeded, so every draw would give the same batches) and reused by every arch."""
        if "calibration" not in self._drawn:
            loader = self.train_loader(seed=self.recipe.seed + 1)
            batches = itertools.islice(iter(loader), self.calibration_batches)
            self._drawn["calibration"] = list(batches)
        return self._drawn["calibration"]

    def scorer(self, supernet, bn: str | None = None) -> ArchScorer:
        """Scores archs of ``supernet`` on the held-out batches with ``bn`` (default `bn`)."""
        bn = bn or self.bn
        calibration = self.calibration() if bn == "recalibrate" else None
        return ArchScorer(supernet, self.heldout_batches(), bn, calibration)

    # --------------------------------------------------------------------- training
    def trainer(self, model, loader, step, folder: Path | None, recipe: Any = None) -> Trainer:
        """A `Trainer` of ``recipe`` (default: this setup's) checkpointing in ``folder``,
        resuming when it holds checkpoints."""
        resume = folder is not None and bool(checkpoint_dirs(folder))
        return trainer_from_recipe(
            model,
            loader,
            recipe or self.recipe,
            step_fn=step,
            run_dir=folder,
            resume=resume,
            progress=self.progress,
        )

    def train(
        self,
        trainer: Trainer,
        what: str,
        detail: str,
        recipe: Any = None,
        setting: str = "supernet",
    ) -> None:
        """Run ``trainer`` up to ``recipe.max_steps`` (default: this setup's recipe; the setting
        is called ``<setting>.max_steps`` in the warning).

        Raises:
            StageStopped: stopped before the last step; a rerun with --resume continues.
        """
        resumed = f", resuming at step {trainer.step}" if trainer.step else ""
        log.info("training %s (%s): %d steps%s", what, detail, trainer.total_steps, resumed)
        trainer.fit(until_step=(recipe or self.recipe).max_steps)
        if trainer.step < trainer.total_steps:
            log.warning(
                "stopped at step %d of %d (%s.max_steps); run again with --resume to continue",
                trainer.step,
                trainer.total_steps,
                setting,
            )
            raise StageStopped()

    def write_json(self, path: Path | None, value: Any, indent: int | None = 1) -> None:
        """Write ``value`` as JSON at ``path`` (atomically, on the main process only)."""
        if path is not None and distributed.is_main():
            atomic_write_text(path, json.dumps(value, indent=indent))


def read_json(path: Path | None) -> Any:
    """The JSON at ``path``, or None when there is none.

    Raises:
        CheckpointError: the file is damaged (truncated, altered, a pickle); names it.
    """
    if path is None or not path.exists():
        return None
    return load_json(path)


def epoch_means(path: Path, columns: tuple[str, ...]) -> list[dict[str, float]]:
    """Per epoch of a metrics.csv, the mean of each of ``columns`` (NaN and empty cells, values
    not known yet, left out; a column with none is left out of the entry)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    means = []
    for epoch, group in itertools.groupby(rows, key=lambda r: int(r["epoch"])):
        group = list(group)
        entry = {"epoch": epoch}
        for column in columns:
            values = [float(r[column]) for r in group if r.get(column) not in (None, "")]
            values = [v for v in values if v == v]
            if values:
                entry[column] = sum(values) / len(values)
        means.append(entry)
    return means


def load_weights(supernet, folder: Path):
    """``supernet`` with the weights `Supernet.save` wrote in ``folder``, at its max arch."""
    from slimnas.io import load_tensors

    supernet.model.load_state_dict(load_tensors(folder / "supernet.safetensors"))
    supernet.activate(supernet.max_arch())
    return supernet


__all__ = ["Setup", "StageStopped", "epoch_means", "load_weights", "read_json"]
