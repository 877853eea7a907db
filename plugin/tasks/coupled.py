"""Deciding two-network queries whose inputs are coupled by linear constraints.

A :class:`~nnbisim.specs.coupled.CoupledQuery` is over ``z = [x_f ; x_g]``. It is searched over
``u = [x_f ; d]``, where ``d`` holds the free offsets ``x_g[i] - x_f[i]`` (elements tied by
``x_g[i] = x_f[i] + c`` get none): ``z = M u + c``, so ``f'(u) = f(x_f)`` and
``g'(u) = g(x_f + offsets)`` are two networks on one input with the layer sizes of ``f`` and
``g``, and the differential engine bounds ``f' - g'`` with the input offset as a variable of
its own (NeuroDiff's input delta). Bounds that are boxes in ``u`` (on ``x_f``, on an offset)
make the search box, tightened by propagating the other rows; the rows left (e.g. ``x_g[0]``'s
own range, ``x_f[0] + d_0 <= hi``) join every unsafe polytope as rows over the input
(:func:`~nnbisim.search.subjects.with_inputs`).

Proofs use the closed sets; a counterexample must hold strictly where the query says ``<``: it
is replayed in onnxruntime on the two files, in float32, against the strict query. A search
that only finds points on a strict boundary (``f = g`` on the diagonal ``x_f = x_g``) searches
again for a point with a clear margin (:data:`STRICT_MARGIN`), whose "none" is not a proof.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nnbisim.adapters.replay import OnnxRunner, output_tolerance
from nnbisim.bounds.jacobian import gradient_bounds
from nnbisim.core.errors import SpecError
from nnbisim.core.model import Layer, Network
from nnbisim.core.verdict import Status
from nnbisim.search.decide import DecideOptions, decide
from nnbisim.search.subjects import Subject, fingerprint, pair, with_inputs
from nnbisim.specs.coupled import CoupledQuery
from nnbisim.specs.sets import Box, OutputConstraint, Polytope, SpecCase

STRICT_MARGIN = 1e-5  # relative margin a strict row's counterexample is searched with
PROPAGATION_ROUNDS = 4
# of the time left once the closed query is met only on a strict boundary: the gradient-sign
# proof of monotonicity (f = g); the clear-margin witness search gets the rest
MONOTONE_SHARE = 0.5
_PAD = 1e-9  # relative outward padding of bounds derived by propagation


@dataclass(frozen=True)
class Reduction:
    """``z = m @ u + c`` for the search variables ``u`` in ``box`` (``empty``: no ``z`` meets
    the box bounds and offsets), with the rows ``mat @ u <= rhs`` the box does not imply."""

    m: np.ndarray
    c: np.ndarray
    box: Box | None
    mat: np.ndarray
    rhs: np.ndarray
    free: tuple[int, ...]  # the input elements with an offset variable

    def z(self, u: np.ndarray) -> np.ndarray:
        return np.asarray(u, np.float64) @ self.m.T + self.c


def _offset_rows(q: CoupledQuery) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Bounds on ``d_i = x_g[i] - x_f[i]`` from rows ``a (x_g[i] - x_f[i]) <= e``, and the
    indices of the other rows."""
    n = q.n_inputs
    lo, hi, other = np.full(n, -np.inf), np.full(n, np.inf), []
    for r, (row, e) in enumerate(zip(q.mat, q.rhs, strict=True)):
        nz = np.flatnonzero(row)
        if len(nz) == 2 and nz[1] == nz[0] + n and row[nz[0]] == -row[nz[1]]:
            a, i = row[nz[1]], nz[0]
            if a > 0:
                hi[i] = min(hi[i], e / a)
            else:
                lo[i] = max(lo[i], e / a)
        else:
            other.append(r)
    return lo, hi, other


