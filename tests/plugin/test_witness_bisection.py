"""Witnesses replay on the original files; Marabou bisection closes a bracket on known answers."""

from __future__ import annotations

import time

import numpy as np
import pytest
from netbuild import random_network, save

from nnbisim.adapters.merge import merge_networks
from nnbisim.adapters.onnx_write import network_to_model
from nnbisim.bisection import Bracket, bisect
from nnbisim.model import Network
from nnbisim.specs.sets import Box, InputSet
from nnbisim.verifiers import get_verifier
from nnbisim.witness import find_witnesses, onnx_replay


def shifted(net: Network, shift: np.ndarray) -> Network:
    ws = [layer.weight for layer in net.layers]
    bs = [layer.bias for layer in net.layers]
    bs[-1] = bs[-1] - shift
    return Network.from_weights(ws, bs, net.input_shape)


def test_identical_and_shifted_networks():
    rng = np.random.default_rng(0)
    net = random_network([4, 10, 10, 3], rng)
    inputs = InputSet.of(Box(-np.ones(4), np.ones(4)))
    assert all(w.value == 0.0 for w in find_witnesses(net, net, inputs))
    shift = np.array([0.5, -0.25, 2.0])
    wits = find_witnesses(net, shifted(net, shift), inputs)
    for w in wits:
        assert w.value == pytest.approx(w.sign * shift[w.index], abs=1e-12)
        assert inputs.boxes[0].contains(w.x)


def test_witnesses_are_replayed_on_the_files(tmp_path):
    rng = np.random.default_rng(1)
    n1, n2 = random_network([3, 16, 16, 2], rng), random_network([3, 8, 2], rng)
    p1 = save(network_to_model(n1), tmp_path / "n1.onnx")
    p2 = save(network_to_model(n2), tmp_path / "n2.onnx")
    box = Box([-1, -1, 0], [1, 0.5, 1])
    replay = onnx_replay(p1, p2)
    wits = find_witnesses(n1, n2, InputSet.of(box), replay)
    xs = box.sample(100000, rng)
    dense = n1.forward(xs) - n2.forward(xs)
    for w in wits:
        assert w.value == w.sign * replay(w.x[None])[0, w.index]  # exactly the replayed value
        assert box.contains(w.x)
        assert w.value >= 0.9 * np.max(w.sign * dense[:, w.index]) - 1e-6


@pytest.mark.marabou
def test_marabou_bisection_finds_the_kink(tmp_path):
    relu = Network.from_weights([np.array([[2.0]]), np.array([[1.0]])], [[0.0], [0.0]])
    zero = Network.from_weights([np.array([[0.0]])], [[0.25]])
    p1 = save(network_to_model(relu), tmp_path / "relu.onnx")
    p2 = save(network_to_model(zero), tmp_path / "zero.onnx")
    merged = save(network_to_model(merge_networks(relu, zero).network), tmp_path / "m.onnx")
    inputs = InputSet.of(Box([-1.0], [0.5]))  # max of 2 relu(x) - 0.25 is 0.75 at x = 0.5
    br = Bracket(0, 1, witnessed=0.1, certified=3.0, witness_x=np.array([0.2]))
    bisect(br, merged, inputs, 1, 0, get_verifier("marabou"), onnx_replay(p1, p2), tmp_path,
           rel_gap=0.01, deadline=time.perf_counter() + 120)
    assert br.stopped == "gap"
    assert 0.75 - 1e-6 <= br.certified <= 0.75 * 1.01 + 1e-6
    assert 0.75 / 1.01 - 1e-6 <= br.witnessed <= 0.75 + 1e-6  # Marabou's point, replayed
    assert {q.status for q in br.queries} <= {"sat", "unsat"} and len(br.queries) >= 2
