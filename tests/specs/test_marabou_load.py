"""The VNN-LIB 1.0 files we write load in Marabou and mean what we meant (real Marabou)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnbisim.adapters.onnx_load import load_network
from nnbisim.specs.discrepancy import infinity_norm_property, violation_property
from nnbisim.specs.sets import Box, InputSet, OutputConstraint, Polytope, Property, SpecCase
from nnbisim.specs.vnnlib1 import read_property, write_cases_vnnlib1, write_vnnlib1

pytestmark = pytest.mark.marabou

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from maraboupy import Marabou, MarabouCore

# y0 = relu(x0) + relu(x1), y1 = relu(x0 - x1): on [0,1]^2, y0 in [0, 2], y1 in [0, 1],
# y0 - y1 = min(2 x1, x0 + x1) <= 2.
W1 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
W2 = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
UNIT = InputSet.of(Box([0.0, 0.0], [1.0, 1.0]))


def tiny_net(x: np.ndarray) -> np.ndarray:
    return W2 @ np.maximum(W1 @ x, 0.0)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    inits = [numpy_helper.from_array(W1.T.astype(np.float32), "W1"),
             numpy_helper.from_array(np.zeros(3, np.float32), "B1"),
             numpy_helper.from_array(W2.T.astype(np.float32), "W2"),
             numpy_helper.from_array(np.zeros(2, np.float32), "B2")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["m1"]),
             helper.make_node("Add", ["m1", "B1"], ["z1"]),
             helper.make_node("Relu", ["z1"], ["h1"]),
             helper.make_node("MatMul", ["h1", "W2"], ["m2"]),
             helper.make_node("Add", ["m2", "B2"], ["y"])]
    graph = helper.make_graph(nodes, "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def load(onnx_path: Path, vnnlib_path: Path):
    net = Marabou.read_onnx(str(onnx_path))
    query = net.getInputQuery()
    MarabouCore.loadProperty(query, str(vnnlib_path))
    return query


def solve(onnx_path: Path, vnnlib_path: Path) -> tuple[str, np.ndarray | None]:
    net = Marabou.read_onnx(str(onnx_path))
    options = Marabou.createOptions(verbosity=0, timeoutInSeconds=20)
    answer, values, _ = net.solve(options=options, propertyFilename=str(vnnlib_path),
                                  verbose=False)
    if answer != "sat":
        return answer, None
    x = np.array([values[v] for v in net.inputVars[0].flatten()])
    return answer, x


@pytest.mark.parametrize("k", range(1, 11))
def test_written_acas_properties_load(acas_dir, tmp_path, k):
    prop = read_property(acas_dir / f"prop_{k}.vnnlib")
    path = tmp_path / f"p{k}.vnnlib"
    write_vnnlib1(prop, path)
    query = load(acas_dir / "ACASXU_run2a_1_1_batch_2000.onnx", path)
    if len(prop.inputs.boxes) == 1:
        box = prop.inputs.boxes[0]
        got = [(query.getLowerBound(query.inputVariableByIndex(i)),
                query.getUpperBound(query.inputVariableByIndex(i))) for i in range(5)]
        assert got == list(zip(box.lower.tolist(), box.upper.tolist(), strict=True))


@pytest.mark.parametrize("prop", [
    violation_property(InputSet.of(Box(np.full(5, -0.5), np.full(5, 0.5))), 5, 3, -1, 1e-5),
    infinity_norm_property(InputSet.of(Box(np.full(5, -0.5), np.full(5, 0.5))), 5, 0.03125),
    Property(InputSet.of(Box(np.full(5, -0.5), np.full(5, 0.5))),
             OutputConstraint((Polytope([[1.0, -1.0, 1.0, 0, 0], [0, 2.0, 0, -3.0, 0]],
                                        [1e16, 0.0]),
                               Polytope([[0, 0, -1.0, 1.0, 0]], [-0.5]),
                               Polytope([[0, 0, 0, 0, -2.5]], [1.0]))), 5),
])
def test_row_forms_load(acas_dir, tmp_path, prop):
    """Every row form the writer uses (one output, a difference, coefficients, a bound of
    1e16, disjunctions) loads with the box as its input bounds, and Marabou's answer on it
    means what we meant: each of these is reachable on ACAS Xu 1_1 (``sat`` within a second
    or two), with a counterexample inside the box that our own float64 evaluation of the
    network takes into the unsafe set."""
    path = tmp_path / "p.vnnlib"
    write_vnnlib1(prop, path)
    net = acas_dir / "ACASXU_run2a_1_1_batch_2000.onnx"
    query = load(net, path)
    box = prop.inputs.boxes[0]
    got = [(query.getLowerBound(query.inputVariableByIndex(i)),
            query.getUpperBound(query.inputVariableByIndex(i))) for i in range(5)]
    assert got == list(zip(box.lower.tolist(), box.upper.tolist(), strict=True))
    answer, x = solve(net, path)
    assert answer == "sat" and box.contains(x, tol=1e-6)
    assert prop.unsafe.satisfied_by(load_network(net).forward(x), tol=1e-4)


@pytest.mark.parametrize("row, rhs, expected", [
    ([-1.0, 0.0], -2.5, "unsat"),  # y0 >= 2.5
    ([-1.0, 0.0], -1.5, "sat"),  # y0 >= 1.5
    ([-1.0, 1.0], -2.5, "unsat"),  # y0 - y1 >= 2.5 (written (>= (- Y_0 Y_1) 2.5))
    ([-1.0, 1.0], -1.75, "sat"),
    ([1.0, -1.0], 0.0, "sat"),  # y0 <= y1
    ([0.0, 2.0], 2.5, "sat"),  # 2 y1 <= 2.5 (written (<= (* 2.0 Y_1) 2.5))
    ([0.0, -4.0], -4.5, "unsat"),  # 4 y1 >= 4.5
])
def test_tiny_solves_agree_with_the_meaning(tiny_onnx, tmp_path, row, rhs, expected):
    prop = Property(UNIT, OutputConstraint((Polytope([row], [rhs]),)), 2)
    path = tmp_path / "p.vnnlib"
    write_vnnlib1(prop, path)
    answer, x = solve(tiny_onnx, path)
    assert answer == expected
    if x is not None:
        assert UNIT.boxes[0].contains(x, tol=1e-6)
        assert prop.unsafe.satisfied_by(tiny_net(x), tol=1e-4)


def test_tiny_discrepancy_and_two_boxes(tiny_onnx, tmp_path):
    # y1 = relu(x0 - x1) treated as a "difference" output: it never exceeds 1 on the unit box
    two_boxes = InputSet.of(Box([0.0, 0.0], [0.5, 1.0]), Box([0.5, 0.0], [1.0, 0.25]))
    path = tmp_path / "d.vnnlib"
    write_vnnlib1(violation_property(two_boxes, 2, 1, +1, 1.01), path)
    assert solve(tiny_onnx, path)[0] == "unsat"
    write_vnnlib1(violation_property(two_boxes, 2, 1, +1, 0.7), path)
    answer, x = solve(tiny_onnx, path)  # only the second box reaches x0 - x1 >= 0.7
    assert answer == "sat" and x[0] >= 0.5 - 1e-6 and x[1] <= 0.25 + 1e-6


def test_cases_file_loads_and_solves(tiny_onnx, tmp_path):
    cases = [SpecCase(Box([0.0, 0.0], [0.5, 1.0]), OutputConstraint((Polytope([[0, -1.0]],
                                                                              [-0.6]),))),
             SpecCase(Box([0.5, 0.0], [1.0, 1.0]), OutputConstraint((Polytope([[-1.0, 0]],
                                                                              [-2.5]),)))]
    path = tmp_path / "cases.vnnlib"
    write_cases_vnnlib1(cases, path)
    assert solve(tiny_onnx, path)[0] == "unsat"  # y1 <= 0.5 on box 1, y0 <= 2 on box 2


def test_general_rows_are_beyond_marabou(acas_dir, tmp_path):
    """Documents the limit named in vnnlib1's docstring; if this fails, Marabou learnt more."""
    prop = Property(InputSet.of(Box(np.full(5, -0.5), np.full(5, 0.5))),
                    OutputConstraint((Polytope([[2.0, -1.0, 1.0, 0, 0]], [0.5]),)), 5)
    path = tmp_path / "general.vnnlib"
    write_vnnlib1(prop, path)
    with pytest.raises(RuntimeError):
        load(acas_dir / "ACASXU_run2a_1_1_batch_2000.onnx", path)
