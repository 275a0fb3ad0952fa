"""Errors slimnas raises for user mistakes.

Every error says what was wrong and what to do about it, in one line, so that the CLI can print it
and exit with status 2 instead of showing a traceback.
"""


class SlimnasError(Exception):
    """Base class of every error slimnas raises on purpose."""


class TraceError(SlimnasError):
    """A model could not be turned into a search space."""


class ArchError(SlimnasError):
    """An architecture does not fit its search space (unknown unit, choice out of range)."""


class BudgetError(SlimnasError):
    """A budget string is malformed, or no architecture in the space can meet it."""


class ConfigError(SlimnasError):
    """A configuration value is missing or invalid."""


class CheckpointError(SlimnasError):
    """A checkpoint or saved file is missing, corrupted or does not match the model."""


class ExportError(SlimnasError):
    """An exported model could not be written or does not match its source."""


class LatencyError(SlimnasError):
    """Latency cannot be measured or predicted (missing runtime or device, unsupported layer)."""


class PruningError(SlimnasError):
    """A model could not be pruned to the asked size (an unsupported layer, a target too small)."""


class LockError(SlimnasError):
    """A run directory is in use by another process (its ``run.lock`` is held)."""


class StorageError(SlimnasError):
    """A file could not be written (a full disk, a read-only file system, no permission);
    the files written before it are intact."""
