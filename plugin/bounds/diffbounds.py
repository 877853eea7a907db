"""Differential bounds: sound bounds of ``N1(x) - N2(x)`` for two networks of the same layer sizes.

Bounding the merged network (N1 and N2 side by side) forgets that corresponding neurons of a
network and its compressed copy move together, so its bounds on the difference are as wide as the
networks' own ranges. Here the *difference* ``dz = z1 - z2`` of corresponding pre-activations is
a variable of its own, as in ReluDiff (Paulsen, Wang, Wang, ICSE 2020) and NeuroDiff (Paulsen et
al., ASE 2020). Each layer of the joint network maps ``v = (h1, h2, dh)`` to ``u = (z1, z2, dz)``
by one matrix ``[[W1, 0, 0], [0, W2, 0], [W1 - W2, 0, W2]]``: the small weight difference
multiplies N1's activations, N2's weights the activation difference. ``h1 = relu(z1)``,
``h2 = relu(z2)`` and ``dh = relu(z1) - relu(z2)`` are replaced by lower and upper linear
functions of ``u`` valid on the layer's concrete bounds (:mod:`nnbisim.bounds.diffrelax`); the
steps through the layers are in :mod:`nnbisim.bounds.diffsteps`.

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

from dataclasses import dataclass

import numpy as np
import torch

from nnbisim.bounds import forms
from nnbisim.bounds.diffrelax import relaxation
from nnbisim.bounds.diffsteps import (
    Joint,
    Rows,
    State,
    add_terms,
    backsub,
    interval,
    joint_layer,
    layer_scales,
    refine,
    relax_errors,
    tighten,
)
from nnbisim.bounds.diffzono import SYMBOLS_PER_LAYER, zonotope_rows
from nnbisim.core.errors import InputError, ShapeMismatchError
from nnbisim.core.model import Network

FORMS_MAX_INPUTS = 32  # inputs up to this size get forward linear forms
ELEMENTS_PER_CHUNK = 2**21  # float64 elements of the largest back-substitution tensor
BOXES_PER_CHUNK = 512
METHODS = ("backsub", "zonotope")  # see DiffEngine

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

def _bounds_chunk(layers: list[Joint], lo: T, hi: T, rows: Rows, want_slopes: bool, chunk: int
                  ) -> tuple[T, T | None]:
    """Layer by layer concrete bounds and relaxations, then lower bounds ``(B, R)`` of the
    output rows ``A1 y1 + A2 y2 + Ad d`` (``rows = (A1, A2, Ad)``, each ``(R, m)`` or None),
    computed both as given (``d`` as its own stream) and with ``d = y1 - y2`` folded into the
    networks' own streams, the tighter kept; with ``want_slopes`` also the slopes (B, R, n_in)
    of the linear functions behind them."""
    xmax = torch.maximum(lo.abs(), hi.abs())
    zeros = torch.zeros_like(lo)
    st = State((lo, hi, xmax), layers, [], [], [], chunk)
    vb, vmax = ((lo, hi), (lo, hi), (zeros, zeros)), (xmax, xmax, None)
    use_forms = lo.shape[1] <= FORMS_MAX_INPUTS
    if use_forms:
        f = forms.input_forms(lo, hi)
    for k, a in enumerate(layers[:-1]):
        st.scale.append(layer_scales(a, *vmax))
        z1 = interval([(a.w1, None, *vb[0])], a.b1, None)
        z2 = interval([(a.w2, None, *vb[1])], a.b2, None)
        dz = interval([(a.w2, None, *vb[2]), (a.dw, a.dw_err, *vb[0])], a.db, a.db_err)
        n = a.n_out
        if use_forms:
            f = forms.affine(f, a.forms)
            fmin, fmax = forms.bounds(f)
            z1 = (torch.maximum(z1[0], fmin[:, :n]), torch.minimum(z1[1], fmax[:, n:2 * n]))
            z2 = (torch.maximum(z2[0], fmin[:, 2 * n:3 * n]), torch.minimum(z2[1], fmax[:, 3 * n:]))
        b = tighten(z1, z2, dz)
        if k > 0:  # the first layer's intervals are exact up to rounding
            unstable = ((b[0] < 0) & (b[1] > 0)) | ((b[2] < 0) & (b[3] > 0))
            if not use_forms:  # interval bounds are loose: tight bounds of stable neurons pay off
                unstable = unstable.any(1, keepdim=True).expand_as(unstable)
            # N1 first; N2's bounds follow from z2 = z1 - dz where dz is small against z1
            b = tighten(refine(k, b[0:2], unstable, 0, st), b[2:4], b[4:6])
            unstable = ((b[0] < 0) & (b[1] > 0)) | ((b[2] < 0) & (b[3] > 0))
            own = unstable & (b[5] - b[4] > 0.1 * (b[1] - b[0]))
            b = tighten(b[0:2], refine(k, b[2:4], own, 1, st), b[4:6])
            unstable = ((b[0] < 0) & (b[1] > 0)) | ((b[2] < 0) & (b[3] > 0))
            b = tighten(b[0:2], b[2:4], refine(k, b[4:6], unstable, 2, st))
        r = relaxation(*b)
        st.relax.append(r)
        st.errs.append(relax_errors(r, st.scale[k]))
        vb, vmax = r.vbounds, r.vmax
        if use_forms:
            act1, act2, dead1, dead2 = b[0] >= 0, b[2] >= 0, b[1] <= 0, b[3] <= 0
            f = forms.relu(f, fmin, fmax, torch.cat([act1, act1, act2, act2], 1),
                           torch.cat([dead1, dead1, dead2, dead2], 1), a.forms.upper)
    st.scale.append(layer_scales(layers[-1], *vmax))
    last = len(layers) - 1
    a1, a2, ad = rows
    low, g = backsub(rows, last, st, want_slopes)
    if ad is not None:  # the same rows with d = y1 - y2 through each network's own relaxations
        sep, gs = backsub((add_terms(a1, ad), add_terms(a2, -ad), None), last, st, want_slopes)
        better = sep > low
        low = torch.where(better, sep, low)
        if want_slopes:
            g = torch.where(better.unsqueeze(-1), gs, g)
    return low, g


class DiffEngine:
    """Differential bounds for one pair of networks of the same layer sizes, their weights
    prepared once on ``device`` (for branch and bound, which bounds many batches).

    ``method``: ``backsub`` (this module: back-substitution of every unstable neuron, tight) or
    ``zonotope`` (:mod:`nnbisim.bounds.diffzono`: differential zonotopes, a few matrix products
    per layer; on ACAS Xu boxes of 1/4-1/16 of property 1's side 4-9x cheaper per box but
    7-47x looser, on 1/64-1/256 1.0-2.4x cheaper and within 1.34x as tight:
    ``bench/results/diff_throughput.md``)."""

    def __init__(self, n1: Network, n2: Network, device: torch.device | str = "cpu",
                 chunk_elements: int = ELEMENTS_PER_CHUNK, method: str = "backsub"):
        if not same_architecture(n1, n2):
            raise ShapeMismatchError(
                f"differential bounds need the same layer sizes, but {n1.name} is "
                f"{n1.describe()} and {n2.name} is {n2.describe()}; bound the merged network "
                "instead")
        if method not in METHODS:
            raise InputError(f"unknown differential method {method!r}; use one of "
                             f"{', '.join(METHODS)}")
        self.n_in, self.n_out, self.device, self.method = n1.in_size, n1.out_size, device, method
        self.chunk_elements = chunk_elements
        self.layers = [joint_layer(l1, l2, device) for l1, l2 in zip(n1.layers, n2.layers,
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
        elements = self.chunk_elements
        if self.method == "zonotope":  # 3 streams of (n, symbols, boxes), and the rows
            symbols = self.n_in + SYMBOLS_PER_LAYER * (len(self.layers) - 1)
            chunk = max(1, elements // (4 * symbols * max(widest, 2 * count)))
            parts = [zonotope_rows(self.layers, lo[i:i + chunk], hi[i:i + chunk], rows, slopes)
                     for i in range(0, lo.shape[0], chunk)]
        else:
            chunk = max(1, min(BOXES_PER_CHUNK, elements // (6 * count * widest)))
            parts = [_bounds_chunk(self.layers, lo[i:i + chunk], hi[i:i + chunk], rows, slopes,
                                   elements) for i in range(0, lo.shape[0], chunk)]
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
