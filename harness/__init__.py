"""crlbench: a benchmark harness for contrastive and clustering representation learning.

The public API for method authors is `Method`, `RunContext`, `Batch` and
`crlbench.testing.check_method`; everything else is reached through the `crlbench` command.
"""

from importlib.metadata import PackageNotFoundError, version

from crlbench.protocol import Batch, Method, RunContext

try:
    __version__ = version("crlbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["Batch", "Method", "RunContext", "__version__"]
