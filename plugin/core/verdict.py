"""Verifier answers as values, translated from each tool's own words at the edge."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class Status(enum.Enum):
    HOLDS = "holds"  # the property's unsafe set is unreachable (VNN-COMP "unsat")
    VIOLATED = "violated"  # a replayed counterexample reaches it (VNN-COMP "sat")
    UNKNOWN = "unknown"
    TIMEOUT = "timeout"
    ERROR = "error"

    @property
    def vnncomp(self) -> str:
        return {"holds": "unsat", "violated": "sat"}.get(self.value, self.value)


@dataclass(frozen=True)
class Verdict:
    """One verifier answer: status, counterexample input (flattened) and output, seconds."""

    status: Status
    verifier: str
    seconds: float = 0.0
    counterexample: np.ndarray | None = None
    output: np.ndarray | None = None
    message: str = ""

    def to_json(self) -> dict:
        return {
            "status": self.status.value,
            "verifier": self.verifier,
            "seconds": round(self.seconds, 4),
            "counterexample": None
            if self.counterexample is None
            else [float(v) for v in np.ravel(self.counterexample)],
            "output": None if self.output is None else [float(v) for v in np.ravel(self.output)],
            "message": self.message,
        }
