"""Witnesses replay on the original files; Marabou bisection closes a bracket on known answers."""

from __future__ import annotations

import time

import numpy as np
import pytest
from netbuild import random_network, save

from nnbisim.adapters.merge import merge_networks
from nnbisim.adapters.onnx_write import network_to_model
from nnbisim.core.model import Network
from nnbisim.core.verdict import Status, Verdict
from nnbisim.search.bisection import Bracket, ExactQueries, bisect
from nnbisim.search.stop import StopReason
from nnbisim.search.witness import find_witnesses, onnx_replay
from nnbisim.specs.sets import Box, InputSet
from nnbisim.tasks.epsilon import compute_epsilon
from nnbisim.tasks.options import EpsilonOptions
from nnbisim.verifiers.registry import get_verifier


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
    asks = ExactQueries(merged, inputs, 1, 0, get_verifier("marabou"), onnx_replay(p1, p2),
                        tmp_path, rel_gap=0.01)
    bisect(br, asks, deadline=time.perf_counter() + 120)
    assert br.stopped == "gap"
    assert 0.75 - 1e-6 <= br.certified <= 0.75 * 1.01 + 1e-6
    assert 0.75 / 1.01 - 1e-6 <= br.witnessed <= 0.75 + 1e-6  # Marabou's point, replayed
    assert {q.status.vnncomp for q in br.queries} <= {"sat", "unsat"} and len(br.queries) >= 2


@pytest.mark.marabou
def test_marabou_bisection_agrees_with_the_bound_engine(tmp_path):
    """On a small pair the exact search and the own branch and bound meet within the gap."""
    rng = np.random.default_rng(3)
    n1, n2 = random_network([2, 8, 8, 1], rng), random_network([2, 4, 1], rng)
    p1 = save(network_to_model(n1), tmp_path / "n1.onnx")
    p2 = save(network_to_model(n2), tmp_path / "n2.onnx")
    merged = save(network_to_model(merge_networks(n1, n2).network), tmp_path / "m.onnx")
    inputs = InputSet.of(Box([-1.0, -1.0], [1.0, 1.0]))
    own = compute_epsilon(p1, p2, inputs,
                          options=EpsilonOptions(verifier="bounds", aim="outputs", rel_gap=0.01,
                                                 time_budget=20))
    (out,) = own.outputs
    wits = {(w.index, w.sign): w for w in find_witnesses(n1, n2, inputs, onnx_replay(p1, p2))}
    start = wits[0, 1]
    br = Bracket(0, 1, witnessed=start.value / 2, certified=10 * out.max_certified + 1,
                 witness_x=start.x)
    asks = ExactQueries(merged, inputs, 1, 0, get_verifier("marabou"), onnx_replay(p1, p2),
                        tmp_path, rel_gap=0.01)
    bisect(br, asks, deadline=time.perf_counter() + 120)
    assert br.stopped == "gap"
    lo, hi = max(br.witnessed, out.max_witnessed), min(br.certified, out.max_certified)
    assert lo <= hi * (1 + 1e-6) + 1e-9  # the two brackets overlap
    assert br.certified >= out.max_witnessed - 1e-6 and out.max_certified >= br.witnessed - 1e-6


def test_polisher_climbs_inside_the_boxes():
    from nnbisim.search.witness import polisher

    rng = np.random.default_rng(4)
    n1, n2 = random_network([3, 12, 12, 2], rng), random_network([3, 6, 2], rng)
    inputs = InputSet([Box([-1, -1, -1], [0, 0, 0]), Box([0.5, 0.5, 0.5], [1, 1, 1])])
    starts = np.concatenate([inputs.boxes[0].sample(5, rng), inputs.boxes[1].sample(5, rng)])
    ends = polisher(n1, n2, inputs, steps=30)(starts)
    assert ends.shape == (4 * 10, 3)
    inside = [any(b.contains(x) for b in inputs.boxes) for x in ends]
    assert all(inside)
    d0 = n1.forward(starts) - n2.forward(starts)
    d1 = (n1.forward(ends) - n2.forward(ends)).reshape(4, 10, 2)
    for k, (i, s) in enumerate([(0, 1), (0, -1), (1, 1), (1, -1)]):
        assert np.all(s * d1[k, :, i] >= s * d0[:, i] - 1e-12)  # climbing never goes down


class _SatJustBelow:
    """A verifier that answers sat with a point the replay puts just below the threshold (a
    float32 file a hair above the originals): bisection must not ask it again."""

    name = "fake"

    def __init__(self) -> None:
        self.asked = 0

    def check(self, model, prop, timeout):
        self.asked += 1
        return Verdict(Status.VIOLATED, self.name, counterexample=np.array([0.0]))


def test_bisection_never_asks_the_same_query_twice(tmp_path):
    tool = _SatJustBelow()
    below = 0.5 - 1e-7  # within the replay tolerance of t = 0.5, not above the witness
    replay = lambda x: np.full((len(x), 1), below)  # noqa: E731
    br = Bracket(0, 1, witnessed=below, certified=0.5 + 1e-7, witness_x=np.array([0.0]))
    asks = ExactQueries(tmp_path / "m.onnx", InputSet.of(Box([-1.0], [1.0])), 1, 0, tool,
                        replay, tmp_path, rel_gap=0.0, abs_gap=0.0)
    bisect(br, asks, deadline=time.perf_counter() + 60)
    assert tool.asked == 1 and br.stopped is StopReason.NO_PROGRESS
    assert br.certified == 0.5 + 1e-7  # a sat never lowers the certified bound
