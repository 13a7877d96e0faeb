"""``python -m orac_node.cli``: what the ``orac-node`` script runs."""

import sys

from orac_node.cli import main

sys.exit(main())
