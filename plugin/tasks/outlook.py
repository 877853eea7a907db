"""Whether the halves route of assured compression can still settle a box through N2: N1's
margin to the unsafe set against what the enlargement by eps costs there (a heuristic that only
reroutes a box to N1 directly sooner; sound either way)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnbisim.core.reports import EpsilonReport
from nnbisim.search.margins import closest_approach
from nnbisim.search.subjects import Subject
from nnbisim.specs.sets import Box, SpecCase
from nnbisim.tasks.enlarge import Sides
from nnbisim.tasks.options import AssureOptions


@dataclass(frozen=True)
class Outlook:
    """Whether the route through N2 can still settle a box, from N1's margin to the unsafe set
    and what the enlargement costs there. ``margin``: the smallest over probe points of N1's
    slack ``max_i (C_i y1 - d_i)`` (polytope by polytope; <= 0 means a probe reached the unsafe
    set). ``spread``: the witnessed spread of ``N1 - N2`` over the box along the most lenient
    row, ``|C_i| . (max - min)`` (no tighter bound removes it; only smaller boxes do).
    ``reach``: the same with the certified sides the enlargement uses. The route needs both
    below the margin; splitting shrinks the spread by about ``shrink`` at most, the reach by
    ``rate`` per split (halving at depth 0, then the rate observed since the whole box)."""

    margin: float
    spread: float
    reach: float
    shrink: float
    rate: float
    left: int  # splits left before the options' max_depth
    x: np.ndarray | None  # the probe with the smallest slack

    @property
    def hopeless(self) -> bool:
        return (self.spread > self.shrink * self.margin
                or self.reach * self.rate ** self.left > self.margin)

    def describe(self) -> str:
        return (f"N1's margin {self.margin:.3g} against the spread of N1 - N2 {self.spread:.3g} "
                f"(witnessed; splitting shrinks it ~{self.shrink:.0f}x at most) and its "
                f"certified reach {self.reach:.3g} (x{self.rate:.2f} per split, {self.left} "
                f"splits left)")


def _widths(rep: EpsilonReport, needed: Sides) -> tuple[np.ndarray, np.ndarray]:
    """Per output the witnessed width of ``N1 - N2`` (0 where nothing was witnessed) and the
    certified one on the needed sides (inf where not certified: the route cannot settle it)."""
    wmax = np.array([o.max_witnessed for o in rep.outputs])
    wmin = np.array([o.min_witnessed for o in rep.outputs])
    cmax = np.array([o.max_certified if (o.index, 1) in needed else o.max_witnessed
                     for o in rep.outputs])
    cmin = np.array([o.min_certified if (o.index, -1) in needed else o.min_witnessed
                     for o in rep.outputs])
    w = wmax - wmin
    w = np.where(np.isfinite(w), np.maximum(w, 0.0), 0.0)  # no witness: no evidence
    cw = np.maximum(cmax - cmin, 0.0)
    return w, np.where(np.isnan(cw), np.inf, cw)


def _rate(reach: float, root_reach: float | None, depth: int) -> float:
    if root_reach is None or depth == 0:
        return 0.5
    if np.isfinite(reach) and np.isfinite(root_reach) and root_reach > 0:
        return min(float((reach / root_reach) ** (1.0 / depth)), 1.0)
    return 1.0


def outlook(n1: Subject, case: SpecCase, rep: EpsilonReport, needed: Sides, depth: int,
            root_reach: float | None, rng: np.random.Generator,
            options: AssureOptions = AssureOptions()) -> Outlook:
    """N1's margin over the case's box and what eps must cover there (:class:`Outlook`); ``n1``
    is N1 as a :func:`~nnbisim.search.subjects.single` subject, ``root_reach`` the reach over
    the whole box (None at the root).

    The spread shrinks about linearly with the box, and each of the ``max_depth - depth``
    splits left halves one side, so every side is halved at most ``ceil(left / dims)`` times.
    The margin is the closest approach found by a search of ``probes`` points (an upper bound
    on the true one), which errs towards keeping the route."""
    box: Box = case.box
    g, xs = closest_approach(n1, box, case.unsafe, rng, samples=options.probes)
    w, cw = _widths(rep, needed)
    left = max(options.max_depth - depth, 0)
    dims = max(int(np.sum(box.upper > box.lower)), 1)
    shrink = float(2.0 ** np.ceil(left / dims))
    k = int(np.argmax(g))  # the polytope N1 comes closest to
    a = np.abs(case.unsafe.disjuncts[k].mat)
    spread, reach = float(np.min(a @ w)), float(np.min(a @ cw))
    return Outlook(float(-g[k]), spread, reach, shrink, _rate(reach, root_reach, depth), left,
                   xs[k])
