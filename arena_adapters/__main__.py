"""``python -m arena_adapters`` runs the command line."""

import sys

from arena_adapters.cli import main

sys.exit(main())
