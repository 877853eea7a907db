"""Branch and bound by input splitting: certify the maxima of K objectives over a union of boxes.

The objectives are ``f_k(x) = c_k @ (N1(x) - N2(x))`` (for eps: every output with both signs).
One tree of boxes serves all of them: each box carries a sound upper bound of every objective.
Best-first: the open boxes whose bounds exceed their goals the most are split in two (along the
dimension that helps most, found by bounding both halves of every dimension when the input is
low-dimensional), both halves are bounded in one batch, and every box whose bounds can no longer
beat the best values seen is closed. The largest bound among open and closed boxes (or the best
value, if larger) is a sound upper bound of each maximum at every moment, so the search can stop
on a gap, a time budget or an interrupt.

Two aims: ``joint`` certifies ``max_k max_x f_k`` (eps, the infinity norm) to the gap, so an
objective only needs refining where it could still exceed the overall best value; ``each``
certifies every objective to its own gap. Strong where the input has few dimensions (ACAS Xu's
5); for wide inputs split ReLUs instead (:mod:`nnbisim.search.relu_bab`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

SMART_MAX_INPUTS = 16  # "smart" splits bound both halves of every dimension up to this many
GAIN_NOISE = 1e-9  # a relative gain below this is rounding noise: no gain (ties go to the widest)
THIN = 1e-9  # a side under this fraction of the box's relatively widest side is not split
# Seconds a step of input_bab aims at when its batch is auto-sized (never more than half the
# budget left). Each bound call has a fixed cost whatever its batch, so larger batches are
# cheaper per box; at 0.1 s the batches stayed at a few boxes. bench/bab_steps.py compares
# this against 0.1 s (bench/results/bab_steps.md).
STEP_SECONDS = 1.0
MAX_BATCH = 4096  # boxes split per step at most when auto-sized


@dataclass(frozen=True)
class Bounded:
    """Upper bounds ``(B, K)`` of every objective over each box; optionally, per box and
    objective, the slopes of the linear function of x whose maximum is the bound (which
    dimensions to split; its peak is a witness candidate) and a better candidate input."""

    upper: np.ndarray
    vertex: np.ndarray | None = None
    slope: np.ndarray | None = None


BoundFn = Callable[[np.ndarray, np.ndarray], Bounded]  # (lower (B, n), upper (B, n))
# inputs (B, n) -> objective values (B, K)
ValueFn = Callable[[np.ndarray], np.ndarray]
Progress = Callable[[float, float, int], None]  # (best value, upper bound, boxes bounded)


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
                         None if self.slope is None else self.slope[keep], self.closed)


@dataclass(frozen=True)
class BabResult:
    """Per objective ``k``: ``value[k] <= max_x f_k <= upper[k]``, attained at ``x[k]``.
    ``left``: the boxes still open when the search stopped (None where not kept)."""

    upper: np.ndarray
    value: np.ndarray
    x: np.ndarray
    boxes: int
    seconds: float
    reason: str  # "gap", "budget", "exhausted", "found", "interrupted", "max-boxes"
    left: OpenBoxes | None = None

    @property
    def complete(self) -> bool:
        return self.reason in ("gap", "exhausted")


def gap_closed(value: float, upper: float, rel_gap: float, abs_gap: float) -> bool:
    """Is ``upper`` within the relative (or absolute) gap of ``value``?"""
    return upper - value <= max(abs_gap, rel_gap * abs(value))


def _children(lo: np.ndarray, hi: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split box ``k`` at the middle of ``dims[k]``: (2B, n) lower and upper bounds, the left
    halves first."""
    rows = np.arange(len(lo))
    mid = (lo[rows, dims] + hi[rows, dims]) / 2
    lo2, hi_left = lo.copy(), hi.copy()
    hi_left[rows, dims] = mid
    lo2[rows, dims] = mid
    return np.concatenate([lo, lo2]), np.concatenate([hi_left, hi])


