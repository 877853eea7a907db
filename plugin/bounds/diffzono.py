"""Differential zonotopes: sound bounds of ``N1 - N2`` at a few matrix products per layer.

The back-substituting engine (:mod:`nnbisim.bounds.diffbounds`) is tight, but it pays one
back-substitution per unstable neuron of every layer, and input branch and bound bounds
thousands of boxes. Forward symbolic intervals (ReluVal, Neurify, NeuroDiff's linear forms)
cost a few matrix products per layer but keep a lower and an upper form apart, so the slack of
every unstable neuron is summed in absolute value through all later layers. Zonotopes keep the
slack as shared symbols instead, so later layers cancel it as back-substitution does; VeryDiff
(Teuber et al., TACAS 2025) runs N1, N2 and their difference on one set of generators
("differential zonotopes"), as here.

Every neuron of the joint network ``(z1, z2, dz)`` of a box is ``c + G e + [-r, r]``: ``e`` in
``[-1, 1]^k`` shared by all neurons of the box (the input's ``d`` coordinates, then symbols of
relaxed neurons), and ``r`` an independent slack that carries rounding and the relaxations
that get no symbol. A stream is tensors ``G (n, k, B)``, ``c`` and ``r`` (n, B) for ``B``
boxes, so one layer is one matrix product per stream for all boxes. Through the ReLUs:

- ``h = relu(z)`` per network, DeepZ's way: ``lam z + beta / 2 + (beta / 2) e_new`` on the
  neuron's concrete bounds ``[l, u]`` (``lam >= u / (u - l)``, ``beta >= -lam l``);
- ``dh = relu(z1) - relu(z2)``: ``dz`` where both neurons are stably active, 0 where both are
  dead, ``h1 - h2`` where one is active and the other dead (exact: e.g. a pruned neuron), and
  otherwise the better, by radius, of ``h1 - h2`` and ``s dz + t + w e_new``, where
  ``[t - w, t + w]`` holds ``dh - s dz`` over the exact envelope of dh given the concrete
  bounds (:func:`nnbisim.bounds.diffrelax.envelope`, piecewise linear: its extremes are at its
  kinks) and ``|dh| <= |dz|``, ``s`` the best of a few slopes.

Concrete bounds of a neuron are its zonotope's range, tightened through ``z1 = z2 + dz``. Each
hidden layer has :data:`SYMBOLS_PER_LAYER` columns per box: the heaviest new symbols of the
box's layer take them, the others go into the slack (in ad-hoc runs on ACAS Xu 1/64-boxes, 8
per layer came within 1.2x of keeping all of them, at a fraction of the cost). Forward symbolic
intervals (a lower and an upper linear form per neuron), tried first in an ad-hoc run, were
about 1,000x looser than back-substitution on 1/16 of property 1's box of ACAS Xu 5_3, against
17x here (``bench/results/diff_throughput.md``).

Guarantee (as :mod:`nnbisim.bounds.diffbounds`): for every real ``x`` in the box, the
real-arithmetic value of each row with the given float64 weights is at least the bound. Each
stored zonotope, evaluated in exact arithmetic with its stored numbers, contains its neuron's
value for every input of the box (some ``e``, the same for all neurons, and a slack within
``r``); every step adds the rounding bound of its own arithmetic (``gamma`` times the magnitudes
of its terms, :mod:`nnbisim.bounds.fp`) and the error bound of the rounded ``W1 - W2`` times the
magnitude of h1 to ``r``, rounded up.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nnbisim.bounds.diffrelax import envelope
from nnbisim.bounds.diffsteps import Joint, Rows, tighten
from nnbisim.bounds.fp import TINY, U, down, gamma2, margin, up

T = torch.Tensor
SYMBOLS_PER_LAYER = 8  # relaxation symbols kept per hidden layer and box; the rest go into r
GROW = 1 + 4 * U  # a product's magnitude bound grows by this under rounding


@dataclass
class Zono:
    """Neurons ``c + G e + [-r, r]`` of one stream for a batch of boxes: ``g`` (n, k, B), ``c``
    and ``r`` (n, B), and ``m`` (n, B), an upper bound of ``sum |G|`` per neuron."""

    g: T
    c: T
    r: T
    m: T


def _up(x: T) -> T:
    """A non-negative magnitude rounded up, 0 kept 0 (all its terms were 0; underflow of a
    non-zero term is covered by :data:`~nnbisim.bounds.fp.TINY` in the margins, as elsewhere)."""
    return torch.where(x > 0, up(x), x)


def _matmul(w: T, x: T) -> T:
    """``w @ x`` over the first axis of x (n_in, ...) as one matrix product."""
    return (w @ x.reshape(x.shape[0], -1)).reshape(w.shape[0], *x.shape[1:])


def _range(z: Zono) -> tuple[T, T]:
    """Min and max of every neuron over its box (n, B), rounded outward."""
    m = margin(z.m + z.c.abs() + z.r, int(z.g.shape[1]) + 3) + z.r
    exact = (z.m == 0) & (m == 0)  # a constant, stored exactly
    return (torch.where(exact, z.c, down(z.c - z.m - m)),
            torch.where(exact, z.c, up(z.c + z.m + m)))


def _affine(terms: list[tuple[T, Zono]], bias: T) -> Zono:
    """``sum W z + b`` over ``terms``; each coefficient a sum of ``n`` products and the bias,
    its mass computed exactly (the range needs it)."""
    g = _matmul(terms[0][0], terms[0][1].g)
    for w, z in terms[1:]:
        g.view(g.shape[0], -1).addmm_(w, z.g.reshape(z.g.shape[0], -1))
    c = sum(w @ z.c for w, z in terms) + bias.unsqueeze(1)
    total = sum(w.abs() @ (z.m + z.c.abs()) for w, z in terms) + bias.abs().unsqueeze(1)
    n = sum(int(w.shape[1]) for w, _ in terms) + 2
    r = sum(w.abs() @ z.r for w, z in terms) * (1 + gamma2(n)) + margin(total, n)
    mass = g.abs().sum(1)
    return Zono(g, c, _up(r), _up(mass * (1 + gamma2(int(g.shape[1]) + 1))))


def _relu(z: Zono, lo: T, hi: T) -> tuple[Zono, T]:
    """DeepZ's relu on concrete bounds ``[lo, hi]`` (n, B), in place: ``lam z + beta / 2`` plus
    a new symbol of coefficient ``beta / 2`` (returned, 0 where none is needed)."""
    act, dead = lo >= 0, hi <= 0
    free = ~act & ~dead
    one, zero = torch.ones_like(lo), torch.zeros_like(lo)
    den = down(torch.where(free, hi - lo, one))
    lam = torch.where(free, torch.clamp(up(hi / den), max=1.0), torch.where(act, one, zero))
    half = torch.where(free, up(up(-lam * lo) / 2), zero)
    z.g.mul_(lam.unsqueeze(1))
    shaky = lam * (z.m + z.c.abs()) + half
    c = lam * z.c + half
    r = torch.where(act, z.r, _up(lam * z.r * GROW + margin(shaky, 3)))
    return Zono(z.g, torch.where(act, z.c, c), r, torch.where(act, z.m, _up(lam * z.m * GROW))
                ), half


def _dh_line(bounds: tuple[T, ...]) -> tuple[T, T, T]:
    """For neurons (flat tensors) with concrete bounds ``(a1, b1, a2, b2, dlo, dhi)``: a slope
    ``s`` and ``dh - s dz`` in ``[t - w, t + w]`` over the exact envelope of dh, the slope (of
    0, 1, the envelope's two chords and their mean) that gives the least ``w + |s| |dz|``."""
    a1, b1, a2, b2, dlo, dhi = bounds
    zero = torch.zeros_like(dlo)
    pts = torch.stack([dlo, dhi, zero, a1 - a2, -a2, a1, b1 - b2, b1, -b2], dim=-1)
    pts = torch.minimum(torch.maximum(pts, dlo.unsqueeze(-1)), dhi.unsqueeze(-1))
    lower = envelope(a1, b1, a2, b2, pts, False)
    upper = envelope(a1, b1, a2, b2, pts, True)
    width = dhi - dlo
    safe = torch.where(width > 0, width, torch.ones_like(width))
    chord_l = torch.where(width > 0, (lower[..., 1] - lower[..., 0]) / safe, zero)
    chord_u = torch.where(width > 0, (upper[..., 1] - upper[..., 0]) / safe, zero)
    slopes = torch.stack([zero, torch.ones_like(dlo), chord_l, chord_u,
                          (chord_l + chord_u) / 2], -1).clamp(-1.0, 1.0)  # (N, 5)
    sp = slopes.unsqueeze(-1) * pts.unsqueeze(-2)  # (N, 5, 9)
    t_lo = (lower.unsqueeze(-2) - sp).amin(-1)
    t_hi = (upper.unsqueeze(-2) - sp).amax(-1)
    # envelope_line's bound of the rounding of kinks and sums (1-Lipschitz pieces, |s| <= 1)
    scale = torch.stack([x.abs() for x in (a1, b1, a2, b2, dlo, dhi)]).amax(0)
    m = torch.where((dlo == 0) & (dhi == 0), zero, 32 * U * scale + TINY).unsqueeze(-1)
    t_lo, t_hi = down(t_lo - m), up(t_hi + m)
    # and |dh| <= |dz| (relu is 1-Lipschitz): |dh - s dz| <= (1 + |s|) max |dz|, exactly so
    cap = up(up(1 + slopes.abs()) * up(torch.maximum(dlo.abs(), dhi.abs())).unsqueeze(-1))
    t_lo, t_hi = torch.maximum(t_lo, -cap), torch.minimum(t_hi, cap)
    cost = (t_hi - t_lo) / 2 + slopes.abs() * torch.maximum(dlo.abs(), dhi.abs()).unsqueeze(-1)
    best = cost.argmin(-1, keepdim=True)
    s = slopes.gather(-1, best).squeeze(-1)
    lo_, hi_ = t_lo.gather(-1, best).squeeze(-1), t_hi.gather(-1, best).squeeze(-1)
    mid = (lo_ + hi_) / 2
    return s, mid, up(torch.maximum(up(hi_ - mid), up(mid - lo_)))


def _dh(zd: Zono, h1: Zono, h2: Zono, b: tuple[T, ...], fresh: T) -> tuple[Zono, T, T]:
    """``dh = relu(z1) - relu(z2)`` from dz and both networks' relu zonotopes (before their
    new symbols, whose coefficients sum to ``fresh``); also where dh is ``h1 - h2`` (their new
    symbols go into it too) and the coefficient of dh's own new symbol (0 where none)."""
    a1, b1, a2, b2 = b[:4]
    both_act, both_dead = (a1 >= 0) & (a2 >= 0), (b1 <= 0) & (b2 <= 0)
    opposite = ((a1 >= 0) & (b2 <= 0)) | ((b1 <= 0) & (a2 >= 0))
    hard = ~(both_act | both_dead | opposite)
    zero = torch.zeros_like(a1)
    slope, shift, width = zero.clone(), zero.clone(), zero.clone()
    use_line = torch.zeros_like(hard)
    if bool(hard.any()):
        s, t, w = _dh_line(tuple(x[hard] for x in b))
        slope[hard], shift[hard], width[hard] = s, t, w
        diff = (h1.g.permute(0, 2, 1)[hard] - h2.g.permute(0, 2, 1)[hard]).abs().sum(-1)
        sep_radius = diff + (h1.r + h2.r + fresh)[hard]
        line_radius = s.abs() * (zd.m + zd.r)[hard] + w
        use_line[hard] = line_radius < sep_radius
    sep = (opposite & ~both_act & ~both_dead) | (hard & ~use_line)  # one form per neuron
    a = torch.where(both_act, torch.ones_like(a1), torch.where(use_line, slope, zero))
    shift = torch.where(use_line, shift, zero)
    s_ = sep.to(a1.dtype)
    g = torch.sub(h1.g, h2.g).mul_(s_.unsqueeze(1)).addcmul_(zd.g, a.unsqueeze(1))
    c = s_ * (h1.c - h2.c) + a * zd.c + shift
    shaky = s_ * (h1.m + h2.m + h1.c.abs() + h2.c.abs()) + a.abs() * (zd.m + zd.c.abs())
    r = s_ * (h1.r + h2.r) + a.abs() * zd.r
    r = _up(r * GROW + margin(shaky + shift.abs(), 4))
    m = _up((s_ * (h1.m + h2.m) + a.abs() * zd.m) * GROW)
    return Zono(g, c, r, m), sep, torch.where(use_line, width, zero)


def _new_symbols(h1: Zono, h2: Zono, dh: Zono, sep: T, coef: tuple[T, T, T], col: int,
                 count: int) -> None:
    """Give the ``count`` heaviest new symbols of each box columns ``col ...``, in place: h1's
    and h2's relu symbols (in dh too where dh is h1 - h2) and dh's own; the others go into the
    slack ``r`` of every neuron they touch (sound: ``|w e| <= |w|``)."""
    w1, w2, wd = coef
    n = w1.shape[0]
    sep_ = sep.to(w1.dtype)
    weight = torch.cat([w1 * (1 + sep_), w2 * (1 + sep_), wd])  # (3n, B)
    vals, idx = torch.topk(weight, min(count, 3 * n), dim=0)  # (P, B)
    kept = torch.zeros_like(weight, dtype=torch.bool).scatter_(0, idx, vals > 0)
    k1, k2, kd = kept[:n], kept[n:2 * n], kept[2 * n:]
    # folded into the slack
    for z, w, k in ((h1, w1, k1), (h2, w2, k2), (dh, wd, kd)):
        z.r = _up(z.r + torch.where(k, torch.zeros_like(w), w))
        z.m = _up(z.m + torch.where(k, w, torch.zeros_like(w)))
    dh.r = _up(dh.r + sep_ * (torch.where(k1, 0.0, w1) + torch.where(k2, 0.0, w2)))
    dh.m = _up(dh.m + sep_ * (torch.where(k1, w1, 0.0) + torch.where(k2, w2, 0.0)))
    valid = vals > 0
    if not bool(valid.any()):
        return
    p, boxes = idx.shape
    cols = (col + torch.arange(p, device=idx.device)).unsqueeze(1).expand(p, boxes)[valid]
    bx = torch.arange(boxes, device=idx.device).unsqueeze(0).expand(p, boxes)[valid]
    stream, neuron = idx[valid] // n, idx[valid] % n
    for s, (z, w, sign) in enumerate(((h1, w1, 1.0), (h2, w2, -1.0), (dh, wd, 0.0))):
        pick = stream == s
        i, j, bb = neuron[pick], cols[pick], bx[pick]
        z.g[i, j, bb] = w[i, bb]
        if sign:
            dh.g[i, j, bb] = sign * w[i, bb] * sep_[i, bb]


def zonotope_rows(layers: list[Joint], lo: T, hi: T, rows: Rows, want_slopes: bool,
                 per_layer: int = SYMBOLS_PER_LAYER) -> tuple[T, T | None]:
    """Lower bounds (B, R) of ``A1 y1 + A2 y2 + Ad (y1 - y2)`` over each box
    ``lo[b] <= x <= hi[b]`` (``rows = (A1, A2, Ad)``, each (R, m) or None) and, with
    ``want_slopes``, the slopes (B, R, d) of their input symbols."""
    boxes, d = lo.shape
    k = d + per_layer * (len(layers) - 1)
    c = (lo + hi) / 2
    rad = up(torch.maximum(up(hi - c), up(c - lo)))
    g = torch.zeros(d, k, boxes, dtype=lo.dtype, device=lo.device)
    eye = torch.arange(d, device=lo.device)
    g[eye, eye] = rad.T
    zero = torch.zeros(d, boxes, dtype=lo.dtype, device=lo.device)
    h1 = h2 = Zono(g, c.T.contiguous(), zero, rad.T.contiguous())
    dh: Zono | None = None
    h1max = torch.maximum(lo.abs(), hi.abs()).T
    for j, a in enumerate(layers):
        z1 = _affine([(a.w1, h1)], a.b1)
        z2 = _affine([(a.w2, h2)], a.b2)
        zd = _affine([(a.dw, h1)] + ([] if dh is None else [(a.w2, dh)]), a.db)
        zd.r = _up(zd.r + a.dw_err @ h1max + a.db_err.unsqueeze(1))
        b = tighten(_range(z1), _range(z2), _range(zd))
        if j == len(layers) - 1:
            return _output_rows((z1, z2, zd), rows, rad, want_slopes)
        (h1, w1), (h2, w2) = _relu(z1, b[0], b[1]), _relu(z2, b[2], b[3])
        dh, sep, wd = _dh(zd, h1, h2, b, w1 + w2)
        _new_symbols(h1, h2, dh, sep, (w1, w2, wd), d + per_layer * j, per_layer)
        h1max = b[1].clamp(min=0)
    raise ValueError("a network needs at least one layer")


def _row_zono(zs: tuple[Zono, Zono, Zono], mats: tuple[T, T, T]) -> tuple[T, T]:
    """Lower bounds (R, B) of ``sum_s A_s z_s`` and their coefficients (R, k, B)."""
    g = sum(_matmul(a, z.g) for a, z in zip(mats, zs, strict=True))
    c = sum(a @ z.c for a, z in zip(mats, zs, strict=True))
    total = sum(a.abs() @ (z.m + z.c.abs()) for a, z in zip(mats, zs, strict=True))
    r = sum(a.abs() @ z.r for a, z in zip(mats, zs, strict=True))
    n = int(3 * mats[0].shape[1] + 2)
    mass = g.abs().sum(1)
    slack = _up(r * (1 + gamma2(n)) + margin(total, n))
    m = margin(mass + c.abs() + slack, int(g.shape[1]) + 3) + slack
    return down(c - mass - m), g


def _output_rows(zs: tuple[Zono, Zono, Zono], rows: Rows, rad: T, want_slopes: bool
                 ) -> tuple[T, T | None]:
    a1, a2, ad = rows
    given = next(a for a in rows if a is not None)
    zero = torch.zeros_like(given)
    a1, a2 = (zero if a is None else a for a in (a1, a2))
    low, g = _row_zono(zs, (a1, a2, zero if ad is None else ad))
    if ad is not None:  # the same rows with d = y1 - y2 through each network's own zonotopes
        sep_low, sep_g = _row_zono(zs, (a1 + ad, a2 - ad, zero))
        pick = sep_low > low
        low = torch.where(pick, sep_low, low)
        g = torch.where(pick.unsqueeze(1), sep_g, g)
    if not want_slopes:
        return low.T, None
    d = rad.shape[1]
    safe = torch.where(rad > 0, rad, torch.ones_like(rad))
    slope = torch.where(rad.T > 0, g[:, :d] / safe.T, torch.zeros_like(g[:, :d]))  # (R, d, B)
    return low.T, slope.permute(2, 0, 1)
