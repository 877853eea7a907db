"""Asking a verifier one (box, unsafe polytope) per query: what every external verifier gets,
since Marabou's answers on disjunctive properties are unreliable."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from nnbisim.adapters.marabou import MarabouVerifier
from nnbisim.core.verdict import Status, Verifier
from nnbisim.specs.sets import InputSet, OutputConstraint, Property, SpecCase
from nnbisim.specs.vnnlib1 import write_vnnlib1

MIN_QUERY = 1.5  # seconds: a verifier query given less is not started (start-up alone)


def per_disjunct(tool: Verifier, model: Path, boxes_unsafe: list[SpecCase], timeout: float,
                 work: Path) -> tuple[Status, np.ndarray | None]:
    """A verifier plug-in on ``model``, one query per (box, unsafe polytope), the time shared
    evenly among the queries still to ask: ``violated`` on the first counterexample (the
    plug-in replays it), ``holds`` when every query is unsat, else the first other answer
    (timeout, unknown). One output constraint per query because Marabou's answers on
    disjunctive properties are unreliable."""
    deadline = time.perf_counter() + timeout
    jobs = [(c, poly) for c in boxes_unsafe for poly in c.unsafe.disjuncts]
    worst = Status.HOLDS
    for k, (case, poly) in enumerate(jobs):
        share = (deadline - time.perf_counter()) / (len(jobs) - k)
        if share < MIN_QUERY:  # the queries left cannot all be asked in time
            return Status.TIMEOUT, None
        prop = work / f"disjunct_{k}.vnnlib"
        write_vnnlib1(Property(InputSet.of(case.box), OutputConstraint((poly,)),
                               poly.mat.shape[1]), prop)
        verdict = tool.check(model, prop, share)
        if verdict.status is Status.VIOLATED:
            return Status.VIOLATED, verdict.counterexample
        if verdict.status is not Status.HOLDS and worst is Status.HOLDS:
            worst = verdict.status  # keep looking: a later disjunct may be reachable
    return worst, None


def marabou_per_disjunct(model: Path, boxes_unsafe: list[SpecCase], timeout: float,
                         work: Path) -> tuple[Status, np.ndarray | None]:
    """:func:`per_disjunct` with Marabou."""
    return per_disjunct(MarabouVerifier(), model, boxes_unsafe, timeout, work)
