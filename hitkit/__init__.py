"""hitkit: from a network's checkpoints to a measured human alignment of its invariances."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hitkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
