"""VNN-LIB 2.0: what we write parses with the vnnlib package and reads back to the same model."""

from __future__ import annotations

import re

import numpy as np
import pytest
import vnnlib

from nnbisim.core.errors import SpecError
from nnbisim.specs import discrepancy
from nnbisim.specs.coupled import CoupledQuery
from nnbisim.specs.sets import Box, InputSet, OutputConstraint, Polytope, Property, TwoNetworkQuery
from nnbisim.specs.vnnlib1 import read_property
from nnbisim.specs.vnnlib2 import (
    parse_cases,
    parse_query,
    read_query,
    write_two_network_query,
    write_vnnlib2,
)
from nnbisim.tasks.coupled import reduce_query


def same_sets(a, b) -> None:
    assert len(a.inputs.boxes) == len(b.inputs.boxes)
    for x, y in zip(a.inputs.boxes, b.inputs.boxes, strict=True):
        np.testing.assert_array_equal(x.lower, y.lower)
        np.testing.assert_array_equal(x.upper, y.upper)
    assert len(a.unsafe.disjuncts) == len(b.unsafe.disjuncts)
    for p, q in zip(a.unsafe.disjuncts, b.unsafe.disjuncts, strict=True):
        np.testing.assert_array_equal(p.mat, q.mat)
        np.testing.assert_array_equal(p.rhs, q.rhs)


@pytest.mark.parametrize("k", [1, 2, 6, 7])
def test_acas_properties_round_trip_through_2_0(acas_dir, tmp_path, k):
    prop = read_property(acas_dir / f"prop_{k}.vnnlib")
    path = tmp_path / "p.vnnlib"
    text = write_vnnlib2(prop, (1, 1, 1, 5), (1, 5), path, network_name="acas")
    assert text.startswith("(vnnlib-version <2.0>)")
    parsed = vnnlib.parse_query_file(str(path))
    assert [n.name for n in parsed.networks] == ["acas"]
    assert list(parsed.networks[0].inputs[0].shape) == [1, 1, 1, 5]
    back = read_query(path)
    assert isinstance(back, Property)
    assert back.input_shape == (1, 1, 1, 5) and back.output_shape == (1, 5)
    same_sets(back, prop)


def test_awkward_numbers_and_general_rows_round_trip():
    lo = np.array([0.1 + 0.2, 1e-300, 1e16, -2.5e-8, -0.0, 1 / 3])
    unsafe = OutputConstraint((Polytope([[1.0 / 3, -7e20, 0.1, 0, 0, 0]], [1e-17]),
                               Polytope([[0, -1.0, 1.0, 0, 0, 0]], [2.0 / 3]),
                               Polytope([[1.0, 1.0, -1.0, 0, 0, 2.0]], [-1e16]),
                               Polytope([[1.0, 1.0, -1.0, 0, 0, 0]], [0.5]),
                               Polytope([[0, 0, 0, 0, -3.0, 0], [0, 0, 0, 0, 1.0, 1.0]],
                                        [2.5e-308, 1.0])))
    prop = Property(InputSet.of(Box(lo, lo + np.abs(lo)), Box(lo - 1, lo)), unsafe, 6)
    with pytest.raises(SpecError, match="element type 'Real' cannot be written"):
        write_vnnlib2(prop, dtype="Real")
    for dtype in ("float32", "float64", "float16", "bfloat16"):
        text = write_vnnlib2(prop, (2, 3), (6,), dtype=dtype)
        assert not re.search(r"\de", text)  # the 2.0 grammar has no exponents
        back = parse_query(text)
        assert back.input_shape == (2, 3) and back.output_shape == (6,)
        same_sets(back, prop)


def test_subnormal_numbers_are_refused_both_ways():
    tiny = Property(InputSet.of(Box([0.0], [1.0])),
                    OutputConstraint((Polytope([[1.0]], [5e-324]),)), 1)
    with pytest.raises(SpecError, match="subnormal"):
        write_vnnlib2(tiny)
    text = ("(vnnlib-version <2.0>)\n(declare-network f (declare-input X Real [1]) "
            "(declare-output Y Real [1]))\n(assert (<= X[0] 0." + "0" * 330 + "1))")
    with pytest.raises(SpecError, match="q.vnnlib: the vnnlib package cannot read it"):
        parse_query(text, "q.vnnlib")


def test_default_and_scalar_shapes():
    prop = Property(InputSet.of(Box([0.0], [1.0])),
                    OutputConstraint((Polytope([[1.0]], [0.5]),)), 1)
    text = write_vnnlib2(prop)
    assert "(declare-input X float32 [1,1])" in text and "X[0,0]" in text
    scalar = write_vnnlib2(prop, (), ())
    assert "(declare-input X float32 [])" in scalar and "(<= Y 0.5)" in scalar
    back = parse_query(scalar)
    assert back.input_shape == () and back.n_inputs == 1
    same_sets(back, prop)
    with pytest.raises(SpecError, match=r"input shape \[2, 2\] does not hold 1 values"):
        write_vnnlib2(prop, (2, 2), (1,))
    with pytest.raises(SpecError, match="not a VNN-LIB name"):
        write_vnnlib2(prop, network_name="my net")


