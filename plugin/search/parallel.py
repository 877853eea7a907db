"""One decision's branch and bound on many workers (``--workers N``, or Ray).

:func:`decide` runs in slices: a worker takes a *piece* (a case, and the boxes of it still
open) and searches it for :data:`SLICE` seconds; what it leaves open comes back and joins the
queue, dealt into several pieces while there are fewer pieces than twice the workers, so a
worker that finishes early takes part of another's work (work stealing through the queue, as
nnenum and Marabou's divide and conquer share theirs). The first slice of each case runs its
witness search; the later ones resume the open boxes (:class:`~nnbisim.search.bab_types.
OpenBoxes`), so what a slice proved stays proved and nothing is searched twice.

- ``violated`` as soon as a slice finds an input (the caller replays it), the rest killed;
- ``holds`` only when every piece of every case came back proved;
- a worker that dies under a slice: the executor runs it again, then the piece goes back to the
  queue (:data:`RETRIES` times); a piece lost for good leaves the answer ``timeout``, never
  ``holds``.

Subjects hold closures and cannot be pickled: a piece carries a *recipe* (e.g.
``functools.partial(pair, n1, n2, "diff")``), built once per worker process. One worker, or a
work limit (``max_boxes``, for reproducible runs), is the sequential search of
:func:`nnbisim.search.decide.decide`.
"""

from __future__ import annotations

import hashlib
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from nnbisim.adapters.executor import Executor, one_torch_thread
from nnbisim.core.pool import OK, STOP, Feedback, Outcome, Unit
from nnbisim.core.verdict import Status
from nnbisim.search import decide as sequential
from nnbisim.search.bab_types import OpenBoxes
from nnbisim.search.decide import CaseRecord, DecideOptions, Decision, How
from nnbisim.search.subjects import Subject
from nnbisim.specs.sets import SpecCase

FIRST = 2.0  # seconds of a case's first slice (its witness search and first splits)
SLICE = 3.0  # seconds of every later slice
SLACK = 60.0  # seconds past its slice before a worker is killed
RETRIES = 2  # times a piece whose worker died goes back to the queue
_SUBJECTS: dict[str, Subject] = {}  # per worker process: recipes built so far


def warm() -> None:
    """A worker's start: one torch thread, and this module's imports loaded."""
    one_torch_thread()


def _subject(key: str, recipe: Callable[[], Subject]) -> Subject:
    if key not in _SUBJECTS:
        if len(_SUBJECTS) > 4:
            _SUBJECTS.clear()
        _SUBJECTS[key] = recipe()
    return _SUBJECTS[key]


def search_slice(key: str, recipe: Callable[[], Subject], case: SpecCase,
                 resume: OpenBoxes | None, seconds: float, options: DecideOptions) -> dict:
    """In a worker: one piece searched for ``seconds``."""
    d = sequential.decide(_subject(key, recipe), [case], seconds, options,
                          resume=None if resume is None else [resume])
    return {"status": d.status, "x": d.x, "left": d.left[0] if d.left else None,
            "boxes": d.boxes}


def dealt(boxes: OpenBoxes, n: int) -> list[OpenBoxes]:
    """``boxes`` in ``n`` parts, dealt in order of their bounds (each part gets hard and easy
    ones alike)."""
    order = np.argsort(-boxes.ub.max(axis=1), kind="stable")
    out = []
    for j in range(min(n, len(boxes))):
        idx = order[j::n]
        out.append(OpenBoxes(boxes.lo[idx], boxes.hi[idx], boxes.ub[idx],
                             None if boxes.slope is None else boxes.slope[idx], boxes.closed,
                             boxes.key))
    return out


@dataclass
class _Piece:
    case: int
    resume: OpenBoxes | None  # None: the whole box, not split yet
    tries: int = 0
    seconds: float = SLICE
    searched: bool = False  # its witness search ran (and found nothing)


@dataclass
class _Run:
    """The coordinator's state: pieces in flight by unit key, boxes bounded, the answer."""

    recipe: Callable[[], Subject]
    key: str
    cases: Sequence[SpecCase]
    options: DecideOptions
    deadline: float
    slots: int
    flying: dict[str, _Piece] = field(default_factory=dict)
    boxes: int = 0
    serial: int = 0
    slices: int = 0  # slices that came back with an answer
    lost: bool = False  # a piece gave up on, or left open at the deadline
    x: np.ndarray | None = None

    def unit(self, piece: _Piece) -> Unit:
        left = self.deadline - time.perf_counter()
        seconds = max(0.05, min(piece.seconds, left))
        self.serial += 1
        name = f"piece {self.serial}"
        self.flying[name] = piece
        opts = replace(self.options, search=False) if piece.searched else self.options
        return Unit(name, search_slice, (self.key, self.recipe, self.cases[piece.case],
                                         piece.resume, seconds, opts),
                    timeout=seconds + SLACK)

    def landed(self, o: Outcome) -> Feedback:
        piece = self.flying.pop(o.key, None)
        if piece is None:  # a warm-up unit
            return None
        if o.status != OK:
            piece.tries += 1
            if piece.tries > RETRIES:
                self.lost = True
                return None
            return [self.unit(piece)]
        r = o.value
        self.boxes += r["boxes"]
        self.slices += 1
        if r["status"] is Status.VIOLATED:
            self.x = r["x"]
            return STOP
        if r["status"] is Status.HOLDS:
            return None
        if time.perf_counter() >= self.deadline:
            self.lost = True
            return STOP
        left = r["left"]
        if left is None:  # the witness search took the slice: again, longer, without it
            return [self.unit(_Piece(piece.case, None, seconds=2 * piece.seconds,
                                     searched=True))]
        n = max(1, min(len(left), 2 * self.slots - len(self.flying)))
        return [self.unit(_Piece(piece.case, part)) for part in dealt(left, n)]


def decide(recipe: Callable[[], Subject], cases: Sequence[SpecCase], time_budget: float,
           options: DecideOptions = DecideOptions(), *, executor: Executor | None = None,
           max_boxes: int | None = None) -> Decision:
    """:func:`nnbisim.search.decide.decide` of ``recipe()`` on ``executor``'s workers (see the
    module docstring); sequential in this process with one worker, none, or ``max_boxes``."""
    t0 = time.perf_counter()
    if executor is None or (executor.slots == 1 and executor.ray is None) or max_boxes:
        return sequential.decide(recipe(), cases, time_budget, options, max_boxes=max_boxes)
    run = _Run(recipe, hashlib.sha256(pickle.dumps(recipe)).hexdigest(), cases, options,
               t0 + time_budget, executor.slots)
    first = [run.unit(_Piece(c, None, seconds=FIRST)) for c in range(len(cases))]
    warmups = [Unit(f"warm {k}", warm) for k in range(max(0, executor.slots - len(first)))]
    executor.run([*first, *warmups], run.landed, initializer=warm)
    seconds = time.perf_counter() - t0
    note = (CaseRecord(0, How.BAB, boxes=run.boxes, seconds=round(seconds, 3),
                       open=len(run.flying), slices=run.slices),)
    if run.x is not None:
        return Decision(Status.VIOLATED, run.x, seconds, note)
    proved = not run.flying and not run.lost  # every piece came back proved
    return Decision(Status.HOLDS if proved else Status.TIMEOUT, None, seconds, note)
