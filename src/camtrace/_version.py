"""The installed package's version, read from its metadata (one source: pyproject.toml)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("camtrace")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
