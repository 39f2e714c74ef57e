"""``python -m alchemy_mbrl.cli``: the same as the ``alchemy-mbrl`` command (used by the workflow's rules)."""

import sys

from alchemy_mbrl.cli import main

sys.exit(main())
