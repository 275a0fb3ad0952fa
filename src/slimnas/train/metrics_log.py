"""``metrics.csv``: one row per training step, one header, safe to resume after a crash.

A run killed between two checkpoints has already written rows for steps that the resumed run will
do again. Opening the log for a resume at step ``s`` therefore keeps the header and the rows of
steps ``≤ s`` (dropping a last line torn by the kill) before appending, so that every step has
exactly one row.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slimnas.io import atomic_write_text

log = logging.getLogger(__name__)


class MetricsLog:
    """Appends metric rows to a CSV file whose first column is ``step``.

    The columns are fixed by the first row ever written (or the existing header); a later row
    with a new key logs a warning once and the value is dropped, a missing key is left empty.

    Args:
        path: the CSV file.
        resume_step: None starts a new file (an existing one is replaced); an integer keeps the
            existing rows of steps up to it.
    """

    def __init__(self, path: str | Path, resume_step: int | None = None):
        self.path = Path(path)
        self.columns: list[str] | None = None
        self._warned: set[str] = set()
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
        if self.columns is None:
            self.columns = list(row)
            self._writer.writerow(self.columns)
        extra = [k for k in row if k not in self.columns and k not in self._warned]
        if extra:
            log.warning("metrics %s are not columns of %s; dropped", extra, self.path)
            self._warned.update(extra)
        self._writer.writerow([_cell(row.get(c)) for c in self.columns])
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

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
