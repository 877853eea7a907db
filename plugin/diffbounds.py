"""Differential bounds: sound bounds of ``N1(x) - N2(x)`` for two networks of the same layer sizes.

Bounding the merged network (N1 and N2 side by side) forgets that corresponding neurons of a
network and its compressed copy move together, so its bounds on the difference are as wide as the
networks' own ranges. Here the *difference* ``dz = z1 - z2`` of corresponding pre-activations is
a variable of its own, as in ReluDiff (Paulsen, Wang, Wang, ICSE 2020) and NeuroDiff (Paulsen et
al., ASE 2020). Each layer of the joint network maps ``(h1, h2, dh)`` to ``(z1, z2, dz)``:

- ``z1 = W1 h1 + b1``, ``z2 = W2 h2 + b2`` and ``dz = W2 dh + (W1 - W2) h1 + (b1 - b2)``: the
  small weight difference multiplies N1's activations, N2's weights the activation difference;
- ``h1 = relu(z1)``, ``h2 = relu(z2)``, ``dh = relu(z1) - relu(z2)``, each replaced by a lower
  and an upper linear function of ``(z1, z2, dz)`` valid on the layer's concrete bounds
  (:func:`_relaxation` lists the cases).

Concrete bounds come from interval arithmetic on the layer below, intersected, where it matters
(an unstable neuron in the layer), with back-substitution of the neuron's linear bounds through
the layers below to the input, concretized over the box (DeepPoly / CROWN style); those of
``z1``, ``z2`` and ``dz`` are intersected through ``z1 = z2 + dz``. The output is bounded both
as ``C dz`` and as ``C z1 - C z2`` (CROWN on the merged network), and the tighter side kept.

What is guaranteed: for every real ``x`` in a box, the real-arithmetic value of
``C @ (N1(x) - N2(x))`` with the given float64 weights lies in ``[lo, hi]``. Float64 rounding is
accounted for: every computed coefficient of a sum of ``n`` products is off by at most
``gamma_n * sum |products|`` (``gamma_n = n u / (1 - n u)``, ``u = 2**-53``, any summation order,
FMA or blocking), and the effect of that error on the bound is at most that times the magnitude
of the variable it multiplies (known from the concrete bounds); it is taken twice over, added
to the bound and the result rounded one step outward. Rounded inputs to the relaxations
(``W1 - W2``, ReLU slopes and intercepts, envelope kinks) carry their own error bounds. No claim
is made about a float32 evaluation of the ONNX files (onnxruntime): its rounding comes on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch

from nnbisim.errors import InputError, ShapeMismatchError
from nnbisim.model import Network

_U = 2.0**-53  # unit roundoff of float64
_TINY = 2.0**-1000  # absolute slack against underflow, added wherever a margin is non-zero
_ELEMENTS_PER_CHUNK = 2**22

Array = np.ndarray | torch.Tensor
T = torch.Tensor


@dataclass(frozen=True)
class DiffBoundsResult:
    """``lo <= C @ (N1(x) - N2(x)) <= hi`` for every ``x`` in box ``b``: rows ``lo[b]``, ``hi[b]``.

    Tensors of shape ``(B, K)`` (``K`` = outputs, or rows of ``C``), float64, on the device asked.
    """

    lo: torch.Tensor
    hi: torch.Tensor


def same_architecture(n1: Network, n2: Network) -> bool:
    """Do the two networks have the same input size and the same size of every layer?"""
    return (n1.in_size == n2.in_size
            and [layer.out_size for layer in n1.layers] == [layer.out_size for layer in n2.layers])


def _gamma(n: int) -> float:
    """Twice ``gamma_n``; the doubling covers the rounding of the margin computation itself."""
    return 2.0 * n * _U / (1.0 - n * _U)


def _down(t: T) -> T:
    return torch.nextafter(t, torch.full_like(t, -torch.inf))


def _up(t: T) -> T:
    return torch.nextafter(t, torch.full_like(t, torch.inf))


def _widen(v: T, margin: T, lower: bool) -> T:
    """``v - margin`` (lower) or ``v + margin`` rounded outward; ``v`` itself where margin is 0
    (a zero margin means every term was zero, so ``v`` is exact)."""
    if lower:
        return torch.where(margin > 0, _down(v - margin), v)
    return torch.where(margin > 0, _up(v + margin), v)


def _margin(total: T, n: int) -> T:
    """Rounding margin of sums of ``n`` products whose absolute values sum to ``total``."""
    return torch.where(total > 0, _gamma(n) * total + _TINY, torch.zeros_like(total))


def _add(*xs: T | None) -> T | None:
    out = None
    for x in xs:
        if x is not None:
            out = x if out is None else out + x
    return out


@dataclass(frozen=True)
class _Affine:
    """Layer j of the joint network; ``dw``, ``db`` are ``W1 - W2``, ``b1 - b2`` rounded, and
    ``dw_err``, ``db_err`` bound their distance to the exact differences."""

    w1: T
    w2: T
    b1: T
    b2: T
    dw: T
    db: T
    dw_err: T
    db_err: T


def _affine_of(l1, l2, device: torch.device) -> _Affine:
    w1, w2, b1, b2 = (torch.tensor(v, dtype=torch.float64, device=device)
                      for v in (l1.weight, l2.weight, l1.bias, l2.bias))
    dw, db = w1 - w2, b1 - b2
    # |fl(a - b) - (a - b)| <= u |a - b| <= 2u |fl(a - b)|; 4u leaves room for later sums
    return _Affine(w1, w2, b1, b2, dw, db, 4 * _U * dw.abs(), 4 * _U * db.abs())


@dataclass(frozen=True)
class _Relax:
    """Linear bounds of ``(h1, h2, dh)`` in terms of ``(z1, z2, dz)`` of one layer, per neuron,
    valid on its concrete bounds: ``mu z <= relu(z) <= lam z + beta`` for each network and
    ``dl . (z1, z2, dz) + dl0 <= dh <= du . (z1, z2, dz) + du0`` (``dl``, ``du``: 3 tensors).
    ``umax`` bounds |z1|, |z2|, |dz| and ``vbounds`` are the bounds of h1, h2, dh."""

    mu1: T
    lam1: T
    beta1: T
    mu2: T
    lam2: T
    beta2: T
    dl: tuple[T, T, T]
    dl0: T
    du: tuple[T, T, T]
    du0: T
    uses_z2: bool  # does any dh line involve z2?
    umax: tuple[T, T, T]
    vbounds: tuple[tuple[T, T], tuple[T, T], tuple[T, T]]

    @property
    def vmax(self) -> tuple[T, T, T]:
        return tuple(torch.maximum(lo.abs(), hi.abs()) for lo, hi in self.vbounds)


def _relu_lines(a: T, b: T) -> tuple[T, T, T]:
    """``mu z <= relu(z) <= lam z + beta`` on ``[a, b]``: identity if ``a >= 0``, zero if
    ``b <= 0``; otherwise the chord through ``(a, 0)`` and ``(b, b)`` (slope rounded up to
    ``lam >= b / (b - a)`` and intercept up to ``beta >= -lam a``: the line stays above relu at
    both ends, hence on [a, b]) and the lower line ``s z`` with s = 1 if ``b >= -a`` else 0
    (relu(z) >= z and relu(z) >= 0), as CROWN does."""
    act, dead = a >= 0, b <= 0
    unstable = ~act & ~dead
    den = _down(torch.where(unstable, b - a, torch.ones_like(a)))  # <= b - a
    lam = torch.where(unstable, _up(b / den), act.to(a.dtype))
    mu = torch.where(unstable, (b >= -a).to(a.dtype), lam)
    beta = torch.where(unstable, _up(-lam * a), torch.zeros_like(a))
    return mu, lam, beta


def _envelope(a1: T, b1: T, a2: T, b2: T, p: T, upper: bool) -> T:
    """Exact max (``upper``) or min of ``relu(z2 + p) - relu(z2)`` over the z2 that are feasible
    with ``dz = p``: ``z2 in [a2, b2]`` and ``z1 = z2 + p in [a1, b1]``.

    For fixed ``p >= 0``, ``g(z2) = relu(z2 + p) - relu(z2) = clamp(z2 + p, 0, p)`` is
    non-decreasing in z2; for ``p < 0``, ``g(z2) = -clamp(z2, 0, -p)`` is non-increasing. So the
    extremes sit at the ends ``max(a2, a1 - p)`` and ``min(b2, b1 - p)`` of the feasible z2
    range. The result is continuous and piecewise linear in ``p``, slopes in {0, 1}, kinks only
    at ``0, a1 - a2, -a2, a1, b1 - b2, b1, -b2``.
    """
    a1, b1, a2, b2 = (t.unsqueeze(-1) for t in (a1, b1, a2, b2))
    if upper:  # largest z2 for p >= 0, smallest for p < 0
        pos = torch.minimum(torch.minimum(b2 + p, b1).clamp(min=0), p)
        neg = -torch.minimum(torch.maximum(a2, a1 - p).clamp(min=0), -p)
    else:
        pos = torch.minimum(torch.maximum(a2 + p, a1).clamp(min=0), p)
        neg = -torch.minimum(torch.minimum(b2, b1 - p).clamp(min=0), -p)
    return torch.where(p >= 0, pos, neg)


def _envelope_line(a1: T, b1: T, a2: T, b2: T, dlo: T, dhi: T, upper: bool
                   ) -> tuple[T, T, T]:
    """A line ``s * dz + t`` above (``upper``) or below ``dh`` for ``dz in [dlo, dhi]``, and
    the constant bound ``t0`` (the envelope's max or min there).

    Soundness: the envelope E is piecewise linear, so a line below E at every kink and at both
    ends is below E on the whole interval. The slope s is one of {chord, 0, 1} (the best mean
    over the interval); t is the min of ``E(p) - s p`` over those points. Rounding: the kinks
    ``a1 - a2``, ``b1 - b2`` are off by <= 2uS (S = the largest magnitude among a1, b1, a2, b2,
    dlo, dhi); E is 1-Lipschitz and |s| <= 1, so evaluating at the rounded kinks costs <= 4uS;
    evaluating E (one addition) <= 3uS, ``E(p) - s p`` <= 3uS. 32uS covers the sum; none is
    needed where dlo = dhi = 0 (then dz = 0 and dh = 0 exactly).
    """
    zero = torch.zeros_like(dlo)
    pts = torch.stack([dlo, dhi, zero, a1 - a2, -a2, a1, b1 - b2, b1, -b2], dim=-1)
    pts = torch.minimum(torch.maximum(pts, dlo.unsqueeze(-1)), dhi.unsqueeze(-1))
    env = _envelope(a1, b1, a2, b2, pts, upper)
    width = dhi - dlo
    safe = torch.where(width > 0, width, torch.ones_like(width))
    chord = torch.where(width > 0, (env[..., 1] - env[..., 0]) / safe, torch.zeros_like(width))
    slopes = torch.stack([chord.clamp(-1.0, 1.0), zero, torch.ones_like(dlo)], -1)
    gaps = env.unsqueeze(-2) - slopes.unsqueeze(-1) * pts.unsqueeze(-2)  # (B, n, 3, 9)
    t = gaps.amax(-1) if upper else gaps.amin(-1)
    mean = slopes * ((dlo + dhi) / 2).unsqueeze(-1) + t
    pick = (mean.argmin(-1) if upper else mean.argmax(-1)).unsqueeze(-1)
    s, t = slopes.gather(-1, pick).squeeze(-1), t.gather(-1, pick).squeeze(-1)
    scale = torch.stack([x.abs() for x in (a1, b1, a2, b2, dlo, dhi)]).amax(0)
    m = torch.where((dlo == 0) & (dhi == 0), torch.zeros_like(scale), 32 * _U * scale + _TINY)
    t0 = env.amax(-1) if upper else env.amin(-1)
    return s, _widen(t, m, not upper), _widen(t0, m, not upper)


def _relaxation(a1: T, b1: T, a2: T, b2: T, dlo: T, dhi: T) -> _Relax:
    """Relaxations of one layer from the concrete bounds of z1, z2 and dz.

    ``dh = relu(z1) - relu(z2)``, each side picks one of two sound candidates per neuron:
    (a) a line in ``dz`` under/over the exact envelope of dh given the three intervals
    (:func:`_envelope_line`): both stably active gives ``dz`` (exact), both stably inactive 0,
    both unstable lies within ``[min(0, dz), max(0, dz)]`` (relu is monotone and 1-Lipschitz)
    and gives NeuroDiff's chords ``u (dz - l) / (u - l)`` and ``l (u - dz) / (u - l)`` for
    ``dz in [l, u]``; mixed cases (e.g. z1 active: ``dh = min(z1, dz)``) follow from the same
    envelope;
    (b) ``relu(z1) - relu(z2)`` with each network's own lines (lower: mu1 z1 - lam2 z2 - beta2),
    exact when one neuron is stably active and the other stably inactive (``dh = z1`` or
    ``-z2``, e.g. a pruned neuron of N2). (b) is taken there, and elsewhere only when its
    interval value over the layer's bounds is strictly better than (a)'s.
    """
    mu1, lam1, beta1 = _relu_lines(a1, b1)
    mu2, lam2, beta2 = _relu_lines(a2, b2)
    zero = torch.zeros_like(a1)
    opposite = ((a1 >= 0) & (b2 <= 0)) | ((b1 <= 0) & (a2 >= 0))
    sl, tl, t0l = _envelope_line(a1, b1, a2, b2, dlo, dhi, upper=False)
    su, tu, t0u = _envelope_line(a1, b1, a2, b2, dlo, dhi, upper=True)
    a_lo = torch.where(sl >= 0, sl * dlo, sl * dhi) + tl
    b_lo = mu1 * a1 - lam2 * b2 - beta2
    a_hi = torch.where(su >= 0, su * dhi, su * dlo) + tu
    b_hi = lam1 * b1 - mu2 * a2 + beta1
    take_lo = opposite | (b_lo > a_lo)
    take_hi = opposite | (b_hi < a_hi)
    dl = (torch.where(take_lo, mu1, zero), torch.where(take_lo, -lam2, zero),
          torch.where(take_lo, zero, sl))
    du = (torch.where(take_hi, lam1, zero), torch.where(take_hi, -mu2, zero),
          torch.where(take_hi, zero, su))
    dl0, du0 = torch.where(take_lo, -beta2, tl), torch.where(take_hi, beta1, tu)
    umax = tuple(torch.maximum(x.abs(), y.abs()) for x, y in ((a1, b1), (a2, b2), (dlo, dhi)))
    vbounds = ((a1.clamp(min=0), b1.clamp(min=0)), (a2.clamp(min=0), b2.clamp(min=0)),
               (t0l, t0u))
    return _Relax(mu1, lam1, beta1, mu2, lam2, beta2, dl, dl0, du, du0,
                  bool((take_lo | take_hi).any()), umax, vbounds)


@dataclass
class _State:
    """What back-substitution needs from the layers bounded so far (one chunk of boxes).

    ``scales[j]`` bound the magnitudes that affine layer j's coefficients multiply, per output
    neuron: ``f1 = |W1| |h1| + |b1|``, ``f2``, ``fd = |W2| |dh| + |D| |h1| + |db|`` and the error
    of the rounded difference ``fe = err(D) |h1| + err(db)``. ``errs[j]`` fold relaxation j and
    affine j into one vector per stream: the rounding margin of both steps is at most
    ``|coefficients on (h1, h2, dh)| @ errs[j]``.
    """

    box: tuple[T, T, T]
    affines: list[_Affine]
    scales: list[tuple[T, T, T, T]] = field(default_factory=list)
    relaxes: list[_Relax] = field(default_factory=list)
    errs: list[tuple[T, T, T]] = field(default_factory=list)


def _take(x, sel: T):
    """The boxes ``sel`` of a per-box tensor, or of every such tensor in a tuple, list or
    relaxation (the affine layers are shared by all boxes and stay whole)."""
    if torch.is_tensor(x):
        return x[sel]
    if isinstance(x, (tuple, list)):
        return type(x)(_take(v, sel) for v in x)
    if isinstance(x, _Relax):
        return _Relax(*(_take(getattr(x, f.name), sel) for f in fields(x)))
    return x


def _scales(a: _Affine, v1: T, v2: T, vd: T | None) -> tuple[T, T, T, T]:
    fd = v1 @ a.dw.abs().T + a.db.abs()
    if vd is not None:
        fd = fd + vd @ a.w2.abs().T
    return (v1 @ a.w1.abs().T + a.b1.abs(), v2 @ a.w2.abs().T + a.b2.abs(), fd,
            v1 @ a.dw_err.T + a.db_err)


def _relax_errors(r: _Relax, scales: tuple[T, T, T, T]) -> tuple[T, T, T]:
    """Margins per unit coefficient on (h1, h2, dh) for relaxation j then affine j: a coefficient
    on z1 is a sum of <= 2 products (``|g1| <= |h1| c1 + |hd| d1``), the constant a sum of <= 3n,
    and the next affine step's coefficients are bounded through those same inequalities."""
    f1, f2, fd, fe = scales
    n = int(r.mu1.shape[-1])
    gr, ga = _gamma(3 * n + 6), _gamma(2 * n + 6)
    c1, c2 = torch.maximum(r.mu1, r.lam1), torch.maximum(r.mu2, r.lam2)
    d = [torch.maximum(x.abs(), y.abs()) for x, y in zip(r.dl, r.du, strict=True)]
    d0 = torch.maximum(r.dl0.abs(), r.du0.abs())
    u1, u2, ud = r.umax
    e1 = gr * (c1 * u1 + r.beta1.abs()) + ga * c1 * f1
    e2 = gr * (c2 * u2 + r.beta2.abs()) + ga * c2 * f2
    ed = (gr * (d[0] * u1 + d[1] * u2 + d[2] * ud + d0)
          + ga * (d[0] * f1 + d[1] * f2 + d[2] * fd) + d[2] * fe)
    return e1, e2, ed


def _dot(g: T | None, v: T) -> T | None:
    """``g @ v`` per box: g (R, n) or (B, R, n), v (n,) or (B, n)."""
    if g is None:
        return None
    return g @ v if v.ndim == 1 else (g @ v.unsqueeze(-1)).squeeze(-1)


def _mm(g: T | None, w: T) -> T | None:
    return None if g is None else g @ w


def _mul(g: T | None, c: T) -> T | None:
    return None if g is None else g * c.unsqueeze(-2)


def _split(g: T | None) -> tuple[T | None, T | None]:
    return (None, None) if g is None else (g.clamp(min=0), g.clamp(max=0))


def _abs(g: T | None) -> T | None:
    return None if g is None else g.abs()


def _lower_bound(lam: tuple[T | None, T | None, T | None], k: int, st: _State) -> T:
    """Sound lower bound, per box and row, of ``g1 . z1_k + g2 . z2_k + gd . dz_k`` over the
    box, for rows ``lam = (g1, g2, gd)`` of shape (R, n) or (B, R, n), None where zero.

    Back-substitution: through affine layer j (``z = W v + b``) the coefficients become
    ``g @ W``; through relaxation j each coefficient takes the lower line where it is positive
    and the upper one where negative. ``err`` collects the rounding margins of every step.
    """
    lo, hi, mx = st.box
    g1, g2, gd = lam
    f1, f2, fd, fe = st.scales[k]
    ga = _gamma(2 * int(st.affines[k].w1.shape[0]) + 6)
    err = _add(*(None if x is None else ga * x for x in
                 (_dot(_abs(g1), f1), _dot(_abs(g2), f2), _dot(_abs(gd), fd))),
               _dot(_abs(gd), fe)) + _TINY
    incs: list[T] = []
    for j in range(k, -1, -1):
        a = st.affines[j]
        incs += [x for x in (_dot(g1, a.b1), _dot(g2, a.b2), _dot(gd, a.db)) if x is not None]
        h1, h2 = _add(_mm(g1, a.w1), _mm(gd, a.dw)), _mm(g2, a.w2)
        if j == 0:  # the input: h1 = h2 = x and dh = 0
            gx = _add(h1, h2)
            break
        hd = _mm(gd, a.w2)
        r, (e1, e2, ed) = st.relaxes[j - 1], st.errs[j - 1]
        (p1, q1), (p2, q2), (pd, qd) = _split(h1), _split(h2), _split(hd)
        g1 = _add(_mul(p1, r.mu1), _mul(q1, r.lam1), _mul(pd, r.dl[0]), _mul(qd, r.du[0]))
        g2 = _add(_mul(p2, r.mu2), _mul(q2, r.lam2),
                  *((_mul(pd, r.dl[1]), _mul(qd, r.du[1])) if r.uses_z2 else ()))
        gd = _add(_mul(pd, r.dl[2]), _mul(qd, r.du[2]))
        incs += [x for x in (_dot(q1, r.beta1), _dot(q2, r.beta2), _dot(pd, r.dl0),
                             _dot(qd, r.du0)) if x is not None]
        err = _add(err, _dot(_abs(h1), e1), _dot(_abs(h2), e2), _dot(_abs(hd), ed)) + 3 * _TINY
    const = sum(incs[1:], incs[0])
    cabs = sum((x.abs() for x in incs[1:]), incs[0].abs())
    val = _dot(gx.clamp(min=0), lo) + _dot(gx.clamp(max=0), hi) + const
    margin = (_margin(_dot(gx.abs(), mx) + const.abs(), 2 * int(lo.shape[-1]) + 4)
              + _margin(cabs, len(incs) + 2) + err)
    return _widen(val, margin, lower=True)


def _tighten(b1: tuple[T, T], b2: tuple[T, T], bd: tuple[T, T]) -> tuple[T, ...]:
    """Intersect the bounds of z1, z2, dz through ``z1 = z2 + dz`` (sums rounded outward)."""
    (a1, c1), (a2, c2), (dlo, dhi) = b1, b2, bd
    return (torch.maximum(a1, _down(a2 + dlo)), torch.minimum(c1, _up(c2 + dhi)),
            torch.maximum(a2, _down(a1 - dhi)), torch.minimum(c2, _up(c1 - dlo)),
            torch.maximum(dlo, _down(a1 - c2)), torch.minimum(dhi, _up(c1 - a2)))


def _both_sides(lam: tuple[T | None, T | None, T | None], k: int, st: _State) -> tuple[T, T]:
    """Lower and upper bounds of the rows ``lam`` (upper = -lower of the negated rows)."""
    rows = next(g for g in lam if g is not None).shape[-2]
    res = _lower_bound(tuple(None if g is None else torch.cat([g, -g], dim=-2) for g in lam),
                       k, st)
    return res[..., :rows], -res[..., rows:]


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
    m = _margin(total, 2 * sum(int(t[0].shape[1]) + 1 for t in terms) + 2) + extra
    return _widen(lo, m, True), _widen(hi, m, False)


def _refine(bounds: tuple[T, T], mask: T, stream: int, k: int, st: _State) -> tuple[T, T]:
    """Back-substituted bounds of the neurons in ``mask`` (B, n) of one stream (0: z1, 1: z2,
    2: dz) of layer k, intersected with ``bounds``; the other neurons keep ``bounds``.

    Each box gets its own rows (padded to the largest count), so the cost follows the number of
    neurons that need it, not the layer width.
    """
    lo, hi = bounds
    count = mask.sum(1)
    need = count > 0
    if not bool(need.all()):  # only the boxes with rows to bound
        if not bool(need.any()):
            return lo, hi
        sub = _State(_take(st.box, need), st.affines, _take(st.scales, need),
                     _take(st.relaxes, need), _take(st.errs, need))
        rlo, rhi = _refine((lo[need], hi[need]), mask[need], stream, k, sub)
        return lo.index_put((need,), rlo), hi.index_put((need,), rhi)
    bsz, n = mask.shape
    rows = int(count.max())
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :rows]
    valid = torch.arange(rows, device=mask.device) < count.unsqueeze(1)
    idx = torch.where(valid, order, n)  # padding rows point at a spare column n
    onehot = torch.zeros(bsz, rows, n + 1, dtype=lo.dtype, device=lo.device)
    onehot.scatter_(2, idx.unsqueeze(-1), 1.0)
    lam: list[T | None] = [None, None, None]
    lam[stream] = onehot[..., :n]
    rlo, rhi = _both_sides((lam[0], lam[1], lam[2]), k, st)
    out = []
    for old, new, pick in ((lo, rlo, torch.maximum), (hi, rhi, torch.minimum)):
        padded = torch.cat([old, torch.zeros_like(old[:, :1])], dim=1)
        padded.scatter_(1, idx, pick(padded.gather(1, idx), new))
        out.append(padded[:, :n])
    return out[0], out[1]


