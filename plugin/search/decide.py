"""Deciding a VNN-LIB property with the own engine: a witness for violated, a proof for holds.

A property is violated when some input of one of its boxes reaches one of its unsafe polytopes
(:mod:`nnbisim.search.margins`). Per case (a box and its unsafe polytopes): a witness search on
all polytopes together, then one branch and bound over the box with every polytope's margin as
an objective, deciding at 0. The outputs are a :class:`~nnbisim.search.subjects.Subject`'s: one
network, a pair, or N1 through N2.
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from nnbisim.core.verdict import Status
from nnbisim.search.bab_types import BabOptions, BabProblem, BabResult, OpenBoxes
from nnbisim.search.input_bab import input_bab
from nnbisim.search.margins import Margins, best_of, falsify
from nnbisim.search.stop import StopReason, work_part
from nnbisim.search.subjects import Subject
from nnbisim.specs.sets import SpecCase

MIN_SHARE = 0.05  # seconds: a case given less is not searched (its record says budget)
# of the budget, at most, for the witness searches' climbs (their samples always run): on a
# 784-input top-1 decision the climbs alone took 31 s of a 20 s budget
WITNESS_SHARE = 0.5
# of a case's time, at most, for the branch and bound run before its witness search
# (DecideOptions.probe): an easy property is proved in one box, where the search takes seconds
PROBE_SHARE = 0.25
# the quick witness search between the probe and the longer branch and bound before the full
# search (DecideOptions.search_after): this fraction of the samples, this many climbs
QUICK_SAMPLES, QUICK_RESTARTS = 1 / 8, 8


class Focus(enum.StrEnum):
    """Whether the branch and bound optimises the best row of each polytope in kept halves."""

    ON = "on"  # every half a split keeps open
    OFF = "off"  # plain CROWN only
    LAZY = "lazy"  # only once a split has stalled


class How(enum.StrEnum):
    WITNESS = "witness"  # the witness search
    BAB = "bab"  # the branch and bound


@dataclass(frozen=True)
class DecideOptions:
    """How :func:`decide` searches.

    ``combine``: bound sums of a polytope's rows too (:func:`~nnbisim.search.margins.
    combinations_of`; False: each row alone). ``split``, ``choose``: the branch and bound's
    split rule (default: the subject's). ``focus``: in each half a split keeps open, per
    polytope the row with the best plain CROWN bound is optimised further (alpha-CROWN's
    slopes on the same intermediate bounds; one network's subjects and ``through``); splits are
    chosen on plain CROWN except where it stalls. One network's outputs are split on every
    input dimension, keeping the split that settles most (``bench/results/split_rules.md``: on
    the 13 ACAS Xu instances the older rule took longest on, 151 s against 394 s).
    ``search``: False skips the witness search of cases searched from scratch (the caller ran
    one on the same outputs; the box's centre stands in for its best point). ``samples``:
    random points per box seeding the witness search's ``restarts`` climbs of ``climb_steps``
    steps (default: 2,000,000 / input size, within 1,024 and 200,000); the climbs stop once
    :data:`WITNESS_SHARE` of the budget has passed. ``probe``: boxes a fresh case's branch
    and bound may bound before its witness search (within :data:`PROBE_SHARE` of its time): a
    proof within them skips the search, otherwise the branch and bound goes on from the boxes
    they left open (0: search first, in full). ``search_after``: where the probe proves
    nothing, a quick witness search (:data:`QUICK_SAMPLES` of the samples,
    :data:`QUICK_RESTARTS` climbs) and then up to this share of a case's time of branch and
    bound go before the full witness search, which a proof in that time skips (0: the full
    search right after the probe). ``bab``: the branch and bound's other options (its
    budget, split rule and target are set per case; its
    ``smart_top``, where None, is the subject's: 4 dimensions for a pair, all for one network).
    """

    seed: int = 0
    combine: bool = True
    split: str | None = None
    choose: str | None = None
    focus: Focus = Focus.ON
    search: bool = True
    samples: int | None = None
    restarts: int = 64
    climb_steps: int = 100
    probe: int = 64
    search_after: float = 0.1
    bab: BabOptions = BabOptions()

    def samples_for(self, dim: int) -> int:
        if self.samples is not None:
            return self.samples
        return max(1024, min(200_000, 2_000_000 // max(dim, 1)))


@dataclass(frozen=True)
class CaseRecord:
    """How one case went: settled by the witness search or the branch and bound (why it
    stopped, boxes bounded, seconds, its bound and best margin, whether it resumed an earlier
    search, and how many boxes it left open)."""

    case: int
    how: How
    reason: StopReason | None = None
    margin: float | None = None
    boxes: int = 0
    seconds: float | None = None
    upper: float | None = None
    resumed: bool = False
    open: int | None = None
    slices: int | None = None  # searched in this many slices on workers (search.parallel)

    def to_json(self) -> dict:
        return {k: (v.value if isinstance(v, enum.Enum) else v)
                for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Decision:
    """The own engine's answer: ``violated`` with an input (to be replayed by the caller),
    ``holds`` with every box and polytope proved unreachable, or ``timeout``."""

    status: Status
    x: np.ndarray | None
    seconds: float
    problems: tuple[CaseRecord, ...] = field(default=())
    # per case, the boxes its branch and bound left open (None: not searched, the whole box)
    left: tuple[OpenBoxes | None, ...] = field(default=())

    @property
    def boxes(self) -> int:
        """Boxes bounded by every case's branch and bound."""
        return sum(p.boxes for p in self.problems)


def _starts(cases: Sequence[SpecCase], margins: list[Margins], again: list, opts: DecideOptions,
            rng: np.random.Generator, deadline: float, proved: list[bool]
            ) -> tuple[list, tuple | None]:
    """Per case the best margins known and their inputs (the witness search, its climbs
    stopped at ``deadline``, or the resumed boxes' centres; the centre alone where ``proved``
    already); and ``(case, margin, x)`` as soon as a witness reaches a polytope."""
    starts = []
    samples = opts.samples_for(cases[0].box.dim)
    for c, (case, m, opened) in enumerate(zip(cases, margins, again, strict=True)):
        if opened is not None:  # searched before: start from the open boxes' centres
            mid = (opened.lo + opened.hi) / 2 if len(opened) else case.box.lower[None]
            starts.append(best_of(m, mid))
            continue
        if not opts.search or proved[c]:
            starts.append(best_of(m, case.box.center[None]))
            continue
        g, x = falsify(m, case.box, rng, samples, opts.restarts, opts.climb_steps, deadline)
        starts.append((g, x))
        if g.max() >= 0:
            return starts, (c, float(g.max()), x[int(np.argmax(g))])
    return starts, None


def resume_key(subject: Subject, case: SpecCase, options: DecideOptions) -> str:
    """What a case's open boxes are about: the subject's function, the unsafe polytopes and
    how their rows are combined (the objectives), but not the box (resuming takes a part of
    it) nor how the outputs are bounded (a proof is a proof)."""
    h = hashlib.sha256(f"{subject.function}|{subject.n_outputs}|{options.combine}".encode())
    for poly in case.unsafe.disjuncts:
        for a in (poly.mat, poly.rhs):
            a = np.ascontiguousarray(a, np.float64)
            h.update(repr(a.shape).encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _checked_resume(resume: Sequence[OpenBoxes | None] | None, keys: list[str]
                    ) -> list[OpenBoxes | None]:
    """The open boxes to resume per case, refused where they come from a search of another
    function or unsafe set (an empty set of them would otherwise count as proved)."""
    if resume is None:
        return [None] * len(keys)
    again = list(resume)
    if len(again) != len(keys):
        raise ValueError(f"resume has {len(again)} entries for {len(keys)} cases")
    for c, opened in enumerate(again):
        if opened is not None and opened.key != keys[c]:
            raise ValueError(f"case {c}: the open boxes to resume come from a search of another "
                             "function or unsafe set (their key does not match); search it "
                             "afresh instead")
    return again


def _bab_options(subject: Subject, opts: DecideOptions, share: float, boxes: int | None
                 ) -> BabOptions:
    top = subject.smart_top if opts.bab.smart_top is None else opts.bab.smart_top
    return replace(opts.bab, time_budget=share, split=opts.split or subject.split_rule[0],
                   choose=opts.choose or subject.split_rule[1], lazy=opts.focus is Focus.LAZY,
                   max_boxes=opts.bab.max_boxes if boxes is None else boxes, smart_top=top)


def _record(c: int, res: BabResult, resumed: bool, before: int = 0) -> CaseRecord:
    """A case's branch and bound (``before``: boxes its probe bounded first)."""
    return CaseRecord(c, How.BAB, res.reason, float(res.value.max()), res.boxes + before,
                      round(res.seconds, 3), float(res.upper.max()), resumed,
                      len(res.left) if res.left is not None else None)


@dataclass
class _Probes:
    """The branch and bound run per fresh case before the witness searches (its record, the
    boxes it left open) and a violation it met, as ``(case, margin, x)``."""

    records: list[CaseRecord | None]
    left: list[OpenBoxes | None]
    hit: tuple[int, float, np.ndarray] | None = None

    def proved(self, c: int) -> bool:
        return self.records[c] is not None and self.records[c].reason is StopReason.EXHAUSTED

    def boxes(self, start: int = 0) -> int:
        return sum(r.boxes for r in self.records[start:] if r is not None)


@dataclass(frozen=True)
class _Cases:
    """One decision's cases with their margins, resume keys and the open boxes they resume."""

    subject: Subject
    cases: Sequence[SpecCase]
    margins: list[Margins]
    keys: list[str]
    again: list[OpenBoxes | None]

    def problem(self, c: int, options: DecideOptions) -> BabProblem:
        case, m = self.cases[c], self.margins[c]
        sharp = m.sharp if options.focus is not Focus.OFF and self.subject.focusable else None
        return BabProblem(case.box.lower[None], case.box.upper[None], m.bound, m.value, sharp,
                          m.polisher(case.box), 0.0, case.box.upper - case.box.lower)


def _probe(w: _Cases, options: DecideOptions, deadline: float, max_boxes: int | None,
           stage: tuple[int | None, float], probes: _Probes | None = None,
           starts: list | None = None) -> _Probes:
    """Branch and bound per fresh case before its full witness search, up to ``stage`` =
    (boxes, share of the case's time): properties proved in a box or two (most of NeuroDiff's
    set at eps 0.05) or a few hundred then cost no search, whose 200,000 samples and climbs
    take seconds. With ``probes`` (an earlier stage's) the unproved cases go on from the boxes
    it left open, from ``starts`` (per case, the best margins and inputs known)."""
    n = len(w.cases)
    probes = probes or _Probes([None] * n, [None] * n)
    if not options.search or options.probe < 1:
        return probes
    cap, part = stage
    for c in range(n):
        share = part * (deadline - time.perf_counter()) / (n - c)
        limit = work_part(max_boxes, probes.boxes(), n - c)
        boxes = limit if cap is None else cap if limit is None else min(cap, limit)
        if (w.again[c] is not None or probes.proved(c) or share <= MIN_SHARE
                or (boxes is not None and boxes < 1)):
            continue
        g0, x0 = (starts[c] if starts is not None
                  else best_of(w.margins[c], w.cases[c].box.center[None]))
        before = probes.records[c].boxes if probes.records[c] is not None else 0
        res = input_bab(w.problem(c, options), g0, x0,
                        _bab_options(w.subject, options, share, boxes), resume=probes.left[c])
        probes.records[c] = _record(c, res, False, before)
        probes.left[c] = None if res.left is None else replace(res.left, key=w.keys[c])
        if res.reason is StopReason.FOUND:
            probes.hit = (c, float(res.value.max()), res.x[int(np.argmax(res.value))])
            break
    return probes


def _searched(w: _Cases, options: DecideOptions, rng: np.random.Generator, climbs_end: float,
              probes: _Probes, deadline: float, max_boxes: int | None
              ) -> tuple[_Probes, list, tuple | None]:
    """The witness searches, after the probe: with ``search_after``, a quick one and more
    branch and bound first (the full search then only for the cases still open); the probes
    (grown), per case the best margins known, and a violation met."""
    n = len(w.cases)
    quick: list = []
    if options.search_after > 0 and options.search and options.probe >= 1:
        few = replace(options, samples=max(64, round(QUICK_SAMPLES * options.samples_for(
            w.cases[0].box.dim))), restarts=min(options.restarts, QUICK_RESTARTS))
        quick, hit = _starts(w.cases, w.margins, w.again, few, rng, climbs_end,
                             [probes.proved(c) for c in range(n)])
        if hit is not None:
            return probes, quick, hit
        probes = _probe(w, options, deadline, max_boxes, (None, options.search_after), probes,
                        quick)
        if probes.hit is not None:
            return probes, quick, probes.hit
    starts, hit = _starts(w.cases, w.margins, w.again, options, rng, climbs_end,
                          [probes.proved(c) for c in range(n)])
    if quick and hit is None:  # the better of the two searches per polytope
        starts = [(np.maximum(g, gq), np.where((g >= gq)[:, None], x, xq))
                  for (g, x), (gq, xq) in zip(starts, quick, strict=True)]
    return probes, starts, hit


def _branch_and_bound(w: _Cases, probes: _Probes, starts: list, options: DecideOptions,
                      deadline: float, max_boxes: int | None,
                      say: Callable[[str], None]) -> Decision:
    """Each case's branch and bound from its best known margins, on the boxes its probe or an
    earlier decision left open; the first violation found ends it."""
    t0 = time.perf_counter()
    n = len(w.cases)
    notes: list[CaseRecord] = []
    left = [a if a is not None else p for a, p in zip(w.again, probes.left, strict=True)]
    for c, (g0, x0) in enumerate(starts):
        if probes.proved(c):
            notes.append(probes.records[c])
            continue
        share = (deadline - time.perf_counter()) / (n - c)
        boxes = work_part(max_boxes, sum(r.boxes for r in notes) + probes.boxes(c), n - c)
        if w.again[c] is not None and not len(w.again[c]) and g0.max() < 0:
            notes.append(CaseRecord(c, How.BAB, StopReason.EXHAUSTED, resumed=True, open=0))
            continue  # an earlier search proved all of it
        before = probes.records[c].boxes if probes.records[c] is not None else 0
        if share <= MIN_SHARE or (boxes is not None and boxes < 1):
            notes.append(CaseRecord(c, How.BAB, StopReason.BUDGET if share <= MIN_SHARE
                                    else StopReason.MAX_BOXES, margin=float(g0.max()),
                                    boxes=before))
            continue
        res = input_bab(w.problem(c, options), g0, x0,
                        _bab_options(w.subject, options, share, boxes), resume=left[c])
        left[c] = None if res.left is None else replace(res.left, key=w.keys[c])
        notes.append(_record(c, res, w.again[c] is not None, before))
        say(f"box {c}: {res.reason} after {res.boxes + before} boxes ({res.seconds:.1f} s)")
        if res.reason is StopReason.FOUND:
            return Decision(Status.VIOLATED, res.x[int(np.argmax(res.value))],
                            time.perf_counter() - t0, tuple(notes), tuple(left))
    proved = len(notes) == n and all(r.reason is StopReason.EXHAUSTED for r in notes)
    return Decision(Status.HOLDS if proved else Status.TIMEOUT, None,
                    time.perf_counter() - t0, tuple(notes), tuple(left))


def decide(subject: Subject, cases: Sequence[SpecCase], time_budget: float,
           options: DecideOptions = DecideOptions(), *,
           resume: Sequence[OpenBoxes | None] | None = None,
           progress: Callable[[str], None] | None = None,
           max_boxes: int | None = None) -> Decision:
    """Decide "does some input of a case's box reach its unsafe set" within ``time_budget``
    (and, if given, the work limit ``max_boxes``: boxes bounded by all cases together).

    ``violated`` as soon as a margin reaches 0 (in float64: the caller replays it in
    onnxruntime), ``holds`` when every box is proved unable to reach its unsafe set, ``timeout``
    otherwise; the budget (and work) left is shared among the cases still open.
    ``resume`` (per case, or None): the open boxes an earlier decision on the same subject and
    unsafe polytopes left in that case's box (its :attr:`Decision.left`, perhaps cut to the box
    with :meth:`OpenBoxes.within`): the search goes on from them, and the case's witness search
    is skipped (the earlier one covered it). Fresh cases are first probed by a few boxes of
    branch and bound (:attr:`DecideOptions.probe`).
    """
    t0 = time.perf_counter()
    deadline = t0 + time_budget
    say = progress or (lambda _m: None)
    margins = [Margins(subject, case.unsafe.disjuncts, options.combine) for case in cases]
    keys = [resume_key(subject, case, options) for case in cases]
    w = _Cases(subject, cases, margins, keys, _checked_resume(resume, keys))
    probes = _probe(w, options, deadline, max_boxes, (options.probe, PROBE_SHARE))
    hit, starts = probes.hit, []
    if hit is None:
        probes, starts, hit = _searched(w, options, np.random.default_rng(options.seed),
                                        t0 + WITNESS_SHARE * time_budget, probes, deadline,
                                        max_boxes)
    if hit is not None:
        c, margin, x = hit
        say(f"witness in box {c}: margin {margin:.3g}")
        record = (probes.records[c] if probes.hit is not None
                  else CaseRecord(c, How.WITNESS, margin=margin))
        left = tuple(a if a is not None else p for a, p in zip(w.again, probes.left, strict=True))
        return Decision(Status.VIOLATED, x, time.perf_counter() - t0, (record,), left)
    d = _branch_and_bound(w, probes, starts, options, deadline, max_boxes, say)
    return replace(d, seconds=time.perf_counter() - t0)
