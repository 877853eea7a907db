"""The first paper's argument on a box: certify ``N1 - N2`` over it, enlarge N1's unsafe set by
it, and N2 never reaching the enlarged set proves N1 never reaches the original one
(:func:`~nnbisim.specs.assurance.enlarge`). Only the sides of ``N1 - N2`` the unsafe set uses
are certified (:func:`objectives_of`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nnbisim.core.reports import EpsilonReport
from nnbisim.search.stop import work_part
from nnbisim.specs.assurance import enlarge
from nnbisim.specs.sets import InputSet, OutputConstraint, SpecCase
from nnbisim.tasks.epsilon import compute_epsilon
from nnbisim.tasks.options import EpsilonOptions

Sides = set[tuple[int, int]]  # (output, sign): the minimum (-1) or maximum (+1) of N1 - N2
# eps on a box for the enlargement: each output's interval on its own, to 5%
BOX_EPS = EpsilonOptions(aim="outputs", rel_gap=0.05)
MIN_BUDGET = 0.5  # seconds a box's certification gets at least


def objectives_of(unsafe: OutputConstraint) -> Sides:
    """The ``(output, sign)`` sides of ``N1 - N2`` the enlarged unsafe set depends on: for
    ``C y1 <= d``, the minimum of output ``j`` where some ``C_j > 0``, its maximum where some
    ``C_j < 0`` (:func:`~nnbisim.specs.assurance.enlarge`)."""
    out: Sides = set()
    for p in unsafe.disjuncts:
        for j in np.flatnonzero(np.any(p.mat > 0, axis=0)):
            out.add((int(j), -1))
        for j in np.flatnonzero(np.any(p.mat < 0, axis=0)):
            out.add((int(j), 1))
    return out


def used_interval(rep: EpsilonReport, needed: Sides) -> tuple[np.ndarray, np.ndarray]:
    """Per-output ``[lo, hi]`` of ``N1 - N2`` for :func:`enlarge`: the certified sides that are
    needed; an unneeded side is set to the other one (or 0), which leaves every term of the
    enlargement unchanged (its coefficients have the sign that selects the needed side)."""
    lo = np.array([o.min_certified for o in rep.outputs])
    hi = np.array([o.max_certified for o in rep.outputs])
    for j in range(len(lo)):
        has_lo, has_hi = (j, -1) in needed, (j, 1) in needed
        if not has_lo:
            lo[j] = hi[j] if has_hi else 0.0
        if not has_hi:
            hi[j] = lo[j]
    return lo, hi


def eps_closed(rep: EpsilonReport, needed: Sides, gap: float) -> bool:
    """Whether every needed side of ``N1 - N2`` is certified within ``gap`` of its witness."""
    for o in rep.outputs:
        if (o.index, 1) in needed and o.max_certified > o.max_witnessed + gap * abs(
                o.max_witnessed) + 1e-12:
            return False
        if (o.index, -1) in needed and o.min_certified < o.min_witnessed - gap * abs(
                o.min_witnessed) - 1e-12:
            return False
    return True


def box_eps(n1_path: Path, n2_path: Path, case: SpecCase, needed: Sides, budget: float,
            device: str = "cpu", max_boxes: int | None = None) -> EpsilonReport:
    """``N1 - N2`` certified over the case's box, on the sides its unsafe set uses (within
    ``budget`` seconds and the work limit ``max_boxes``, if given)."""
    return compute_epsilon(n1_path, n2_path, InputSet.of(case.box),
                           replace(BOX_EPS, time_budget=budget, device=device,
                                   objectives=frozenset(needed), max_boxes=max_boxes))


@dataclass(frozen=True)
class EnlargedCase:
    """One box of a property of N1 with the unsafe set N2 must avoid there, and the interval
    of ``N1 - N2`` it was enlarged by: certified on the ``needed`` ``(output, sign)`` sides, the
    others filled as :func:`used_interval` does (they do not enter the enlargement)."""

    case: SpecCase
    lower: np.ndarray
    upper: np.ndarray
    needed: frozenset[tuple[int, int]]
    seconds: float
    boxes: int = 0  # bounded by the branch and bound that certified it

    def side(self, j: int, sign: int) -> float | None:
        """The certified bound of output ``j``'s minimum (-1) or maximum (+1), if used."""
        if (j, sign) not in self.needed:
            return None
        return float(self.lower[j] if sign < 0 else self.upper[j])


def enlarged_cases(n1_path: str | Path, n2_path: str | Path, cases: list[SpecCase],
                   time_budget: float = 60.0, *, device: str = "cpu",
                   max_boxes: int | None = None,
                   progress: Callable[[str], None] | None = None) -> list[EnlargedCase]:
    """Per box of ``cases``: certify ``N1 - N2`` over it (only the sides its unsafe set uses,
    the budget, and the work limit ``max_boxes`` if given, shared evenly among the boxes) and
    enlarge the unsafe set by it, so that N2 never reaching the enlarged sets proves N1 never
    reaches the original ones."""
    say = progress or (lambda _m: None)
    out = []
    deadline = time.perf_counter() + time_budget
    for k, case in enumerate(cases):
        t0 = time.perf_counter()
        needed = objectives_of(case.unsafe)
        budget = max((deadline - t0) / (len(cases) - k), MIN_BUDGET)
        boxes = work_part(max_boxes, sum(e.boxes for e in out), len(cases) - k)
        rep = box_eps(Path(n1_path), Path(n2_path), case, needed, budget, device,
                      None if boxes is None else max(boxes, 1))
        lo, hi = used_interval(rep, needed)
        out.append(EnlargedCase(SpecCase(case.box, enlarge(case.unsafe, lo, hi)), lo, hi,
                                frozenset(needed), time.perf_counter() - t0, rep.boxes))
        say(f"box {k}: N1 - N2 certified in {time.perf_counter() - t0:.1f} s")
    return out
