"""The device the bound engines run on, from ``--device``."""

from __future__ import annotations

import torch

from nnbisim.core.errors import InputError


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; a CUDA device must exist."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: torch sees no CUDA GPU here; use --device cpu")
    return name
