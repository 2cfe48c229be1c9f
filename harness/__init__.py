"""crlbench: a benchmark harness for contrastive and clustering representation learning.

The public API for method authors is `Method`, `RunContext`, `Batch` and
`crlbench.testing.check_method`; everything else is reached through the `crlbench` command.
The three classes (and `__version__`) are loaded on first use, so that commands which read
records or configs (`crlbench table`, `plot`, `report`, `suites`, `--help`) start without
importing torch.
"""

from typing import TYPE_CHECKING

from crlbench.lazy import lazy_exports

if TYPE_CHECKING:
    from crlbench.protocol import Batch, Method, RunContext

__all__ = ["Batch", "Method", "RunContext", "__version__"]
__getattr__ = lazy_exports(
    __name__, {**dict.fromkeys(("Batch", "Method", "RunContext"), "protocol"),
               "__version__": "version"})
