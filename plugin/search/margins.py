"""The margins of a property's unsafe polytopes: evaluated at points, climbed for witnesses
and bounded over boxes for the branch and bound of :mod:`nnbisim.search.decide`.

For one box and one polytope ``A y <= b`` the margin ``g(x) = min_j (b_j - A_j y(x))`` is
``>= 0`` exactly where ``x`` reaches the polytope. Witnesses climb ``g`` from the best of many
samples; the branch and bound bounds it from above by ``min_j (b_j - lower(A_j y))`` (and by
sums of rows, see :func:`combinations_of`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations

import numpy as np
import torch

from nnbisim.bounds.bounded import Bounded
from nnbisim.search.subjects import Focus, Subject
from nnbisim.search.witness import climb
from nnbisim.specs.sets import Box, OutputConstraint, Polytope


def exact_sum(rows: np.ndarray) -> np.ndarray | None:
    """The sum of the rows ``(r, m)`` if float64 adds them without rounding, else None."""
    total = rows[0].copy()
    for row in rows[1:]:
        s = total + row
        back = s - total
        if np.any((total - (s - back)) + (row - back) != 0):  # TwoSum's error term
            return None
        total = s
    return total


COMBINE_ALL = 5  # polytopes with up to this many rows get the sums of all their row subsets,
COMBINE_ROWS = 8  # those with up to this many the sums of their row pairs (all: the full sum)


def combinations_of(polys: Sequence[Polytope]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                      np.ndarray]:
    """Extra rows to bound for the margins: for each polytope of r > 1 rows, the sum of all its
    rows and of every subset (r <= COMBINE_ALL) or pair (r <= COMBINE_ROWS) of them, as (rows,
    rhs, owner, count). Since
    ``min_j (b_j - A_j y) <= (1/|S|) sum_{j in S} (b_j - A_j y)``, a bound of a sum divided by
    its count bounds the margin too, and can be far below every single row's where the row that
    wins changes inside a box (CROWN bounds the sum directly, so its terms may cancel). Only
    sums float64 forms exactly are kept, so the bound stays sound."""
    rows, rhs, owner, count = [], [], [], []
    for k, p in enumerate(polys):
        r = len(p.rhs)
        if r < 2:
            continue
        sizes = range(2, r) if r <= COMBINE_ALL else [2] if r <= COMBINE_ROWS else []
        subsets = [tuple(range(r))] + [s for n in sizes for s in combinations(range(r), n)]
        for sub in subsets:
            mat = exact_sum(p.mat[list(sub)])
            b = exact_sum(p.rhs[list(sub)][:, None])
            if mat is None or b is None:
                continue
            rows.append(mat)
            rhs.append(b[0])
            owner.append(k)
            count.append(len(sub))
    m = polys[0].mat.shape[1]
    return (np.array(rows).reshape(-1, m), np.array(rhs, np.float64), np.array(owner, int),
            np.array(count, np.float64))


class Margins:
    """The margins ``g_k(x) = min_j (b_kj - A_kj y)`` of every unsafe polytope ``k`` of one
    case, evaluated together (their rows stacked) and bounded together (each row, and sums of
    rows: see :func:`combinations_of`)."""

    def __init__(self, subject: Subject, polys: Sequence[Polytope], combine: bool = True):
        self.subject = subject
        self.a = np.vstack([p.mat for p in polys])
        self.b = np.concatenate([p.rhs for p in polys])
        self.owner = np.concatenate([np.full(len(p.rhs), k) for k, p in enumerate(polys)])
        self.k = len(polys)
        self.at, self.bt = torch.tensor(self.a), torch.tensor(self.b)
        self.mask = torch.tensor(self.owner[None, :] == np.arange(self.k)[:, None])
        extra = combinations_of(polys) if combine else (np.zeros((0, self.a.shape[1])),
                                                      np.zeros(0), np.zeros(0, int), np.zeros(0))
        self.bound_a = np.vstack([self.a, extra[0]])
        self.bound_b = np.concatenate([self.b, extra[1]])
        self.bound_owner = np.concatenate([self.owner, extra[2]])
        self.bound_count = np.concatenate([np.ones(len(self.b)), extra[3]])
        self.groups = [np.flatnonzero(self.bound_owner == k) for k in range(self.k)]

    def value(self, x: np.ndarray, coarse: bool = False) -> np.ndarray:
        """Per polytope the margin at each point (``coarse``: the subject's float32 forward,
        for ranking points only)."""
        run = (self.subject.coarse if coarse and self.subject.coarse is not None
               else self.subject.forward)
        slack = self.b - run(x) @ self.a.T  # (B, rows)
        return np.stack([slack[:, self.owner == k].min(axis=1) for k in range(self.k)], 1)

    def symbolic(self, x: torch.Tensor) -> torch.Tensor:
        """(K, P, n) -> (K, P): margin k at the points of row k."""
        slack = self.bt - self.subject.torch_forward(x) @ self.at.T  # (K, P, rows)
        big = torch.where(self.mask[:, None, :], slack, torch.full_like(slack, torch.inf))
        return big.amin(-1)

    def polisher(self, box: Box, steps: int = 60) -> Callable[[np.ndarray], np.ndarray]:
        """``points (P, n) -> points (K * P, n)``: a climb on every margin from each point."""
        lo, hi = torch.tensor(box.lower), torch.tensor(box.upper)

        def polish(points: np.ndarray) -> np.ndarray:
            starts = torch.tensor(np.asarray(points, np.float64)).expand(self.k, -1, -1)
            return climb(self.symbolic, starts, lo, hi, steps).reshape(-1, box.dim).numpy()
        return polish

    def _gaps(self, low: np.ndarray) -> np.ndarray:
        """Upper bounds (B, R) of each bounded row's share of a margin, from lower bounds of
        its ``A_j y``: ``b_j - lower``, a sum of c rows divided by c, rounded outward."""
        gap = np.nextafter(self.bound_b[None] - low, np.inf)  # of b_j - A_j y, outward
        summed = self.bound_count > 1  # a sum of c rows bounds c times the margin
        gap[:, summed] = np.nextafter(gap[:, summed] / self.bound_count[summed], np.inf)
        return gap

    def _focus(self, low: np.ndarray) -> np.ndarray:
        """Per box and polytope, the row whose plain bound is best: the one to optimise."""
        gap = self._gaps(low)
        return np.stack([idx[np.argmin(gap[:, idx], axis=1)] for idx in self.groups], 1)

    def bound(self, lo: np.ndarray, hi: np.ndarray) -> Bounded:
        """Plain CROWN bounds of every margin (each row and sum of rows; the best per polytope)."""
        return self._bounded(lo, hi, None)

    def sharp(self, lo: np.ndarray, hi: np.ndarray) -> Bounded:
        """As :meth:`bound`, with each polytope's best row optimised further (alpha-CROWN's
        slopes on the same intermediate bounds; a pair's subject ignores it): costlier, for the
        boxes a split keeps open only."""
        return self._bounded(lo, hi, self._focus)

    def _bounded(self, lo: np.ndarray, hi: np.ndarray, focus: Focus | None) -> Bounded:
        low, slope = self.subject.rows(lo, hi, self.bound_a, focus)
        gap = self._gaps(low)
        ub = np.empty((len(lo), self.k))
        sl = np.empty((len(lo), self.k, lo.shape[1]))
        rows = np.arange(len(lo))
        for k, idx in enumerate(self.groups):
            j = idx[np.argmin(gap[:, idx], axis=1)]
            ub[:, k], sl[:, k] = gap[rows, j], -slope[rows, j]
        return Bounded(ub, None, sl)


def falsify(m: Margins, box: Box, rng: np.random.Generator, samples: int, restarts: int,
             steps: int, deadline: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per unsafe polytope the best margin found and its input: samples of the box (ranked in
    float32, the best re-valued in float64 with the climbs' ends), then hill
    climbs from the best of them for each polytope. Every climb's end counts for every
    polytope: a climb towards one polytope can end deeper in another than that one's own
    climbs (seen on a float16 copy of ACAS Xu 2_1 over property 1's box: the best point for
    ``(y1 - y2)_0 >= t`` was the end of a climb aimed at another polytope). Past ``deadline``
    (a ``time.perf_counter()`` value) the climbs stop where they are."""
    x = np.concatenate([box.center[None], box.sample(samples, rng)])
    g = m.value(x, coarse=True)  # (N, K), to rank the samples; the candidates are re-valued
    top = np.argsort(-g, axis=0)[:restarts].T  # (K, P)
    lo, hi = torch.tensor(box.lower), torch.tensor(box.upper)
    ends = climb(m.symbolic, torch.tensor(x[top]), lo, hi, steps, deadline).numpy()  # (K,P,n)
    cand = np.concatenate([x[top[:, 0]], ends.reshape(-1, box.dim)])
    return best_of(m, cand)


def closest_approach(subject: Subject, box: Box, unsafe: OutputConstraint,
                     rng: np.random.Generator, samples: int = 2048, restarts: int = 8,
                     steps: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Per unsafe polytope, the largest margin ``min_j (b_j - A_j y)`` found over ``box`` and
    its input (samples, then hill climbs from the best): >= 0 is a candidate counterexample,
    otherwise minus it is how close the network was seen to come (an upper bound on the true
    distance)."""
    return falsify(Margins(subject, unsafe.disjuncts), box, rng, samples, restarts, steps)


def best_of(m: Margins, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per polytope, the best margin among ``points`` and where it is."""
    g = m.value(points)
    i = np.argmax(g, axis=0)
    return g[i, np.arange(g.shape[1])], points[i]