def _bounds_chunk(n1: Network, n2: Network, lo: T, hi: T, c_mat: T | None) -> tuple[T, T]:
    """Layer by layer: interval bounds from the layer below; back-substitution of every z1, z2
    of a layer (per box) that has an unstable neuron, and of the dz whose ReLU difference is not
    exact (z1 or z2 unstable); the relaxation. Finally the output rows, both as ``C dz`` and as
    ``C z1 - C z2``."""
    zeros = torch.zeros_like(lo)
    st = _State((lo, hi, torch.maximum(lo.abs(), hi.abs())),
                [_affine_of(l1, l2, lo.device) for l1, l2 in zip(n1.layers, n2.layers,
                                                                  strict=True)])
    vb, vmax = ((lo, hi), (lo, hi), (zeros, zeros)), (st.box[2], st.box[2], None)
    for k, a in enumerate(st.affines[:-1]):
        st.scales.append(_scales(a, *vmax))
        z1 = _interval([(a.w1, None, *vb[0])], a.b1, None)
        z2 = _interval([(a.w2, None, *vb[1])], a.b2, None)
        dz = _interval([(a.w2, None, *vb[2]), (a.dw, a.dw_err, *vb[0])], a.db, a.db_err)
        unstable = (z1[0] < 0) & (z1[1] > 0) | (z2[0] < 0) & (z2[1] > 0)
        # a layer with an unstable neuron gets all its neurons back-substituted: tight bounds
        # of the stable ones pay off too, through the interval bounds of the next layer
        unstable = unstable.any(1, keepdim=True).expand_as(unstable)
        z1 = _refine(z1, unstable, 0, k, st)
        z2 = _refine(z2, unstable, 1, k, st)
        bounds = _tighten(z1, z2, dz)
        unstable = (bounds[0] < 0) & (bounds[1] > 0) | (bounds[2] < 0) & (bounds[3] > 0)
        dz = _refine(bounds[4:], unstable, 2, k, st)
        r = _relaxation(*_tighten(bounds[:2], bounds[2:4], dz))
        st.relaxes.append(r)
        st.errs.append(_relax_errors(r, st.scales[k]))
        vb, vmax = r.vbounds, r.vmax
    st.scales.append(_scales(st.affines[-1], *vmax))
    out = c_mat if c_mat is not None else torch.eye(
        n1.out_size, dtype=torch.float64, device=lo.device)
    diff = _both_sides((None, None, out), len(st.affines) - 1, st)
    # the same rows as C z1 - C z2 through each network's own relaxations (what CROWN does on
    # the merged network): sometimes tighter when the weights differ more (int8); keep the best
    sep = _both_sides((out, -out, None), len(st.affines) - 1, st)
    return torch.maximum(diff[0], sep[0]), torch.minimum(diff[1], sep[1])


