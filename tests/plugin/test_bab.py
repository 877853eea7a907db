"""Input-splitting branch and bound, with a plain interval bound so the search does the work."""

from __future__ import annotations

import numpy as np
from netbuild import random_network

from nnbisim.adapters.merge import merge_networks
from nnbisim.bab import input_bab_max
from nnbisim.model import Network


def interval_bound(net: Network):
    def bound(lo: np.ndarray, hi: np.ndarray, c: np.ndarray) -> np.ndarray:
        layers = list(net.layers)
        for k, layer in enumerate(layers):
            w, b = layer.weight, layer.bias
            if k == len(layers) - 1:
                w, b = c[None] @ w, c @ b
            mid, rad = (lo + hi) / 2, (hi - lo) / 2
            centre, spread = mid @ w.T + b, rad @ np.abs(w).T
            lo, hi = centre - spread, centre + spread
            if k < len(layers) - 1:
                lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)
        return hi[:, 0] + 1e-9 * (1 + np.abs(hi[:, 0]))  # generous outward margin
    return bound


def merged_value(net: Network):
    return lambda x, c: net.forward(x) @ c


def test_known_kink_relu_against_zero():
    relu = Network.from_weights([np.array([[1.0]]), np.array([[1.0]])], [[0.0], [0.0]])
    zero = Network.from_weights([np.array([[0.0]])], [[0.0]])
    merged = merge_networks(relu, zero).network
    res = input_bab_max([-1.0], [1.0], np.array([1.0]), interval_bound(merged),
                        merged_value(merged), rel_gap=1e-6)
    assert res.complete and 1.0 - 2e-6 <= res.value <= 1.0
    assert 1.0 <= res.upper <= 1.0 + 2e-6
    low = input_bab_max([-1.0], [1.0], np.array([-1.0]), interval_bound(merged),
                        merged_value(merged), rel_gap=1e-6, abs_gap=1e-9)
    assert low.complete and abs(low.upper) <= 1e-8  # min of relu(x) - 0 is 0


def test_random_pairs_certify_above_the_dense_maximum_and_converge():
    rng = np.random.default_rng(5)
    for _ in range(5):
        n1 = random_network([2, 12, 12, 2], rng)
        n2 = random_network([2, 6, 2], rng)
        merged = merge_networks(n1, n2).network
        lo, hi = np.array([-1.0, -0.5]), np.array([0.5, 1.0])
        g = np.stack(np.meshgrid(np.linspace(lo[0], hi[0], 601), np.linspace(lo[1], hi[1], 601)),
                     -1).reshape(-1, 2)
        for c in (np.array([1.0, 0.0]), np.array([0.0, -1.0])):
            dense = float((merged.forward(g) @ c).max())
            res = input_bab_max(lo, hi, c, interval_bound(merged), merged_value(merged),
                                rel_gap=1e-3, time_budget=20)
            assert res.upper >= dense - 1e-12
            assert res.value <= dense + 1e-3 * abs(dense) + 1e-9  # the value is attained
            assert res.complete and res.upper - res.value <= 1e-3 * abs(res.value) + 1e-9


def test_anytime_a_tiny_budget_still_gives_a_sound_bound():
    rng = np.random.default_rng(6)
    n1, n2 = random_network([5, 30, 30, 5], rng), random_network([5, 10, 5], rng)
    merged = merge_networks(n1, n2).network
    lo, hi = -np.ones(5), np.ones(5)
    c = np.eye(5)[2]
    sampled = float((merged.forward(rng.uniform(lo, hi, (200000, 5))) @ c).max())
    res = input_bab_max(lo, hi, c, interval_bound(merged), merged_value(merged),
                        rel_gap=0.0, time_budget=0.05)
    assert res.reason == "budget" and not res.complete
    assert res.upper >= sampled


def test_union_of_boxes_and_a_starting_witness():
    rng = np.random.default_rng(7)
    merged = merge_networks(random_network([3, 8, 1], rng), random_network([3, 4, 1], rng)).network
    lows = np.array([[-1.0, -1, -1], [0.5, 0.5, 0.5]])
    highs = np.array([[-0.5, -0.5, -0.5], [1.0, 1, 1]])
    c = np.array([1.0])
    pts = np.concatenate([rng.uniform(lows[k], highs[k], (50000, 3)) for k in range(2)])
    sampled = float((merged.forward(pts) @ c).max())
    res = input_bab_max(lows, highs, c, interval_bound(merged), merged_value(merged),
                        start_value=sampled - 1.0, rel_gap=1e-3, time_budget=20)
    assert res.complete and res.upper >= sampled - 1e-12
    assert any(np.all((res.x >= lows[k]) & (res.x <= highs[k])) for k in range(2))
