"""ONNX -> Network on real exports and hand-built graphs, checked against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import DATA, acas_net
from netbuild import matmul_add_model, random_network, save, torch_export, torch_forward
from onnx import TensorProto, helper, numpy_helper

from nnbisim.adapters.onnx_load import load_network, network_from_model
from nnbisim.adapters.torch_io import load_state_dict_network
from nnbisim.core.errors import InputError, UnsupportedModelError


def ort_forward(model: onnx.ModelProto, x: np.ndarray, shape) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.stack([sess.run(None, {name: xi.reshape(shape).astype(np.float32)})[0].ravel()
                     for xi in x]).astype(np.float64)


@pytest.mark.parametrize("i", range(1, 6))
@pytest.mark.parametrize("j", range(1, 10))
def test_all_acasxu_networks_load_and_agree_with_onnxruntime(acas_dir, i, j):
    path = acas_net(i, j)
    net = load_network(path)
    assert net.describe() == "5-50-50-50-50-50-50-5"
    assert net.input_shape == (1, 1, 1, 5)
    x = np.random.default_rng(i * 10 + j).uniform(-0.5, 0.5, size=(20, 5))
    ref = ort_forward(onnx.load(str(path)), x, (1, 1, 1, 5))
    np.testing.assert_allclose(net.forward(x), ref, rtol=1e-5, atol=1e-5)


def test_pytorch_export_with_flatten_gemm_batchnorm(tmp_path):
    torch.manual_seed(0)
    mod = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32),
                              torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Linear(32, 16),
                              torch.nn.ReLU(), torch.nn.Linear(16, 10))
    with torch.no_grad():  # non-trivial running statistics so the fold is really tested
        mod[2].running_mean.uniform_(-1, 1)
        mod[2].running_var.uniform_(0.5, 2)
        mod[2].weight.uniform_(0.5, 1.5)
    model = torch_export(mod, (1, 1, 28, 28))
    assert "BatchNormalization" in {n.op_type for n in model.graph.node}
    net = network_from_model(model, "torch.onnx")
    assert net.describe() == "784-32-16-10" and net.input_shape == (1, 1, 28, 28)
    x = np.random.default_rng(1).uniform(0, 1, size=(50, 784))
    np.testing.assert_allclose(net.forward(x), torch_forward(mod, x, (1, 1, 28, 28)),
                               rtol=1e-4, atol=1e-5)


class ViewNet(torch.nn.Module):
    """``x.view(x.size(0), -1)`` exports as Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(12, 8), torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.view(x.size(0), -1))))


def test_reshape_through_a_computed_shape():
    torch.manual_seed(1)
    mod = ViewNet()
    model = torch_export(mod, (1, 3, 4), dynamic_batch=True)
    assert "Shape" in {n.op_type for n in model.graph.node}
    net = network_from_model(model)
    x = np.random.default_rng(2).normal(size=(30, 12))
    np.testing.assert_allclose(net.forward(x), torch_forward(mod, x, (1, 3, 4)), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("weights_left", [False, True])
def test_matmul_add_with_normalisation_folded_into_first_layer(weights_left):
    rng = np.random.default_rng(3)
    net = random_network([784, 20, 10], rng)
    shape = (1, 784, 1) if weights_left else (1, 1, 28, 28)
    mean, std = rng.uniform(0.1, 0.5, 784), rng.uniform(0.2, 0.4, 784)
    model = matmul_add_model(net, shape, normalise=(mean, std), weights_left=weights_left)
    loaded = network_from_model(model)
    assert loaded.describe() == "784-20-10" and loaded.input_shape == shape
    x = rng.uniform(0, 1, size=(40, 784))
    np.testing.assert_allclose(loaded.forward(x), ort_forward(model, x, shape), rtol=1e-4,
                               atol=1e-5)


def test_gemm_attributes_alpha_beta_trans():
    rng = np.random.default_rng(4)
    w, b = rng.normal(size=(3, 6)), rng.normal(size=3)
    inits = [numpy_helper.from_array(w.T.copy().astype(np.float32), "W"),
             numpy_helper.from_array(b.astype(np.float32), "B")]
    node = helper.make_node("Gemm", ["x", "W", "B"], ["y"], alpha=0.5, beta=2.0, transA=1)
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    net = network_from_model(model)
    x = rng.normal(size=6)
    np.testing.assert_allclose(net.forward(x), 0.5 * w @ x + 2.0 * b, rtol=1e-5)
    np.testing.assert_allclose(net.forward(x), ort_forward(model, x[None], (6, 1))[0], rtol=1e-5)


def test_second_paper_networks_load_from_state_dicts():
    ori, q1 = load_state_dict_network(DATA / "fnn-repair" / "mnist_fnn_l_ori.pth")
    quan, q2 = load_state_dict_network(DATA / "fnn-repair" / "mnist_fnn_s_quan.pth")
    assert q1 is None and ori.describe() == quan.describe() == "784-256-64-10"
    assert q2 is not None and [q.scale for q in q2] == [1.0, 1.0, 1.0]
    # the dequantized int8 weights sit on a per-row grid close to the float ones
    assert 0 < np.abs(ori.layers[0].weight - quan.layers[0].weight).max() < 0.05


def _single_op_model(op: str) -> onnx.ModelProto:
    nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["z"], name="fc1", transB=1),
             helper.make_node(op, ["z"], ["y"], name="act1")]
    inits = [numpy_helper.from_array(np.ones((2, 2), np.float32), "W"),
             numpy_helper.from_array(np.zeros(2, np.float32), "B")]
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_unsupported_operator_is_refused_naming_operator_node_and_file(tmp_path):
    path = save(_single_op_model("Sigmoid"), tmp_path / "sig.onnx")
    with pytest.raises(UnsupportedModelError, match=r"sig\.onnx.*act1.*Sigmoid"):
        load_network(path)


