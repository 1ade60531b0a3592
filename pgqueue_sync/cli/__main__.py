"""``python -m pgqueue_sync.cli``: the ``pgq-sync`` command."""

import sys

from . import main

sys.exit(main())
