"""Two-network queries with inputs coupled by inequalities (VNN-COMP 2026's monotonicity
category): known answers on networks built to be monotone, or not, in one input."""

from __future__ import annotations

import numpy as np
import pytest
from netbuild import save

from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.onnx_write import network_to_model
from nnbisim.core.errors import InputError
from nnbisim.core.model import Network
from nnbisim.core.verdict import Status
from nnbisim.specs.io import read_spec
from nnbisim.specs.results import parse_vnncomp_result
from nnbisim.tasks.coupled import decide_coupled
from nnbisim.vnncomp.run import run_instance

HEAD = """(vnnlib-version <2.0>)
(declare-network f (declare-input X_f real [3]) (declare-output Y_f real [2]))
(declare-network g (equal-to f) (declare-input X_g real [3]) (declare-output Y_g real [2]))
(assert (and (<= X_f[0] 0.5) (>= X_f[0] -0.5)))
(assert (and (<= X_f[1] 1.0) (>= X_f[1] -1.0)))
(assert (and (<= X_f[2] 0.3) (>= X_f[2] 0.2)))
(assert (and (<= X_g[0] 0.5) (>= X_g[0] -0.5)))
(assert (== X_f[1] X_g[1]))
(assert (== X_f[2] X_g[2]))
"""


def decreasing(rng: np.random.Generator) -> Network:
    """Y[1] falls by at least as much as X[0] rises: a pass-through neuron relu(x0 + 10)
    (always active on the box) with weight -1, and unstable neurons that grow with x0 with
    negative weights; Y[0] is anything."""
    w1 = rng.normal(size=(12, 3))
    w1[:, 0] = np.abs(w1[:, 0]) + 0.2
    w1[0] = [1.0, 0.0, 0.0]
    b1 = rng.normal(size=12) * 0.3
    b1[0] = 10.0
    w2 = np.vstack([rng.normal(size=12), -np.abs(rng.normal(size=12))])
    w2[1, 0] = -1.0
    return Network.from_weights([w1, w2], [b1, rng.normal(size=2)], (3,), name="decreasing")


def v_shaped() -> Network:
    """Y[1] = |X[0]| + X[1] / 4: falls, then rises, along X[0]."""
    w1 = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])
    w2 = np.array([[0.0, 0.0, 1.0, -1.0], [1.0, 1.0, 0.25, -0.25]])
    return Network.from_weights([w1, w2], [np.zeros(4), np.zeros(2)], (3,), name="v")


def instance(tmp_path, net: Network, coupling: str, relation: str):
    model = save(network_to_model(net), tmp_path / f"{net.name}.onnx")
    spec = tmp_path / "q.vnnlib"
    spec.write_text(HEAD + coupling + "\n" + relation + "\n")
    return model, spec


def test_monotone_by_construction_is_proved_with_an_offset(tmp_path):
    # x_g[0] >= x_f[0] + 0.1, so Y_g[1] <= Y_f[1] - 0.1: "Y_f[1] < Y_g[1]" cannot happen
    net = decreasing(np.random.default_rng(3))
    model, spec = instance(tmp_path, net, "(assert (<= (+ X_f[0] 0.1) X_g[0]))",
                           "(assert (< Y_f[1] Y_g[1]))")
    q = read_spec(spec)
    a = decide_coupled(q, net, net, model, model, 120.0)
    assert a.status is Status.HOLDS, a.note
    # dense check of the claim on the grid of the coupled set
    rng = np.random.default_rng(0)
    xf = rng.uniform([-0.5, -1.0, 0.2], [0.4, 1.0, 0.3], size=(20_000, 3))
    xg = xf.copy()
    xg[:, 0] = rng.uniform(xf[:, 0] + 0.1, 0.5)
    assert np.all(net.forward(xg)[:, 1] <= net.forward(xf)[:, 1] - 0.1 + 1e-9)


