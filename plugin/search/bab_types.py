"""What a branch and bound over input boxes takes and gives: the problem, the options (every
tunable, with the defaults that were measured), the open boxes it leaves, its result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nnbisim.bounds.bounded import BoundFn, ValueFn
from nnbisim.search.stop import StopReason

SPLIT_RULES = ("slope", "widest", "hybrid", "smart")
CHOOSE_RULES = ("worst", "gain")


@dataclass(frozen=True)
class BabOptions:
    """How :func:`~nnbisim.search.input_bab.input_bab` searches.

    Stopping: ``rel_gap``/``abs_gap`` (the certified bound within this of the best value),
    ``time_budget`` seconds, ``max_boxes`` boxes bounded (a reproducible work limit, never
    passed once the first boxes are bounded: the search stops when its next split could pass
    it; None: none). With a work limit every step is sized by work, not by the clock, so that
    the same problem gives the same search on any machine: batches of about ``max_boxes /
    work_steps`` bounds (never more than the limit has left) and a polish every
    ``polish_every_boxes`` boxes bounded; the time budget is then only a safety net (a search
    it stops is not reproducible).
    ``joint``: certify ``max_k max_x f_k`` (eps, the infinity norm: an objective needs refining
    only where it could still exceed the overall best value); else every objective to its own
    gap. ``batch`` boxes are split per step, or, with None, as many as make a step take about
    ``step_seconds`` (never more than half the budget left; 4 to ``max_batch`` boxes): each
    bound call has a fixed cost whatever its batch, and at 0.1 s the batches stayed at a few
    boxes (``bench/results/bab_steps.md``: 1 s decided the 20 focus instances in 135 s against
    267 s at 0.1 s). ``split`` picks the dimension: ``slope`` (where the worst objective's
    bound function varies most, slope times width, as ReluVal), ``widest`` (relative to the
    set), ``hybrid`` (bound the splits of both, keep the better) or ``smart`` (bound the halves
    of every dimension, or of the ``smart_top`` dimensions of largest slope times width, the
    relatively widest always among them: 2 bounds per dimension tried; ``hybrid`` above
    ``smart_max_inputs`` dimensions).
    ``choose`` compares candidate splits: ``worst`` (the worse half's score) or ``gain``
    (settled halves first, then the relative drop of the halves' scores; gains below
    ``gain_noise`` are rounding and count as none, sides under ``thin`` of the box's widest
    are not split). ``lazy``: kept halves get the sharper bound (the problem's ``tighten``)
    only once a split has stalled. Every ``polish_every`` seconds, local searches start from
    the ``polish_boxes`` best boxes' centres and the best of ``polish_samples`` random points
    of the open boxes (at most ``polish_points`` values per input dimension),
    ``polish_climbs`` of them.
    """

    rel_gap: float = 0.01
    abs_gap: float = 1e-9
    time_budget: float = 10.0
    max_boxes: int | None = None
    work_steps: int = 64
    polish_every_boxes: int = 500
    joint: bool = True
    batch: int | None = None
    step_seconds: float = 1.0
    max_batch: int = 4096
    split: str = "hybrid"
    choose: str = "worst"
    smart_max_inputs: int = 16
    smart_top: int | None = None  # None: every dimension (a decision takes its subject's)
    gain_noise: float = 1e-9
    thin: float = 1e-9
    lazy: bool = False
    polish_every: float = 1.0
    polish_boxes: int = 8
    polish_samples: int = 20_000
    polish_points: int = 2_000_000
    polish_climbs: int = 16


@dataclass(frozen=True)
class BabProblem:
    """Maximise every objective over the union of boxes ``lower[j] <= x <= upper[j]``.

    ``bound`` must be sound (upper bounds of each objective's maximum over each box);
    ``value`` evaluates the objectives at points. ``tighten``: a sharper (costlier) sound
    bound for the boxes ``bound`` leaves open once kept; splits are chosen on ``bound``, except
    for boxes where that stalls (neither half of the best split scores better than the box):
    their splits are chosen again on ``tighten``'s bounds of every candidate. ``polish``, if
    given, improves points (a local search). ``target`` turns the search into a decision: it
    stops as soon as an objective reaches the target (FOUND) or no box can (EXHAUSTED).
    ``scale``: the widths splits are measured against (default: the extent of the boxes)."""

    lower: np.ndarray
    upper: np.ndarray
    bound: BoundFn
    value: ValueFn
    tighten: BoundFn | None = None
    polish: Callable[[np.ndarray], np.ndarray] | None = None
    target: float | None = None
    scale: np.ndarray | None = None


@dataclass(frozen=True)
class OpenBoxes:
    """The boxes a search left open, ``lo[j] <= x <= hi[j]`` (B, n), with their sound upper
    bounds ``ub`` (B, K) and split slopes (B, n) or None: everything outside them (within the
    searched set) was proved below the floor, with bounds at most ``closed`` (K,), so a later
    search on the same objectives and floor can resume from them instead of starting over."""

    lo: np.ndarray
    hi: np.ndarray
    ub: np.ndarray
    slope: np.ndarray | None
    closed: np.ndarray
    # what the search was about (set by the caller, e.g. :func:`~nnbisim.search.decide.decide`:
    # the function and the unsafe polytopes); a search resumed from these boxes checks it
    key: str = ""

    def __len__(self) -> int:
        return len(self.lo)

    def within(self, lower: np.ndarray, upper: np.ndarray) -> OpenBoxes:
        """The open part inside the box ``lower <= x <= upper``: each open box cut to it, the
        ones that do not meet it (or only touch it in a face of zero width where the box has
        width) dropped. The bounds stay sound: a part of a box has no larger maximum."""
        lo, hi = np.maximum(self.lo, lower), np.minimum(self.hi, upper)
        flat = (upper - lower) <= 0
        keep = np.all((hi > lo) | ((hi == lo) & flat), axis=1)
        return OpenBoxes(lo[keep], hi[keep], self.ub[keep],
                         None if self.slope is None else self.slope[keep], self.closed, self.key)


@dataclass(frozen=True)
class BabResult:
    """Per objective ``k``: ``value[k] <= max_x f_k <= upper[k]``, attained at ``x[k]``.
    ``left``: the boxes still open when the search stopped (None where not kept)."""

    upper: np.ndarray
    value: np.ndarray
    x: np.ndarray
    boxes: int
    seconds: float
    reason: StopReason
    left: OpenBoxes | None = None

    @property
    def complete(self) -> bool:
        return self.reason.complete
