"""The ``nnbisim`` command line: the only layer that prints."""

from nnbisim.cli.main import main

__all__ = ["main"]