def _as_tensor(x: Array, device: torch.device | str) -> T:
    if torch.is_tensor(x):
        return x.to(dtype=torch.float64, device=device)
    return torch.tensor(np.asarray(x, dtype=np.float64), dtype=torch.float64, device=device)


def _check(n1: Network, n2: Network, lo: T, hi: T, c_mat: T | None) -> None:
    if not same_architecture(n1, n2):
        raise ShapeMismatchError(
            f"differential bounds need the same layer sizes, but {n1.name} is {n1.describe()} "
            f"and {n2.name} is {n2.describe()}; bound the merged network instead")
    if lo.ndim != 2 or lo.shape != hi.shape or lo.shape[1] != n1.in_size:
        raise ShapeMismatchError(
            f"boxes must be lower/upper arrays of shape (B, {n1.in_size}), got "
            f"{tuple(lo.shape)} and {tuple(hi.shape)}")
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()) or (lo > hi).any():
        raise InputError("every box needs finite bounds with lower <= upper")
    if c_mat is not None and (c_mat.ndim != 2 or c_mat.shape[1] != n1.out_size
                              or not torch.isfinite(c_mat).all()):
        raise ShapeMismatchError(
            f"C must be a finite matrix of shape (K, {n1.out_size}), got {tuple(c_mat.shape)}")


