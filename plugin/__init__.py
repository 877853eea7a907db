"""nnbisim: certified distance between an original and a compressed ReLU network."""

from __future__ import annotations

import time as _time

# when the package was first imported: a bound on how long this program has run (see
# nnbisim.cli.main.process_age; a process that bash exec'd keeps bash's start time)
IMPORTED_AT = _time.perf_counter()

from nnbisim.core.errors import (  # noqa: E402 - after the clock above, on purpose
    InputError,
    NnbisimError,
    OverwriteError,
    ShapeMismatchError,
    SpecError,
    UnsupportedModelError,
    VerifierError,
)
from nnbisim.core.model import Layer, Network  # noqa: E402

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
