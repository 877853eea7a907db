"""The Marabou adapter against the real solver: holds, replayed violations, timeouts, errors."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnbisim.adapters.marabou import MarabouVerifier
from nnbisim.adapters.replay import OnnxRunner
from nnbisim.core.errors import InputError
from nnbisim.core.verdict import Status
from nnbisim.specs.io import read_spec_cases
from nnbisim.specs.sets import Box, InputSet, OutputConstraint, Polytope, Property

pytestmark = pytest.mark.marabou

# y = relu(x0 + x1) + 2 relu(x0 - x1) + relu(-x0) + 0.5; over [-1, 1]^2 its max is 4.5 at (1, -1)
W1 = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 0.0]])
W2 = np.array([[1.0, 2.0, 1.0]])
TRUE_MAX = 4.5
LOAD_MARGIN = 5.0  # seconds a loaded machine may add to starting and stopping Marabou


def tiny_onnx(path: Path) -> Path:
    inits = [numpy_helper.from_array(a.astype(np.float32), n)
             for a, n in ((W1.T, "W1"), (W2.T, "W2"), (np.array([0.5]), "b2"))]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["z"]), helper.make_node("Relu", ["z"], ["h"]),
             helper.make_node("MatMul", ["h", "W2"], ["m"]),
             helper.make_node("Add", ["m", "b2"], ["y"])]
    graph = helper.make_graph(nodes, "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def y_at_least(path: Path, threshold: float) -> tuple[Path, Property]:
    """The property ``x in [-1, 1]^2 and Y_0 >= threshold`` as VNN-LIB 1.0 text and as a value."""
    path.write_text(
        "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
        "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (>= X_1 -1))\n(assert (<= X_1 1))\n"
        f"(assert (>= Y_0 {threshold}))\n")
    unsafe = OutputConstraint((Polytope([[-1.0]], [-threshold]),))
    return path, Property(InputSet.of(Box([-1.0, -1.0], [1.0, 1.0])), unsafe, 1)


def children() -> list[int]:
    """Process ids of this process's live children (Linux /proc)."""
    kids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        kids += [int(p) for p in (task / "children").read_text().split()]
    return kids


def test_threshold_above_the_max_holds(tmp_path):
    prop, value = y_at_least(tmp_path / "p.vnnlib", TRUE_MAX + 0.5)
    verdict = MarabouVerifier(reader=lambda _: value).check(tiny_onnx(tmp_path / "m.onnx"),
                                                           prop, 20)
    assert verdict.status is Status.HOLDS
    assert verdict.verifier == "marabou" and verdict.counterexample is None


def test_threshold_below_the_max_is_violated_with_a_replayed_counterexample(tmp_path):
    prop, value = y_at_least(tmp_path / "p.vnnlib", TRUE_MAX - 0.5)
    verdict = MarabouVerifier(reader=lambda _: value).check(tiny_onnx(tmp_path / "m.onnx"),
                                                           prop, 20)
    assert verdict.status is Status.VIOLATED, verdict.message
    x = verdict.counterexample
    assert x is not None and x.shape == (2,) and np.all(np.abs(x) <= 1.0)
    expected = np.maximum(W1 @ x, 0.0) @ W2[0] + 0.5
    assert verdict.output is not None
    np.testing.assert_allclose(verdict.output, [expected], atol=1e-5)
    assert verdict.output[0] >= TRUE_MAX - 0.5 - 1e-5


def test_a_violation_outside_the_readers_unsafe_set_becomes_unknown(tmp_path):
    # Marabou answers on the file (Y_0 >= 4); the property given for replay asks Y_0 >= 100,
    # as a wrong answer would look: the counterexample cannot replay.
    prop, _ = y_at_least(tmp_path / "p.vnnlib", TRUE_MAX - 0.5)
    _, stricter = y_at_least(tmp_path / "q.vnnlib", 100.0)
    verdict = MarabouVerifier(reader=lambda _: stricter).check(tiny_onnx(tmp_path / "m.onnx"),
                                                              prop, 20)
    assert verdict.status is Status.UNKNOWN
    assert "did not replay" in verdict.message


