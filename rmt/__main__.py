"""``python -m rmt`` is the ``rmt`` command."""

import sys

from rmt.cli import main

sys.exit(main())
