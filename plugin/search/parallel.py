"""One decision's branch and bound on many workers (``--workers N``, or Ray).

:func:`decide` first searches in the coordinator's own process (the witness search, then
:data:`PRELUDE` boxes per worker), then deals the open boxes into about twice as many pieces as
workers. A worker takes a piece and searches it for :data:`SLICE` seconds, resuming its boxes
(:class:`~nnbisim.search.bab_types.OpenBoxes`: what a slice proved stays proved, nothing is
searched twice, the witness search is not repeated); what it leaves open comes back and joins
the queue, dealt again while there are fewer pieces than twice the workers, so a worker that
finishes early takes part of another's work (work stealing through the queue, as nnenum and
Marabou's divide and conquer share theirs). Local workers are forked from the coordinator
(when torch runs on one thread here), so they start at once with the subject already built.

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

from nnbisim.adapters.executor import Executor, forked, one_torch_thread
from nnbisim.core.pool import OK, STOP, Feedback, Outcome, Unit
from nnbisim.core.verdict import Status
from nnbisim.search import decide as sequential
from nnbisim.search.bab_types import OpenBoxes
from nnbisim.search.decide import CaseRecord, DecideOptions, Decision, How
from nnbisim.search.subjects import Subject
from nnbisim.specs.sets import SpecCase

PRELUDE = 16  # boxes per worker the coordinator bounds itself before dealing the open ones
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
                 resume: OpenBoxes | None, seconds: float, options: DecideOptions,
                 max_boxes: int | None = None) -> dict:
    """In a worker: one piece searched for ``seconds`` (and ``max_boxes``)."""
    d = sequential.decide(_subject(key, recipe), [case], seconds, options,
                          resume=None if resume is None else [resume], max_boxes=max_boxes)
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
    seconds: float | None = None  # this piece's slice (None: SLICE)
    searched: bool = False  # its witness search ran (and found nothing)
    witness: bool = False  # only the case's witness search (no boxes of its own)


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
    remnants: list[_Piece] = field(default_factory=list)  # pieces left open for good

    def unit(self, piece: _Piece) -> Unit:
        left = self.deadline - time.perf_counter()
        seconds = max(0.05, min(piece.seconds or SLICE, left))
        self.serial += 1
        name = f"piece {self.serial}"
        self.flying[name] = piece
        opts = replace(self.options, search=False) if piece.searched else self.options
        if piece.witness:  # the witness search alone: one box bounded after it
            return Unit(name, search_slice, (self.key, self.recipe, self.cases[piece.case],
                                             None, left, opts, 1), timeout=left + SLACK)
        return Unit(name, search_slice, (self.key, self.recipe, self.cases[piece.case],
                                         piece.resume, seconds, opts),
                    timeout=seconds + SLACK)

    def open(self) -> bool:
        """Are boxes still unproved (in a piece queued or in flight)?"""
        return any(not p.witness for p in self.flying.values())

    def landed(self, o: Outcome) -> Feedback:
        piece = self.flying.pop(o.key, None)
        if piece is None:  # not a piece of this run (none is handed out otherwise)
            return None
        if o.status != OK:
            piece.tries += 1
            if piece.tries > RETRIES:
                if not piece.witness:
                    self.lost = True
                    self.remnants.append(piece)
                return None if self.open() else STOP
            return [self.unit(piece)]
        r = o.value
        self.boxes += r["boxes"]
        self.slices += 1
        if r["status"] is Status.VIOLATED:
            self.x = r["x"]
            return STOP
        if r["status"] is Status.HOLDS or piece.witness:
            return None if self.open() else STOP  # proved: a witness search still running
            # has nothing left to find
        left = r["left"]
        if time.perf_counter() >= self.deadline:
            self.lost = True
            self.remnants.append(_Piece(piece.case, left))
            return STOP
        if left is None:  # the witness search took the slice: again, longer, without it
            return [self.unit(_Piece(piece.case, None, seconds=2 * (piece.seconds or SLICE),
                                     searched=True))]
        n = max(1, min(len(left), 2 * self.slots - len(self.flying)))
        return [self.unit(_Piece(piece.case, part)) for part in dealt(left, n)]


def _pieces(d: Decision, slots: int) -> list[_Piece]:
    """The open boxes the coordinator's own first search left, per case, dealt into about
    twice as many pieces as workers (in proportion to each case's boxes)."""
    sizes = [0 if left is None else len(left) for left in d.left]
    total = max(sum(sizes), 1)
    out = []
    for c, left in enumerate(d.left):
        if left is None:  # not reached by the first search (a witness unit searches it)
            out.append(_Piece(c, None, searched=True))
        elif len(left):
            n = max(1, round(2 * slots * len(left) / total))
            out += [_Piece(c, part) for part in dealt(left, n)]
    return out


def _left(run: _Run, first: Decision) -> tuple[OpenBoxes | None, ...]:
    """Per case the boxes still open when the search stopped (None: the whole box), so that
    a caller can resume them, as from the search in one process."""
    pieces = [p for p in run.flying.values() if not p.witness] + run.remnants
    out = []
    for c, prior in enumerate(first.left):
        mine = [p for p in pieces if p.case == c]
        if any(p.resume is None for p in mine) or (prior is None and mine):
            out.append(None)
        elif not mine:  # every piece of it came back proved: nothing open
            out.append(None if prior is None else OpenBoxes(
                prior.lo[:0], prior.hi[:0], prior.ub[:0],
                None if prior.slope is None else prior.slope[:0], prior.closed, prior.key))
        else:
            parts = [p.resume for p in mine]
            slope = (None if any(b.slope is None for b in parts)
                     else np.concatenate([b.slope for b in parts]))
            out.append(OpenBoxes(np.concatenate([b.lo for b in parts]),
                                 np.concatenate([b.hi for b in parts]),
                                 np.concatenate([b.ub for b in parts]), slope,
                                 np.max([b.closed for b in parts], axis=0), parts[0].key))
    return tuple(out)


def decide(recipe: Callable[[], Subject], cases: Sequence[SpecCase], time_budget: float,
           options: DecideOptions = DecideOptions(), *, executor: Executor | None = None,
           max_boxes: int | None = None, resume: Sequence[OpenBoxes | None] | None = None,
           subject: Subject | None = None) -> Decision:
    """:func:`nnbisim.search.decide.decide` of ``recipe()`` on ``executor``'s workers (see the
    module docstring); sequential in this process with one worker, none, or ``max_boxes``.
    The coordinator runs the first :data:`PRELUDE` boxes per worker itself (on ``subject``
    if given, else on ``recipe()``), from ``resume`` as the search in one process does, then
    deals what is open; local workers are forked from it (no start-up). The decision's
    ``left`` holds the boxes still open, per case."""
    t0 = time.perf_counter()
    subject = subject if subject is not None else recipe()
    if executor is None or (executor.slots == 1 and executor.ray is None) or max_boxes:
        return sequential.decide(subject, cases, time_budget, options, resume=resume,
                                 max_boxes=max_boxes)
    key = hashlib.sha256(pickle.dumps(recipe)).hexdigest()
    _SUBJECTS[key] = subject  # forked workers inherit it
    first = sequential.decide(subject, cases, time_budget, replace(options, search=False),
                              resume=resume, max_boxes=PRELUDE * executor.slots)
    if first.status is not Status.TIMEOUT or time.perf_counter() - t0 >= time_budget:
        return first
    run = _Run(recipe, key, cases, options, t0 + time_budget, executor.slots,
               boxes=first.boxes)
    fresh = [c for c in range(len(cases)) if resume is None or resume[c] is None]
    witnesses = [_Piece(c, None, witness=True) for c in fresh] if options.search else []
    forked(executor).run([run.unit(p) for p in [*witnesses, *_pieces(first, executor.slots)]],
                         run.landed, initializer=warm)
    seconds = time.perf_counter() - t0
    note = (CaseRecord(0, How.BAB, boxes=run.boxes, seconds=round(seconds, 3),
                       open=sum(not p.witness for p in run.flying.values()),
                       slices=run.slices),)
    if run.x is not None:
        return Decision(Status.VIOLATED, run.x, seconds, note, _left(run, first))
    proved = not run.open() and not run.lost  # every piece came back proved
    return Decision(Status.HOLDS if proved else Status.TIMEOUT, None, seconds, note,
                    _left(run, first))
