"""What a bound engine hands to branch and bound: upper bounds of objectives per input box."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Bounded:
    """Upper bounds ``(B, K)`` of every objective over each box; optionally, per box and
    objective, the slopes of the linear function of x whose maximum is the bound (which
    dimensions to split; its peak is a witness candidate) and a better candidate input."""

    upper: np.ndarray
    vertex: np.ndarray | None = None
    slope: np.ndarray | None = None


BoundFn = Callable[[np.ndarray, np.ndarray], Bounded]  # (lower (B, n), upper (B, n))
ValueFn = Callable[[np.ndarray], np.ndarray]  # inputs (B, n) -> objective values (B, K)