class _Search:
    """The state of one search: open boxes with their bounds, the best values and inputs, the
    largest bounds of closed boxes, and the thresholds derived from them."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, bound: BoundFn, value: ValueFn,
                 best: np.ndarray, best_x: np.ndarray, joint: bool, rel_gap: float,
                 abs_gap: float, target: float | None = None,
                 resume: OpenBoxes | None = None, scale: np.ndarray | None = None,
                 choose: str = "worst", tighten: BoundFn | None = None,
                 lazy: bool = False):
        if choose not in ("worst", "gain"):
            raise ValueError(f"choose must be 'worst' or 'gain', not {choose!r}")
        self.bound, self.value, self.joint, self.target = bound, value, joint, target
        self.choose, self.tighten = choose, tighten
        self.sharpening = not lazy  # kept halves get ``tighten``'s bounds (lazy: after a stall)
        self.rel_gap, self.abs_gap = rel_gap, abs_gap
        self.best, self.best_x = best.astype(np.float64).copy(), best_x.copy()
        self.closed = np.full(len(best), -np.inf)
        if scale is None:
            scale = (hi - lo).max(axis=0) if len(lo) else np.ones(lo.shape[1])
        self.scale = np.maximum(scale, 1e-300)
        self.lo, self.hi = lo, hi
        if resume is not None:  # bounds known from an earlier search: no bounding needed
            self.ub, self.slope = resume.ub.astype(np.float64), resume.slope
            self.closed = np.asarray(resume.closed, np.float64).copy()
            self.bounded = 0
            if len(lo):
                self._offer((lo + hi) / 2)
            return
        self._offer((lo + hi) / 2)
        self.ub, self.slope = self._sharpen(lo, hi, *self._bound(lo, hi))
        self.bounded = len(lo)

    # thresholds: a box is closed once no objective can beat ``floor``; the search is done once
    # no open bound exceeds ``goal``
    def floor(self) -> np.ndarray:
        if self.target is not None:
            return np.full_like(self.best, self.target)
        return np.full_like(self.best, self.best.max()) if self.joint else self.best

    def goal(self) -> np.ndarray:
        f = self.floor()
        if self.target is not None:
            return f
        return f + np.maximum(self.abs_gap, self.rel_gap * np.abs(f))

    def found(self) -> bool:
        """Decision mode: has some objective reached the target?"""
        return self.target is not None and bool(self.best.max() >= self.target)

    def _bound(self, lo: np.ndarray, hi: np.ndarray, parent: np.ndarray | None = None,
               fn: BoundFn | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Bounds of the boxes by ``fn`` (default: ``bound``; never above the parent's: a half
        is inside its parent), and the slopes of the worst objective per box, if the bound
        function gives them."""
        res = (fn or self.bound)(lo, hi)
        ub = res.upper if parent is None else np.minimum(res.upper, parent)
        rows = np.arange(len(lo))
        k = np.argmax(ub - self.goal(), axis=1)
        slope = None if res.slope is None else res.slope[rows, k]
        if res.vertex is not None:  # the vertex behind each box's worst bound
            self._offer(res.vertex[rows, k])
        elif slope is not None:  # where that bound's linear function peaks
            self._offer(np.where(slope > 0, hi, lo))
        return ub, slope

    def _open(self, ub: np.ndarray) -> np.ndarray:
        """Which boxes some objective can still reach the floor in."""
        below = ub < self.floor() if self.target is not None else ub <= self.floor()
        return ~below.all(axis=1)

    def _sharpen(self, lo: np.ndarray, hi: np.ndarray, ub: np.ndarray,
                 slope: np.ndarray | None, among: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """The boxes still open (of those ``among`` picks, default all) re-bounded by
        ``tighten`` (each bound the smaller of the two; their slopes the tighter function's),
        if there is one."""
        if self.tighten is None:
            return ub, slope
        keep = self._open(ub)
        if among is not None:
            keep &= among
        if not keep.any():
            return ub, slope
        ub = ub.copy()
        ub[keep], sharp = self._bound(lo[keep], hi[keep], ub[keep], self.tighten)
        if slope is not None and sharp is not None:
            slope = slope.copy()
            slope[keep] = sharp
        return ub, slope

    def _offer(self, x: np.ndarray) -> None:
        vals = self.value(x)
        i = np.argmax(vals, axis=0)
        v = vals[i, np.arange(vals.shape[1])]
        better = v > self.best
        self.best[better], self.best_x[better] = v[better], x[i[better]]

    def score(self, ub: np.ndarray) -> np.ndarray:
        """How far each box's worst objective is above its goal, in units of the gap (in a
        decision, where goal and floor are the target, plainly: dividing by a tiny gap would
        overflow loose bounds to inf, and inf - inf spoils the gain of a split)."""
        goal, floor = self.goal(), self.floor()
        gap = goal - floor
        return ((ub - goal) / np.where(gap > 0, gap, 1.0)).max(axis=1)

    def prune(self) -> None:
        shut = ~self._open(self.ub)
        if shut.any():
            self.closed = np.maximum(self.closed, self.ub[shut].max(axis=0))
            keep = ~shut
            self.lo, self.hi, self.ub = self.lo[keep], self.hi[keep], self.ub[keep]
            if self.slope is not None:
                self.slope = self.slope[keep]

    def upper(self) -> np.ndarray:
        top = self.ub.max(axis=0) if len(self.ub) else np.full_like(self.best, -np.inf)
        return np.maximum(np.maximum(top, self.closed), self.best)

    def done(self) -> bool:
        if self.target is not None:
            return not len(self.ub)
        top = self.ub.max(axis=0) if len(self.ub) else np.full_like(self.best, -np.inf)
        return bool((top <= self.goal()).all())

    def polish(self, improve: Callable[[np.ndarray], np.ndarray], rng: np.random.Generator,
               count: int = 8, samples: int = 20_000, climbs: int = 16) -> None:
        """Local search from the centres of the ``count`` boxes of highest score and from the
        best of ``samples`` random points of the open boxes (a box drawn uniformly, then a point
        in it uniformly; per objective its best ``climbs / K``). The open boxes are where the
        bounds could not rule the objectives out, so their points are far likelier starts than
        the whole set's: on ACAS Xu 5_3 property 2, whose counterexamples fill a sliver that
        200,000 samples of the box found one time in three, this finds one in about 0.1 s."""
        score = self.score(self.ub)
        top = np.argsort(-score)[:count]
        starts = [(self.lo[top] + self.hi[top]) / 2]
        samples = min(samples, 2_000_000 // max(self.lo.shape[1], 1))  # wide inputs: fewer
        if len(self.lo) and samples:
            j = rng.integers(len(self.lo), size=samples)
            x = self.lo[j] + rng.random((samples, self.lo.shape[1])) * (self.hi[j] - self.lo[j])
            vals = self.value(x)  # (samples, K)
            per = max(1, climbs // vals.shape[1])
            best = np.argpartition(-vals, min(per, samples) - 1, axis=0)[:per]
            starts.append(x[np.unique(best)])
        self._offer(improve(np.concatenate(starts)))

    def _best_split(self, lo: np.ndarray, hi: np.ndarray, parent: np.ndarray, cand: np.ndarray,
                    widths: np.ndarray, fn: BoundFn | None = None) -> tuple:
        """Bound both halves of each box for every candidate dimension ``cand`` (B, c) and keep,
        per box, the best split: with ``choose`` "worst" the one whose worse half has the lower
        score, with "gain" the one that settles more halves and, among those, lowers the two
        halves' scores most relative to the parent's (summed, each gain in [0, 1e6]). "gain"
        rewards a split that settles one half outright even if the other stays as bad as the
        parent, which "worst" never picks; measured on ACAS Xu properties 1, 2, 6 and 9 it needs
        several times fewer boxes (see :func:`input_bab`)."""
        b, c = cand.shape
        dims = cand.T.reshape(-1)  # candidate-major
        clo, chi = _children(np.tile(lo, (c, 1)), np.tile(hi, (c, 1)), dims)
        cub, cslope = self._bound(clo, chi, np.tile(parent, (2 * c, 1)), fn)
        self.bounded += 2 * c * b
        if c == 1:
            return clo, chi, cub, cslope
        left, right = self.score(cub[:c * b]), self.score(cub[c * b:])
        if self.choose == "gain":
            sp = np.tile(self.score(parent), c)

            def gain(sc: np.ndarray) -> np.ndarray:
                # a half is settled once its score is negative (its bounds below the goal)
                with np.errstate(invalid="ignore", divide="ignore"):
                    rel = np.nan_to_num((sp - sc) / np.abs(sp), nan=0.0, posinf=1e6)
                rel = np.where(rel > GAIN_NOISE, rel, 0.0)
                return np.clip(rel, 0.0, 1e6) + 1e9 * (sc < 0)
            worst = -(gain(left) + gain(right)).reshape(c, b)
        else:
            worst = np.maximum(left, right).reshape(c, b)
        wide = np.take_along_axis(widths, cand, 1).T  # (c, b)
        worst = np.where(wide > THIN * widths.max(axis=1), worst, np.inf)
        if self.choose == "gain":  # ties (e.g. no split helps): the relatively widest side
            tied = worst == worst.min(axis=0)
            sel = np.argmax(np.where(tied, wide, -1.0), axis=0) * b + np.arange(b)
        else:
            sel = np.argmin(worst, axis=0) * b + np.arange(b)
        idx = np.concatenate([sel, c * b + sel])
        return clo[idx], chi[idx], cub[idx], None if cslope is None else cslope[idx]

    def _choose(self, lo: np.ndarray, hi: np.ndarray, parent: np.ndarray, cand: np.ndarray,
                widths: np.ndarray, fn: BoundFn | None = None) -> tuple:
        """:meth:`_best_split` of each box over its candidates ``cand`` (B, c), boxes whose two
        candidates agree bounding one split only: the left halves in the boxes' order, then
        the right ones."""
        if cand.shape[1] != 2:
            return self._best_split(lo, hi, parent, cand, widths, fn)
        b, n = lo.shape
        same = cand[:, 0] == cand[:, 1]
        clo, chi = np.empty((2 * b, n)), np.empty((2 * b, n))
        cub = np.empty((2 * b, parent.shape[1]))
        cslope: np.ndarray | None = np.empty((2 * b, n))
        for g, one in ((same, True), (~same, False)):
            if not g.any():
                continue
            idx = np.flatnonzero(g)
            part = self._best_split(lo[idx], hi[idx], parent[idx], cand[idx][:, :1 if one else 2],
                                    widths[idx], fn)
            pos = np.concatenate([idx, b + idx])
            clo[pos], chi[pos], cub[pos] = part[:3]
            if part[3] is None:
                cslope = None
            elif cslope is not None:
                cslope[pos] = part[3]
        return clo, chi, cub, cslope

    def split(self, k: int, how: str) -> None:
        """Split the ``k`` open boxes of highest score and bound the halves. ``how``: "slope"
        (the dimension where the worst objective's bound function varies most, slope times
        width, as ReluVal), "widest" (relative to the input set), "hybrid" (bound the splits
        of both "slope" and "widest", keep the better) or "smart" (bound the halves of every
        dimension, keep the best by ``choose``: 2n bounds per box; "hybrid" above
        SMART_MAX_INPUTS dimensions)."""
        score = self.score(self.ub)
        pick = np.argpartition(-score, k - 1)[:k] if k < len(score) else np.arange(len(score))
        rest = np.ones(len(score), bool)
        rest[pick] = False
        lo, hi, parent = self.lo[pick], self.hi[pick], self.ub[pick]
        b, n = lo.shape
        widths = (hi - lo) / self.scale
        if how == "smart" and n > SMART_MAX_INPUTS:
            how = "hybrid"  # 2n bounds per box are too many in high dimension
        if how == "smart" and n > 1:
            cand = np.repeat(np.arange(n)[None], b, 0)  # every dimension
        elif how == "hybrid" and self.slope is not None:
            # the dimension of largest slope times width and the relatively widest one
            influence = np.where(widths > 0, np.abs(self.slope[pick]) * (hi - lo), -1.0)
            cand = np.stack([np.argmax(influence, 1), np.argmax(widths, 1)], 1)
        elif how == "slope" and self.slope is not None:
            influence = np.where(widths > 0, np.abs(self.slope[pick]) * (hi - lo), -1.0)
            cand = np.argmax(influence, 1)[:, None]
        else:
            cand = np.argmax(widths, 1)[:, None]
        clo, chi, cub, cslope = self._choose(lo, hi, parent, cand, widths)
        if self.tighten is not None:
            # stalled: neither half of the best split scores better than its parent; there the
            # bound is likelier loose than the box hard, so the split is chosen again on the
            # sharper bounds of every candidate (ACAS Xu 3_3 property 2 stalled for over 300,000
            # boxes on plain CROWN, bench/results/decide_focus.md)
            sp = self.score(parent)
            stalled = (self.score(cub[:b]) >= sp) & (self.score(cub[b:]) >= sp)
            if stalled.any():
                g = np.flatnonzero(stalled)
                redo = self._choose(lo[g], hi[g], parent[g], cand[g], widths[g], self.tighten)
                pos = np.concatenate([g, b + g])
                clo[pos], chi[pos], cub[pos] = redo[:3]
                if cslope is not None and redo[3] is not None:
                    cslope[pos] = redo[3]
                self.sharpening = True
            if self.sharpening:
                cub, cslope = self._sharpen(clo, chi, cub, cslope, ~np.tile(stalled, 2))
        self._offer((clo + chi) / 2)
        self.lo = np.concatenate([self.lo[rest], clo])
        self.hi = np.concatenate([self.hi[rest], chi])
        self.ub = np.concatenate([self.ub[rest], cub])
        if self.slope is not None and cslope is not None:
            self.slope = np.concatenate([self.slope[rest], cslope])


def input_bab(
    lower: np.ndarray,
    upper: np.ndarray,
    bound: BoundFn,
    value: ValueFn,
    *,
    start_values: np.ndarray,
    start_x: np.ndarray,
    joint: bool = True,
    rel_gap: float = 0.01,
    abs_gap: float = 1e-9,
    time_budget: float = 10.0,
    batch: int | None = None,
    max_boxes: int = 5_000_000,
    split: str = "hybrid",
    choose: str = "worst",
    polish: Callable[[np.ndarray], np.ndarray] | None = None,
    target: float | None = None,
    progress: Progress | None = None,
    resume: OpenBoxes | None = None,
    scale: np.ndarray | None = None,
    tighten: BoundFn | None = None,
    lazy: bool = False,
) -> BabResult:
    """Maximise every objective over the union of boxes ``lower[j] <= x <= upper[j]``.

    ``bound`` must be sound (upper bounds of each objective's maximum over each box);
    ``value`` evaluates the objectives at points. ``start_values`` (K,) and ``start_x`` (K, n)
    are known values and their inputs (witnesses found before). ``batch`` boxes are split per
    step (default: sized so that a step takes about :data:`STEP_SECONDS`); ``split`` picks the
    dimension (see :meth:`_Search.split`) and ``choose`` how candidate splits are compared
    ("worst" or "gain", see :meth:`_Search._best_split`). ``polish``, if given, improves
    points (a local search); every second it is run from the centres of the boxes of highest
    score and from the best random points of the open boxes.
    ``target`` turns the search into a decision: it stops as soon as an objective reaches the
    target (reason "found") or no box can (every bound below it: "exhausted").

    ``resume``: the open boxes of an earlier search of the same objectives to the same floor
    (its :attr:`BabResult.left`, perhaps cut to a part of the set with :meth:`OpenBoxes.within`)
    are searched instead of ``lower``/``upper``, which then only give the set's extent: what the
    earlier search proved stays proved. ``scale``: the widths splits are measured against
    (default: the extent of the boxes searched). The result's ``left`` holds the boxes open at
    the stop. ``tighten``: a sharper (costlier) sound bound function for the boxes ``bound``
    leaves open once kept (the set's, and each chosen split's halves). Splits are chosen on
    ``bound``, except for boxes where that stalls (neither half of the best split scores better
    than the box): their splits are chosen again on ``tighten``'s bounds of every candidate.
    ``lazy``: kept halves get ``tighten``'s bounds only once some split has stalled (the
    stall rule applies from the start).
    """
    t0 = time.perf_counter()
    lo = np.atleast_2d(np.asarray(lower, np.float64))
    hi = np.atleast_2d(np.asarray(upper, np.float64))
    if resume is not None:
        if scale is None:
            scale = (hi - lo).max(axis=0)
        lo = np.asarray(resume.lo, np.float64).reshape(-1, lo.shape[1])
        hi = np.asarray(resume.hi, np.float64).reshape(-1, hi.shape[1])
    s = _Search(lo, hi, bound, value, np.asarray(start_values, np.float64),
                np.atleast_2d(np.asarray(start_x, np.float64)), joint, rel_gap, abs_gap, target,
                resume, scale, choose, tighten, lazy)
    k, reason = batch or 16, "budget"
    polished, rng = t0, np.random.default_rng(0)
    try:
        while True:
            s.prune()
            if progress is not None:
                progress(float(s.best.max()), float(s.upper().max()), s.bounded)
            if s.found():
                reason = "found"
                break
            if not len(s.ub):
                reason = "exhausted"
                break
            if s.done():
                reason = "gap"
                break
            elapsed = time.perf_counter() - t0
            if elapsed > time_budget:
                break
            if s.bounded >= max_boxes:
                reason = "max-boxes"
                break
            if polish is not None and time.perf_counter() - polished > 1.0:
                s.polish(polish, rng)
                polished = time.perf_counter()
            step = time.perf_counter()
            s.split(min(k, len(s.ub)), split)
            took = time.perf_counter() - step
            if batch is None:  # aim at STEP_SECONDS per step, never past the budget
                left = max(time_budget - (time.perf_counter() - t0), 0.0)
                aim = min(STEP_SECONDS, left / 2 + 1e-3)
                k = int(np.clip(k * aim / max(took, 1e-4), 4, MAX_BATCH))
    except KeyboardInterrupt:
        reason = "interrupted"
    return BabResult(s.upper(), s.best.copy(), s.best_x.copy(), s.bounded,
                     time.perf_counter() - t0, reason,
                     OpenBoxes(s.lo, s.hi, s.ub, s.slope, s.closed.copy()))
