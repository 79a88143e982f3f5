"""`python -m captioning`: see captioning/commands/cli.py."""

import sys

from .commands.cli import main

sys.exit(main())
