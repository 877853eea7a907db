"""Discrepancy properties over the merged network and as native two-network queries."""

from __future__ import annotations

import numpy as np
import pytest
import vnnlib

from nnbisim.core.errors import SpecError
from nnbisim.specs.discrepancy import (
    infinity_norm_property,
    two_network_infinity_norm_query,
    two_network_violation_query,
    violation_property,
)
from nnbisim.specs.sets import Box, InputSet
from nnbisim.specs.vnnlib1 import parse_property, write_vnnlib1
from nnbisim.specs.vnnlib2 import write_two_network_query, write_vnnlib2

X = InputSet.of(Box([0.0, 0.0], [1.0, 1.0]))


def test_violation_property_on_the_difference():
    up = violation_property(X, 3, 1, +1, 0.25)
    assert up.unsafe.satisfied_by([0, 0.25, 0]) and not up.unsafe.satisfied_by([9, 0.24, 9])
    down = violation_property(X, 3, 1, -1, 0.25)
    assert down.unsafe.satisfied_by([0, -0.25, 0]) and not down.unsafe.satisfied_by([0, 0.3, 0])
    assert "(assert (>= Y_1 0.25))" in write_vnnlib1(up)
    assert "(assert (<= Y_1 -0.25))" in write_vnnlib1(down)


def test_offset_for_merged_outputs_all():
    n = 2
    prop = violation_property(X, 3 * n, 1, +1, 0.5, offset=2 * n)
    y1, y2 = np.array([5.0, 1.0]), np.array([0.0, 0.0])
    assert prop.unsafe.satisfied_by(np.r_[y1, y2, [0.0, 0.5]])
    assert not prop.unsafe.satisfied_by(np.r_[y1, y2, [9.0, 0.4]])
    with pytest.raises(SpecError, match="offset 3 does not fit"):
        violation_property(X, 6, 0, 1, 0.5, offset=3)
    with pytest.raises(SpecError, match="index 2 is out of range 0..1"):
        violation_property(X, 6, 2, 1, 0.5, offset=4)


def test_infinity_norm_property():
    prop = infinity_norm_property(X, 6, 0.1, offset=4)
    assert len(prop.unsafe.disjuncts) == 4
    assert prop.unsafe.satisfied_by([9, 9, 9, 9, 0.0, -0.1])
    assert not prop.unsafe.satisfied_by([9, 9, 9, 9, 0.09, -0.09])
    back = parse_property(write_vnnlib1(prop))
    assert back.unsafe.satisfied_by([0, 0, 0, 0, 0.0, -0.1])
    assert "(>= Y[0,5] 0.1)" in write_vnnlib2(prop)


@pytest.mark.parametrize("args, message", [
    ((X, 3, 0, 2, 0.1), "sign must be"),
    ((X, 3, 3, 1, 0.1), "out of range"),
    ((X, 3, 0, 1, float("inf")), "not a finite number"),
])
def test_bad_arguments(args, message):
    with pytest.raises(SpecError, match=message):
        violation_property(*args)


def test_two_network_queries():
    q = two_network_violation_query(X, 2, 1, -1, 0.5)
    # columns: Y_f[0], Y_f[1], Y_g[0], Y_g[1]; unsafe when -(Y_f[1] - Y_g[1]) >= 0.5
    assert q.unsafe.satisfied_by([0, 0.0, 0, 0.5]) and not q.unsafe.satisfied_by([0, 0, 0, 0.4])
    text = write_two_network_query(q, (1, 2), (1, 2))
    assert "(<= (- Y_f[0,1] Y_g[0,1]) -0.5)" in text
    vnnlib.parse_query_string(text)
    inf = two_network_infinity_norm_query(X, 2, 0.5, relation="equal-to")
    assert len(inf.unsafe.disjuncts) == 4 and inf.relation == "equal-to"
    assert "(equal-to f)" in write_two_network_query(inf, (2,), (2,))
