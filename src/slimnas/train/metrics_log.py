"""``metrics.csv``: one row per training step, one header, safe to resume after a crash.

A run killed between two checkpoints has already written rows for steps that the resumed run will
do again. Opening the log for a resume at step ``s`` therefore keeps the header and the rows of
steps ``≤ s`` (dropping a last line torn by the kill) before appending, so that every step has
exactly one row.

With ``tensorboard=True`` every row is also written as TensorBoard scalars (tag: the column,
global step: ``step``) to ``tensorboard/`` beside the CSV, which stays the primary log. A resumed
writer appends a new events file that starts with a purge marker at step ``s + 1``: TensorBoard
then hides the events of steps ``> s`` that the killed run had written, as the CSV drops its rows.
"""

from __future__ import annotations

import csv
import logging
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slimnas.errors import ConfigError
from slimnas.io import atomic_write_text, write_failed

log = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"


def summary_writer_class() -> type:
    """torch's ``SummaryWriter``, which needs the ``tensorboard`` package.

    Raises:
        ConfigError: ``tensorboard`` (or torch's writer) cannot be imported.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "TensorBoard logging needs the tensorboard package: pip install tensorboard, or set "
            "tensorboard to false"
        ) from None
    return SummaryWriter


class MetricsLog:
    """Appends metric rows to a CSV file whose first column is ``step``.

    The columns are fixed by the first row ever written (or the existing header); a later row
    with a new key logs a warning once and the value is dropped, a missing key is left empty.

    Args:
        path: the CSV file.
        resume_step: None starts a new file (an existing one is replaced); an integer keeps the
            existing rows of steps up to it.
        tensorboard: also write the numeric cells of every row as TensorBoard scalars to
            ``tensorboard/`` beside ``path``.

    Raises:
        ConfigError: ``tensorboard`` is set and the tensorboard package is not installed.
    """

    def __init__(
        self, path: str | Path, resume_step: int | None = None, tensorboard: bool = False
    ) -> None:
        self.path = Path(path)
        self.columns: list[str] | None = None
        self._warned: set[str] = set()
        self._board = None
        if tensorboard:
            writer_class = summary_writer_class()
            # TensorBoard drops the events it has read at steps >= a purge step; the rows of
            # steps <= resume_step are kept, as in the CSV. A fresh run (purge at step 1) hides
            # what an earlier attempt in this run_dir wrote before its first checkpoint.
            self._board = writer_class(
                str(self.path.parent / TENSORBOARD_DIR), purge_step=(resume_step or 0) + 1
            )
        if resume_step is None:
            self.path.unlink(missing_ok=True)
        elif self.path.exists():
            self._truncate_after(resume_step)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a", newline="")
        self._writer = csv.writer(self._handle)

    def _truncate_after(self, step: int) -> None:
        text = self.path.read_text()
        lines = text.splitlines(keepends=True)
        if not lines or not lines[0].endswith("\n"):
            atomic_write_text(self.path, "")
            return
        header = next(csv.reader([lines[0]]))
        kept = [lines[0]]
        for line in lines[1:]:
            if not line.endswith("\n"):
                break  # torn by a kill in the middle of a write
            row = next(csv.reader([line]), [])
            if len(row) != len(header):
                break
            try:
                if int(row[0]) > step:
                    break
            except ValueError:
                break
            kept.append(line)
        self.columns = header
        if len(kept) != len(lines):
            atomic_write_text(self.path, "".join(kept))

    def append(self, row: Mapping[str, Any]) -> None:
        """Write one row (flushed, so a kill loses at most the row being written)."""
        try:
            if self.columns is None:
                self.columns = list(row)
                self._writer.writerow(self.columns)
            extra = [k for k in row if k not in self.columns and k not in self._warned]
            if extra:
                log.warning("metrics %s are not columns of %s; dropped", extra, self.path)
                self._warned.update(extra)
            self._writer.writerow([_cell(row.get(c)) for c in self.columns])
            self._handle.flush()
        except OSError as err:  # a full disk: a torn last row is dropped on resume
            raise write_failed(self.path, err) from None
        if self._board is not None:
            step = int(row["step"])
            for column in self.columns:
                value = row.get(column)
                if column != "step" and isinstance(value, numbers.Real):
                    self._board.add_scalar(column, float(value), step)

    def flush(self) -> None:
        """Write pending TensorBoard events to disk (CSV rows are flushed as they come)."""
        if self._board is not None:
            self._board.flush()

    def close(self) -> None:
        try:
            self._handle.close()
        except OSError as err:  # the row a full disk refused is still buffered: drop it
            log.warning("could not close %s: %s", self.path, err)
        if self._board is not None:
            self._board.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    """The rows of a metrics CSV as dicts of strings."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)
