"""acr-retention: retention and cleanup policy engine for Azure Container Registry."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("acr-retention")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
