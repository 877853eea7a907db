"""Marabou reads merged networks of every kind and answers discrepancy properties both ways."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA, acas_net
from netbuild import random_network, save

from nnbisim.adapters.merged_onnx import merge_files
from nnbisim.adapters.onnx_write import network_to_model
from nnbisim.adapters.replay import replay_difference
from nnbisim.adapters.torch_io import load_state_dict_network
from nnbisim.specs.discrepancy import violation_property
from nnbisim.specs.sets import Box, InputSet
from nnbisim.specs.vnnlib1 import write_vnnlib1
from nnbisim.verifiers.registry import get_verifier

pytestmark = pytest.mark.marabou


def marabou_both_ways(tmp_path, n1, n2, center, radius, index, sign=1):
    """A generous threshold is proved unreachable; a too-small one gives a real counterexample."""
    merged = save(merge_files(n1, n2), tmp_path / "merged.onnx")
    x = np.random.default_rng(0).uniform(center - radius, center + radius,
                                         size=(2000, center.size))
    y1, y2 = replay_difference(n1, n2, x)
    top = float((sign * (y1 - y2))[:, index].max())
    inputs = InputSet.of(Box(center - radius, center + radius))
    marabou = get_verifier("marabou")
    for t, want in ((top + 1.0, "holds"), (top - 0.5 * abs(top) - 1e-4, "violated")):
        prop = tmp_path / f"{want}.vnnlib"
        write_vnnlib1(violation_property(inputs, y1.shape[1], index, sign, t), prop)
        verdict = marabou.check(merged, prop, 120)
        assert verdict.status.value == want, verdict
        if want == "violated":
            a, b = replay_difference(n1, n2, verdict.counterexample.reshape(1, -1))
            assert sign * (a - b)[0, index] >= t - 1e-5


def test_second_paper_pair(tmp_path, data_dir):
    fnn = DATA / "fnn-repair"
    ori, _ = load_state_dict_network(fnn / "mnist_fnn_l_ori.pth", (1, 784))
    quan, _ = load_state_dict_network(fnn / "mnist_fnn_s_quan.pth", (1, 784))
    p1 = save(network_to_model(ori), tmp_path / "ori.onnx")
    p2 = save(network_to_model(quan), tmp_path / "quan.onnx")
    center = np.random.default_rng(0).uniform(-1, 1, 784)
    marabou_both_ways(tmp_path, p1, p2, center, 0.002, index=3)


@pytest.mark.parametrize("acas_first", [True, False])
def test_acasxu_against_a_shallow_network(tmp_path, acas_dir, acas_first):
    small = save(network_to_model(random_network([5, 12, 12, 5], np.random.default_rng(2),
                                                 input_shape=(1, 5))), tmp_path / "small.onnx")
    pair = (acas_net(1, 1), small) if acas_first else (small, acas_net(1, 1))
    marabou_both_ways(tmp_path, *pair, np.array([0.0, 0.1, -0.1, 0.2, 0.3]), 0.02, index=1,
                      sign=-1)


def test_network_without_hidden_layer_against_a_deep_one(tmp_path):
    rng = np.random.default_rng(3)
    linear = save(network_to_model(random_network([3, 2], rng)), tmp_path / "linear.onnx")
    deep = save(network_to_model(random_network([3, 6, 6, 6, 2], rng)), tmp_path / "deep.onnx")
    # a box with negative inputs: the linear network's input passes the padding split in two
    marabou_both_ways(tmp_path, deep, linear, np.array([-0.5, 0.2, -0.8]), 0.3, index=0)