def test_strict_relation_met_only_on_the_diagonal_is_proved_by_the_gradient(tmp_path):
    # f = g and x_f = x_g allowed: the closed relation holds on the diagonal, the strict one
    # nowhere; a boundary point must not be reported, and the gradient's sign proves it
    net = decreasing(np.random.default_rng(3))
    model, spec = instance(tmp_path, net, "(assert (<= X_f[0] X_g[0]))",
                           "(assert (< Y_f[1] Y_g[1]))")
    a = decide_coupled(read_spec(spec), net, net, model, model, 60.0)
    assert a.status is Status.HOLDS and "monotone" in a.note
    rng = np.random.default_rng(1)
    xf = rng.uniform([-0.5, -1.0, 0.2], [0.5, 1.0, 0.3], size=(20_000, 3))
    xg = xf.copy()
    xg[:, 0] = rng.uniform(xf[:, 0], 0.5)
    assert np.all(net.forward(xg)[:, 1] <= net.forward(xf)[:, 1] + 1e-12)


def test_a_non_monotone_network_on_the_diagonal_is_not_proved(tmp_path):
    # Y[1] = |X[0]| + ...: rising for X[0] > 0, so "Y_f[1] < Y_g[1]" is sat off the diagonal
    model, spec = instance(tmp_path, v_shaped(), "(assert (<= X_f[0] X_g[0]))",
                           "(assert (< Y_f[1] Y_g[1]))")
    a = decide_coupled(read_spec(spec), v_shaped(), v_shaped(), model, model, 60.0)
    assert a.status is Status.VIOLATED and a.y_f[1] < a.y_g[1]


def test_gradient_bounds_contain_finite_differences():
    from netbuild import random_network

    from nnbisim.bounds.jacobian import gradient_bounds

    rng = np.random.default_rng(0)
    net = random_network([4, 16, 16, 3], rng)
    lo = rng.uniform(-1, 0, (6, 4))
    hi = lo + rng.uniform(0.05, 0.5, (6, 4))
    row = np.array([1.0, -2.0, 0.5])
    gl, gu = gradient_bounds(net, lo, hi, row)
    h = 1e-7
    for b in range(6):
        x = rng.uniform(lo[b], hi[b] - h, (2000, 4))
        for i in range(4):
            step = np.zeros(4)
            step[i] = h
            g = (net.forward(x + step) - net.forward(x)) @ row / h
            assert np.all(g <= gu[b, i] + 1e-6) and np.all(g >= gl[b, i] - 1e-6)


def test_non_monotone_input_gives_a_strict_counterexample(tmp_path):
    net = v_shaped()
    model, spec = instance(tmp_path, net, "(assert (<= X_f[0] X_g[0]))",
                           "(assert (< Y_g[1] Y_f[1]))")
    q = read_spec(spec)
    a = decide_coupled(q, net, net, model, model, 60.0)
    assert a.status is Status.VIOLATED
    assert a.x_f[0] <= a.x_g[0] and np.array_equal(a.x_f[1:], a.x_g[1:])
    assert -0.5 <= a.x_f[0] and a.x_g[0] <= 0.5 and 0.2 <= a.x_f[2] <= 0.3
    assert a.y_g[1] < a.y_f[1] - 1e-6  # a clear margin, replayed in onnxruntime
    np.testing.assert_allclose([a.y_f[1], a.y_g[1]],
                               net.forward(np.stack([a.x_f, a.x_g]))[:, 1], atol=1e-6)


