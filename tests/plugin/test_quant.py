"""Quantized networks: the loader and exporter against PyTorch's int8 forward, quantized ONNX
read back, exact known answers and soundness of the discrepancy engine."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from nnbisim.adapters.mnist import load_test_set, paper_images, patch_box
from nnbisim.adapters.onnx_quant import quantized_from_model
from nnbisim.adapters.onnx_quant_write import quantized_to_model
from nnbisim.adapters.torch_io import load_torch
from nnbisim.bounds.qbounds import DiscrepancyOptions, discrepancy
from nnbisim.core.errors import InputError, ShapeMismatchError
from nnbisim.core.model import Network
from nnbisim.core.quant import QuantizedLayer, QuantizedNetwork, Quantizer


@pytest.fixture(scope="module")
def paper(data_dir):
    d = data_dir / "fnn-repair"
    return load_torch(d / "mnist_fnn_l_ori.pth"), load_torch(d / "mnist_fnn_s_quan.pth")


@pytest.fixture(scope="module")
def mnist(data_dir):
    return load_test_set(data_dir / "mnist")


def torch_int8_model(path):
    """The paper's int8 model rebuilt with torch.ao.quantization (eager mode, fbgemm)."""
    import torch.ao.quantization as tq

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
            self.fc1, self.fc2 = torch.nn.Linear(784, 256), torch.nn.Linear(256, 64)
            self.fc3 = torch.nn.Linear(64, 10)

        def forward(self, x):
            x = torch.relu(self.fc1(self.quant(x)))
            return self.dequant(self.fc3(torch.relu(self.fc2(x))))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = Net()
        m.qconfig = tq.get_default_qat_qconfig("fbgemm")
        tq.prepare_qat(m.train(), inplace=True)
        tq.convert(m.eval(), inplace=True)
        m.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
    return m


