"""Discrepancy properties: is ``sign * (y1 - y2)_i >= threshold`` reachable from the input set?

On the merged network M the outputs are either the difference ``d = y1 - y2`` (``n`` values,
``offset = 0``) or ``[y1 ; y2 ; d]`` (``3n`` values, ``offset = 2n``). The unsafe set is the
discrepancy reaching the threshold, so ``unsat`` (the property holds) proves the bound
``sign * d_i < threshold`` over the whole input set, and ``sat`` gives a witness. The same
questions can be asked natively of the original pair as VNN-LIB 2.0 two-network queries.
"""

from __future__ import annotations

import numpy as np

from nnbisim.core.errors import SpecError
from nnbisim.specs.sets import InputSet, OutputConstraint, Polytope, Property, TwoNetworkQuery

__all__ = ["infinity_norm_property", "two_network_infinity_norm_query",
           "two_network_violation_query", "violation_property"]


def _check(n_cols: int, n_diff: int, index: int | None, sign: int, threshold: float) -> None:
    if n_diff < 1 or n_cols < n_diff:
        raise SpecError(f"{n_cols} outputs leave no room for {n_diff} differences; check the "
                        "output count and offset")
    if index is not None and not 0 <= index < n_diff:
        raise SpecError(f"output index {index} is out of range 0..{n_diff - 1}")
    if sign not in (1, -1):
        raise SpecError(f"sign must be +1 or -1, not {sign}")
    if not np.isfinite(threshold):
        raise SpecError(f"threshold {threshold} is not a finite number; give one")


def _at_least(width: int, plus: int, minus: int | None, sign: int, t: float) -> Polytope:
    """``sign * (y[plus] - y[minus]) >= t`` (``minus`` None: just ``y[plus]``) as ``row <= rhs``."""
    row = np.zeros(width)
    row[plus] = -float(sign)
    if minus is not None:
        row[minus] = float(sign)
    return Polytope(row, [-float(t)])


def _diff_count(n_merged_outputs: int, offset: int) -> int:
    if offset != 0 and (offset % 2 or 3 * (offset // 2) != n_merged_outputs):
        raise SpecError(f"offset {offset} does not fit {n_merged_outputs} merged outputs: use 0 "
                        "(outputs = d) or 2n with 3n outputs (outputs = [y1, y2, d])")
    return n_merged_outputs - offset


def violation_property(inputs: InputSet, n_merged_outputs: int, index: int, sign: int,
                       threshold: float, offset: int = 0) -> Property:
    """Unsafe: ``sign * d[index] >= threshold`` on the merged network (``d`` at ``offset``)."""
    n_diff = _diff_count(n_merged_outputs, offset)
    _check(n_merged_outputs, n_diff, index, sign, threshold)
    unsafe = OutputConstraint((_at_least(n_merged_outputs, offset + index, None, sign,
                                         threshold),))
    return Property(inputs, unsafe, n_merged_outputs)


def infinity_norm_property(inputs: InputSet, n_merged_outputs: int, eps: float,
                           offset: int = 0) -> Property:
    """Unsafe: ``||d||_inf >= eps``, i.e. some ``+-d_i >= eps``; ``unsat`` proves ``eps`` bounds
    the discrepancy."""
    n_diff = _diff_count(n_merged_outputs, offset)
    _check(n_merged_outputs, n_diff, None, 1, eps)
    unsafe = OutputConstraint(tuple(_at_least(n_merged_outputs, offset + i, None, s, eps)
                                    for i in range(n_diff) for s in (1, -1)))
    return Property(inputs, unsafe, n_merged_outputs)


def two_network_violation_query(inputs: InputSet, n_outputs: int, index: int, sign: int,
                                threshold: float, *, relation: str | None = "isomorphic-to",
                                first: str = "f", second: str = "g") -> TwoNetworkQuery:
    """Unsafe: ``sign * (Y_f[index] - Y_g[index]) >= threshold`` over the original pair."""
    _check(n_outputs, n_outputs, index, sign, threshold)
    unsafe = OutputConstraint((_at_least(2 * n_outputs, index, n_outputs + index, sign,
                                         threshold),))
    return TwoNetworkQuery(inputs, unsafe, n_outputs, first, second, relation)


def two_network_infinity_norm_query(inputs: InputSet, n_outputs: int, eps: float, *,
                                    relation: str | None = "isomorphic-to", first: str = "f",
                                    second: str = "g") -> TwoNetworkQuery:
    """Unsafe: ``||Y_f - Y_g||_inf >= eps`` over the original pair."""
    _check(n_outputs, n_outputs, None, 1, eps)
    unsafe = OutputConstraint(tuple(_at_least(2 * n_outputs, i, n_outputs + i, s, eps)
                                    for i in range(n_outputs) for s in (1, -1)))
    return TwoNetworkQuery(inputs, unsafe, n_outputs, first, second, relation)
