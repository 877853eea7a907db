"""One error tree for the whole package.

Library code raises these and never prints; the CLI catches :class:`NnbisimError`, prints its
message as one line and exits with code 2.
"""

from __future__ import annotations


class NnbisimError(Exception):
    """Root of every error nnbisim raises on purpose."""


class InputError(NnbisimError):
    """A file or argument the user gave cannot be used. The message says what and how to fix."""


class UnsupportedModelError(InputError):
    """An ONNX model uses an operator or structure nnbisim cannot translate."""


class ShapeMismatchError(InputError):
    """Two networks, or a network and a spec, disagree on sizes."""


class SpecError(InputError):
    """A VNN-LIB file or an input-set description is malformed or not supported."""


class OverwriteError(InputError):
    """An output file exists and overwriting was not asked for."""


class VerifierError(NnbisimError):
    """A verifier could not be run or gave an answer nnbisim cannot read."""
