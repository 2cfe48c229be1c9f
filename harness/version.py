"""The installed crlbench's version, read from its package metadata when first asked for
(`crlbench.__version__`): importlib.metadata costs a command's start-up 70 ms otherwise."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crlbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