def _propagate(lo: np.ndarray, hi: np.ndarray, mat: np.ndarray, rhs: np.ndarray) -> None:
    """Tighten ``lo <= u <= hi`` in place from the rows ``mat @ u <= rhs`` (interval bound
    propagation, padded outward so float rounding never cuts a feasible point off)."""
    for _ in range(PROPAGATION_ROUNDS):
        for row, e in zip(mat, rhs, strict=True):
            with np.errstate(invalid="ignore"):
                low = np.where(row > 0, row * lo, row * hi)
                low = np.where(row == 0, 0.0, low)
            for j in np.flatnonzero(row):
                others = np.delete(low, j)
                rest = others.sum()
                if not np.isfinite(rest):
                    continue
                bound = (e - rest) / row[j]
                pad = _PAD * (abs(e) + np.abs(others).sum() + abs(bound)) + 1e-300
                if row[j] > 0:
                    hi[j] = min(hi[j], bound + pad)
                else:
                    lo[j] = max(lo[j], bound - pad)


def reduce_query(q: CoupledQuery) -> Reduction:
    """The search variables, box and remaining rows of a coupled query (see the module)."""
    n = q.n_inputs
    d_lo, d_hi, other = _offset_rows(q)
    tied = [i for i in range(n) if d_lo[i] == d_hi[i]]
    free = tuple(i for i in range(n) if i not in tied)
    k = n + len(free)
    m, c = np.zeros((2 * n, k)), np.zeros(2 * n)
    m[:n, :n] = np.eye(n)
    m[n:, :n] = np.eye(n)
    for j, i in enumerate(free):
        m[n + i, n + j] = 1.0
    for i in tied:
        c[n + i] = d_lo[i]
    lo = np.concatenate([q.lower[:n], d_lo[list(free)]])
    hi = np.concatenate([q.upper[:n], d_hi[list(free)]])
    # every other bound and row, over u: the x_g box, then the general rows
    rows, rhs = [], []
    for i in range(n):
        for sign, bound in ((1.0, q.upper[n + i]), (-1.0, -q.lower[n + i])):
            if np.isfinite(bound):
                rows.append(sign * m[n + i])
                rhs.append(bound - sign * c[n + i])
    for r in other:
        rows.append(q.mat[r] @ m)
        rhs.append(q.rhs[r] - q.mat[r] @ c)
    mat, vec = np.array(rows).reshape(len(rows), k), np.array(rhs, np.float64)
    single = np.count_nonzero(mat, axis=1) == 1
    _propagate(lo, hi, mat, vec)  # single-variable rows land in the box exactly here
    if np.any(lo > hi):
        return Reduction(m, c, None, mat, vec, free)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        j = int(np.flatnonzero(~(np.isfinite(lo) & np.isfinite(hi)))[0])
        what = f"X_{q.first}[{j}]" if j < n else f"X_{q.second}[{free[j - n]}]"
        raise SpecError(f"{what} is not bounded by the query's constraints; bound every input "
                        "element of both networks")
    implied = np.array([row @ np.where(row > 0, hi, lo) <= e for row, e in
                        zip(mat, vec, strict=True)], bool).reshape(-1)
    keep = ~(single | implied)
    return Reduction(m, c, Box(lo, hi), mat[keep], vec[keep], free)


def lifted(net: Network, m: np.ndarray, c: np.ndarray, name: str) -> Network:
    """``net(m @ u + c)`` as a network on ``u``: the map folded into its first layer."""
    first = net.layers[0]
    w = first.weight @ m
    b = first.bias + first.weight @ c
    return Network((Layer(w, b), *net.layers[1:]), (m.shape[1],), name=name)


@dataclass(frozen=True)
class CoupledAnswer:
    """``violated`` with ``x_f``, ``x_g`` (float32 values) and the replayed outputs, ``holds``
    (the closed query proved unreachable), or ``timeout``/``unknown`` with a note."""

    status: Status
    x_f: np.ndarray | None = None
    x_g: np.ndarray | None = None
    y_f: np.ndarray | None = None
    y_g: np.ndarray | None = None
    note: str = ""
    boxes: int = 0


