"""The model's invariants: shapes, widths and names are checked at construction."""

from __future__ import annotations

import pytest

from nnbisim.core.errors import SpecError
from nnbisim.specs.sets import Box, InputSet, OutputConstraint, Polytope, Property, TwoNetworkQuery

X = InputSet.of(Box([0.0, 0.0], [1.0, 1.0]))
U2 = OutputConstraint((Polytope([[1.0, 0.0]], [0.0]),))


def test_property_checks_width_and_shapes():
    assert Property(X, U2, 2, (1, 2), [2]).output_shape == (2,)
    with pytest.raises(SpecError, match="refers to 2 outputs but the property has 3"):
        Property(X, U2, 3)
    with pytest.raises(SpecError, match=r"input shape \[3\] does not hold 2 values"):
        Property(X, U2, 2, (3,))


def test_two_network_query_checks():
    u4 = OutputConstraint((Polytope([[1.0, 0.0, -1.0, 0.0]], [0.0]),))
    assert TwoNetworkQuery(X, u4, 2).relation == "isomorphic-to"
    with pytest.raises(SpecError, match="needs 2 x 1"):
        TwoNetworkQuery(X, u4, 1)
    with pytest.raises(SpecError, match="relation 'same-as' is unknown"):
        TwoNetworkQuery(X, u4, 2, relation="same-as")
    with pytest.raises(SpecError, match="both networks are named"):
        TwoNetworkQuery(X, u4, 2, "f", "f")


def test_empty_box_is_refused():
    with pytest.raises(SpecError, match="box is empty: input 1"):
        Box([0.0, 2.0], [1.0, 1.0])
