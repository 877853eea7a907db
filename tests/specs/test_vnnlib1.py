"""VNN-LIB 1.0: the ten ACAS Xu properties, exact round trips, cases, and each refusal."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from nnbisim.core.errors import InputError, SpecError
from nnbisim.specs.sets import Box, InputSet, OutputConstraint, Polytope, Property, SpecCase
from nnbisim.specs.vnnlib1 import (
    parse_cases,
    parse_property,
    read_cases,
    read_property,
    write_cases_vnnlib1,
    write_vnnlib1,
)

HEAD = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + "".join(
    f"(declare-const Y_{j} Real)\n" for j in range(2))
BOX = ("(assert (<= X_0 1.0))\n(assert (>= X_0 -1.0))\n"
       "(assert (<= X_1 2.0))\n(assert (>= X_1 0.0))\n")


def same_property(a: Property, b: Property) -> None:
    assert a.n_outputs == b.n_outputs and len(a.inputs.boxes) == len(b.inputs.boxes)
    for x, y in zip(a.inputs.boxes, b.inputs.boxes, strict=True):
        np.testing.assert_array_equal(x.lower, y.lower)
        np.testing.assert_array_equal(x.upper, y.upper)
    assert len(a.unsafe.disjuncts) == len(b.unsafe.disjuncts)
    for p, q in zip(a.unsafe.disjuncts, b.unsafe.disjuncts, strict=True):
        np.testing.assert_array_equal(p.mat, q.mat)
        np.testing.assert_array_equal(p.rhs, q.rhs)


@pytest.mark.parametrize("k", range(1, 11))
def test_every_acas_property_reads_and_round_trips(acas_dir, tmp_path, k):
    prop = read_property(acas_dir / f"prop_{k}.vnnlib")
    assert prop.n_inputs == 5 and prop.n_outputs == 5
    assert len(prop.inputs.boxes) == (2 if k == 6 else 1)
    out = tmp_path / f"p{k}.vnnlib"
    text = write_vnnlib1(prop, out)
    assert out.read_text() == text
    same_property(read_property(out), prop)


def test_acas_values_are_exact(acas_dir):
    p1 = read_property(acas_dir / "prop_1.vnnlib")
    box = p1.inputs.boxes[0]
    assert box.lower[0] == 0.6 and box.upper[0] == 0.679857769
    assert box.lower[4] == -0.5 and box.upper[4] == -0.45
    (unsafe,) = p1.unsafe.disjuncts
    np.testing.assert_array_equal(unsafe.mat, [[-1.0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(unsafe.rhs, [-3.991125645861615])
    assert p1.unsafe.satisfied_by([3.991125645861615, 0, 0, 0, 0])
    assert not p1.unsafe.satisfied_by([3.99112564586161, 9, 9, 9, 9])

    p6 = read_property(acas_dir / "prop_6.vnnlib")
    b1, b2 = p6.inputs.boxes
    assert (b1.lower[1], b1.upper[1]) == (0.11140846, 0.499999896)
    assert (b2.lower[1], b2.upper[1]) == (-0.499999896, -0.11140846)
    assert len(p6.unsafe.disjuncts) == 4
    assert p6.unsafe.satisfied_by([0, 1, -1, 0, 0])  # Y_2 <= Y_0: coc not minimal
    assert not p6.unsafe.satisfied_by([0, 1, 1, 1, 1])

    p2 = read_property(acas_dir / "prop_2.vnnlib")  # four asserts: one conjunction
    (conj,) = p2.unsafe.disjuncts
    assert conj.mat.shape == (4, 5)
    assert p2.unsafe.satisfied_by([5, 1, 2, 3, 4]) and not p2.unsafe.satisfied_by([1, 5, 0, 0, 0])


def test_writer_keeps_the_simple_forms(acas_dir):
    text = write_vnnlib1(read_property(acas_dir / "prop_1.vnnlib"))
    assert "(assert (>= Y_0 3.991125645861615))" in text
    assert "(assert (<= X_0 0.679857769))" in text and "(assert (>= X_0 0.6))" in text
    text6 = write_vnnlib1(read_property(acas_dir / "prop_6.vnnlib"))
    assert "    (and (<= Y_1 Y_0))" in text6 and text6.count("(assert (or") == 2


def test_numbers_round_trip_exactly():
    values = [0.1 + 0.2, 1e-300, 1e16, 123456.789e10, -2.5e-8, 2.5e-308, -0.0, 1 / 3]
    lo = np.array(values)
    prop = Property(InputSet.of(Box(lo, lo + np.abs(lo))),
                    OutputConstraint((Polytope([[1.0 / 3, -7e20, 0.1]], [1e-17]),
                                      Polytope([[0, -1.0, 1.0]], [2.0 / 3]),
                                      Polytope([[1.0, 1.0, -1.0]], [-1e16]))), 3)
    text = write_vnnlib1(prop)
    assert "e+" not in text
    assert "(>= (- Y_1 Y_2) -0.6666666666666666)" in text
    assert "(<= (+ Y_0 Y_1 (- Y_2)) -1e16)" in text
    same_property(parse_property(text), prop)


def test_linear_terms_strict_and_equality():
    text = HEAD + """
