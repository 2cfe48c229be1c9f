"""crlbench: a benchmark harness for contrastive and clustering representation learning.

The public API for method authors is `Method`, `RunContext`, `Batch` and
`crlbench.testing.check_method`; everything else is reached through the `crlbench` command.
The three classes are loaded on first use, so that commands which read records or configs
(`crlbench table`, `plot`, `report`, `suites`, `--help`) start without importing torch.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crlbench.protocol import Batch, Method, RunContext

try:
    __version__ = version("crlbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["Batch", "Method", "RunContext", "__version__"]
_PROTOCOL = ("Batch", "Method", "RunContext")


def __getattr__(name: str) -> Any:
    if name in _PROTOCOL:
        from crlbench import protocol

        return getattr(protocol, name)
    raise AttributeError(f"module 'crlbench' has no attribute {name!r}")