@pytest.mark.parametrize("relation, expected", [
    ("(assert (< Y_g[1] Y_f[1]))", "sat"),
    ("(assert (< Y_g[1] (- Y_f[1] 10.0)))", "unsat"),
])
def test_vnncomp_run_answers_coupled_instances(tmp_path, relation, expected):
    model, spec = instance(tmp_path, v_shaped(), "(assert (<= X_f[0] X_g[0]))", relation)
    result = tmp_path / "result.txt"
    field = f"[('f', '{model.name}'), ('g', '{model.name}')]"
    status = run_instance(field, spec, result, 60.0, base=tmp_path)
    assert status.vnncomp == expected
    text = result.read_text()
    assert text.splitlines()[0] == expected
    if expected == "sat":
        word, _, _ = parse_vnncomp_result(text)
        values = [float(v) for v in text.split() if _number(v)]
        x_f, x_g, y_f, y_g = values[:3], values[3:6], values[6:8], values[8:10]
        assert word is Status.VIOLATED
        assert x_f[0] <= x_g[0] and x_f[1:] == x_g[1:] and y_g[1] < y_f[1]


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_monotonic_benchmark_files_read_back(acas_dir, tmp_path):
    from nnbisim.adapters.onnx_load import load_network
    from nnbisim.specs.coupled import CoupledQuery
    from nnbisim.vnncomp.formats import parse_network_field, read_instances
    from nnbisim.vnncomp.monotonic import write_monotonic

    rows = write_monotonic(acas_dir, tmp_path / "b", 4, seed=7, gzip=True, form="matmul-1d")
    again = write_monotonic(acas_dir, tmp_path / "c", 4, seed=7, gzip=True, form="matmul-1d")
    assert rows == again  # the seed decides everything
    assert len(read_instances(tmp_path / "b" / "instances.csv")) == 4  # files exist
    for field, spec, timeout in rows:
        (f, p_f), (g, p_g) = parse_network_field(field, tmp_path / "b")
        assert p_f == p_g and p_f.name.endswith(".onnx.gz") and timeout == "100"
        assert load_network(p_f).input_shape == (5,)
        q = read_spec(tmp_path / "b" / spec)
        assert isinstance(q, CoupledQuery) and q.relation == "equal-to"
        (poly,) = q.unsafe.disjuncts
        assert poly.strict == (True,) and np.count_nonzero(poly.mat) == 2


@pytest.mark.marabou
@pytest.mark.parametrize("case", ["sat", "unsat"])
def test_translated_coupled_instance_is_answered_alike_by_marabou(tmp_path, case):
    from nnbisim.specs.io import read_spec_cases
    from nnbisim.verifiers.queries import marabou_per_disjunct
    from nnbisim.vnncomp.bridge import back_translate, translate

    if case == "sat":  # v-shaped: Y[1] falls while X[0] rises on X[0] < 0
        net, coupling, relation = v_shaped(), "(assert (<= X_f[0] X_g[0]))", \
            "(assert (< Y_g[1] Y_f[1]))"
    else:  # decreasing by at least the offset, which is at least 0.1
        net, coupling, relation = decreasing(np.random.default_rng(3)), \
            "(assert (<= (+ X_f[0] 0.1) X_g[0]))", "(assert (< Y_f[1] Y_g[1]))"
    model, spec = instance(tmp_path, net, coupling, relation)
    field = f"[('f', '{model.name}'), ('g', '{model.name}')]"
    tr = translate(field, spec, tmp_path / "tr", base=tmp_path)
    cases = read_spec_cases(tr.vnnlib1)
    np.testing.assert_array_equal(read_spec_cases(tr.vnnlib2)[0].box.upper, cases[0].box.upper)
    own = decide_coupled(read_spec(spec), net, net, model, model, 60.0).status
    status, x = marabou_per_disjunct(tr.merged, cases, 60.0, tmp_path)
    expected = Status.VIOLATED if case == "sat" else Status.HOLDS
    assert own is expected and status is expected
    if x is not None:  # Marabou's point of the merged instance, back on the original pair
        try:
            text = back_translate(tr.manifest, x)
            assert text.startswith("X_f ") and "Y_g " in text
        except InputError:  # the 1.0 file is closed: Marabou may answer with a tie, which
            y = merged_outputs(tr.merged, x)  # the strict query does not count
            assert abs(y[1] - y[4]) < 1e-6
    # the merged file computes [y_f; y_g; y_f - y_g (; u)] of u = [x_f; offsets]
    merged = load_network(tr.merged)
    u = cases[0].box.sample(50, np.random.default_rng(0))
    x_g = u[:, :3].copy()
    x_g[:, 0] += u[:, 3]
    stored = load_network(model)  # the file's float32 weights, as the merged file has them
    y_f, y_g = stored.forward(u[:, :3]), stored.forward(x_g)
    got = merged.forward(u)
    np.testing.assert_allclose(got[:, :6], np.hstack([y_f, y_g, y_f - y_g]), atol=1e-9)
    if got.shape[1] > 6:
        np.testing.assert_allclose(got[:, 6:], u, atol=1e-12)


def merged_outputs(path, x):
    return load_network(path).forward(np.asarray(x, np.float64)[None])[0]
