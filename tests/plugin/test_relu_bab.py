"""ReLU-splitting branch and bound: converges, stays sound when cut short."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from netbuild import random_network

from nnbisim.adapters.merge import merge_networks
from nnbisim.core import interrupt
from nnbisim.core.errors import ShapeMismatchError
from nnbisim.core.model import Network
from nnbisim.search.relu_bab import ReluBabOptions, _Frontier, relu_bab_max

# the searches stop on their gap or node limit (the same on any machine); the time budget is
# only a safety net that a loaded machine never reaches
SAFETY = 300.0


def _grid_max(net: Network, c: np.ndarray, n: int = 801) -> float:
    g = np.linspace(-1, 1, n)
    xs = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    return float((net.forward(xs) @ c).max())


@pytest.fixture(scope="module")
def small_net() -> Network:
    return random_network([2, 12, 12, 1], np.random.default_rng(1))


def test_kink_gives_exactly_one() -> None:
    n1 = Network.from_weights([np.array([[1.0]]), np.array([[1.0]])], [np.zeros(1), np.zeros(1)])
    n2 = Network.from_weights([np.array([[1.0]]), np.array([[0.0]])], [np.zeros(1), np.zeros(1)])
    merged = merge_networks(n1, n2).network
    res = relu_bab_max(merged, [-1.0], [1.0], [1.0],
                       options=ReluBabOptions(rel_gap=0.0, abs_gap=1e-9), witness_value=1.0)
    assert 1.0 <= res.upper <= 1.0 + 1e-9
    assert res.complete


def test_converges_within_relative_gap(small_net: Network) -> None:
    c = np.array([1.0])
    true = _grid_max(small_net, c)
    res = relu_bab_max(small_net, [-1.0, -1.0], [1.0, 1.0], c,
                       options=ReluBabOptions(rel_gap=0.01, time_budget=SAFETY, max_nodes=5000),
                       witness_value=true)
    assert res.reason == "gap" and res.complete
    assert true <= res.upper <= true + 0.01 * abs(true) + 1e-9
    assert res.nodes > 1


def test_finds_its_own_witness_and_closes_tight_gap(small_net: Network) -> None:
    true = _grid_max(small_net, np.array([-1.0]))
    res = relu_bab_max(small_net, [-1.0, -1.0], [1.0, 1.0], [-1.0],
                       options=ReluBabOptions(rel_gap=1e-3, abs_gap=1e-6, time_budget=SAFETY,
                                              max_nodes=5000, alpha=True))
    assert res.complete
    assert res.value <= true + 1e-9 <= res.upper + 2e-9
    assert res.upper <= true + 1e-3 * abs(true) + 0.02
    assert res.x is None or np.all(np.abs(res.x) <= 1)


def test_anytime_bounds_are_sound(small_net: Network) -> None:
    c = np.array([1.0])
    true = _grid_max(small_net, c)
    box = ([-1.0, -1.0], [1.0, 1.0])
    budget = relu_bab_max(small_net, *box, c, options=ReluBabOptions(time_budget=0.0))
    assert budget.reason == "budget" and not budget.complete and budget.nodes == 1
    assert budget.upper >= true
    capped = relu_bab_max(small_net, *box, c, options=ReluBabOptions(max_nodes=5, batch=4))
    assert capped.reason == "max-nodes" and capped.upper >= true
    seen: list[float] = []

    def ctrl_c(upper: float, nodes: int) -> None:
        seen.append(upper)
        if len(seen) == 3:  # a real SIGINT: the search stops at its next consistent state
            os.kill(os.getpid(), signal.SIGINT)

    stopped = relu_bab_max(small_net, *box, c, options=ReluBabOptions(batch=8), progress=ctrl_c)
    assert stopped.reason == "interrupted" and stopped.upper >= true
    assert len(seen) == 3 and not interrupt.requested()  # the request ends with the search
    assert seen == sorted(seen, reverse=True)  # the reported bound only improves


def test_identical_networks_stay_sound_and_improve() -> None:
    """N - N is 0 everywhere; ReLU splitting sees the two copies separately, so it only
    narrows the gap (the differential engine is the tool for near-identical pairs)."""
    net = random_network([2, 8, 8, 2], np.random.default_rng(3))
    merged = merge_networks(net, net).network
    box = ([-1.0, -1.0], [1.0, 1.0])
    root = relu_bab_max(merged, *box, [1.0, 0.0], options=ReluBabOptions(max_nodes=1),
                        witness_value=0.0)
    res = relu_bab_max(merged, *box, [1.0, 0.0],
                       options=ReluBabOptions(time_budget=SAFETY, max_nodes=64), witness_value=0.0)
    assert root.nodes == 1 and res.reason == "max-nodes"
    assert 0.0 <= res.upper < root.upper


def test_wrong_objective_size_is_refused(small_net: Network) -> None:
    with pytest.raises(ShapeMismatchError, match="outputs"):
        relu_bab_max(small_net, [-1.0, -1.0], [1.0, 1.0], [1.0, 2.0])


def test_a_nan_bound_leaves_its_sub_problem_open() -> None:
    """NaN > value is false: read plainly, a NaN bound would close its sub-problem as proved.
    It is +inf instead, capped by the parent's bound (the child's region is inside it)."""
    front = _Frontier(value=0.0)
    front.pending = [np.inf]
    splits = np.zeros((2, 3), np.int8)
    front.add(splits, (np.array([np.nan, -1.0]), np.array([0, 1]), None), np.array([5.0, 5.0]))
    assert len(front.heap) == 1 and front.upper() == 5.0  # the NaN child is open at 5
    leaf = _Frontier(value=0.0)
    leaf.add(splits[:1], (np.array([np.nan]), np.array([-1]), None), np.array([np.nan]))
    assert leaf.upper() == np.inf  # nothing left to split, nothing known: unbounded
