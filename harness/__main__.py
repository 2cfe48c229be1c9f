"""`python -m crlbench`: the `crlbench` command, for installs whose console script is not on
the PATH (a `pip install --target` directory on PYTHONPATH, as on the device machine)."""

import sys

from crlbench.cli import main

sys.exit(main())