def _unsafe_over_u(unsafe: OutputConstraint, red: Reduction, margin: float) -> OutputConstraint:
    """The unsafe polytopes over ``[y_f ; y_g ; u]`` (the remaining input rows appended), strict
    rows moved in by ``margin`` (0: the closed set, for proofs)."""
    polys = []
    k = red.m.shape[1]
    for p in unsafe.disjuncts:
        strict = np.array(p.strict or (False,) * len(p.rhs))
        rhs = p.rhs - margin * strict * (1.0 + np.abs(p.rhs))
        mat = np.hstack([p.mat, np.zeros((len(p.rhs), k))]) if len(red.rhs) else p.mat
        if len(red.rhs):
            extra = np.hstack([np.zeros((len(red.rhs), p.mat.shape[1])), red.mat])
            mat, rhs = np.vstack([mat, extra]), np.concatenate([rhs, red.rhs])
        polys.append(Polytope(mat, rhs))
    return OutputConstraint(tuple(polys))


def replay_coupled(q: CoupledQuery, p_f: Path, p_g: Path, z: np.ndarray, tol: float = 1e-6
                   ) -> tuple[np.ndarray, ...] | None:
    """``(x_f, x_g, y_f, y_g)`` when ``z`` is in the query's input set (within ``tol``
    relative on closed rows and bounds, by more than it on strict rows; a point just outside a
    bound is moved onto it) and onnxruntime's outputs on the two files (float32) reach its
    unsafe set (strict rows by more than the replay tolerance), else None."""
    z = np.asarray(z, np.float64).reshape(-1)
    slack = tol * max(1.0, float(np.max(np.abs(z))))
    inside = np.clip(z, q.lower, q.upper)
    if np.any(np.abs(inside - z) > slack) or not q.contains(inside, slack):
        return None
    n = q.n_inputs
    x_f, x_g = inside[:n], inside[n:]
    y_f, y_g = OnnxRunner(p_f).run(x_f), OnnxRunner(p_g).run(x_g)
    y = np.concatenate([y_f, y_g])
    if not q.unsafe.satisfied_by(y, output_tolerance(y, tol)):
        return None
    return x_f, x_g, y_f, y_g


def _difference_rows(q: CoupledQuery) -> list[np.ndarray] | None:
    """Per unsafe polytope a strict row ``a . Y_f - a . Y_g < 0`` (rhs 0), as ``a``: the
    violation then needs ``a . (Y_g - Y_f) > 0``. None when some polytope has no such row."""
    m, found = q.n_outputs, []
    for p in q.unsafe.disjuncts:
        rows = [row[:m] for row, b, s in zip(p.mat, p.rhs, p.strict or (False,) * len(p.rhs),
                                             strict=True)
                if s and b == 0.0 and np.array_equal(row[:m], -row[m:]) and row[:m].any()]
        if not rows:
            return None
        found.append(rows[0])
    return found


def prove_monotone(q: CoupledQuery, red: Reduction, net: Network, time_budget: float,
                   max_boxes: int = 100_000) -> tuple[bool, int]:
    """For ``f = g``: prove ``a . (f(x_g) - f(x_f)) <= 0`` for every feasible pair and every
    polytope's difference row ``a`` (:func:`_difference_rows`), so that no strict violation
    exists, by the sign of ``a . f``'s gradient (:func:`~nnbisim.bounds.jacobian.
    gradient_bounds`) over the box holding every ``x_f`` and ``x_g``, split until each piece's
    sign matches the offsets' (``x_g[i] - x_f[i] >= 0``: derivative ``<= 0``). (proved, boxes)."""
    rows = _difference_rows(q)
    n = q.n_inputs
    if rows is None or red.box is None:
        return False, 0
    z_lo, z_hi = red.z(red.box.lower), red.z(red.box.upper)  # M has 0/1 entries: monotone
    g_lo, g_hi = np.maximum(z_lo[n:], q.lower[n:]), np.minimum(z_hi[n:], q.upper[n:])
    lo, hi = np.minimum(z_lo[:n], g_lo), np.maximum(z_hi[:n], g_hi)  # every x_f and x_g
    off_lo, off_hi = red.c[n:].copy(), red.c[n:].copy()  # x_g - x_f: the offsets' ranges
    for j, i in enumerate(red.free):
        off_lo[i] += red.box.lower[n + j]
        off_hi[i] += red.box.upper[n + j]
    zero = (off_lo == 0) & (off_hi == 0)  # no condition on a derivative that is not used
    need_le, need_ge = (off_lo >= 0) & ~zero, (off_hi <= 0) & ~zero
    t0, boxes = time.perf_counter(), 0
    for a in rows:
        queue = [(lo, hi)]
        while queue:
            if time.perf_counter() - t0 > time_budget or boxes >= max_boxes:
                return False, boxes
            batch, queue = queue[:64], queue[64:]
            bl, bh = np.array([b[0] for b in batch]), np.array([b[1] for b in batch])
            gl, gu = gradient_bounds(net, bl, bh, a)
            boxes += len(batch)
            ok = np.where(need_le, gu <= 0, True) & np.where(need_ge, gl >= 0, True)
            ok &= np.where(need_le | need_ge | zero, True, (gl == 0) & (gu == 0))
            for k in np.flatnonzero(~ok.all(axis=1)):
                width = bh[k] - bl[k]
                if not width.any():
                    return False, boxes  # a point where the sign is wrong (or unknown)
                j = int(np.argmax(width))
                mid = (bl[k, j] + bh[k, j]) / 2
                left_hi, right_lo = bh[k].copy(), bl[k].copy()
                left_hi[j], right_lo[j] = mid, mid
                queue += [(bl[k], left_hi), (right_lo, bh[k])]
    return True, boxes


