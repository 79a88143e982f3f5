"""`python -m rating`: see rating/cli.py."""

import sys

from rating.cli import main

sys.exit(main())
