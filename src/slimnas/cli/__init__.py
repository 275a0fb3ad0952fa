"""The ``slimnas`` command line.

    slimnas demo                 trace a built-in model, sample archs, print their costs,
                                 export one and verify it (torch and ONNX Runtime)
    slimnas space --model NAME   print the search space discovered in a model
    slimnas train CONFIG.toml    train a model or a slimmable supernet (docs/config.md);
                                 --set section.key=value overrides, --resume continues
    slimnas run CONFIG.toml      the whole pipeline: supernet, search, export, retrain, report
    slimnas search | export | evaluate | report CONFIG.toml
                                 the pipeline up to one stage (each reuses what is done)
    slimnas latency-table CONFIG.toml
                                 measure the latency table of the config's model on this
                                 machine (reuses what a file holds already)

User mistakes print one line and exit with status 2; nothing already written is damaged.
"""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Sequence

from slimnas.cli.parser import build_parser
from slimnas.errors import SlimnasError
from slimnas.io import write_failed

# The OS errors of a machine, not of slimnas: a full disk or quota, a read-only file system.
_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``slimnas`` command ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.run(args)
    except SlimnasError as err:
        print(f"slimnas: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in _STORAGE_ERRNOS:
            raise
        # A write no slimnas.io call made (a library's own file): the same one line.
        print(f"slimnas: error: {write_failed(err.filename or '(a file)', err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
