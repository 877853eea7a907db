"""nnbisim: certified distance between an original and a compressed ReLU network."""

from __future__ import annotations

from nnbisim.core.errors import (
    InputError,
    NnbisimError,
    OverwriteError,
    ShapeMismatchError,
    SpecError,
    UnsupportedModelError,
    VerifierError,
)
from nnbisim.core.model import Layer, Network

__version__ = "0.1.0"

__all__ = [
    "InputError",
    "Layer",
    "Network",
    "NnbisimError",
    "OverwriteError",
    "ShapeMismatchError",
    "SpecError",
    "UnsupportedModelError",
    "VerifierError",
    "__version__",
]
