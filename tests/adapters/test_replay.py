"""onnxruntime replay: flat float64 rows in, (n, out) float64 out, for any batch convention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnbisim.adapters.replay import OnnxRunner, replay_difference
from nnbisim.core.errors import InputError, ShapeMismatchError

W1 = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 0.0]])
W2 = np.array([[1.0, 2.0, 1.0]])


def forward(x: np.ndarray, shift: float = 0.5) -> np.ndarray:
    return np.maximum(x @ W1.T, 0.0) @ W2.T + shift


def tiny_onnx(path: Path, batch: int | str = 1, shift: float = 0.5,
              elem: int = TensorProto.FLOAT) -> Path:
    """2 inputs -> 3 ReLU -> 1 output, ``y = relu(W1 x) . [1, 2, 1] + shift``."""
    dtype = np.float64 if elem == TensorProto.DOUBLE else np.float32
    inits = [numpy_helper.from_array(a.astype(dtype), n) for a, n in
             ((W1.T, "W1"), (W2.T, "W2"), (np.array([shift]), "b2"))]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["z"]),
             helper.make_node("Relu", ["z"], ["h"]),
             helper.make_node("MatMul", ["h", "W2"], ["m"]),
             helper.make_node("Add", ["m", "b2"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", elem, [batch, 2])],
                              [helper.make_tensor_value_info("y", elem, [batch, 1])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def points() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, size=(40, 2))


@pytest.mark.parametrize("batch", [1, "N"])
@pytest.mark.parametrize("elem", [TensorProto.FLOAT, TensorProto.DOUBLE])
def test_runs_rows_for_fixed_and_symbolic_batch(tmp_path, points, batch, elem):
    runner = OnnxRunner(tiny_onnx(tmp_path / "m.onnx", batch, elem=elem))
    tol = 1e-12 if elem == TensorProto.DOUBLE else 1e-5
    assert runner.in_size == 2
    for rows in (points[:3], points):  # below and above the batching threshold
        y = runner.run(rows)
        assert y.shape == (len(rows), 1) and y.dtype == np.float64
        np.testing.assert_allclose(y, forward(rows), atol=tol)
    one = runner.run(points[0])
    assert one.shape == (1,)
    np.testing.assert_allclose(one, forward(points[:1])[0], atol=tol)


def test_acas_fixed_batch_matches_row_by_row(acas_dir):
    runner = OnnxRunner(acas_dir / "ACASXU_run2a_1_1_batch_2000.onnx")
    x = np.random.default_rng(1).uniform(-0.5, 0.5, size=(200, 5))
    y = runner.run(x)
    assert y.shape == (200, 5)
    rows = np.stack([runner.run(row) for row in x])
    np.testing.assert_allclose(y, rows, rtol=1e-5, atol=1e-6)


def test_replay_difference_of_a_shifted_bias_is_the_shift(tmp_path, points):
    y1, y2 = replay_difference(tiny_onnx(tmp_path / "a.onnx", shift=0.5),
                               tiny_onnx(tmp_path / "b.onnx", shift=-0.25), points)
    np.testing.assert_allclose(y1 - y2, 0.75, atol=1e-6)


def test_missing_and_broken_files_name_the_file(tmp_path):
    with pytest.raises(InputError, match="nothere.onnx"):
        OnnxRunner(tmp_path / "nothere.onnx").run(np.zeros(2))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(InputError, match="junk.onnx.*cannot load"):
        OnnxRunner(junk).run(np.zeros(2))


def test_wrong_width_is_refused(tmp_path):
    runner = OnnxRunner(tiny_onnx(tmp_path / "m.onnx"))
    with pytest.raises(ShapeMismatchError, match="2 input values"):
        runner.run(np.zeros((4, 3)))
