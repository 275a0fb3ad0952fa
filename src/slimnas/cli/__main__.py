"""``python -m slimnas.cli``: the same as the ``slimnas`` command."""

import sys

from slimnas.cli import main

sys.exit(main())