def test_branching_graph_is_refused():
    model = _single_op_model("Relu")
    model.graph.node.append(helper.make_node("Add", ["y", "z"], ["w"], name="skip"))
    model.graph.output[0].name = "w"
    with pytest.raises(UnsupportedModelError, match="chain"):
        network_from_model(model)


def test_missing_and_garbage_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_network(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(InputError, match="bad.onnx"):
        load_network(bad)


def _chain(w1: np.ndarray, n_out: int = 2, declared_in: int | None = None,
           raw: bool = True) -> onnx.ModelProto:
    """x -> Gemm(w1) -> Relu -> Gemm -> y; ``declared_in`` overrides the declared input size."""
    width, n_in = w1.shape
    w1_t = (numpy_helper.from_array(w1.astype(np.float32), "W1") if raw else
            helper.make_tensor("W1", TensorProto.FLOAT, w1.shape, w1.ravel().tolist()))
    inits = [w1_t, numpy_helper.from_array(np.zeros(width, np.float32), "B1"),
             numpy_helper.from_array(np.ones((n_out, width), np.float32), "W2"),
             numpy_helper.from_array(np.zeros(n_out, np.float32), "B2")]
    nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="act1"),
             helper.make_node("Gemm", ["r", "W2", "B2"], ["y"], name="fc2", transB=1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                   [1, declared_in or n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_sizes_beyond_the_memory_budget_are_refused_before_allocating(tmp_path, monkeypatch):
    from nnbisim.adapters.onnx_peek import peek

    monkeypatch.delenv("NNBISIM_MEMORY_GB", raising=False)
    wide = tmp_path / "wide.onnx"  # a 1e5-wide layer: its 1e5 x 1e5 matrix would be 74.5 GiB
    onnx.save(_chain(np.zeros((100_000, 2))), str(wide))
    with pytest.raises(InputError, match=r"wide\.onnx: node 'act1' \(Relu\) holds 100000 values"
                       r".*74\.5 GiB, over the memory budget of 4\.0 GiB.*NNBISIM_MEMORY_GB"):
        load_network(wide)
    huge = tmp_path / "huge.onnx"  # declares an input of 1e8 values (np.eye would need 71 PiB)
    onnx.save(_chain(np.ones((3, 2)), declared_in=100_000_000), str(huge))
    for read in (peek, load_network):
        with pytest.raises(InputError, match=r"huge\.onnx: its input holds 100000000 values"):
            read(huge)
    monkeypatch.setenv("NNBISIM_MEMORY_GB", "0.00001")  # 10 KiB: ACAS Xu's 50 x 50 is 19.5 KiB
    with pytest.raises(InputError, match="layer|node"):
        load_network(acas_net(1, 1))
    monkeypatch.setenv("NNBISIM_MEMORY_GB", "lots")
    with pytest.raises(InputError, match=r"\$NNBISIM_MEMORY_GB 'lots'"):
        load_network(acas_net(1, 1))


@pytest.mark.parametrize("raw", [True, False])
def test_nan_and_infinite_weights_are_refused_at_load(tmp_path, raw):
    from nnbisim.adapters.onnx_peek import peek

    w1 = np.ones((3, 2))
    w1[0, 0], w1[2, 1] = np.nan, -np.inf
    path = tmp_path / "nan.onnx"
    onnx.save(_chain(w1, raw=raw), str(path))
    for read in (peek, load_network):
        with pytest.raises(InputError, match=r"nan\.onnx: NaN or infinite values in weight 'W1' "
                           r"\(2 of 6 values\)"):
            read(path)
    # finite in the file, but not once folded: two scalings by 1e300 overflow
    model = _chain(np.ones((3, 2)))
    model.graph.node.insert(1, helper.make_node("Mul", ["h", "k"], ["h1"], name="big1"))
    model.graph.node.insert(2, helper.make_node("Mul", ["h1", "k"], ["h2"], name="big2"))
    model.graph.node[3].input[0] = "h2"
    model.graph.initializer.append(numpy_helper.from_array(np.full(3, 1e300), "k"))
    with pytest.raises(UnsupportedModelError, match="layer 1 has NaN or infinite weights"):
        network_from_model(model, "big.onnx")
    # a batch normalisation of negative variance
    model = _chain(np.ones((3, 2)))
    model.graph.node.insert(1, helper.make_node("BatchNormalization",
                                                ["h", "s", "b", "m", "v"], ["hb"], name="bn"))
    model.graph.node[2].input[0] = "hb"
    model.graph.initializer.extend([numpy_helper.from_array(a.astype(np.float32), n) for n, a in
                                    (("s", np.ones(3)), ("b", np.zeros(3)), ("m", np.zeros(3)),
                                     ("v", -np.ones(3)))])
    with pytest.raises(UnsupportedModelError, match="'bn'.*variance plus epsilon"):
        network_from_model(model, "bn.onnx")


def test_state_dicts_with_nan_weights_are_refused(tmp_path):
    path = tmp_path / "nan.pth"
    torch.save({"fc1.weight": torch.tensor([[1.0, float("nan")]]), "fc1.bias": torch.zeros(1),
                "fc2.weight": torch.ones(1, 1), "fc2.bias": torch.zeros(1)}, path)
    with pytest.raises(InputError, match=r"nan\.pth: NaN or infinite values in layer 'fc1'"):
        load_state_dict_network(path)


def test_refusals_of_other_graphs_say_what_works(tmp_path):
    path = save(_single_op_model("Sigmoid"), tmp_path / "sig.onnx")
    with pytest.raises(UnsupportedModelError) as err:
        load_network(path)
    assert "nnbisim merge --form graph" in str(err.value) and "(use --form" not in str(err.value)


def test_weight_first_matmul_on_a_1d_input_and_gzip_files(acas_dir, tmp_path):
    # VNN-COMP 2026's pruned ACAS Xu form: input [5], MatMul(W[50,5], x[5]), shipped .onnx.gz
    from nnbisim.adapters.onnx_write import network_to_model, save_model
    from nnbisim.adapters.replay import OnnxRunner

    net = load_network(acas_net(1, 1))
    model = network_to_model(net, form="matmul-1d")
    assert [n.op_type for n in model.graph.node[:3]] == ["MatMul", "Add", "Relu"]
    assert model.graph.node[0].input[0] == "layer1_W"  # the weight first
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [5]
    plain = save_model(model, tmp_path / "n.onnx")
    packed = save_model(model, tmp_path / "n.onnx.gz")
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    x = np.random.default_rng(0).uniform(-0.5, 0.5, size=(20, 5))
    for path in (plain, packed):
        back = load_network(path)
        assert back.input_shape == (5,) and back.describe() == net.describe()
        np.testing.assert_allclose(back.forward(x), net.forward(x), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(OnnxRunner(path).run(x), net.forward(x), atol=1e-5)
    truncated = tmp_path / "cut.onnx.gz"
    truncated.write_bytes(packed.read_bytes()[:40])
    with pytest.raises(InputError, match="cut.onnx.gz"):
        load_network(truncated)


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64", "int64", "int32", "int16",
                                   "int8", "uint8", "uint16", "uint32", "uint64", "bool"])
@pytest.mark.parametrize("raw", [True, False])
def test_tensors_read_without_onnx_match_onnx_numpy_helper(dtype, raw):
    """The light reader of tensors gives onnx's own values, shapes and dtypes, whether they
    are stored as raw bytes or in the typed fields."""
    from nnbisim.adapters.onnx_peek import _protos
    from nnbisim.adapters.onnx_tensors import tensor_array

    values = (np.random.default_rng(0).standard_normal((3, 4)) * 50).astype(dtype)
    t = numpy_helper.from_array(values, "w")
    if not raw:
        t = helper.make_tensor("w", t.data_type, values.shape,
                               values.view(np.uint16).reshape(-1).tolist()
                               if dtype == "float16" else values.reshape(-1).tolist())
    light = _protos().TensorProto.FromString(t.SerializeToString())
    got, want = tensor_array(light), numpy_helper.to_array(t)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want)


def test_a_network_loads_without_importing_onnx(acas_dir, tmp_path):
    """Reading a network (plain or gzip'd) and its merged-file metadata needs onnx's generated
    messages only: ``import onnx`` costs over a second of every command's start-up. Weights
    kept in an external file still load (through onnx itself)."""
    import subprocess
    import sys

    path = acas_net(1, 1)
    code = ("import sys\nfrom nnbisim.adapters.onnx_load import load_network\n"
            "from nnbisim.adapters.merged_meta import merged_layout\n"
            "from nnbisim.adapters.onnx_load import read_model\n"
            f"net = load_network({str(path)!r})\n"
            f"assert merged_layout(read_model({str(path)!r})) is None\n"
            "print(net.out_size, 'onnx' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[-2:] == ["False", "False"]
    model = onnx.load(str(path))
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="ext.data", size_threshold=0)
    assert (tmp_path / "ext.data").stat().st_size > 0
    ext = load_network(tmp_path / "ext.onnx")
    for a, b in zip(ext.layers, load_network(path).layers, strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
