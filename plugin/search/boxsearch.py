"""The state of one branch and bound over input boxes (:func:`~nnbisim.search.input_bab.input_bab`):
open boxes with their bounds, the best values and inputs, the closed boxes' largest bounds, and
the split rules."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nnbisim.bounds.bounded import BoundFn
from nnbisim.search.bab_types import BabOptions, BabProblem, OpenBoxes

GAIN_CAP = 1e6  # a half's relative gain counts at most this much (an infinite gain included)
SETTLED = 1e9  # what a half that a split settles outright (score below 0) adds to the gain


def children(lo: np.ndarray, hi: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split box ``k`` at the middle of ``dims[k]``: (2B, n) lower and upper bounds, the left
    halves first."""
    rows = np.arange(len(lo))
    mid = (lo[rows, dims] + hi[rows, dims]) / 2
    lo2, hi_left = lo.copy(), hi.copy()
    hi_left[rows, dims] = mid
    lo2[rows, dims] = mid
    return np.concatenate([lo, lo2]), np.concatenate([hi_left, hi])


class BoxSearch:
    """One search's state. Thresholds: a box is closed once no objective can beat ``floor``;
    the search is done once no open bound exceeds ``goal``."""

    def __init__(self, problem: BabProblem, options: BabOptions, best: np.ndarray,
                 best_x: np.ndarray, resume: OpenBoxes | None = None):
        if options.choose not in ("worst", "gain"):
            raise ValueError(f"choose must be 'worst' or 'gain', not {options.choose!r}")
        self.problem, self.opts = problem, options
        self.bound, self.value, self.target = problem.bound, problem.value, problem.target
        self.tighten = problem.tighten
        self.sharpening = not options.lazy  # kept halves get ``tighten``'s bounds
        self.best, self.best_x = best.astype(np.float64).copy(), best_x.copy()
        self.closed = np.full(len(best), -np.inf)
        lo, hi = problem.lower, problem.upper
        if resume is not None:
            lo = np.asarray(resume.lo, np.float64).reshape(-1, lo.shape[1])
            hi = np.asarray(resume.hi, np.float64).reshape(-1, hi.shape[1])
        scale = problem.scale
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

    def floor(self) -> np.ndarray:
        if self.target is not None:
            return np.full_like(self.best, self.target)
        return np.full_like(self.best, self.best.max()) if self.opts.joint else self.best

    def goal(self) -> np.ndarray:
        f = self.floor()
        if self.target is not None:
            return f
        return f + np.maximum(self.opts.abs_gap, self.opts.rel_gap * np.abs(f))

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

    def left(self) -> OpenBoxes:
        return OpenBoxes(self.lo, self.hi, self.ub, self.slope, self.closed.copy())

    def polish(self, improve: Callable[[np.ndarray], np.ndarray],
               rng: np.random.Generator) -> None:
        """Local search from the centres of the ``polish_boxes`` boxes of highest score and
        from the best of ``polish_samples`` random points of the open boxes (a box drawn
        uniformly, then a point in it uniformly; per objective its best ``polish_climbs / K``).
        The open boxes are where the bounds could not rule the objectives out, so their points
        are far likelier starts than the whole set's: on ACAS Xu 5_3 property 2, whose
        counterexamples fill a sliver that 200,000 samples of the box found one time in three,
        this finds one in about 0.1 s."""
        o = self.opts
        score = self.score(self.ub)
        top = np.argsort(-score)[:o.polish_boxes]
        starts = [(self.lo[top] + self.hi[top]) / 2]
        samples = min(o.polish_samples, o.polish_points // max(self.lo.shape[1], 1))
        if len(self.lo) and samples:
            j = rng.integers(len(self.lo), size=samples)
            x = self.lo[j] + rng.random((samples, self.lo.shape[1])) * (self.hi[j] - self.lo[j])
            vals = self.value(x)  # (samples, K)
            per = max(1, o.polish_climbs // vals.shape[1])
            best = np.argpartition(-vals, min(per, samples) - 1, axis=0)[:per]
            starts.append(x[np.unique(best)])
        self._offer(improve(np.concatenate(starts)))

    def _gain(self, parent_score: np.ndarray, sc: np.ndarray) -> np.ndarray:
        """How much a half with score ``sc`` gained on its parent: the relative drop of the
        score (noise below ``gain_noise`` ignored, capped), plus ``SETTLED`` where the half's
        bounds are below the goal."""
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.nan_to_num((parent_score - sc) / np.abs(parent_score), nan=0.0,
                                posinf=GAIN_CAP)
        rel = np.where(rel > self.opts.gain_noise, rel, 0.0)
        return np.clip(rel, 0.0, GAIN_CAP) + SETTLED * (sc < 0)

    def _best_split(self, lo: np.ndarray, hi: np.ndarray, parent: np.ndarray, cand: np.ndarray,
                    widths: np.ndarray, fn: BoundFn | None = None) -> tuple:
        """Bound both halves of each box for every candidate dimension ``cand`` (B, c) and keep,
        per box, the best split: with ``choose`` "worst" the one whose worse half has the lower
        score, with "gain" the one that settles more halves and, among those, lowers the two
        halves' scores most relative to the parent's (:meth:`_gain`). "gain" rewards a split
        that settles one half outright even if the other stays as bad as the parent, which
        "worst" never picks; measured on ACAS Xu properties 1, 2, 6 and 9 it needs several
        times fewer boxes (``bench/results/split_rules.md``)."""
        b, c = cand.shape
        dims = cand.T.reshape(-1)  # candidate-major
        clo, chi = children(np.tile(lo, (c, 1)), np.tile(hi, (c, 1)), dims)
        cub, cslope = self._bound(clo, chi, np.tile(parent, (2 * c, 1)), fn)
        self.bounded += 2 * c * b
        if c == 1:
            return clo, chi, cub, cslope
        left, right = self.score(cub[:c * b]), self.score(cub[c * b:])
        gain = self.opts.choose == "gain"
        if gain:
            sp = np.tile(self.score(parent), c)
            worst = -(self._gain(sp, left) + self._gain(sp, right)).reshape(c, b)
        else:
            worst = np.maximum(left, right).reshape(c, b)
        wide = np.take_along_axis(widths, cand, 1).T  # (c, b)
        worst = np.where(wide > self.opts.thin * widths.max(axis=1), worst, np.inf)
        if gain:  # ties (e.g. no split helps): the relatively widest side
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

    def _candidates(self, pick: np.ndarray, widths: np.ndarray) -> np.ndarray:
        """The dimensions (B, c) each picked box may be split along, by the split rule (see
        :class:`~nnbisim.search.bab_types.BabOptions`)."""
        how, (b, n) = self.opts.split, widths.shape
        if how == "smart" and n > self.opts.smart_max_inputs:
            how = "hybrid"  # 2n bounds per box are too many in high dimension
        top = self.opts.smart_top
        if how == "smart" and n > 1 and (top is None or top >= n or self.slope is None):
            return np.repeat(np.arange(n)[None], b, 0)  # every dimension
        if how in ("hybrid", "slope", "smart") and self.slope is not None:
            span = self.hi[pick] - self.lo[pick]
            influence = np.where(widths > 0, np.abs(self.slope[pick]) * span, -1.0)
            if how == "smart":  # the widest, then by slope times width
                influence[np.arange(b), np.argmax(widths, 1)] = np.inf
                return np.argsort(-influence, axis=1, kind="stable")[:, :top]
            if how == "slope":
                return np.argmax(influence, 1)[:, None]
            # the dimension of largest slope times width and the relatively widest one
            return np.stack([np.argmax(influence, 1), np.argmax(widths, 1)], 1)
        return np.argmax(widths, 1)[:, None]

    def _restall(self, kept: tuple, parent: np.ndarray, cand: np.ndarray,
                 widths: np.ndarray) -> tuple:
        """Where neither half of the best split scores better than its parent, the bound is
        likelier loose than the box hard: the split is chosen again on the sharper bounds of
        every candidate, and kept halves are sharpened (ACAS Xu 3_3 property 2 stalled for over
        300,000 boxes on plain CROWN, ``bench/results/decide_focus.md``)."""
        (lo, hi), (clo, chi, cub, cslope) = kept[:2], kept[2:]
        b = len(lo)
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
        return clo, chi, cub, cslope

    def split(self, k: int) -> None:
        """Split the ``k`` open boxes of highest score and bound the halves (the dimension by
        the options' split rule, the best candidate by their ``choose``)."""
        score = self.score(self.ub)
        pick = np.argpartition(-score, k - 1)[:k] if k < len(score) else np.arange(len(score))
        rest = np.ones(len(score), bool)
        rest[pick] = False
        lo, hi, parent = self.lo[pick], self.hi[pick], self.ub[pick]
        widths = (hi - lo) / self.scale
        cand = self._candidates(pick, widths)
        clo, chi, cub, cslope = self._choose(lo, hi, parent, cand, widths)
        if self.tighten is not None:
            clo, chi, cub, cslope = self._restall((lo, hi, clo, chi, cub, cslope), parent, cand,
                                                  widths)
        self._offer((clo + chi) / 2)
        self.lo = np.concatenate([self.lo[rest], clo])
        self.hi = np.concatenate([self.hi[rest], chi])
        self.ub = np.concatenate([self.ub[rest], cub])
        if self.slope is not None and cslope is not None:
            self.slope = np.concatenate([self.slope[rest], cslope])
