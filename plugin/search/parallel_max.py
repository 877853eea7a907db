"""One maximisation's branch and bound (eps's bracket) on many workers.

As :mod:`nnbisim.search.parallel` does for decisions: slices of
:func:`~nnbisim.search.input_bab.input_bab` on the executor's workers, each resuming a piece
of the open boxes and handing back what it leaves; the pieces are dealt again while there are
fewer than twice the workers. Every slice starts from the best values found so far by any
worker (the floor its boxes are closed against), and its better points come back to all.
The certified bound is the largest of: what finished slices closed or settled, the bounds of
the boxes still in pieces (known when they were handed out), and the best values. A slice
lost with its worker (three tries) keeps its boxes' bounds in that maximum: sound, only less
tight. The problem (closures) travels as a recipe, built once per worker process.
"""

from __future__ import annotations

import hashlib
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from nnbisim.adapters.executor import Executor, forked
from nnbisim.core.pool import OK, STOP, Feedback, Outcome, Unit
from nnbisim.search import parallel
from nnbisim.search.bab_types import BabOptions, BabProblem, BabResult, OpenBoxes
from nnbisim.search.input_bab import Progress, input_bab
from nnbisim.search.parallel import RETRIES, SLACK, dealt, warm
from nnbisim.search.stop import StopReason

_PROBLEMS: dict[str, BabProblem] = {}  # per worker process: recipes built so far


def maximise_slice(key: str, recipe: Callable[[], BabProblem], best: np.ndarray,
                   best_x: np.ndarray, options: BabOptions, resume: OpenBoxes | None
                   ) -> BabResult:
    """In a worker: one piece searched for ``options.time_budget`` seconds."""
    if key not in _PROBLEMS:
        if len(_PROBLEMS) > 4:
            _PROBLEMS.clear()
        _PROBLEMS[key] = recipe()
    return input_bab(_PROBLEMS[key], best, best_x, options, resume=resume)


@dataclass
class _Max:
    recipe: Callable[[], BabProblem]
    key: str
    options: BabOptions
    best: np.ndarray
    best_x: np.ndarray
    deadline: float
    slots: int
    settled: np.ndarray  # bounds of what finished slices closed or left settled
    flying: dict[str, tuple[OpenBoxes, int]] = field(default_factory=dict)
    boxes: int = 0
    serial: int = 0
    progress: Progress | None = None
    lost: bool = False  # a slice given up on: its boxes' bounds are in ``settled``

    def unit(self, piece: OpenBoxes, tries: int = 0) -> Unit:
        seconds = max(0.05, min(parallel.SLICE, self.deadline - time.perf_counter()))
        self.serial += 1
        name = f"slice {self.serial}"
        self.flying[name] = (piece, tries)
        return Unit(name, maximise_slice, (self.key, self.recipe, self.best.copy(),
                                           self.best_x.copy(),
                                           replace(self.options, time_budget=seconds), piece),
                    timeout=seconds + SLACK)

    def upper(self) -> np.ndarray:
        """The certified bound per objective now."""
        top = np.maximum(self.settled, self.best)
        for piece, _ in self.flying.values():
            if piece is not None and len(piece):
                top = np.maximum(top, piece.ub.max(axis=0))
        return top

    def landed(self, o: Outcome) -> Feedback:
        if o.key not in self.flying:
            return None  # not a slice of this run (none is handed out otherwise)
        piece, tries = self.flying.pop(o.key)
        if o.status != OK:
            if tries + 1 > RETRIES:  # its boxes' bounds stay in the maximum
                self.lost = True
                self.settled = np.maximum(self.settled, self._bound_of(piece))
                return None
            return [self.unit(piece, tries + 1)]
        return self._take(o.value)

    def _bound_of(self, piece: OpenBoxes) -> np.ndarray:
        return piece.ub.max(axis=0) if len(piece) else self.settled

    def _take(self, r: BabResult) -> Feedback:
        self.boxes += r.boxes
        better = r.value > self.best
        self.best = np.where(better, r.value, self.best)
        self.best_x[better] = r.x[better]
        left = r.left
        if r.complete or left is None:
            self.settled = np.maximum(self.settled, r.upper)
        else:
            self.settled = np.maximum(self.settled, left.closed)
        if self.progress is not None:
            self.progress(float(self.best.max()), float(self.upper().max()), self.boxes)
        if r.complete or left is None or not len(left):
            return None
        if time.perf_counter() >= self.deadline:
            self.settled = np.maximum(self.settled, left.ub.max(axis=0))
            return STOP
        n = max(1, min(len(left), 2 * self.slots - len(self.flying)))
        return [self.unit(part) for part in dealt(left, n)]


def maximise(recipe: Callable[[], BabProblem], start_values: np.ndarray, start_x: np.ndarray,
             options: BabOptions, *, executor: Executor,
             progress: Progress | None = None) -> BabResult:
    """:func:`~nnbisim.search.input_bab.input_bab` of ``recipe()`` on ``executor``'s workers
    within ``options.time_budget`` (see the module docstring); no boxes are handed back. The
    coordinator bounds the first ``parallel.PRELUDE`` boxes per worker itself; local workers
    are forked from it."""
    t0 = time.perf_counter()
    key = hashlib.sha256(pickle.dumps(recipe)).hexdigest()
    _PROBLEMS[key] = problem = recipe()  # forked workers inherit it
    first = input_bab(problem, start_values, start_x,
                      replace(options, max_boxes=parallel.PRELUDE * executor.slots),
                      progress=progress)
    if first.complete or first.left is None or time.perf_counter() - t0 >= options.time_budget:
        return first
    run = _Max(recipe, key, options, first.value.copy(), first.x.copy(),
               t0 + options.time_budget, executor.slots, first.left.closed.copy(),
               boxes=first.boxes, progress=progress)
    spread = forked(executor)
    spread.run([run.unit(part) for part in dealt(first.left, 2 * executor.slots)],
               run.landed, initializer=warm)
    upper = run.upper()
    done = not run.flying and not run.lost
    reason = StopReason.GAP if done else StopReason.BUDGET
    return BabResult(upper, run.best.copy(), run.best_x.copy(), run.boxes,
                     time.perf_counter() - t0, reason)
