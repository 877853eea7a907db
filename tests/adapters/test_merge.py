"""The comparison construction: exact answers on hand-built pairs, onnxruntime on real files."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from conftest import DATA, acas_net
from netbuild import matmul_add_model, random_network, save, torch_export

from nnbisim.adapters.merge import merge_networks
from nnbisim.adapters.merged_meta import fold_error, merged_layout
from nnbisim.adapters.merged_onnx import exact_model, merge_files
from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.onnx_write import network_to_model
from nnbisim.adapters.torch_io import load_state_dict_network
from nnbisim.core.errors import ShapeMismatchError
from nnbisim.core.model import Network
from nnbisim.tasks.check import check_merged

RNG = np.random.default_rng(7)


def write(net: Network, path, dtype="float32"):
    return save(network_to_model(net, dtype=dtype), path)


def assert_merge_agrees(tmp_path, p1, p2, lower, upper, samples=2000, **kw):
    """Merged file == N1 - N2 in onnxruntime within 1e-5 relative, for every form asked."""
    out = tmp_path / f"merged_{kw.get('form', 'seq')}_{kw.get('outputs', 'diff')}.onnx"
    model = merge_files(p1, p2, **kw)
    onnx.checker.check_model(model, full_check=True)
    save(model, out)
    rep = check_merged(out, p1, p2, np.asarray(lower, float), np.asarray(upper, float), samples)
    assert rep.passed(1e-5), rep
    return rep


def dyadic_network(sizes: list[int]) -> Network:
    """Weights and biases on a grid of 1/4: with such inputs every float64 operation is exact."""
    ws = [RNG.integers(-4, 5, size=(o, i)) / 4 for i, o in zip(sizes[:-1], sizes[1:],
                                                                strict=True)]
    bs = [RNG.integers(-4, 5, size=o) / 4 for o in sizes[1:]]
    return Network.from_weights(ws, bs)


def dyadic_inputs(n: int, dim: int) -> np.ndarray:
    return RNG.integers(-12, 13, size=(n, dim)) / 4


def test_identical_networks_give_exactly_zero():
    net = dyadic_network([4, 8, 8, 3])
    merged = merge_networks(net, net)
    x = dyadic_inputs(500, 4)
    assert np.array_equal(merged.network.forward(x), np.zeros((500, 3)))
    rand = random_network([4, 8, 8, 3], RNG)  # with arbitrary weights, zero up to rounding
    assert np.abs(merge_networks(rand, rand).network.forward(x)).max() < 1e-13


def test_shifted_output_bias_gives_exactly_that_shift():
    net = dyadic_network([4, 8, 3])
    shift = np.array([0.25, -1.5, 3.0])
    layers = list(net.layers)
    other = Network.from_weights([lay.weight for lay in layers],
                                 [*[lay.bias for lay in layers[:-1]], layers[-1].bias - shift])
    x = dyadic_inputs(500, 4)
    np.testing.assert_array_equal(merge_networks(net, other).network.forward(x),
                                  np.tile(shift, (500, 1)))


@pytest.mark.parametrize("d1,d2", [(0, 0), (0, 3), (3, 0), (1, 4), (4, 1), (2, 9), (9, 2)])
def test_depths_and_widths_in_memory(d1, d2):
    n1 = random_network([5, *[7] * d1, 2], RNG)
    n2 = random_network([5, *[3] * d2, 2], RNG)
    x = RNG.uniform(-2, 2, size=(1000, 5))
    for outputs in ("diff", "all"):
        m = merge_networks(n1, n2, outputs)
        assert m.network.depth == max(d1, d2)
        want = n1.forward(x) - n2.forward(x)
        got = m.network.forward(x)
        if outputs == "all":
            np.testing.assert_allclose(got[:, :2], n1.forward(x), atol=1e-12)
            np.testing.assert_allclose(got[:, 2:4], n2.forward(x), atol=1e-12)
            got = got[:, m.diff_offset:]
        np.testing.assert_allclose(got, want, atol=1e-12)
        np.testing.assert_allclose(m.stacked.forward(x) @ m.comparison.T, m.network.forward(x),
                                   atol=1e-12)


@pytest.mark.parametrize("j", [2, 5, 9])
def test_acasxu_pairs(tmp_path, acas_dir, j):
    lo, hi = -0.5 * np.ones(5), 0.5 * np.ones(5)
    assert_merge_agrees(tmp_path, acas_net(1, 1), acas_net(3, j), lo, hi)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("acas_first", [True, False])
def test_acasxu_against_smaller_networks(tmp_path, acas_dir, depth, acas_first):
    small = write(random_network([5, *[10 + 5 * depth] * depth, 5], RNG, input_shape=(1, 5)),
                  tmp_path / "small.onnx")
    pair = (acas_net(2, 3), small) if acas_first else (acas_net(2, 3), small)[::-1]
    for kw in ({}, {"outputs": "all"}, {"separate_comparison": True}, {"form": "graph"}):
        assert_merge_agrees(tmp_path, *pair, -0.5 * np.ones(5), 0.5 * np.ones(5), 1000, **kw)


def test_mnist_shaped_pair_with_different_input_shapes(tmp_path):
    big = random_network([784, 256, 64, 10], RNG)
    small = random_network([784, 64, 10], RNG)
    p1 = save(matmul_add_model(big, (1, 784, 1), weights_left=True), tmp_path / "big.onnx")
    p2 = save(matmul_add_model(small, (1, 1, 28, 28)), tmp_path / "small.onnx")
    for kw in ({}, {"form": "graph"}, {"outputs": "all"}):
        assert_merge_agrees(tmp_path, p1, p2, np.zeros(784), np.ones(784), 1000, **kw)


def test_second_paper_pair(tmp_path, data_dir):
    ori, _ = load_state_dict_network(DATA / "fnn-repair" / "mnist_fnn_l_ori.pth", (1, 784))
    quan, _ = load_state_dict_network(DATA / "fnn-repair" / "mnist_fnn_s_quan.pth", (1, 784))
    p1, p2 = write(ori, tmp_path / "ori.onnx"), write(quan, tmp_path / "quan.onnx")
    rep = assert_merge_agrees(tmp_path, p1, p2, -np.ones(784), np.ones(784), 2000)
    assert rep.max_abs_diff > 0  # the int8 copy really differs


def test_normalisation_nodes_and_torch_exports(tmp_path):
    torch.manual_seed(3)
    mod = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 20), torch.nn.ReLU(),
                              torch.nn.Linear(20, 4))
    p1 = save(torch_export(mod, (1, 1, 6, 6)), tmp_path / "torch.onnx")
    net = random_network([36, 12, 12, 12, 4], RNG)
    p2 = save(matmul_add_model(net, (1, 36), normalise=(RNG.uniform(size=36),
                                                         RNG.uniform(0.5, 1, 36))),
              tmp_path / "norm.onnx")
    assert_merge_agrees(tmp_path, p1, p2, np.zeros(36), np.ones(36))


def test_graph_form_takes_convolutions(tmp_path):
    torch.manual_seed(4)
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(3 * 4 * 4, 5))
    p1 = save(torch_export(conv, (1, 1, 6, 6)), tmp_path / "conv.onnx")
    p2 = write(random_network([36, 10, 5], RNG, input_shape=(1, 36)), tmp_path / "mlp.onnx")
    assert_merge_agrees(tmp_path, p1, p2, np.zeros(36), np.ones(36), form="graph")
    with pytest.raises(Exception, match="Conv"):
        merge_files(p1, p2)


def test_merged_file_records_its_layout(tmp_path, acas_dir):
    model = merge_files(acas_net(1, 1), acas_net(1, 2), outputs="all")
    assert merged_layout(model) == ("all", 5)


def test_size_mismatches_are_refused(tmp_path):
    a = random_network([4, 6, 2], RNG)
    with pytest.raises(ShapeMismatchError, match="inputs"):
        merge_networks(a, random_network([5, 6, 2], RNG))
    with pytest.raises(ShapeMismatchError, match="outputs"):
        merge_networks(a, random_network([4, 6, 3], RNG))
    p1 = write(a, tmp_path / "a.onnx")
    p2 = write(random_network([5, 6, 2], RNG), tmp_path / "b.onnx")
    with pytest.raises(ShapeMismatchError):
        merge_files(p1, p2, form="graph")


def test_loaded_acas_network_round_trips_through_the_writer(tmp_path, acas_dir):
    net = load_network(acas_net(4, 4))
    again = load_network(write(net, tmp_path / "again.onnx", dtype="float64"))
    for a, b in zip(net.layers, again.layers, strict=True):
        np.testing.assert_array_equal(a.weight, b.weight)


def test_the_file_nnbisim_certifies_with_stores_the_pair_unrounded(tmp_path):
    """b1 = 1, b2 = 2**-30: folded into float32, b1 - b2 is stored as 1.0 (an error of 9.3e-10
    that an exact verifier's unsat would silently carry). The exact form keeps the comparison
    as its own layer, so every stored number is one of the pair's; a weight that is not a
    float32 number makes the whole file float64."""
    one = Network.from_weights([np.array([[1.0]])], [[1.0]])
    tiny = Network.from_weights([np.array([[1.0]])], [[2.0**-30]])
    p1, p2 = write(one, tmp_path / "one.onnx"), write(tiny, tmp_path / "tiny.onnx")
    folded = merge_files(p1, p2)
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in folded.graph.initializer}
    assert float(stored["layer1_B"][0]) == 1.0  # the rounding the exact form avoids
    assert fold_error(folded) == 2.0**-30  # recorded, and printed by nnbisim merge
    exact = merge_files(p1, p2, exact=True)
    stored = {t.name: onnx.numpy_helper.to_array(t).astype(np.float64)
              for t in exact.graph.initializer}
    assert stored["layer1_B"].tolist() == [1.0, 2.0**-30]
    assert stored["compare_W"].tolist() == [[1.0, -1.0]] and stored["compare_B"].tolist() == [0.0]
    assert exact.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    tenth = Network.from_weights([np.array([[0.1]])], [[0.0]])  # 0.1 is no float32 number
    merged = merge_networks(tenth, tiny)
    model = exact_model(merged)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    w = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}["layer1_W"]
    assert w[0, 0] == 0.1
