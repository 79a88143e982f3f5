"""`python -m trainer.data inspect PATH` / `python -m trainer.data shapes ...` (see trainer/data/cli.py)."""

import sys

from .cli import main

sys.exit(main())