def test_default_reader_reads_the_vnnlib_file(tmp_path):
    prop, _ = y_at_least(tmp_path / "p.vnnlib", TRUE_MAX - 0.5)
    verdict = MarabouVerifier().check(tiny_onnx(tmp_path / "m.onnx"), prop, 20)
    assert verdict.status is Status.VIOLATED, verdict.message


def test_acas_violation_replays_within_float32_tolerance(acas_dir, tmp_path):
    # Marabou's counterexamples sit on the unsafe set's boundary; onnxruntime (float32) lands
    # within ~1e-7 of it, inside the replay tolerance.
    net = acas_dir / "ACASXU_run2a_1_1_batch_2000.onnx"
    (box,) = [case.box for case in read_spec_cases(acas_dir / "prop_3.vnnlib")]
    x = np.random.default_rng(0).uniform(box.lower, box.upper, size=(2000, 5))
    threshold = float(OnnxRunner(net).run(x)[:, 0].max()) - 1e-4
    lows, highs = box.lower.tolist(), box.upper.tolist()
    bounds = "".join(f"(assert (>= X_{i} {lows[i]!r}))\n(assert (<= X_{i} {highs[i]!r}))\n"
                     for i in range(5))
    prop = tmp_path / "y0.vnnlib"
    prop.write_text("".join(f"(declare-const {v}_{i} Real)\n" for v in "XY" for i in range(5))
                    + bounds + f"(assert (>= Y_0 {threshold!r}))\n")
    verdict = MarabouVerifier().check(net, prop, 30)
    assert verdict.status is Status.VIOLATED, verdict.message
    assert box.contains(verdict.counterexample)


# killed by us at the timeout / stopped by Marabou's own timer (timeout less grace) before it
@pytest.mark.parametrize(("grace", "timeout"), [(0.3, 0.01), (2.0, 4.0)])
def test_timeout_is_kept_on_the_wall_clock_and_leaves_no_child(acas_dir, grace, timeout):
    """Marabou runs over 30 s on 1_1's property 2 (it timed out at 30 s), so an answer of
    TIMEOUT within the timeout plus a margin that a loaded machine's slow process starts fit
    in (5 s) means it was stopped, by us or by its own timer; and nothing it started is left."""
    before = set(children())
    start = time.perf_counter()
    verdict = MarabouVerifier(grace=grace).check(acas_dir / "ACASXU_run2a_1_1_batch_2000.onnx",
                                                 acas_dir / "prop_2.vnnlib", timeout)
    elapsed = time.perf_counter() - start
    assert verdict.status is Status.TIMEOUT
    assert elapsed < timeout + LOAD_MARGIN
    assert set(children()) <= before


def test_a_model_marabou_cannot_read_is_an_error_verdict(tmp_path):
    model = tmp_path / "sin.onnx"
    graph = helper.make_graph([helper.make_node("Sin", ["x"], ["y"])], "sin",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(model))
    prop = tmp_path / "p.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n"
                    "(assert (<= X_0 1))\n(assert (>= Y_0 2))\n")
    verdict = MarabouVerifier().check(model, prop, 10)
    assert verdict.status is Status.ERROR
    assert "Sin" in verdict.message


def test_missing_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no.onnx"):
        MarabouVerifier().check(tmp_path / "no.onnx", tmp_path / "no.vnnlib", 1)


def test_gzip_model_and_property_are_read(tmp_path):
    # VNN-COMP 2026 ships .onnx.gz and .vnnlib.gz: Marabou reads plain files, so they are
    # decompressed for it; the replay reads the .gz model itself
    import gzip

    model = tiny_onnx(tmp_path / "m.onnx")
    packed = tmp_path / "m.onnx.gz"
    packed.write_bytes(gzip.compress(model.read_bytes()))
    for threshold, status in ((TRUE_MAX - 0.5, Status.VIOLATED), (TRUE_MAX + 0.5, Status.HOLDS)):
        prop, _ = y_at_least(tmp_path / "p.vnnlib", threshold)
        prop_gz = tmp_path / "p.vnnlib.gz"
        prop_gz.write_bytes(gzip.compress(prop.read_bytes()))
        verdict = MarabouVerifier().check(packed, prop_gz, 20)
        assert verdict.status is status, verdict.message
