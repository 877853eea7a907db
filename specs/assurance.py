"""Enlarged unsafe sets: a property of N1 checked on N2 through the bound on N1 - N2.

If ``y1 = y2 + d`` with every ``d_j`` in ``[lo_j, hi_j]`` over the input set (the certified
difference interval of output ``j``), then an input where N1 reaches ``C y <= rhs`` gives
``C y2 <= rhs - C d <= rhs - min_{d in [lo, hi]} C d``: N2 then reaches the enlarged set
``C y2 <= rhs + sum_j max(-C_kj lo_j, -C_kj hi_j)`` (row ``k``). So N2 never reaching the enlarged
set proves N1 never reaches the original one. With a symmetric interval ``[-eps, eps]`` the
margin is ``|C| eps``.
"""

from __future__ import annotations

import numpy as np

from nnbisim.core.errors import SpecError
from nnbisim.core.rounding import TINY, gamma2
from nnbisim.specs.sets import OutputConstraint, Polytope, Property

__all__ = ["enlarge", "enlarged_property"]


def enlarge(unsafe: OutputConstraint, lower: np.ndarray, upper: np.ndarray) -> OutputConstraint:
    """The unsafe set for N2, given ``lower <= N1 - N2 <= upper`` (per output)."""
    lo = np.asarray(lower, np.float64).reshape(-1)
    hi = np.asarray(upper, np.float64).reshape(-1)
    if lo.shape != hi.shape or lo.size != unsafe.out_dim:
        raise SpecError(f"the difference interval has {lo.size} lower and {hi.size} upper "
                        f"values but the unsafe set has {unsafe.out_dim} outputs")
    if np.any(lo > hi) or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise SpecError("the difference interval must be finite with lower <= upper")
    polys = []
    for p in unsafe.disjuncts:
        terms = np.maximum(-p.mat * lo, -p.mat * hi)
        err = gamma2(terms.shape[1] + 2) * (np.abs(terms).sum(axis=1) + np.abs(p.rhs)) + TINY
        rhs = np.nextafter(p.rhs + terms.sum(axis=1) + err, np.inf)  # rounded outward
        polys.append(Polytope(p.mat, rhs))
    return OutputConstraint(tuple(polys))


def enlarged_property(prop: Property, lower: np.ndarray, upper: np.ndarray) -> Property:
    """``prop`` (a property of N1) as the property N2 must satisfy, for a difference
    ``N1 - N2`` within ``[lower, upper]`` over ``prop``'s input set."""
    return Property(prop.inputs, enlarge(prop.unsafe, lower, upper), prop.n_outputs,
                    prop.input_shape, prop.output_shape)
