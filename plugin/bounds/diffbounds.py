"""Differential bounds: sound bounds of ``N1(x) - N2(x)`` for two networks of the same layer sizes.

Bounding the merged network (N1 and N2 side by side) forgets that corresponding neurons of a
network and its compressed copy move together, so its bounds on the difference are as wide as the
networks' own ranges. Here the *difference* ``dz = z1 - z2`` of corresponding pre-activations is
a variable of its own, as in ReluDiff (Paulsen, Wang, Wang, ICSE 2020) and NeuroDiff (Paulsen et
al., ASE 2020). Each layer of the joint network maps ``v = (h1, h2, dh)`` to ``u = (z1, z2, dz)``
by one matrix ``[[W1, 0, 0], [0, W2, 0], [W1 - W2, 0, W2]]``: the small weight difference
multiplies N1's activations, N2's weights the activation difference. ``h1 = relu(z1)``,
``h2 = relu(z2)`` and ``dh = relu(z1) - relu(z2)`` are replaced by lower and upper linear
functions of ``u`` valid on the layer's concrete bounds (:mod:`nnbisim.bounds.diffrelax`).

Concrete bounds of a layer: interval arithmetic on the layer below, intersected (for inputs of at
most :data:`FORMS_MAX_INPUTS` values) with each network's forward linear forms in the input
(ReluVal/Neurify symbolic intervals), tightened through ``z1 = z2 + dz``; then the neurons whose
ReLU is not decided by those bounds (z1 or z2 crossing 0) get their ``z1``, ``z2`` and ``dz``
back-substituted to the input through the relaxations below (DeepPoly / CROWN), all streams in
one pass. For wide inputs, where forms cost too much, every neuron of such a layer is
back-substituted. The output rows are bounded both as ``C dz`` and as ``C z1 - C z2`` and the
tighter side kept.

What is guaranteed: for every real ``x`` in a box, the real-arithmetic value of
``C @ (N1(x) - N2(x))`` with the given float64 weights lies in ``[lo, hi]``. Float64 rounding is
accounted for: every computed coefficient of a sum of ``n`` products is off by at most
``gamma_n * sum |products|`` (any summation order, FMA or blocking), and the effect of that error
on the bound is at most that times the magnitude of the variable it multiplies (known from the
concrete bounds); it is taken twice over, added to the bound and the result rounded one step
outward. Rounded inputs to the relaxations (``W1 - W2``, ReLU slopes and intercepts, envelope
kinks) carry their own error bounds. No claim is made about a float32 evaluation of the ONNX files
(onnxruntime): its rounding comes on top.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from nnbisim.bounds import forms
from nnbisim.bounds.diffrelax import Relax, relaxation
from nnbisim.bounds.forms import FormLayer
from nnbisim.bounds.fp import TINY, U, down, gamma2, margin, up, widen
from nnbisim.core.errors import InputError, ShapeMismatchError
from nnbisim.core.model import Network

FORMS_MAX_INPUTS = 32  # inputs up to this size get forward linear forms
_ELEMENTS_PER_CHUNK = 2**21  # float64 elements of the largest back-substitution tensor
_BOXES_PER_CHUNK = 512

Array = np.ndarray | torch.Tensor
T = torch.Tensor


@dataclass(frozen=True)
class DiffBoundsResult:
    """``lo <= C @ (N1(x) - N2(x)) <= hi`` for every ``x`` in box ``b``: rows ``lo[b]``, ``hi[b]``.

    Tensors of shape ``(B, K)`` (``K`` = outputs, or rows of ``C``), float64. With slopes asked
    for, ``lo[b, k]`` and ``hi[b, k]`` are the minimum and maximum over the box of linear
    functions of the input whose coefficients are ``slope_lo[b, k]`` and ``slope_hi[b, k]``
    (shape ``(B, K, n_in)``): the vertices where they are extreme are good places to look for
    witnesses, and the dimensions with the largest ``|slope| * width`` are good to split.
    """

    lo: torch.Tensor
    hi: torch.Tensor
    slope_lo: torch.Tensor | None = None
    slope_hi: torch.Tensor | None = None


def same_architecture(n1: Network, n2: Network) -> bool:
    """Do the two networks have the same input size and the same size of every layer?"""
    return (n1.in_size == n2.in_size
            and [layer.out_size for layer in n1.layers] == [layer.out_size for layer in n2.layers])


def _bmv(g: T, v: T) -> T:
    """``g @ v`` per box: g (R, n) shared or (B, R, n), v (B, n) -> (B, R)."""
    if g.ndim == 2:
        return v @ g.T
    return (g @ v.unsqueeze(-1)).squeeze(-1)


@dataclass(frozen=True)
class _Joint:
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

    @property
    def n_in(self) -> int:
        return int(self.w1.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.w1.shape[0])


def _joint(l1, l2, device: torch.device | str) -> _Joint:
    w1, w2, b1, b2 = (torch.tensor(v, dtype=torch.float64, device=device)
                      for v in (l1.weight, l2.weight, l1.bias, l2.bias))
    dw, db = w1 - w2, b1 - b2
    # |fl(a - b) - (a - b)| <= u |a - b| <= 2u |fl(a - b)|; 4u leaves room for later sums
    return _Joint(w1, w2, b1, b2, dw, db, 4 * U * dw.abs(), 4 * U * db.abs(),
                  FormLayer.of(w1, b1, w2, b2))


def _scales(a: _Joint, v1: T, v2: T, vd: T | None) -> tuple[T, T, T, T]:
    """Per output neuron of affine layer ``a``: the magnitudes its coefficients multiply,
    ``|W1| |h1| + |b1|``, ``|W2| |h2| + |b2|``, ``|W2| |dh| + |D| |h1| + |db|``, and the error of
    the rounded difference ``err(D) |h1| + err(db)``."""
    fd = v1 @ a.dw.abs().T + a.db.abs()
    if vd is not None:
        fd = fd + vd @ a.w2.abs().T
    return (v1 @ a.w1.abs().T + a.b1.abs(), v2 @ a.w2.abs().T + a.b2.abs(), fd,
            v1 @ a.dw_err.T + a.db_err)


def _relax_errors(r: Relax, scales: tuple[T, T, T, T]) -> tuple[T, T, T]:
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
class _State:
    """What back-substitution needs from the layers bounded so far, for one chunk of boxes:
    the boxes (lower, upper, magnitude), the layers, per affine layer its scales, per hidden
    layer its relaxation and the rounding margins of that relaxation and the affine layer below
    it (:func:`_relax_errors`)."""

    box: tuple[T, T, T]
    layers: list[_Joint]
    scale: list[tuple[T, T, T, T]]
    relax: list[Relax]
    errs: list[tuple[T, T, T]]

    def take(self, sel: T) -> _State:
        """The same state for the boxes ``sel`` only."""
        def part(x):
            if torch.is_tensor(x):
                return x[sel]
            if isinstance(x, tuple):
                return tuple(part(v) for v in x)
            if isinstance(x, Relax):
                return Relax(*(part(getattr(x, f.name)) for f in fields(x)))
            return x
        return _State(part(self.box), self.layers, [part(v) for v in self.scale],
                      [part(v) for v in self.relax], [part(v) for v in self.errs])


Rows = tuple[T | None, T | None, T | None]  # coefficients on (z1, z2, dz), None where zero


def _add(*xs: T | None) -> T | None:
    out = None
    for x in xs:
        if x is not None:
            out = x if out is None else out + x
    return out


def _mm(g: T | None, w: T) -> T | None:
    return None if g is None else g @ w


def _mul(g: T | None, c: T) -> T | None:
    return None if g is None else g * c.unsqueeze(-2)


def _dot(g: T | None, v: T) -> T | None:
    """``g @ v`` per box for a shared vector (n,) or per-box vectors (B, n)."""
    if g is None:
        return None
    return g @ v if v.ndim == 1 else _bmv(g, v)


def _split(g: T | None) -> tuple[T | None, T | None]:
    return (None, None) if g is None else (g.clamp(min=0), g.clamp(max=0))


def _abs_dot(g: T | None, v: T) -> T | None:
    return None if g is None else _bmv(g.abs(), v)


def _backsub(rows: Rows, k: int, st: _State, want_slopes: bool = False) -> tuple[T, T | None]:
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
    err = _add(*(None if x is None else ga * x for x in
                 (_abs_dot(g1, f1), _abs_dot(g2, f2), _abs_dot(gd, fd))), _abs_dot(gd, fe))
    err = err + TINY
    const = cabs = None
    count = 2
    for j in range(k, -1, -1):
        a = st.layers[j]
        for inc in (_dot(g1, a.b1), _dot(g2, a.b2), _dot(gd, a.db)):
            if inc is not None:
                const, cabs, count = _add(const, inc), _add(cabs, inc.abs()), count + 1
        h1, h2 = _add(_mm(g1, a.w1), _mm(gd, a.dw)), _mm(g2, a.w2)
        if j == 0:  # the input: h1 = h2 = x and dh = 0
            gx = _add(h1, h2)
            break
        hd = _mm(gd, a.w2)
        r, (e1, e2, ed) = st.relax[j - 1], st.errs[j - 1]
        err = _add(err, _abs_dot(h1, e1), _abs_dot(h2, e2), _abs_dot(hd, ed)) + 3 * TINY
        (p1, q1), (p2, q2), (pd, qd) = _split(h1), _split(h2), _split(hd)
        g1 = _add(_mul(p1, r.mu1), _mul(q1, r.lam1), _mul(pd, r.dl[0]), _mul(qd, r.du[0]))
        g2 = _add(_mul(p2, r.mu2), _mul(q2, r.lam2),
                  *((_mul(pd, r.dl[1]), _mul(qd, r.du[1])) if r.uses_z2 else ()))
        gd = _add(_mul(pd, r.dl[2]), _mul(qd, r.du[2]))
        for inc in (_dot(q1, r.beta1), _dot(q2, r.beta2), _dot(pd, r.dl0), _dot(qd, r.du0)):
            if inc is not None:
                const, cabs, count = _add(const, inc), _add(cabs, inc.abs()), count + 1
    val = _bmv(gx.clamp(min=0), lo) + _bmv(gx.clamp(max=0), hi) + const
    total = (margin(_bmv(gx.abs(), mx) + const.abs(), 2 * int(lo.shape[-1]) + 4)
             + margin(cabs + torch.zeros_like(val), count) + err)
    return widen(val, total, lower=True), (gx if want_slopes else None)


def _refine(k: int, bounds: tuple[T, T], mask: T, stream: int, st: _State) -> tuple[T, T]:
    """Back-substituted bounds of the neurons ``mask`` (B, n) of one stream (0: z1, 1: z2,
    2: dz) of layer k, intersected with ``bounds``; the others keep theirs. Boxes are grouped by
    how many rows they need, so the cost follows the number of rows, not the layer width."""
    lo, hi = bounds
    count = mask.sum(1)
    boxes = torch.nonzero(count > 0).squeeze(1)
    if boxes.numel() == 0:
        return lo, hi
    width = int(mask.shape[1])
    per_group = max(1, _ELEMENTS_PER_CHUNK // (2 * int(count.max()) * width))
    if boxes.numel() > per_group:  # several groups: boxes of similar counts together
        boxes = boxes[torch.argsort(count[boxes], stable=True)]
    lo, hi = lo.clone(), hi.clone()
    for start in range(0, boxes.numel(), per_group):
        sel = boxes[start:start + per_group]
        whole = sel.numel() == lo.shape[0]
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
        res, _ = _backsub((lam[0], lam[1], lam[2]), k, sub)
        for old, new, pick in ((lo, res[:, :rows], torch.maximum),
                               (hi, -res[:, rows:], torch.minimum)):
            part = old[sel]
            padded = torch.cat([part, torch.zeros_like(part[:, :1])], 1)
            padded.scatter_(1, idx, pick(padded.gather(1, idx), new))
            old[sel] = padded[:, :width]
    return lo, hi


def _interval(terms: list[tuple[T, T | None, T, T]], bias: T, bias_err: T | None
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


def _tighten(b1: tuple[T, T], b2: tuple[T, T], bd: tuple[T, T]) -> tuple[T, ...]:
    """Intersect the bounds of z1, z2, dz through ``z1 = z2 + dz`` (sums rounded outward)."""
    (a1, c1), (a2, c2), (dlo, dhi) = b1, b2, bd
    return (torch.maximum(a1, down(a2 + dlo)), torch.minimum(c1, up(c2 + dhi)),
            torch.maximum(a2, down(a1 - dhi)), torch.minimum(c2, up(c1 - dlo)),
            torch.maximum(dlo, down(a1 - c2)), torch.minimum(dhi, up(c1 - a2)))


def _bounds_chunk(layers: list[_Joint], lo: T, hi: T, rows: Rows, want_slopes: bool
                  ) -> tuple[T, T | None]:
    """Layer by layer concrete bounds and relaxations, then lower bounds ``(B, R)`` of the
    output rows ``A1 y1 + A2 y2 + Ad d`` (``rows = (A1, A2, Ad)``, each ``(R, m)`` or None),
    computed both as given (``d`` as its own stream) and with ``d = y1 - y2`` folded into the
    networks' own streams, the tighter kept; with ``want_slopes`` also the slopes (B, R, n_in)
    of the linear functions behind them."""
    xmax = torch.maximum(lo.abs(), hi.abs())
    zeros = torch.zeros_like(lo)
    st = _State((lo, hi, xmax), layers, [], [], [])
    vb, vmax = ((lo, hi), (lo, hi), (zeros, zeros)), (xmax, xmax, None)
    use_forms = lo.shape[1] <= FORMS_MAX_INPUTS
    if use_forms:
        f = forms.input_forms(lo, hi)
    for k, a in enumerate(layers[:-1]):
        st.scale.append(_scales(a, *vmax))
        z1 = _interval([(a.w1, None, *vb[0])], a.b1, None)
        z2 = _interval([(a.w2, None, *vb[1])], a.b2, None)
        dz = _interval([(a.w2, None, *vb[2]), (a.dw, a.dw_err, *vb[0])], a.db, a.db_err)
        n = a.n_out
        if use_forms:
            f = forms.affine(f, a.forms)
            fmin, fmax = forms.bounds(f)
            z1 = (torch.maximum(z1[0], fmin[:, :n]), torch.minimum(z1[1], fmax[:, n:2 * n]))
            z2 = (torch.maximum(z2[0], fmin[:, 2 * n:3 * n]), torch.minimum(z2[1], fmax[:, 3 * n:]))
        b = _tighten(z1, z2, dz)
        if k > 0:  # the first layer's intervals are exact up to rounding
            unstable = ((b[0] < 0) & (b[1] > 0)) | ((b[2] < 0) & (b[3] > 0))
            if not use_forms:  # interval bounds are loose: tight bounds of stable neurons pay off
                unstable = unstable.any(1, keepdim=True).expand_as(unstable)
            # N1 first; N2's bounds follow from z2 = z1 - dz where dz is small against z1
            b = _tighten(_refine(k, b[0:2], unstable, 0, st), b[2:4], b[4:6])
            unstable = ((b[0] < 0) & (b[1] > 0)) | ((b[2] < 0) & (b[3] > 0))
            own = unstable & (b[5] - b[4] > 0.1 * (b[1] - b[0]))
            b = _tighten(b[0:2], _refine(k, b[2:4], own, 1, st), b[4:6])
            unstable = ((b[0] < 0) & (b[1] > 0)) | ((b[2] < 0) & (b[3] > 0))
            b = _tighten(b[0:2], b[2:4], _refine(k, b[4:6], unstable, 2, st))
        r = relaxation(*b)
        st.relax.append(r)
        st.errs.append(_relax_errors(r, st.scale[k]))
        vb, vmax = r.vbounds, r.vmax
        if use_forms:
            act1, act2, dead1, dead2 = b[0] >= 0, b[2] >= 0, b[1] <= 0, b[3] <= 0
            f = forms.relu(f, fmin, fmax, torch.cat([act1, act1, act2, act2], 1),
                           torch.cat([dead1, dead1, dead2, dead2], 1), a.forms.upper)
    st.scale.append(_scales(layers[-1], *vmax))
    last = len(layers) - 1
    a1, a2, ad = rows
    low, g = _backsub(rows, last, st, want_slopes)
    if ad is not None:  # the same rows with d = y1 - y2 through each network's own relaxations
        sep, gs = _backsub((_add(a1, ad), _add(a2, -ad), None), last, st, want_slopes)
        better = sep > low
        low = torch.where(better, sep, low)
        if want_slopes:
            g = torch.where(better.unsqueeze(-1), gs, g)
    return low, g


class DiffEngine:
    """Differential bounds for one pair of networks of the same layer sizes, their weights
    prepared once on ``device`` (for branch and bound, which bounds many batches)."""

    def __init__(self, n1: Network, n2: Network, device: torch.device | str = "cpu"):
        if not same_architecture(n1, n2):
            raise ShapeMismatchError(
                f"differential bounds need the same layer sizes, but {n1.name} is "
                f"{n1.describe()} and {n2.name} is {n2.describe()}; bound the merged network "
                "instead")
        self.n_in, self.n_out, self.device = n1.in_size, n1.out_size, device
        self.layers = [_joint(l1, l2, device) for l1, l2 in zip(n1.layers, n2.layers,
                                                                 strict=True)]

    def bounds(self, lower: Array, upper: Array, C: Array | None = None,
               slopes: bool = False) -> DiffBoundsResult:
        """Bounds of ``C @ (N1(x) - N2(x))`` (C of shape (K, m); default the identity) over each
        box ``lower[b] <= x <= upper[b]`` (arrays (B, n_in), or one box (n_in,))."""
        lo, hi = self._boxes(lower, upper)
        c_mat = (torch.eye(self.n_out, dtype=torch.float64, device=self.device) if C is None
                 else _as_tensor(C, self.device))
        if c_mat.ndim == 1:
            c_mat = c_mat.unsqueeze(0)
        self._check_rows(c_mat, "C")
        kk = int(c_mat.shape[0])
        low, g = self._lower(lo, hi, (None, None, torch.cat([c_mat, -c_mat])), slopes)
        if g is None:
            return DiffBoundsResult(low[:, :kk], -low[:, kk:])
        return DiffBoundsResult(low[:, :kk], -low[:, kk:], g[:, :kk], -g[:, kk:])

    def row_bounds(self, lower: Array, upper: Array, a1: Array | None, a2: Array | None,
                   ad: Array | None, slopes: bool = False) -> tuple[T, T | None]:
        """Lower bounds ``(B, R)`` of ``A1 N1(x) + A2 N2(x) + Ad (N1(x) - N2(x))`` over each box
        (each matrix ``(R, m)`` or None for zero), and optionally the slopes ``(B, R, n_in)``
        of the linear functions whose minima they are: any linear function of the two
        networks' outputs, as a two-network query states it."""
        lo, hi = self._boxes(lower, upper)
        mats = [None if a is None else _as_tensor(a, self.device) for a in (a1, a2, ad)]
        given = [a for a in mats if a is not None]
        if not given:
            raise InputError("give at least one of the row matrices A1, A2, Ad")
        for name, a in zip(("A1", "A2", "Ad"), mats, strict=True):
            if a is not None:
                self._check_rows(a, name)
        if len({int(a.shape[0]) for a in given}) != 1:
            raise ShapeMismatchError("A1, A2 and Ad must have the same number of rows")
        return self._lower(lo, hi, (mats[0], mats[1], mats[2]), slopes)

    def _lower(self, lo: T, hi: T, rows: Rows, slopes: bool) -> tuple[T, T | None]:
        count = int(next(a for a in rows if a is not None).shape[0])
        if lo.shape[0] == 0:
            empty = lo.new_zeros(0, count)
            return empty, (lo.new_zeros(0, count, self.n_in) if slopes else None)
        widest = max(self.n_in, *(a.n_out for a in self.layers))
        chunk = max(1, min(_BOXES_PER_CHUNK, _ELEMENTS_PER_CHUNK // (6 * count * widest)))
        parts = [_bounds_chunk(self.layers, lo[i:i + chunk], hi[i:i + chunk], rows, slopes)
                 for i in range(0, lo.shape[0], chunk)]
        low = torch.cat([p[0] for p in parts])
        return low, (torch.cat([p[1] for p in parts]) if slopes else None)

    def _boxes(self, lower: Array, upper: Array) -> tuple[T, T]:
        lo, hi = _as_tensor(lower, self.device), _as_tensor(upper, self.device)
        if lo.ndim == 1:
            lo, hi = lo.unsqueeze(0), hi.unsqueeze(0)
        if lo.ndim != 2 or lo.shape != hi.shape or lo.shape[1] != self.n_in:
            raise ShapeMismatchError(
                f"boxes must be lower/upper arrays of shape (B, {self.n_in}), got "
                f"{tuple(lo.shape)} and {tuple(hi.shape)}")
        if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()) or (lo > hi).any():
            raise InputError("every box needs finite bounds with lower <= upper")
        return lo, hi

    def _check_rows(self, a: T, name: str) -> None:
        if a.ndim != 2 or a.shape[1] != self.n_out or not torch.isfinite(a).all():
            raise ShapeMismatchError(
                f"{name} must be a finite matrix of shape (K, {self.n_out}), got "
                f"{tuple(a.shape)}")


def _as_tensor(x: Array, device: torch.device | str) -> T:
    if torch.is_tensor(x):
        return x.to(dtype=torch.float64, device=device)
    return torch.tensor(np.asarray(x, dtype=np.float64), dtype=torch.float64, device=device)


def differential_bounds(n1: Network, n2: Network, lower: Array, upper: Array,
                        C: Array | None = None, device: torch.device | str = "cpu",
                        slopes: bool = False) -> DiffBoundsResult:
    """Sound bounds of ``N1(x) - N2(x)`` (or ``C @ (N1(x) - N2(x))``, C of shape (K, m)) over
    each box ``lower[b] <= x <= upper[b]`` (arrays of shape (B, n_in), or one box (n_in,)).

    Both networks must have the same layer sizes (:func:`same_architecture`); otherwise
    :class:`~nnbisim.core.errors.ShapeMismatchError`. Bounds hold for the real-arithmetic networks
    with the given float64 weights (see the module docstring).
    """
    return DiffEngine(n1, n2, device).bounds(lower, upper, C, slopes)
