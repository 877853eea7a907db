"""The steps of the differential engine (:mod:`nnbisim.bounds.diffbounds`): the joint layers,
interval steps, back-substitution through the relaxations of ``(h1, h2, dh)`` and the refinement
of a layer's unstable neurons, each with its rounding margin (see that module's docstring)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from nnbisim.bounds.diffrelax import Relax
from nnbisim.bounds.forms import FormLayer
from nnbisim.bounds.fp import TINY, U, down, gamma2, margin, up, widen

T = torch.Tensor


@dataclass(frozen=True)
class Joint:
    """Affine layer k of the joint network, shared by all boxes: ``z1 = W1 h1 + b1``,
    ``z2 = W2 h2 + b2``, ``dz = W2 dh + D h1 + db``; ``D``, ``db`` are ``W1 - W2``, ``b1 - b2``
    rounded and ``dw_err``, ``db_err`` bound their distance to the exact differences."""

    w1: T
    w2: T
    b1: T
    b2: T
    dw: T
    db: T
    dw_err: T
    db_err: T
    forms: FormLayer
    dw_w2: T  # [D | W2]: both products of the dz stream's coefficients in one

    @property
    def n_in(self) -> int:
        return int(self.w1.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.w1.shape[0])

def joint_layer(l1, l2, device: torch.device | str) -> Joint:
    w1, w2, b1, b2 = (torch.tensor(v, dtype=torch.float64, device=device)
                      for v in (l1.weight, l2.weight, l1.bias, l2.bias))
    dw, db = w1 - w2, b1 - b2
    # |fl(a - b) - (a - b)| <= u |a - b| <= 2u |fl(a - b)|; 4u leaves room for later sums
    return Joint(w1, w2, b1, b2, dw, db, 4 * U * dw.abs(), 4 * U * db.abs(),
                 FormLayer.of(w1, b1, w2, b2), torch.cat([dw, w2], 1))

def layer_scales(a: Joint, v1: T, v2: T, vd: T | None) -> tuple[T, T, T, T]:
    """Per output neuron of affine layer ``a``: the magnitudes its coefficients multiply,
    ``|W1| |h1| + |b1|``, ``|W2| |h2| + |b2|``, ``|W2| |dh| + |D| |h1| + |db|``, and the error of
    the rounded difference ``err(D) |h1| + err(db)``."""
    fd = v1 @ a.dw.abs().T + a.db.abs()
    if vd is not None:
        fd = fd + vd @ a.w2.abs().T
    return (v1 @ a.w1.abs().T + a.b1.abs(), v2 @ a.w2.abs().T + a.b2.abs(), fd,
            v1 @ a.dw_err.T + a.db_err)

def relax_errors(r: Relax, scales: tuple[T, T, T, T]) -> tuple[T, T, T]:
    """Margins per unit coefficient on (h1, h2, dh) for relaxation j then affine j: a
    coefficient on z1 is a sum of <= 2 products (``|g1| <= |h1| c1 + |hd| d1``), the constant a
    sum of <= 3n, and the next affine step's coefficients are bounded through those same
    inequalities."""
    f1, f2, fd, fe = scales
    n = int(r.mu1.shape[-1])
    gr, ga = gamma2(3 * n + 6), gamma2(2 * n + 6)
    c1, c2 = torch.maximum(r.mu1, r.lam1), torch.maximum(r.mu2, r.lam2)
    d = [torch.maximum(x.abs(), y.abs()) for x, y in zip(r.dl, r.du, strict=True)]
    d0 = torch.maximum(r.dl0.abs(), r.du0.abs())
    u1, u2, ud = r.umax
    e1 = gr * (c1 * u1 + r.beta1.abs()) + ga * c1 * f1
    e2 = gr * (c2 * u2 + r.beta2.abs()) + ga * c2 * f2
    ed = (gr * (d[0] * u1 + d[1] * u2 + d[2] * ud + d0)
          + ga * (d[0] * f1 + d[1] * f2 + d[2] * fd) + d[2] * fe)
    return e1, e2, ed

@dataclass
class State:
    """What back-substitution needs from the layers bounded so far, for one chunk of boxes:
    the boxes (lower, upper, magnitude), the layers, per affine layer its scales, per hidden
    layer its relaxation and the rounding margins of that relaxation and the affine layer below
    it (:func:`relax_errors`)."""

    box: tuple[T, T, T]
    layers: list[Joint]
    scale: list[tuple[T, T, T, T]]
    relax: list[Relax]
    errs: list[tuple[T, T, T]]
    chunk: int = 2**21  # float64 elements of the largest back-substitution tensor

    def take(self, sel: T) -> State:
        """The same state for the boxes ``sel`` only."""
        def part(x):
            if torch.is_tensor(x):
                return x[sel]
            if isinstance(x, tuple):
                return tuple(part(v) for v in x)
            if isinstance(x, Relax):
                return Relax(*(part(getattr(x, f.name)) for f in fields(x)))
            return x
        return State(part(self.box), self.layers, [part(v) for v in self.scale],
                      [part(v) for v in self.relax], [part(v) for v in self.errs], self.chunk)

Rows = tuple[T | None, T | None, T | None]  # coefficients on (z1, z2, dz), None where zero

def add_terms(*xs: T | None) -> T | None:
    out = None
    for x in xs:
        if x is not None:
            out = x if out is None else out + x
    return out

def _mm(g: T | None, w: T) -> T | None:
    """``g @ w`` for coefficients (R, n) or (B, R, n): the boxes' rows folded into one matrix
    product."""
    if g is None:
        return None
    if g.ndim == 2:
        return g @ w
    return (g.reshape(-1, g.shape[-1]) @ w).reshape(*g.shape[:-1], w.shape[-1])

def _dot(g: T | None, v: T) -> T | None:
    """``g @ v`` per box for a shared vector (n,) or per-box vectors (B, n)."""
    if g is None:
        return None
    return g @ v if v.ndim == 1 else _bmv(g, v)

def _abs_dot(g: T | None, v: T) -> T | None:
    return None if g is None else _bmv(g.abs(), v)

def _bmv(g: T, v: T) -> T:
    """``g @ v`` per box: g (R, n) shared or (B, R, n), v (B, n) -> (B, R)."""
    if g.ndim == 2:
        return v @ g.T
    return (g * v.unsqueeze(-2)).sum(-1)

def _signs(h: T | None) -> tuple[T, T] | None:
    """``(max(h, 0), min(h, 0))``, by relu and a subtraction (both exact)."""
    if h is None:
        return None
    pos = torch.relu(h)
    return pos, h - pos

def _line(parts: tuple[T, T] | None, lower: T, upper: T) -> T | None:
    """A coefficient split in its signs ``parts`` times the slope of the lower line where it is
    positive and of the upper one elsewhere (lines per box: ``lower``, ``upper`` (B, n))."""
    if parts is None:
        return None
    pos, neg = parts
    return torch.addcmul(pos * lower.unsqueeze(-2), neg, upper.unsqueeze(-2))

def _constants(parts: tuple[T, T] | None, lower: T | None, upper: T, e: T
               ) -> tuple[T | None, T | None]:
    """What the lines' intercepts add per box and row (``lower`` None: zero), and the rounding
    margin ``|h| . e`` of the coefficient ``h = pos + neg``, in products with two right-hand
    columns (``[lower, e]``, ``[upper, -e]``)."""
    if parts is None:
        return None, None
    pos, neg = parts
    right = _mv2(neg, upper, -e)
    if lower is None:
        return right[..., 0], right[..., 1] + _bmv(pos, e)
    left = _mv2(pos, lower, e)
    return left[..., 0] + right[..., 0], left[..., 1] + right[..., 1]

def _mv2(g: T, u: T, v: T) -> T:
    """``(g @ u, g @ v)`` per box, stacked (..., 2): g (R, n) or (B, R, n), u and v (B, n)."""
    return g @ torch.stack([u, v], -1)


def _through_relu(h: tuple[T | None, T | None, T | None], r: Relax,
                  errs: tuple[T, T, T]) -> tuple[tuple[T | None, T | None, T | None], list, T]:
    """Coefficients ``h`` on ``(h1, h2, dh)`` of a layer moved onto ``(z1, z2, dz)`` through
    its relaxation (lower lines for positive coefficients, upper ones for the others), the
    constants the lines' intercepts add (per box and row), and the rounding margins of the
    step (``|h| . e`` per stream, ``errs`` from :func:`relax_errors`)."""
    s1, s2, sd = (_signs(x) for x in h)
    g1 = add_terms(_line(s1, r.mu1, r.lam1), _line(sd, r.dl[0], r.du[0]))
    g2 = add_terms(_line(s2, r.mu2, r.lam2), _line(sd, r.dl[1], r.du[1]) if r.uses_z2 else None)
    gd = _line(sd, r.dl[2], r.du[2])
    incs, err = [], None
    for parts, low, high, e in ((s1, None, r.beta1, errs[0]), (s2, None, r.beta2, errs[1]),
                                (sd, r.dl0, r.du0, errs[2])):
        inc, margin_ = _constants(parts, low, high, e)
        incs.append(inc)
        err = add_terms(err, margin_)
    return (g1, g2, gd), incs, err


def backsub(rows: Rows, k: int, st: State, want_slopes: bool = False) -> tuple[T, T | None]:
    """Sound lower bounds ``(B, R)`` of ``g1 . z1_k + g2 . z2_k + gd . dz_k`` over each box, for
    rows ``(g1, g2, gd)`` of shape ``(R, n)`` (shared by the boxes) or ``(B, R, n)``, None where
    zero. With ``want_slopes`` also the coefficients ``(B, R, n_in)`` of the final linear
    function of the input (its slopes; the bound is its minimum over the box).

    Through affine layer j the coefficients become ``g @ W``; through relaxation j each
    coefficient takes the lower line where it is positive and the upper one where negative.
    Streams that stay zero are never computed (rows of z1 only are CROWN on N1 alone). ``err``
    collects the rounding margins of every step.
    """
    lo, hi, mx = st.box
    g1, g2, gd = rows
    f1, f2, fd, fe = st.scale[k]
    ga = gamma2(2 * st.layers[k].n_in + 6)
    err = add_terms(*(None if x is None else ga * x for x in
                 (_abs_dot(g1, f1), _abs_dot(g2, f2), _abs_dot(gd, fd))), _abs_dot(gd, fe))
    err = err + TINY
    const = cabs = None
    count = 2
    for j in range(k, -1, -1):
        a = st.layers[j]
        for inc in (_dot(g1, a.b1), _dot(g2, a.b2), _dot(gd, a.db)):
            if inc is not None:
                const, cabs, count = add_terms(const, inc), add_terms(cabs, inc.abs()), count + 1
        # gd @ D and gd @ W2 in one product (at the input only gd @ D: dh = 0 there)
        both = _mm(gd, a.dw if j == 0 else a.dw_w2)
        h1 = add_terms(_mm(g1, a.w1), None if both is None else both[..., :a.n_in])
        h2 = _mm(g2, a.w2)
        if j == 0:  # the input: h1 = h2 = x and dh = 0
            gx = add_terms(h1, h2)
            break
        hd = None if both is None else both[..., a.n_in:]
        (g1, g2, gd), incs, step_err = _through_relu((h1, h2, hd), st.relax[j - 1],
                                                     st.errs[j - 1])
        err = err + step_err + 3 * TINY
        for inc in incs:
            if inc is not None:
                const, cabs, count = add_terms(const, inc), add_terms(cabs, inc.abs()), count + 1
    val = _bmv(gx.clamp(min=0), lo) + _bmv(gx.clamp(max=0), hi) + const
    total = (margin(_bmv(gx.abs(), mx) + const.abs(), 2 * int(lo.shape[-1]) + 4)
             + margin(cabs + torch.zeros_like(val), count) + err)
    return widen(val, total, lower=True), (gx if want_slopes else None)

def refine(k: int, bounds: tuple[T, T], mask: T, stream: int, st: State) -> tuple[T, T]:
    """Back-substituted bounds of the neurons ``mask`` (B, n) of one stream (0: z1, 1: z2,
    2: dz) of layer k, intersected with ``bounds``; the others keep theirs. Boxes are grouped by
    how many rows they need, so the cost follows the number of rows, not the layer width."""
    lo, hi = bounds
    count = mask.sum(1)
    boxes = torch.nonzero(count > 0).squeeze(1)
    if boxes.numel() == 0:
        return lo, hi
    width = int(mask.shape[1])
    lo, hi = lo.clone(), hi.clone()
    for sel in _groups(boxes, count, st.chunk, width):
        whole = sel.numel() == lo.shape[0]
        if whole:  # every box, in the state's order
            sel = torch.arange(lo.shape[0], device=lo.device)
        sub = st if whole else st.take(sel)
        msk = mask if whole else mask[sel]
        rows = int(count[sel].max())
        order = torch.argsort((~msk).to(torch.int8), dim=1, stable=True)[:, :rows]
        valid = torch.arange(rows, device=lo.device) < count[sel].unsqueeze(1)
        idx = torch.where(valid, order, width)  # padding rows point at a spare column
        onehot = torch.zeros(len(sel), rows, width + 1, dtype=lo.dtype, device=lo.device)
        onehot.scatter_(2, idx.unsqueeze(-1), 1.0)
        onehot = onehot[..., :width]
        lam: list[T | None] = [None, None, None]
        lam[stream] = torch.cat([onehot, -onehot], 1)
        res, _ = backsub((lam[0], lam[1], lam[2]), k, sub)
        for old, new, pick in ((lo, res[:, :rows], torch.maximum),
                               (hi, -res[:, rows:], torch.minimum)):
            part = old[sel]
            padded = torch.cat([part, torch.zeros_like(part[:, :1])], 1)
            padded.scatter_(1, idx, pick(padded.gather(1, idx), new))
            old[sel] = padded[:, :width]
    return lo, hi

MIN_GROUP = 32  # boxes: a smaller group of similar row counts joins the next one
PADDING = (1.5, 8)  # a group's rows are at most this many times a box's own, or this many more


def _groups(boxes: T, count: T, chunk: int, width: int) -> list[T]:
    """The boxes needing rows, in groups of similar row counts (each group is back-substituted
    with as many rows as its largest count, the others padded): by count, largest first, a
    group takes the next box while padding it costs few rows (:data:`PADDING`) or the group
    has fewer than ``MIN_GROUP`` boxes; never more than ``chunk`` elements' worth."""
    c = count[boxes]
    order = torch.argsort(c, descending=True, stable=True)
    boxes, counts = boxes[order], c[order].tolist()
    groups, start = [], 0
    while start < len(counts):
        rows = counts[start]
        cap = max(1, chunk // (2 * rows * width))
        end = start + 1
        while (end < len(counts) and end - start < cap
               and (counts[end] * PADDING[0] >= rows or rows - counts[end] <= PADDING[1]
                    or end - start < MIN_GROUP)):
            end += 1
        groups.append(boxes[start:end])
        start = end
    return groups

def interval(terms: list[tuple[T, T | None, T, T]], bias: T, bias_err: T | None
              ) -> tuple[T, T]:
    """Sound interval of ``sum W @ v + b`` for terms ``(W, err of W, lower v, upper v)``."""
    lo = hi = bias
    total, extra = bias.abs(), bias_err if bias_err is not None else 0.0
    for w, err, vlo, vhi in terms:
        pos, neg = w.clamp(min=0), w.clamp(max=0)
        vmax = torch.maximum(vlo.abs(), vhi.abs())
        lo, hi = lo + vlo @ pos.T + vhi @ neg.T, hi + vhi @ pos.T + vlo @ neg.T
        total = total + vmax @ w.abs().T
        if err is not None:
            extra = extra + vmax @ err.T
    m = margin(total, 2 * sum(int(t[0].shape[1]) + 1 for t in terms) + 2) + extra
    return widen(lo, m, True), widen(hi, m, False)

def tighten(b1: tuple[T, T], b2: tuple[T, T], bd: tuple[T, T]) -> tuple[T, ...]:
    """Intersect the bounds of z1, z2, dz through ``z1 = z2 + dz`` (sums rounded outward)."""
    (a1, c1), (a2, c2), (dlo, dhi) = b1, b2, bd
    return (torch.maximum(a1, down(a2 + dlo)), torch.minimum(c1, up(c2 + dhi)),
            torch.maximum(a2, down(a1 - dhi)), torch.minimum(c2, up(c1 - dlo)),
            torch.maximum(dlo, down(a1 - c2)), torch.minimum(dhi, up(c1 - a2)))
