"""What the routes of an assured-compression decision share (:mod:`nnbisim.tasks.assure`): the
decision's state, the checker that asks N1 or N2, a route's outcome and the boxes it leaves."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from nnbisim.adapters.executor import Executor
from nnbisim.adapters.replay import OnnxRunner, output_tolerance
from nnbisim.core.model import Network
from nnbisim.core.reports import AssureReport, Piece, PieceResult, Route
from nnbisim.core.verdict import Status
from nnbisim.search import parallel
from nnbisim.search.bab_types import OpenBoxes
from nnbisim.search.decide import Decision
from nnbisim.search.subjects import Subject
from nnbisim.specs.sets import Box, OutputConstraint, SpecCase
from nnbisim.tasks.options import OWN_VERIFIER, AssureOptions
from nnbisim.verifiers.queries import per_disjunct
from nnbisim.verifiers.registry import get_verifier


class Leftover(NamedTuple):
    """A box a route leaves to N1 directly, with what it spent on it (eps and N2 seconds)."""

    case: int
    box: Box
    depth: int
    eps: float = np.nan
    eps_seconds: float = 0.0
    n2_seconds: float = 0.0


@dataclass(frozen=True)
class Outcome:
    """What a route ends with: a ``verdict`` (HOLDS or VIOLATED end the decision, with the
    replayed counterexample ``x``; TIMEOUT from the last route), the report's notes, and the
    boxes it leaves to N1 directly."""

    verdict: Status | None = None
    x: np.ndarray | None = None
    notes: tuple[str, ...] = ()
    left: tuple[Leftover, ...] = ()


class Checker:
    """Decides a property on N1 (1) or N2 (2): the own engine (which can go on from the open
    boxes of an earlier own branch and bound, ``resume``), or a plug-in verifier asked one box
    and unsafe polytope per query (which starts over). ``boxes``: what the own engine bounded in
    all its calls (a plug-in's work is not counted)."""

    def __init__(self, verifier: str, subjects: dict[int, Subject], paths: dict[int, Path],
                 work: Path, recipes: dict[int, Callable[[], Subject]] | None = None,
                 executor: Executor | None = None) -> None:
        self.own = verifier == OWN_VERIFIER
        self.subjects, self.paths, self.work = subjects, paths, work
        self.recipes, self.executor = recipes or {}, executor
        self.tool = None if self.own else get_verifier(verifier)
        self.asked, self.boxes = 0, 0

    def __call__(self, which: int, cases: list[SpecCase], seconds: float,
                 resume: Sequence[OpenBoxes | None] | None = None, max_boxes: int | None = None
                 ) -> tuple[Status, np.ndarray | None]:
        if self.tool is None:
            recipe = self.recipes.get(which, lambda: self.subjects[which])
            d = parallel.decide(recipe, cases, seconds, resume=resume, max_boxes=max_boxes,
                                subject=self.subjects[which],
                                executor=self.executor if which in self.recipes else None)
            self.boxes += d.boxes
            return d.status, d.x
        sub = self.work / f"q{self.asked}"
        self.asked += 1
        sub.mkdir()
        return per_disjunct(self.tool, self.paths[which], cases, seconds, sub)


@dataclass
class Assurance:
    """One decision's shared state: the property's cases, both networks (as subjects, N1's file
    in onnxruntime), the options and checker, and what the routes recorded: pieces, the notes
    on boxes given up, the quick look's decision and the open boxes the route through N2 left
    per case. ``boxes``: what the routes' own searches bounded outside the checker (the quick
    look, the branch and bound through N2, eps of the halves)."""

    n1_path: Path
    n2_path: Path
    cases: list[SpecCase]
    opts: AssureOptions
    n1: Network
    n2: Network
    s1: Subject
    check: Checker
    runner: OnnxRunner
    say: Callable[[str], None]
    t0: float = field(default_factory=time.perf_counter)
    pieces: list[Piece] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)
    quick: Decision | None = None
    left_by: dict[int, OpenBoxes] = field(default_factory=dict)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    boxes: int = 0

    @property
    def used(self) -> int:
        """Boxes bounded so far by every route (the work the limit counts)."""
        return self.boxes + self.check.boxes

    def work(self, share: float) -> int | None:
        """With a work limit, a route's part: ``share`` of what the limit has left (None: no
        limit)."""
        if self.opts.max_boxes is None:
            return None
        return int(share * max(self.opts.max_boxes - self.used, 0))

    @property
    def refined(self) -> bool:
        """The route through N2 refines by one branch and bound (else by halves)."""
        return self.opts.refine == "bab" and self.opts.verifier == OWN_VERIFIER

    def violates(self, x: np.ndarray | None, unsafe: OutputConstraint) -> bool:
        """Does ``x`` reach ``unsafe`` on N1's ONNX file (onnxruntime)?"""
        if x is None:
            return False
        y = self.runner.run(np.asarray(x, np.float64))
        return unsafe.satisfied_by(y, output_tolerance(y))

    def open_part(self, c: int, box: Box) -> OpenBoxes | None:
        """The part of ``box`` (inside case ``c``'s box) the quick look's branch and bound left
        open, or None where it kept no record (not searched, or resuming is off)."""
        d = self.quick
        if not self.opts.resume or d is None:
            return None
        opened = d.left[c] if c < len(d.left) else None
        return None if opened is None else opened.within(box.lower, box.upper)

    def record(self, c: int, box: Box, depth: int, how: tuple[Route, PieceResult],
               seconds: tuple[float, float, float] = (0.0, 0.0, 0.0), eps: float = np.nan,
               eps_witnessed: float = np.nan) -> None:
        """A piece's record: route and result, seconds on eps, N2 and N1 directly."""
        self.pieces.append(Piece(c, box.lower, box.upper, depth, *how, eps, *seconds,
                                 eps_witnessed))

    def report(self, out: Outcome) -> AssureReport:
        return AssureReport(out.verdict or Status.TIMEOUT, None if out.x is None
                            else np.asarray(out.x), tuple(self.pieces),
                            time.perf_counter() - self.t0, str(self.n2_path), out.notes,
                            self.opts.max_boxes, self.used)
