"""Verifier answers as values, translated from each tool's own words at the edge.

A :class:`Verifier` decides one single-network VNN-LIB property on one ONNX model and answers
with a :class:`Verdict`; statuses are :class:`Status` members everywhere (their values are the
words the JSON reports carry).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


class Status(enum.StrEnum):
    """A decision's outcome. A ``StrEnum``: members compare equal to their JSON words."""

    HOLDS = "holds"  # the property's unsafe set is unreachable (VNN-COMP "unsat")
    VIOLATED = "violated"  # a replayed counterexample reaches it (VNN-COMP "sat")
    UNKNOWN = "unknown"
    TIMEOUT = "timeout"
    ERROR = "error"

    @property
    def vnncomp(self) -> str:
        """The word a VNN-COMP result file uses: ``unsat``, ``sat``, ``timeout``, ..."""
        return {"holds": "unsat", "violated": "sat"}.get(self.value, self.value)

    @property
    def decided(self) -> bool:
        return self in (Status.HOLDS, Status.VIOLATED)


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


@runtime_checkable
class Verifier(Protocol):
    """A tool that decides one single-network VNN-LIB property on one ONNX model."""

    name: str

    def check(self, model: Path, prop: Path, timeout: float) -> Verdict:
        """Decide ``prop`` on ``model`` within ``timeout`` seconds (wall clock)."""
        ...