@pytest.mark.parametrize("relation", ["isomorphic-to", "equal-to", None])
def test_two_network_query_round_trip(tmp_path, relation):
    inputs = InputSet.of(Box([-1.0, 0.0, 0.5], [1.0, 0.25, 0.75]))
    q = discrepancy.two_network_infinity_norm_query(inputs, 2, 0.125, relation=relation,
                                                    first="orig", second="small")
    path = tmp_path / "pair.vnnlib"
    text = write_two_network_query(q, (1, 3), (1, 2), path)
    assert "(assert (== X_orig[0,2] X_small[0,2]))" in text
    assert "(>= (- Y_orig[0,1] Y_small[0,1]) 0.125)" in text
    parsed = vnnlib.parse_query_string(text)
    assert [n.name for n in parsed.networks] == ["orig", "small"]
    back = read_query(path)
    assert isinstance(back, TwoNetworkQuery)
    assert (back.first, back.second, back.relation) == ("orig", "small", relation)
    assert back.n_outputs == 2 and back.unsafe.out_dim == 4
    assert back.input_shape == (1, 3) and back.output_shape == (1, 2)
    same_sets(back, q)
    assert back.unsafe.satisfied_by([1.0, 0.0, 0.875, 0.0])  # Y_f[0] - Y_g[0] = 0.125
    assert not back.unsafe.satisfied_by([1.0, 0.0, 0.9, 0.0])


