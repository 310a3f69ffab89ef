"""`python -m swapkern`: the environment report to paste into a bug report (`--json` for swapkern.info())."""

import sys

from ._info import main

sys.exit(main())