def test_int8_loader_and_onnx_export_match_pytorch(paper, mnist, data_dir, tmp_path):
    _, n2 = paper
    x, labels = mnist
    ref = torch_int8_model(data_dir / "fnn-repair" / "mnist_fnn_s_quan.pth")
    with torch.no_grad():
        want = ref(torch.tensor(x, dtype=torch.float32)).numpy().astype(np.float64)
    # every output of all 10,000 test images, exactly
    assert np.array_equal(n2.forward(x.astype(np.float32).astype(np.float64)), want)
    assert abs(np.mean(want.argmax(1) == labels) - 0.9061) < 1e-9  # the figure measured here
    model = quantized_to_model(n2)
    path = tmp_path / "q.onnx"
    onnx.save(model, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xs = x[:300].astype(np.float32)
    got = np.concatenate([sess.run(None, {"input": xi[None]})[0] for xi in xs])
    assert np.array_equal(got, want[:300])
    back = quantized_from_model(onnx.load(path), "q.onnx")
    assert np.array_equal(back.forward(xs.astype(np.float64)), want[:300])


def test_written_sums_are_exact_where_int16_pairs_would_saturate():
    # codes 255 against weights +-127: onnxruntime's MatMulInteger (uint8 x int8) saturates
    # pairs of products at int16 on x86 without VNNI; the written int32 MatMul must not
    rng = np.random.default_rng(7)
    w1 = rng.choice([-128.0, -127.0, 127.0], size=(16, 64))
    w1[:8] = 127.0  # rows whose exact sums are far beyond any int16 pair
    w2 = rng.integers(-128, 128, size=(3, 16)).astype(np.float64)
    zeros = rng.integers(-3, 4, size=3).astype(np.float64)  # per output channel
    net = QuantizedNetwork(Quantizer(1 / 255, 0), (
        QuantizedLayer(w1, np.full(16, 1e-3), np.zeros(16), rng.normal(0, 1, 16),
                       Quantizer(0.05, 0)),
        QuantizedLayer(w2, np.full(3, 2e-3), zeros, rng.normal(0, 1, 3), Quantizer(0.1, 128))))
    model = quantized_to_model(net)
    assert "MatMulInteger" not in {n.op_type for n in model.graph.node}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.vstack([np.ones(64), rng.uniform(0.9, 1, size=(200, 64))]).astype(np.float32)
    got = np.concatenate([sess.run(None, {"input": xi[None]})[0] for xi in x])
    want = net.forward(x.astype(np.float64))
    assert np.array_equal(got, want.astype(np.float32))
    back = quantized_from_model(model, "written")
    assert np.array_equal(back.forward(x.astype(np.float64)), want)
    assert np.array_equal(back.layers[1].w_zero_points, zeros)


def test_the_earlier_matmulinteger_form_still_reads():
    # what nnbisim wrote before the int32 form: codes -> MatMulInteger -> float64 scaling
    rng = np.random.default_rng(8)
    w = rng.integers(-20, 21, size=(5, 3)).astype(np.int8)
    N, C = helper.make_node, numpy_helper.from_array
    f64 = TensorProto.DOUBLE
    nodes = [N("Cast", ["x"], ["xd"], to=f64), N("Div", ["xd", "s"], ["d"]),
             N("Round", ["d"], ["r"]), N("Add", ["r", "z"], ["a"]),
             N("Clip", ["a", "lo", "hi"], ["c"]), N("Cast", ["c"], ["q"], to=TensorProto.UINT8),
             N("MatMulInteger", ["q", "W", "zq", "zw"], ["acc"]),
             N("Cast", ["acc"], ["accd"], to=f64), N("Mul", ["accd", "sw"], ["m"]),
             N("Add", ["m", "b"], ["y64"]), N("Cast", ["y64"], ["y"], to=TensorProto.FLOAT)]
    inits = [C(np.array(0.1), "s"), C(np.array(7.0), "z"), C(np.array(0.0), "lo"),
             C(np.array(255.0), "hi"), C(w, "W"), C(np.array(7, np.uint8), "zq"),
             C(np.array(0, np.int8), "zw"), C(np.full(3, 0.01), "sw"), C(np.arange(3.0), "b")]
    g = helper.make_graph(nodes, "old", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                       [1, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    net = quantized_from_model(m, "old.onnx")
    assert net.input == Quantizer(0.1, 7) and net.layers[0].out is None
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.uniform(-1, 5, size=(100, 5)).astype(np.float32)
    got = np.concatenate([sess.run(None, {"x": xi[None]})[0] for xi in x])
    assert np.array_equal(got, net.forward(x.astype(np.float64)).astype(np.float32))


def test_float_state_dict_scores_as_measured(paper, mnist):
    n1, _ = paper
    x, labels = mnist
    assert abs(np.mean(n1.forward(x).argmax(1) == labels) - 0.9713) < 1e-9


def _qdq_model(rng):
    """A 6-5-3 network in the QDQ form quantization tools write (weights (in, out))."""
    w1 = rng.integers(-127, 128, size=(6, 5)).astype(np.int8)
    w2 = rng.integers(-127, 128, size=(5, 3)).astype(np.int8)
    s1, s2 = rng.uniform(0.001, 0.01, 5).astype(np.float32), np.float32(0.004)
    b1, b2 = rng.normal(0, 0.2, 5).astype(np.float32), rng.normal(0, 0.2, 3).astype(np.float32)
    init = [numpy_helper.from_array(v, n) for v, n in [
        (w1, "w1"), (s1, "s1"), (np.zeros(5, np.int8), "z1"), (w2, "w2"),
        (np.array(s2), "s2"), (np.array(0, np.int8), "z2"), (b1, "b1"), (b2, "b2"),
        (np.array(0.02, np.float32), "sx"), (np.array(128, np.uint8), "zx"),
        (np.array(0.05, np.float32), "sh"), (np.array(0, np.uint8), "zh"),
        (np.array(0.03, np.float32), "so"), (np.array(100, np.uint8), "zo")]]
    N = helper.make_node
    nodes = [N("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             N("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             N("DequantizeLinear", ["w1", "s1", "z1"], ["w1d"], axis=1),
             N("MatMul", ["xd", "w1d"], ["m1"]), N("Add", ["m1", "b1"], ["a1"]),
             N("Relu", ["a1"], ["r1"]),
             N("QuantizeLinear", ["r1", "sh", "zh"], ["hq"]),
             N("DequantizeLinear", ["hq", "sh", "zh"], ["hd"]),
             N("DequantizeLinear", ["w2", "s2", "z2"], ["w2d"]),
             N("MatMul", ["hd", "w2d"], ["m2"]), N("Add", ["m2", "b2"], ["a2"]),
             N("QuantizeLinear", ["a2", "so", "zo"], ["oq"]),
             N("DequantizeLinear", ["oq", "so", "zo"], ["y"])]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                       [1, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                          initializer=init)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def test_qdq_onnx_reads_into_the_model(tmp_path):
    rng = np.random.default_rng(3)
    m = _qdq_model(rng)
    net = quantized_from_model(m, "qdq")
    assert net.input == Quantizer(np.float32(0.02), 128) and net.layers[1].out.zero_point == 100
    # onnxruntime's graph optimiser fuses QDQ into integer kernels with their own
    # requantization (measured: 7 of 500 outputs differ by one step); the standard's
    # semantics are the unfused graph
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = rng.uniform(-2, 2, size=(500, 6)).astype(np.float32)
    got = np.concatenate([sess.run(None, {"x": xi[None]})[0] for xi in x])
    assert np.max(np.abs(got - net.forward(x.astype(np.float64)))) < 1e-6


def test_rounding_known_answer():
    # N1(x) = x, N2(x) = round(x): over [0.2, 0.8], x - round(x) reaches 0.5 at the tie x = 0.5
    # (rounded to 0) and comes arbitrarily close to -0.5 just above it
    n1 = Network.from_weights([np.array([[1.0]])], [np.zeros(1)])
    n2 = QuantizedNetwork(Quantizer(1.0, 0), (QuantizedLayer(np.array([[1.0]]), np.ones(1),
                                                             np.zeros(1), np.zeros(1), None),))
    for cells in (100, 0):  # exact cells, then branch and bound
        d = discrepancy(n1, n2, np.array([0.2]), np.array([0.8]),
                        options=DiscrepancyOptions(max_cells=cells))
        o = d.outputs[0]
        assert o.max_certified == pytest.approx(0.5, abs=1e-12)
        assert o.min_certified == pytest.approx(-0.5, abs=1e-12)
        assert o.max_witnessed == pytest.approx(0.5, abs=1e-12)
        assert -0.5 <= o.min_witnessed < -0.45
        assert o.min_certified <= -0.5 and o.max_certified >= 0.5


def _random_pair(rng, sizes, scale):
    ws = [rng.normal(0, 1 / np.sqrt(a), size=(b, a))
          for a, b in zip(sizes, sizes[1:], strict=False)]
    bs = [rng.normal(0, 0.1, size=b) for b in sizes[1:]]
    n1 = Network.from_weights(ws, bs)
    layers = []
    for k, (w, b) in enumerate(zip(ws, bs, strict=True)):
        s = np.abs(w).max(1) / 127.5
        out = Quantizer(0.02, 0) if k < len(ws) - 1 else Quantizer(0.02, 128)
        layers.append(QuantizedLayer(np.clip(np.rint(w / s[:, None]), -128, 127), s,
                                     np.zeros(len(s)), b, out))
    return n1, QuantizedNetwork(Quantizer(scale, 128), tuple(layers))


@pytest.mark.parametrize("seed", range(4))
def test_certified_contains_dense_samples_and_witnesses_replay(seed):
    rng = np.random.default_rng(seed)
    n1, n2 = _random_pair(rng, [3, 12, 8, 2], 0.05)
    c = rng.uniform(-1, 1, 3)
    lo, hi = c - 0.15, c + 0.15
    x = rng.uniform(lo, hi, size=(200_000, 3))
    d_true = n1.forward(x) - n2.forward(x)
    for cells in (100_000, 0):
        # the branch and bound (no cells) stops on its work limit, the same on any machine; the
        # time budget is only a safety net
        d = discrepancy(n1, n2, lo, hi, options=DiscrepancyOptions(max_cells=cells,
                                                                   time_budget=300,
                                                                   max_boxes=600))
        for o in d.outputs:
            i = o.index
            assert o.min_certified <= d_true[:, i].min() + 1e-12
            assert o.max_certified >= d_true[:, i].max() - 1e-12
            assert o.min_certified <= o.min_witnessed <= o.max_witnessed <= o.max_certified
            for side, val in ((0, o.min_witnessed), (1, o.max_witnessed)):
                xw = d.witness_x[i, side]
                assert np.all((xw >= lo) & (xw <= hi))
                assert (n1.forward(xw) - n2.forward(xw))[i] == pytest.approx(val, abs=1e-12)
        if cells:  # exact cells: the gap is CROWN's on tiny cells only
            gap = max(o.max_certified - o.max_witnessed for o in d.outputs)
            assert gap < 0.05
        else:  # a root box and two halves per split: at most 600 bounded
            assert d.method == "branch and bound" and 2 * d.cells - 1 <= 600
        # N2's range is certified too
        y2 = n2.forward(x)
        assert np.all(d.y2[:, 0] <= y2.min(0)) and np.all(d.y2[:, 1] >= y2.max(0))


def test_paper_region_is_exact_and_sound(paper, mnist):
    n1, n2 = paper
    x, _ = mnist
    idx, _ = paper_images()[0]
    lo, hi = patch_box(x[idx])
    d = discrepancy(n1, n2, lo, hi)
    assert d.method == "exact cells"
    xs = np.random.default_rng(0).uniform(lo, hi, size=(5000, 784))
    dd = n1.forward(xs) - n2.forward(xs)
    for o in d.outputs:
        assert o.min_certified <= dd[:, o.index].min() and o.max_certified >= dd[:, o.index].max()
        assert o.max_certified - o.max_witnessed < 1e-5  # witnesses are float32 points


def test_bad_inputs_are_refused(paper):
    n1, n2 = paper
    with pytest.raises(InputError, match="empty"):
        discrepancy(n1, n2, np.ones(784), np.zeros(784))
    with pytest.raises(ShapeMismatchError, match="784"):
        discrepancy(n1, n2, np.zeros(5), np.ones(5))
    with pytest.raises(InputError, match="neither network is quantized"):
        discrepancy(n1, n1, np.zeros(784), np.zeros(784))
