"""The objectives of eps, bounded by each engine: ``+(N1 - N2)_i`` and ``-(N1 - N2)_i``.

Objective ``2i`` is ``(N1 - N2)_i``, objective ``2i + 1`` its negation, so one upper bound per
objective bounds both ends of every output's difference interval. The engines are
those of :mod:`nnbisim.bounds.engines`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from nnbisim.adapters.merge import merge_networks
from nnbisim.bounds.bounded import Bounded, BoundFn
from nnbisim.bounds.crown import CrownOptions, crown_bounds, interval_bounds, prepare
from nnbisim.bounds.diffbounds import DiffEngine, same_architecture
from nnbisim.bounds.engines import ENGINES
from nnbisim.bounds.fp import down, up
from nnbisim.core.errors import InputError, ShapeMismatchError
from nnbisim.core.model import Network


def choose_engine(n1: Network, n2: Network, engine: str = "auto") -> str:
    """``auto``: differential where the layer sizes agree, else CROWN on the merged network."""
    if engine == "auto":
        return "differential" if same_architecture(n1, n2) else "crown"
    if engine in ("differential", "zonotope") and not same_architecture(n1, n2):
        raise ShapeMismatchError(
            f"{engine} bounds need the same layer sizes, but N1 is {n1.describe()} and N2 "
            f"is {n2.describe()}; use --engine crown")
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; use auto or one of {', '.join(ENGINES)}")
    return engine


def _host(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _interleave(lo: torch.Tensor, hi: torch.Tensor) -> np.ndarray:
    """Per box ``[hi_0, -lo_0, hi_1, -lo_1, ...]``: the upper bounds of the objectives."""
    lo, hi = _host(lo), _host(hi)
    out = np.empty((lo.shape[0], 2 * lo.shape[1]))
    out[:, 0::2], out[:, 1::2] = hi, -lo
    return out


def _slopes(up_slope: torch.Tensor, lo_slope: torch.Tensor) -> np.ndarray:
    """Per box the input slopes of the objectives, ordered as :func:`_interleave`."""
    a, b = _host(up_slope), _host(lo_slope)
    out = np.empty((a.shape[0], 2 * a.shape[1], a.shape[2]))
    out[:, 0::2], out[:, 1::2] = a, b
    return out


def _differential(n1: Network, n2: Network, device: str, method: str = "backsub") -> BoundFn:
    diff = DiffEngine(n1, n2, device, method=method)

    def bound(lo: np.ndarray, hi: np.ndarray) -> Bounded:
        res = diff.bounds(lo, hi, slopes=True)
        return Bounded(_interleave(res.lo, res.hi), None, _slopes(res.slope_hi, -res.slope_lo))
    return bound


def _separate(n1: Network, n2: Network, device: str) -> BoundFn:
    t1, t2 = prepare(n1, device), prepare(n2, device)
    opts = CrownOptions(device=device)

    def bound(lo: np.ndarray, hi: np.ndarray) -> Bounded:
        r1, r2 = crown_bounds(t1, lo, hi, options=opts), crown_bounds(t2, lo, hi, options=opts)
        return Bounded(_interleave(down(r1.lo - r2.hi), up(r1.hi - r2.lo)))  # rounded outward
    return bound


def _merged(n1: Network, n2: Network, engine: str, device: str) -> BoundFn:
    merged = prepare(merge_networks(n1, n2).network, device)
    m = n1.out_size
    if engine == "interval":
        def ibp(lo: np.ndarray, hi: np.ndarray) -> Bounded:
            res = interval_bounds(merged, lo, hi, device=device)
            return Bounded(_interleave(res.lo, res.hi))
        return ibp
    opts = CrownOptions(slopes=True, device=device)

    def crown(lo: np.ndarray, hi: np.ndarray) -> Bounded:
        res = crown_bounds(merged, lo, hi, options=opts)
        return Bounded(_interleave(res.lo, res.hi), None,
                       _slopes(res.slopes[:, :m], res.slopes[:, m:]))
    return crown


def objective_bounds(n1: Network, n2: Network, engine: str, device: str = "cpu") -> BoundFn:
    """``(lower, upper) -> Bounded``: upper bounds (B, 2m) of the objectives
    ``+(N1 - N2)_0, -(N1 - N2)_0, +(N1 - N2)_1, ...`` per box, by the chosen engine, with the
    slopes of the linear bounds behind them (for splitting and witness candidates).
    The engines run on ``device`` (``cpu``, ``cuda``, ...)."""
    if engine in ("differential", "zonotope"):
        return _differential(n1, n2, device, "zonotope" if engine == "zonotope" else "backsub")
    if engine == "separate":
        return _separate(n1, n2, device)
    return _merged(n1, n2, engine, device)


def objective_values(n1: Network, n2: Network) -> Callable[[np.ndarray], np.ndarray]:
    """Inputs (B, n) -> the objectives' values (B, 2m) in float64, ordered as the bounds."""
    def value(x: np.ndarray) -> np.ndarray:
        d = n1.forward(x) - n2.forward(x)
        out = np.empty((len(x), 2 * d.shape[1]))
        out[:, 0::2], out[:, 1::2] = d, -d
        return out
    return value