def _tightened(q: CoupledQuery, margin: float) -> CoupledQuery:
    """``q`` with its strict input rows moved in by ``margin`` (relative)."""
    if not margin or not any(q.strict):
        return q
    strict = np.array(q.strict)
    return replace(q, rhs=q.rhs - margin * strict * (1.0 + np.abs(q.rhs)))


def _subject(q: CoupledQuery, red: Reduction, net_f: Network, net_g: Network) -> Subject:
    n = q.n_inputs
    subject = pair(lifted(net_f, red.m[:n], red.c[:n], net_f.name),
                   lifted(net_g, red.m[n:], red.c[n:], net_g.name), "stacked")
    return with_inputs(subject, red.m.shape[1]) if len(red.rhs) else subject


def decide_coupled(q: CoupledQuery, net_f: Network, net_g: Network, p_f: Path, p_g: Path,
                   time_budget: float, options: DecideOptions = DecideOptions()
                   ) -> CoupledAnswer:
    """Decide a coupled query on the two networks (and their files, for the replay): the
    closed query first (its ``holds`` is a proof), then, where a strict relation is only met
    on its boundary, a search for a point with a clear margin."""
    t0 = time.perf_counter()
    boxes = 0
    strict = any(p.strict for p in q.unsafe.disjuncts) or any(q.strict)
    same = net_f is net_g or fingerprint(net_f) == fingerprint(net_g)
    for margin in ((0.0, STRICT_MARGIN) if strict else (0.0,)):
        left = time_budget - (time.perf_counter() - t0)
        if left <= 0:
            break
        red = reduce_query(_tightened(q, margin))
        if red.box is None:
            if margin == 0.0:
                return CoupledAnswer(Status.HOLDS, note="the input set is empty")
            break
        case = SpecCase(red.box, _unsafe_over_u(q.unsafe, red, margin))
        d = decide(_subject(q, red, net_f, net_g), [case], left, options)
        boxes += d.boxes
        if d.status is Status.HOLDS:
            if margin == 0.0:
                return CoupledAnswer(Status.HOLDS, boxes=boxes)
            return CoupledAnswer(Status.UNKNOWN, note="no counterexample with a clear margin "
                                 "on the strict relations; the closed relation is reached, so "
                                 "no proof either", boxes=boxes)
        if d.status is Status.VIOLATED:
            got = replay_coupled(q, p_f, p_g, red.z(d.x))
            if got is not None:
                return CoupledAnswer(Status.VIOLATED, *got, boxes=boxes)
            if margin == 0.0 and same:  # only the boundary (f = g, x_f = x_g): monotone?
                share = MONOTONE_SHARE * (time_budget - (time.perf_counter() - t0))
                proved, work = prove_monotone(q, red, net_f, share)
                boxes += work
                if proved:
                    return CoupledAnswer(Status.HOLDS, note="monotone: the gradient's sign "
                                         "rules out a strict violation", boxes=boxes)
    return CoupledAnswer(Status.TIMEOUT, note="the budget ended first", boxes=boxes)
