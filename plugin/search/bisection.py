"""Closing the gap between witnessed and certified with an exact verifier, by bisection.

Per output ``i`` and sign ``s`` the verifier is asked "exists x in X with s*(y1 - y2)_i >= t"
on the merged ONNX, one input box, one output and one sign per query (Marabou's answers on
disjunctions are not trusted). ``unsat`` on every box lowers the certified bound to ``t``; a
``sat`` answer's counterexample is replayed on the two original files and raises the witnessed
bound to the replayed value (often far above ``t``); a timeout or unknown ends the search for
that output and sign and is reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnbisim.core.verdict import Status
from nnbisim.search.input_bab import gap_closed
from nnbisim.specs.discrepancy import violation_property
from nnbisim.specs.sets import InputSet
from nnbisim.specs.vnnlib1 import write_vnnlib1
from nnbisim.verifiers.registry import Verifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Query:
    """One verifier call of the bisection."""

    index: int
    sign: int
    box: int
    threshold: float
    status: str
    seconds: float
    replayed: float | None = None  # s*(y1-y2)_i of the counterexample on the original files
    property: str = ""

    def to_json(self) -> dict:
        return {"index": self.index, "sign": self.sign, "box": self.box,
                "threshold": self.threshold, "status": self.status,
                "seconds": round(self.seconds, 3), "replayed": self.replayed,
                "property": self.property}


@dataclass
class Bracket:
    """The interval ``[witnessed, certified]`` of ``max s*(y1 - y2)_i`` as bisection moves it."""

    index: int
    sign: int
    witnessed: float
    certified: float
    witness_x: np.ndarray | None
    queries: list[Query] = field(default_factory=list)
    stopped: str = ""  # why the search ended: "gap", "budget", "timeout", "unknown", ...


def bisect(
    bracket: Bracket,
    merged: Path,
    inputs: InputSet,
    n_merged: int,
    offset: int,
    verifier: Verifier,
    replay: Callable[[np.ndarray], np.ndarray],
    workdir: Path,
    *,
    rel_gap: float = 0.01,
    abs_gap: float = 1e-9,
    deadline: float,
    query_timeout: float = 60.0,
    floor: float = -np.inf,
) -> Bracket:
    """Move ``bracket`` towards the exact maximum until the gap closes or ``deadline`` passes.

    ``replay`` maps inputs (n, in) to ``N1 - N2`` on the original files; ``deadline`` is a
    ``time.perf_counter()`` value. ``floor``: a value known to be attained elsewhere (eps's
    witnessed value when only eps matters): the search then only needs the certified bound
    within the gap of ``max(witnessed, floor)``.
    """
    i, s = bracket.index, bracket.sign
    tag = f"{i}_{'pos' if s > 0 else 'neg'}"
    step = 0
    while True:
        if gap_closed(max(bracket.witnessed, floor), bracket.certified, rel_gap, abs_gap):
            bracket.stopped = "gap"
            return bracket
        left = deadline - time.perf_counter()
        if left <= 1.0:
            bracket.stopped = "budget"
            return bracket
        t = (max(bracket.witnessed, floor) + bracket.certified) / 2
        all_hold = True
        for b, box in enumerate(inputs.boxes):
            step += 1
            prop = workdir / f"bisect_{tag}_{step}.vnnlib"
            write_vnnlib1(violation_property(InputSet.of(box), n_merged, i, s, t,
                                             offset=offset), prop)
            timeout = min(query_timeout, deadline - time.perf_counter())
            verdict = verifier.check(merged, prop, max(timeout, 1.0))
            replayed = None
            if verdict.status is Status.VIOLATED and verdict.counterexample is not None:
                x = np.asarray(verdict.counterexample, np.float64).reshape(1, -1)
                replayed = float(s * replay(x)[0, i])
                if replayed > bracket.witnessed:
                    bracket.witnessed, bracket.witness_x = replayed, x[0]
            bracket.queries.append(Query(i, s, b, t, verdict.status.vnncomp, verdict.seconds,
                                         replayed, prop.name))
            log.info("bisection %s box %d: t=%g -> %s", tag, b, t, verdict.status.value)
            if verdict.status is Status.VIOLATED:
                all_hold = False
                if replayed is None or replayed < t - max(abs_gap, 1e-6 * abs(t)):
                    # sat at t but the originals do not reach t: float32 rounding of the
                    # files; nothing more can be learnt from this threshold
                    bracket.stopped = "no progress (counterexample below threshold on replay)"
                    return bracket
                break
            if verdict.status is not Status.HOLDS:
                bracket.stopped = verdict.status.value
                return bracket
        if all_hold:
            bracket.certified = min(bracket.certified, t)
