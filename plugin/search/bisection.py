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

from nnbisim.core import interrupt
from nnbisim.core.verdict import Status, Verdict, Verifier
from nnbisim.search.stop import StopReason, gap_closed
from nnbisim.specs.discrepancy import violation_property
from nnbisim.specs.sets import InputSet
from nnbisim.specs.vnnlib1 import write_vnnlib1

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Query:
    """One verifier call of the bisection."""

    index: int
    sign: int
    box: int
    threshold: float
    status: Status
    seconds: float
    replayed: float | None = None  # s*(y1-y2)_i of the counterexample on the original files
    property: str = ""

    def to_json(self) -> dict:
        return {"index": self.index, "sign": self.sign, "box": self.box,
                "threshold": self.threshold, "status": self.status.vnncomp,
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
    stopped: StopReason | None = None  # why the search ended


@dataclass(frozen=True)
class ExactQueries:
    """How bisection asks an exact verifier: on the ``merged`` ONNX (``n_merged`` outputs, the
    differences from ``offset`` on), over ``inputs``, property files written to ``workdir``;
    ``replay`` maps inputs (n, in) to ``N1 - N2`` on the original files. It stops within
    ``rel_gap``/``abs_gap``; one query takes at most ``query_timeout`` seconds."""

    merged: Path
    inputs: InputSet
    n_merged: int
    offset: int
    verifier: Verifier
    replay: Callable[[np.ndarray], np.ndarray]
    workdir: Path
    rel_gap: float = 0.01
    abs_gap: float = 1e-9
    query_timeout: float = 60.0


def _ask(bracket: Bracket, q: ExactQueries, t: float, deadline: float) -> StopReason | bool:
    """Ask every box whether ``s*(y1 - y2)_i >= t`` is reachable: True when every box says
    unsat, False on a replayed sat (the witness raised), else why the search must stop."""
    i, s = bracket.index, bracket.sign
    tag = f"{i}_{'pos' if s > 0 else 'neg'}"
    for b, box in enumerate(q.inputs.boxes):
        prop = q.workdir / f"bisect_{tag}_{len(bracket.queries) + 1}.vnnlib"
        write_vnnlib1(violation_property(InputSet.of(box), q.n_merged, i, s, t,
                                         offset=q.offset), prop)
        timeout = min(q.query_timeout, deadline - time.perf_counter())
        verdict = q.verifier.check(q.merged, prop, max(timeout, 1.0))
        replayed = _replayed(bracket, q, verdict)
        bracket.queries.append(Query(i, s, b, t, verdict.status, verdict.seconds, replayed,
                                     prop.name))
        log.info("bisection %s box %d: t=%g -> %s", tag, b, t, verdict.status.value)
        if verdict.status is Status.VIOLATED:
            if replayed is None or replayed < t - max(q.abs_gap, 1e-6 * abs(t)):
                # sat at t but the originals do not reach t: float32 rounding of the files;
                # nothing more can be learnt from this threshold
                return StopReason.NO_PROGRESS
            return False
        if verdict.status is not Status.HOLDS:  # a query cut short by Ctrl-C is no answer
            return StopReason.INTERRUPTED if interrupt.requested() else StopReason(
                verdict.status.value)
        if interrupt.requested() and b < len(q.inputs.boxes) - 1:
            return StopReason.INTERRUPTED
    return True


def _replayed(bracket: Bracket, q: ExactQueries, verdict: Verdict) -> float | None:
    """A sat answer's counterexample replayed on the originals (raising the witness if
    higher); None for other answers."""
    if verdict.status is not Status.VIOLATED or verdict.counterexample is None:
        return None
    x = np.asarray(verdict.counterexample, np.float64).reshape(1, -1)
    replayed = float(bracket.sign * q.replay(x)[0, bracket.index])
    if replayed > bracket.witnessed:
        bracket.witnessed, bracket.witness_x = replayed, x[0]
    return replayed


def bisect(bracket: Bracket, queries: ExactQueries, deadline: float,
           floor: float = -np.inf) -> Bracket:
    """Move ``bracket`` towards the exact maximum until the gap closes or ``deadline`` (a
    ``time.perf_counter()`` value) passes. ``floor``: a value known to be attained elsewhere
    (eps's witnessed value when only eps matters): the search then only needs the certified
    bound within the gap of ``max(witnessed, floor)``."""
    while True:
        low = max(bracket.witnessed, floor)
        if gap_closed(low, bracket.certified, queries.rel_gap, queries.abs_gap):
            bracket.stopped = StopReason.GAP
            return bracket
        if deadline - time.perf_counter() <= 1.0:
            bracket.stopped = StopReason.BUDGET
            return bracket
        if interrupt.requested():
            bracket.stopped = StopReason.INTERRUPTED
            return bracket
        t = (low + bracket.certified) / 2
        if any(q.threshold == t for q in bracket.queries):  # the same question again (a sat
            bracket.stopped = StopReason.NO_PROGRESS  # that replays just below t): no answer
            return bracket  # would differ
        answer = _ask(bracket, queries, t, deadline)
        if isinstance(answer, StopReason):
            bracket.stopped = answer
            return bracket
        if answer:
            bracket.certified = min(bracket.certified, t)
