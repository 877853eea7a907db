"""``python -m nnbisim.cli``: the command line (what vnncomp/run_instance.sh calls)."""

import sys

from nnbisim.cli import main

sys.exit(main())
