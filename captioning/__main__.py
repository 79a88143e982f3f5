"""`python -m captioning`: see captioning/cli.py."""

import sys

from .cli import main

sys.exit(main())
