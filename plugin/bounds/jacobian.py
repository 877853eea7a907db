"""Sound bounds of a ReLU network's input gradient over boxes, for monotonicity proofs.

For a row ``a`` over the outputs, ``a . N(x)`` is piecewise linear; along any segment inside a
box its derivative is ``a W_L D_{L-1} W_{L-1} ... D_1 W_1`` applied to the segment's direction,
with ``D_k`` diagonal: 1 where the neuron is active on the box, 0 where dead, and some value in
``[0, 1]`` where it is unstable (Clarke's generalised Jacobian covers the kinks). Propagating
the row backwards in interval arithmetic, with the box's CROWN pre-activation bounds deciding
each ``D_k``, bounds every partial derivative over the box. By the mean value theorem,
``a . (N(x + d) - N(x)) <= 0`` whenever both points lie in the box, every ``d_i >= 0`` where
the derivative ``i`` is ``<= 0`` and every ``d_i <= 0`` where it is ``>= 0``: a proof that is
exact at ``d = 0``, where bounds of the difference itself cannot reach 0 once rounded.
"""

from __future__ import annotations

import numpy as np

from nnbisim.bounds.crown import CrownOptions, crown_bounds
from nnbisim.core.model import Network

EPS = float(np.finfo(np.float64).eps)


def _interval_times(gl: np.ndarray, gu: np.ndarray, w: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``[gl, gu] @ w`` for row intervals ``(B, p)`` and a matrix ``(p, q)``, padded outward by
    the float64 rounding of the products and sums (nothing where every term is 0)."""
    wp, wn = np.maximum(w, 0.0), np.minimum(w, 0.0)
    lo, hi = gl @ wp + gu @ wn, gu @ wp + gl @ wn
    pad = (np.maximum(np.abs(gl), np.abs(gu)) @ np.abs(w)) * (w.shape[0] + 2) * EPS
    return lo - pad, hi + pad


def gradient_bounds(net: Network, lower: np.ndarray, upper: np.ndarray, row: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds ``(B, n)`` of ``d (row . N(x)) / d x_i`` over each box
    ``lower[b] <= x <= upper[b]``."""
    lower, upper = np.atleast_2d(lower), np.atleast_2d(upper)
    layers = ()
    if len(net.layers) > 1:
        res = crown_bounds(net, lower, upper, options=CrownOptions(return_layers=True))
        layers = tuple((lo.cpu().numpy(), hi.cpu().numpy()) for lo, hi in res.layers)
    a = np.repeat(np.asarray(row, np.float64)[None], len(lower), 0)
    gl, gu = _interval_times(a, a, net.layers[-1].weight)  # (B, width of the last layer)
    for k in range(len(net.layers) - 2, -1, -1):
        pl, pu = layers[k]
        active, dead = pl > 0, pu < 0
        gl = np.where(active, gl, np.where(dead, 0.0, np.minimum(gl, 0.0)))
        gu = np.where(active, gu, np.where(dead, 0.0, np.maximum(gu, 0.0)))
        gl, gu = _interval_times(gl, gu, net.layers[k].weight)
    return gl, gu