def test_hand_written_equivalence_query():
    text = """(vnnlib-version <2.0>)
(declare-network f (declare-input Xa float32 [2]) (declare-output Ya float32 [2]))
(declare-network g (isomorphic-to f) (declare-input Xb float32 [2]) (declare-output Yb float32 [2]))
(assert (and (== Xb[0] Xa[0]) (== Xa[1] Xb[1])))
(assert (and (<= Xa[0] 1.0) (>= Xa[0] 0.0)))
(assert (<= Xb[1] 2.0))
(assert (>= Xb[1] 1.0))
(assert (or (> (- Ya[0] Yb[0]) 0.5) (< (- Ya[0] Yb[0]) -0.5)))
"""
    q = parse_query(text, "eq.vnnlib")
    assert isinstance(q, TwoNetworkQuery) and q.relation == "isomorphic-to"
    np.testing.assert_array_equal(q.inputs.boxes[0].lower, [0.0, 1.0])
    np.testing.assert_array_equal(q.inputs.boxes[0].upper, [1.0, 2.0])
    np.testing.assert_array_equal(q.unsafe.disjuncts[0].mat, [[-1.0, 0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(q.unsafe.disjuncts[0].rhs, [-0.5])


PAIR = """(vnnlib-version <2.0>)
(declare-network f (declare-input X_f float32 [2]) (declare-output Y_f float32 [1]))
(declare-network g (isomorphic-to f)
  (declare-input X_g float32 [2]) (declare-output Y_g float32 [1]))
(assert (<= X_f[0] 1.0))
(assert (>= X_f[0] 0.0))
(assert (<= X_f[1] 1.0))
(assert (>= X_f[1] 0.0))
(assert (>= (- Y_f[0] Y_g[0]) 0.5))
"""


def test_inputs_related_otherwise_read_as_a_coupled_query():
    # X_g[1] tied to nothing: a coupled query, refused (naming the element) only when reduced
    q = parse_query(PAIR + "(assert (== X_f[0] X_g[0]))", "pair.vnnlib")
    assert isinstance(q, CoupledQuery) and q.relation == "isomorphic-to"
    np.testing.assert_array_equal(q.lower[:2], [0.0, 0.0])
    assert np.isinf(q.lower[2:]).all() and len(q.rhs) == 2
    with pytest.raises(SpecError, match=r"X_g\[1\] is not bounded"):
        reduce_query(q)
    # crossed elements are a coupling like any other: X_g = (X_f[1], X_f[0])
    crossed = parse_query(PAIR + "(assert (== X_f[0] X_g[1]))\n(assert (== X_f[1] X_g[0]))")
    red = reduce_query(crossed)
    # propagated bounds are padded outward (never cut a feasible point off), by 1e-9 relative
    lo, hi = red.box.lower, red.box.upper
    assert np.all(lo <= [0.0, 0.0, -1.0, -1.0]) and np.all(lo > [-1e-8, -1e-8, -1.01, -1.01])
    assert np.all(hi >= [1.0, 1.0, 1.0, 1.0]) and np.all(hi < [1.01, 1.01, 1.01, 1.01])
    assert len(red.rhs) == 4  # x_f[i] + d_i = x_f[1 - i]: rows the box does not imply


def test_disjunctions_over_coupled_inputs_are_refused():
    with pytest.raises(SpecError, match="different input constraints") as err:
        parse_query(PAIR + "(assert (or (== X_f[0] X_g[0]) (== X_f[1] X_g[1])))", "pair.vnnlib")
    assert "pair.vnnlib" in str(err.value)


MONOTONE = """(vnnlib-version <2.0>)
(declare-network f (declare-input X_f real [3]) (declare-output Y_f real [2]))
(declare-network g (equal-to f) (declare-input X_g real [3]) (declare-output Y_g real [2]))
(assert (and (<= X_f[0] 0.5) (>= X_f[0] -0.5)))
(assert (and (<= X_f[1] 1.0) (>= X_f[1] 0.0)))
(assert (== X_f[2] 0.25))
(assert (<= X_f[0] X_g[0]))
(assert (and (<= X_g[0] 0.5) (>= X_g[0] -0.5)))
(assert (== X_f[1] X_g[1]))
(assert (== X_f[2] X_g[2]))
(assert (< Y_f[1] Y_g[1]))
"""


def test_monotonicity_query_reads_with_its_strict_relation():
    q = parse_query(MONOTONE, "mono.vnnlib")
    assert isinstance(q, CoupledQuery) and q.relation == "equal-to"
    assert q.n_inputs == 3 and q.n_outputs == 2 and q.input_shape == (3,)
    np.testing.assert_array_equal(q.lower, [-0.5, 0.0, 0.25, -0.5, -np.inf, -np.inf])
    (poly,) = q.unsafe.disjuncts
    np.testing.assert_array_equal(poly.mat, [[0.0, 1.0, 0.0, -1.0]])
    assert poly.strict == (True,)
    # the diagonal meets the closed relation but not the strict one
    assert poly.closed().satisfied_by([0.0, 1.0, 0.0, 1.0])
    assert not poly.satisfied_by([0.0, 1.0, 0.0, 1.0])
    assert poly.satisfied_by([0.0, 1.0, 0.0, 1.5])
    red = reduce_query(q)
    # u = [x_f ; d_0]: d_0 = X_g[0] - X_f[0] in [0, 1]; X_g[0] <= 0.5 stays a row
    np.testing.assert_array_equal(red.box.lower, [-0.5, 0.0, 0.25, 0.0])
    assert red.box.upper[3] >= 1.0 and red.box.upper[3] < 1.0 + 1e-6
    np.testing.assert_array_equal(red.mat, [[1.0, 0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(red.z(np.array([0.1, 0.5, 0.25, 0.2])),
                                  [0.1, 0.5, 0.25, 0.1 + 0.2, 0.5, 0.25])


@pytest.mark.parametrize("text, message", [
    (PAIR.replace("(- Y_f[0] Y_g[0])", "(* Y_f[0] Y_g[0])")
     + "(assert (== X_f[0] X_g[0]))\n(assert (== X_f[1] X_g[1]))", "not linear"),
    (PAIR + "(assert (!= Y_f[0] 1.0))", "'!='"),
    ("(declare-const X_0 Real)\n(assert (<= X_0 1.0))", "not valid VNN-LIB 2.0"),
    ("(vnnlib-version <2.0>)\n(declare-network f (declare-input X float32 [2]) "
     "(declare-output Y float32 [1]))\n(assert (<= X[0,1] 1.0))", "Too many indices"),
    ("(vnnlib-version <2.0>)\n(declare-network f (declare-input X float32 [1]) "
     "(declare-hidden H float32 [3] \"relu\") (declare-output Y float32 [1]))\n"
     "(assert (<= H[0] 1.0))", "hidden tensor"),
    ("(vnnlib-version <2.0>)\n(declare-network f (declare-input X float32 [1]) "
     "(declare-input Z float32 [1]) (declare-output Y float32 [1]))\n(assert (<= X[0] 1.0))",
     "one input and one output"),
    ("(vnnlib-version <2.0>)\n" + "".join(
        f"(declare-network n{k} (declare-input X{k} float32 [1]) (declare-output Y{k} float32 "
        "[1]))\n" for k in range(3)) + "(assert (<= X0[0] 1.0))", "3 networks"),
    ("(vnnlib-version <2.0>)\n(declare-network f (declare-input X float32 [2]) "
     "(declare-output Y float32 [1]))\n(assert (<= X[0] 1.0))\n(assert (>= X[0] 0.0))\n"
     "(assert (<= X[1] 1.0))", "X\\[1\\] has no lower bound"),
])
def test_bad_2_0_text_is_refused_naming_the_file(text, message):
    with pytest.raises(SpecError, match=message) as err:
        parse_query(text, "q.vnnlib")
    assert str(err.value).startswith("q.vnnlib")


def test_single_network_cases():
    text = """(vnnlib-version <2.0>)
(declare-network f (declare-input X Real [1]) (declare-output Y Real [1]))
(assert (or (and (<= X[0] 1) (>= X[0] 0) (>= Y[0] 3)) (and (<= X[0] 2) (>= X[0] 1) (<= Y[0] 0))))
"""
    cases = parse_cases(text)
    assert [c.box.upper[0] for c in cases] == [1.0, 2.0]
    with pytest.raises(SpecError, match="read_cases"):
        parse_query(text)
