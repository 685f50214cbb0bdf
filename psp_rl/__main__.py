"""``python -m psp_rl``: the ``psp-rl`` command."""

import sys

from psp_rl.cli import main

sys.exit(main())