def differential_bounds(n1: Network, n2: Network, lower: Array, upper: Array,
                        C: Array | None = None, device: torch.device | str = "cpu"
                        ) -> DiffBoundsResult:
    """Sound bounds of ``N1(x) - N2(x)`` (or ``C @ (N1(x) - N2(x))``, C of shape (K, m)) over
    each box ``lower[b] <= x <= upper[b]`` (arrays of shape (B, n_in), or one box (n_in,)).

    Both networks must have the same layer sizes (:func:`same_architecture`); otherwise
    :class:`~nnbisim.errors.ShapeMismatchError`. Bounds hold for the real-arithmetic networks
    with the given float64 weights (see the module docstring).
    """
    lo, hi = _as_tensor(lower, device), _as_tensor(upper, device)
    if lo.ndim == 1:
        lo, hi = lo.unsqueeze(0), hi.unsqueeze(0)
    c_mat = None if C is None else _as_tensor(C, device)
    if c_mat is not None and c_mat.ndim == 1:
        c_mat = c_mat.unsqueeze(0)
    _check(n1, n2, lo, hi, c_mat)
    if lo.shape[0] == 0:
        empty = lo.new_zeros(0, n1.out_size if c_mat is None else c_mat.shape[0])
        return DiffBoundsResult(empty, empty.clone())
    widest = max([n1.in_size, *(layer.out_size for layer in n1.layers)])
    chunk = max(1, _ELEMENTS_PER_CHUNK // (6 * widest * widest))
    parts = [_bounds_chunk(n1, n2, lo[i:i + chunk], hi[i:i + chunk], c_mat)
             for i in range(0, lo.shape[0], chunk)]
    return DiffBoundsResult(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
