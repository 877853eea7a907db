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
    index = int(name.partition(":")[2] or 0) if name.startswith("cuda") else 0
    if index >= max(torch.cuda.device_count(), 1):
        raise InputError(f"--device {name}: torch sees {torch.cuda.device_count()} CUDA GPUs "
                         "(cuda:0 ..); give one of them or --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps: torch sees no Apple GPU here; use --device cpu")
    return name
