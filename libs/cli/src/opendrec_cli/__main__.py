"""`python -m opendrec_cli`: the same as `opendrec`."""

import sys

from .main import main

sys.exit(main())