; comment (with parentheses) ; and more
(assert (and (<= (* 2.0 X_0) 2.0) (>= (- X_0) -5) (> X_0 -1e0)))  ; trailing comment
(assert (= X_1 0.25))
(assert (< (+ (* 2 Y_0) (- Y_1) 1.5) (* 0.5 (- 3.0))))
(check-sat)
"""
    prop = parse_property(text, "t.vnnlib")
    box = prop.inputs.boxes[0]
    np.testing.assert_array_equal(box.lower, [-1.0, 0.25])
    np.testing.assert_array_equal(box.upper, [1.0, 0.25])
    (p,) = prop.unsafe.disjuncts
    np.testing.assert_array_equal(p.mat, [[2.0, -1.0]])
    np.testing.assert_array_equal(p.rhs, [-3.0])


def test_mixed_disjuncts_read_as_cases(tmp_path):
    text = HEAD + """(assert (or
  (and (<= X_0 1.0) (>= X_0 0.0) (<= X_1 1.0) (>= X_1 0.0) (>= Y_0 3.0))
  (and (<= X_0 2.0) (>= X_0 1.0) (<= X_1 1.0) (>= X_1 0.0) (<= Y_1 Y_0))
  (and (<= X_0 2.0) (>= X_0 1.0) (<= X_1 1.0) (>= X_1 0.0) (>= Y_1 9.0))))
"""
    path = tmp_path / "mixed.vnnlib"
    path.write_text(text)
    cases = read_cases(path)
    assert len(cases) == 2
    assert cases[0].box.upper[0] == 1.0 and len(cases[0].unsafe.disjuncts) == 1
    assert cases[1].box.lower[0] == 1.0 and len(cases[1].unsafe.disjuncts) == 2
    with pytest.raises(SpecError, match=r"mixed\.vnnlib.*read_cases"):
        read_property(path)
    again = parse_cases(write_cases_vnnlib1(cases), "w")
    assert len(again) == 2
    for a, b in zip(again, cases, strict=True):
        np.testing.assert_array_equal(a.box.lower, b.box.lower)
        assert [p.rhs.tolist() for p in a.unsafe.disjuncts] == [
            p.rhs.tolist() for p in b.unsafe.disjuncts]


def test_same_outputs_in_every_disjunct_is_a_property():
    text = HEAD + """(assert (or
  (and (<= X_0 1.0) (>= X_0 0.0) (<= X_1 1.0) (>= X_1 0.0) (>= Y_0 3.0))
  (and (<= X_0 2.0) (>= X_0 1.0) (<= X_1 1.0) (>= X_1 0.0) (>= Y_0 3.0))))
"""
    prop = parse_property(text)
    assert len(prop.inputs.boxes) == 2 and len(prop.unsafe.disjuncts) == 1


def test_gzip_file(tmp_path, acas_dir):
    path = tmp_path / "prop_1.vnnlib.gz"
    path.write_bytes(gzip.compress((acas_dir / "prop_1.vnnlib").read_bytes()))
    same_property(read_property(path), read_property(acas_dir / "prop_1.vnnlib"))


@pytest.mark.parametrize("body, message", [
    ("(assert (<= X_0 1.0))\n(assert (>= X_0 0.0))\n(assert (<= X_1 1.0))", "X_1 has no lower"),
    (BOX + "(assert (<= X_0 Y_0))", "mixes inputs and outputs"),
    (BOX + "(assert (<= X_0 X_1))", "relates several inputs"),
    (BOX + "(assert (>= X_1 3.0))", "X_1 has lower bound 3.0 above upper bound 2.0"),
    (BOX + "(assert (<= Z_0 1.0))", "'Z_0' is not a number or a declared variable"),
    (BOX + "(assert (<= Y_7 1.0))", "'Y_7' is not a number or a declared variable"),
    (BOX + "(assert (<= (* Y_0 Y_1) 1.0))", "not linear"),
    (BOX + "(assert (<= Y_0 1.0)", "never closed"),
    (BOX + "(assert (<= Y_0 1.0)))", "without a matching"),
    (BOX + "(assert (<= Y_0 inf))", "not a number"),
    (BOX + "(assert (<= Y_0 1.0 2.0))", "exactly two arguments"),
    (BOX + "(assert (distinct Y_0 Y_1))", "unsupported constraint 'distinct'"),
    (BOX + "(define-fun f () Real 1.0)", "unknown command 'define-fun'"),
    (BOX + "(declare-const W_0 Real)", "neither X_i"),
    (BOX + "(declare-const Y_3 Real)", "Y_2 is not declared"),
])
def test_malformed_files_are_refused_naming_the_file(tmp_path, body, message):
    path = tmp_path / "bad.vnnlib"
    path.write_text(HEAD + body + "\n")
    with pytest.raises(SpecError, match=message) as err:
        read_cases(path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, InputError)


def test_file_without_outputs_is_refused():
    with pytest.raises(SpecError, match="declares no output variable"):
        parse_property("(declare-const X_0 Real)\n(assert (<= X_0 1.0))\n(assert (>= X_0 0.0))")


def test_unconstrained_outputs_mean_everything_is_unsafe():
    prop = parse_property(HEAD + BOX)
    (p,) = prop.unsafe.disjuncts
    assert p.mat.shape == (0, 2) and prop.unsafe.satisfied_by([1e9, -1e9])
    text = write_vnnlib1(prop)
    assert "Y_0 " not in text.split("unsafe outputs")[1]
    assert parse_property(text).unsafe.disjuncts[0].mat.shape == (0, 2)


def test_spec_case_is_frozen():
    case = parse_cases(HEAD + BOX + "(assert (>= Y_0 1.0))")[0]
    assert isinstance(case, SpecCase)
    with pytest.raises(AttributeError):
        case.box = None  # type: ignore[misc]
