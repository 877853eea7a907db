"""Input-splitting branch and bound, with a plain interval bound so the search does the work."""

from __future__ import annotations

import os
import signal

import numpy as np
from babcall import bab
from netbuild import random_network

from nnbisim.adapters.merge import merge_networks
from nnbisim.bounds.bounded import Bounded
from nnbisim.core.model import Network
from nnbisim.search.bab_types import BabOptions

# the searches stop on their gap or work limit (boxes bounded, the same on any machine); the
# time budget is only a safety net that a loaded machine never reaches
SAFETY = 300.0


def interval_bound(net: Network, objectives: np.ndarray):
    """Upper bounds of ``objectives @ net(x)`` per box by interval arithmetic."""
    def bound(lo: np.ndarray, hi: np.ndarray) -> Bounded:
        layers = list(net.layers)
        for k, layer in enumerate(layers):
            w, b = layer.weight, layer.bias
            if k == len(layers) - 1:
                w, b = objectives @ w, objectives @ b
            mid, rad = (lo + hi) / 2, (hi - lo) / 2
            centre, spread = mid @ w.T + b, rad @ np.abs(w).T
            lo, hi = centre - spread, centre + spread
            if k < len(layers) - 1:
                lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)
        return Bounded(hi + 1e-9 * (1 + np.abs(hi)))  # generous outward margin
    return bound


def merged_value(net: Network, objectives: np.ndarray):
    return lambda x: net.forward(x) @ objectives.T


def search(net: Network, lo, hi, objectives, start=None, **kw):
    objectives = np.atleast_2d(np.asarray(objectives, np.float64))
    lo, hi = np.atleast_2d(np.asarray(lo, np.float64)), np.atleast_2d(np.asarray(hi, np.float64))
    k = len(objectives)
    start = np.full(k, -1e9) if start is None else np.asarray(start, np.float64)
    return bab(lo, hi, interval_bound(net, objectives), merged_value(net, objectives),
                     start_values=start, start_x=np.repeat(lo[:1], k, 0), **kw)


def test_known_kink_relu_against_zero():
    relu = Network.from_weights([np.array([[1.0]]), np.array([[1.0]])], [[0.0], [0.0]])
    zero = Network.from_weights([np.array([[0.0]])], [[0.0]])
    merged = merge_networks(relu, zero).network
    res = search(merged, [-1.0], [1.0], [[1.0]], rel_gap=1e-6, time_budget=SAFETY,
                 max_boxes=10_000)
    assert res.complete and 1.0 - 2e-6 <= res.value[0] <= 1.0
    assert 1.0 <= res.upper[0] <= 1.0 + 2e-6
    low = search(merged, [-1.0], [1.0], [[-1.0]], rel_gap=1e-6, abs_gap=1e-9,
                 time_budget=SAFETY, max_boxes=10_000)
    assert low.complete and abs(low.upper[0]) <= 1e-8  # min of relu(x) - 0 is 0


def test_random_pairs_certify_above_the_dense_maximum_and_converge():
    rng = np.random.default_rng(5)
    for _ in range(5):
        n1 = random_network([2, 12, 12, 2], rng)
        n2 = random_network([2, 6, 2], rng)
        merged = merge_networks(n1, n2).network
        lo, hi = np.array([-1.0, -0.5]), np.array([0.5, 1.0])
        g = np.stack(np.meshgrid(np.linspace(lo[0], hi[0], 601), np.linspace(lo[1], hi[1], 601)),
                     -1).reshape(-1, 2)
        objectives = np.array([[1.0, 0.0], [0.0, -1.0]])
        dense = (merged.forward(g) @ objectives.T).max(0)
        res = search(merged, lo, hi, objectives, joint=False, rel_gap=1e-3,
                     time_budget=SAFETY, max_boxes=2_000_000)
        assert np.all(res.upper >= dense - 1e-12)
        assert np.all(res.value <= dense + 1e-3 * np.abs(dense) + 1e-9)  # values are attained
        assert res.complete and np.all(res.upper - res.value <= 1e-3 * np.abs(res.value) + 1e-9)
        for k in range(2):  # each value is attained at its input
            assert abs(float(merged.forward(res.x[k]) @ objectives[k]) - res.value[k]) < 1e-12


def test_joint_aim_certifies_the_largest_objective_only():
    """``joint`` refines an objective only while it could exceed the best of all of them: the
    largest maximum is certified to the gap, the others only below it."""
    rng = np.random.default_rng(8)
    n1, n2 = random_network([2, 16, 16, 2], rng), random_network([2, 8, 2], rng)
    merged = merge_networks(n1, n2).network
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    objectives = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, 801)] * 2), -1).reshape(-1, 2)
    dense = (merged.forward(g) @ objectives.T).max(0)
    res = search(merged, lo, hi, objectives, joint=True, rel_gap=1e-2, time_budget=SAFETY,
                 max_boxes=100_000)
    assert res.complete and np.all(res.upper >= dense - 1e-12)
    eps_w, eps_c = res.value.max(), res.upper.max()
    assert eps_w <= dense.max() + 1e-9 and eps_c - eps_w <= 1e-2 * eps_w + 1e-9


def test_anytime_a_tiny_budget_still_gives_a_sound_bound():
    rng = np.random.default_rng(6)
    n1, n2 = random_network([5, 30, 30, 5], rng), random_network([5, 10, 5], rng)
    merged = merge_networks(n1, n2).network
    lo, hi = -np.ones(5), np.ones(5)
    c = np.eye(5)[2]
    sampled = float((merged.forward(rng.uniform(lo, hi, (200000, 5))) @ c).max())
    res = search(merged, lo, hi, c[None], rel_gap=0.0, time_budget=0.05)
    assert res.reason == "budget" and not res.complete
    assert res.upper[0] >= sampled


def test_union_of_boxes_and_a_starting_witness():
    rng = np.random.default_rng(7)
    merged = merge_networks(random_network([3, 8, 1], rng), random_network([3, 4, 1], rng)).network
    lows = np.array([[-1.0, -1, -1], [0.5, 0.5, 0.5]])
    highs = np.array([[-0.5, -0.5, -0.5], [1.0, 1, 1]])
    c = np.array([1.0])
    pts = np.concatenate([rng.uniform(lows[k], highs[k], (50000, 3)) for k in range(2)])
    sampled = float((merged.forward(pts) @ c).max())
    res = search(merged, lows, highs, c[None], start=[sampled - 1.0], rel_gap=1e-3,
                 time_budget=SAFETY, max_boxes=200_000)
    assert res.complete and res.upper[0] >= sampled - 1e-12
    assert any(np.all((res.x[0] >= lows[k]) & (res.x[0] <= highs[k])) for k in range(2))


def test_a_stopped_search_resumes_from_its_open_boxes():
    """A decision search stopped after a few hundred boxes hands back its open boxes: every
    point above the target lies in one of them (the rest was proved), and going on from them
    reaches the same decision as a fresh search, bounding no more boxes in all."""
    rng = np.random.default_rng(3)
    net = random_network([2, 12, 12, 1], rng)
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 401)] * 2), -1).reshape(-1, 2)
    top = float(net.forward(grid).max())
    for target, reason in ((top + 0.02, "exhausted"), (top - 1e-3, "found")):
        kw = dict(target=target, batch=16, split="widest", time_budget=SAFETY)
        fresh = search(net, lo, hi, [[1.0]], **kw)
        first = search(net, lo, hi, [[1.0]], max_boxes=200, **kw)
        assert fresh.reason == reason and first.reason == "max-boxes"
        left = first.left
        assert len(left) > 0 and left.ub.shape == (len(left), 1)
        above = grid[net.forward(grid)[:, 0] >= target]
        inside = ((above[:, None] >= left.lo[None] - 1e-12)
                  & (above[:, None] <= left.hi[None] + 1e-12)).all(-1).any(-1)
        assert inside.all()
        again = search(net, lo, hi, [[1.0]], resume=left, **kw)
        assert again.reason == reason
        assert first.boxes + again.boxes <= fresh.boxes + 1
        if reason == "exhausted":
            assert again.upper[0] < target and not len(again.left)
        # the open part of the right half is what the right half still needs
        right = left.within(np.array([0.0, -1.0]), hi)
        assert np.all(right.lo[:, 0] >= 0.0) and len(right) <= len(left)
        part = search(net, np.array([0.0, -1.0]), hi, [[1.0]], resume=right, **kw)
        assert part.reason in ("exhausted", "found")


def test_gain_splits_the_widest_side_when_no_split_helps():
    """A bound that no split improves ties every candidate: the gain rule then splits the
    relatively widest side, so the boxes stay balanced instead of being sliced ever thinner
    along the first dimension."""
    def bound(lo, hi):
        return Bounded(np.ones((len(lo), 1)))

    res = bab(np.zeros((1, 3)), np.array([[1.0, 2.0, 4.0]]), bound,
                    lambda x: np.zeros((len(x), 1)), start_values=np.zeros(1),
                    start_x=np.zeros((1, 3)), split="smart", choose="gain", target=0.5,
                    batch=1, max_boxes=200, time_budget=30)
    assert res.reason == "max-boxes"
    rel = (res.left.hi - res.left.lo) / np.array([1.0, 2.0, 4.0])
    assert rel.max() / rel.min() <= 2.0


def test_gain_ignores_noise_and_never_slices_a_side_ever_thinner():
    """Splits whose gain is rounding noise tie (so the widest side is split), and a side
    thinner than THIN of the box's widest is never split, however much it seems to help: a
    bound that rewards splitting the first side forever no longer slices it to nothing (seen
    on ACAS Xu 3_3 property 2, where sides of 5e-17 were still being halved)."""
    thin = BabOptions().thin

    def run(bound):
        return bab(np.zeros((1, 3)), np.ones((1, 3)), bound,
                         lambda x: np.zeros((len(x), 1)), start_values=np.zeros(1),
                         start_x=np.zeros((1, 3)), split="smart", choose="gain",
                         target=0.5, batch=1, max_boxes=600, time_budget=30).left

    def noisy(lo, hi):  # splitting side 0 gains 1e-13 relative: noise
        return Bounded(1.0 + 1e-13 * (hi[:, :1] - lo[:, :1]))

    def greedy(lo, hi):  # only the corner stays open; splitting side 0 halves its excess
        return Bounded(np.where(lo[:, :1] == 0, 1.0 + (hi[:, :1] - lo[:, :1]), 0.0))

    left = run(noisy)
    w = left.hi - left.lo
    assert w.max() / w.min() <= 2.0
    w = run(greedy)
    w = w.hi - w.lo
    assert np.all(w[:, 0] >= thin * w.max(axis=1) / 2)


def test_a_sharper_bound_serves_only_kept_open_boxes_and_unsticks_a_stalled_one():
    """``f(x) = x0 (1 - x0)`` on the unit square (maximum 1/4), decided at 0.3. The plain bound
    (the exact maximum plus 0.1) never proves it alone near ``x0 = 1/2``; ``tighten`` (the exact
    maximum) does. Every box handed to ``tighten`` is one the plain bound left open, and a
    plain bound that no split improves (every split stalls) gets its splits chosen on
    ``tighten``'s bounds."""
    def exact(lo, hi):  # the concave function peaks at the point of the box nearest 1/2
        c = np.clip(0.5, lo[:, :1], hi[:, :1])
        return c * (1 - c)

    seen: list[np.ndarray] = []

    def plain(lo, hi):
        return Bounded(exact(lo, hi) + 0.1)

    def tighten(lo, hi):
        seen.append(plain(lo, hi).upper)
        return Bounded(exact(lo, hi))

    def value(x):
        return x[:, :1] * (1 - x[:, :1])

    kw = dict(start_values=np.zeros(1), start_x=np.zeros((1, 2)), split="smart",
              choose="gain", target=0.3, time_budget=30, max_boxes=5_000)
    assert bab(np.zeros((1, 2)), np.ones((1, 2)), plain, value, **kw).reason == "max-boxes"
    res = bab(np.zeros((1, 2)), np.ones((1, 2)), plain, value, tighten=tighten, **kw)
    assert res.reason == "exhausted" and seen
    assert all(np.all(up >= 0.3) for up in seen)  # only boxes the plain bound left open
    # a constant plain bound stalls everywhere, and its ties would split the relatively widest
    # side (the useless second, by ``scale``); a box's splits are chosen on ``tighten`` (here
    # the exact maximum plus 0.1 times the first side) instead, so the first side is split
    def loose(lo, hi):
        return Bounded(exact(lo, hi) + 0.1 * (hi[:, :1] - lo[:, :1]))

    run = dict(kw, target=0.26)  # close to the maximum: many splits, here stopped early
    res = bab(np.zeros((1, 2)), np.array([[1.0, 4.0]]),
                    lambda lo, hi: Bounded(np.ones((len(lo), 1))), value, tighten=loose,
                    scale=np.array([1.0, 0.1]), batch=1, **dict(run, max_boxes=30))
    assert res.reason == "max-boxes" and len(res.left) > 1
    assert np.all(res.left.hi[:, 1] - res.left.lo[:, 1] == 4.0)
    assert bab(np.zeros((1, 2)), np.array([[1.0, 4.0]]),
                     lambda lo, hi: Bounded(np.ones((len(lo), 1))), value, tighten=loose,
                     scale=np.array([1.0, 0.1]), **run).reason == "exhausted"


def test_a_lazy_search_sharpens_kept_halves_only_after_a_stall():
    """``lazy``: the stall rule from the start, the sharper bound for kept halves only once a
    split has stalled. A plain bound every split improves never stalls, so ``tighten`` only
    sees the first box; a constant plain bound stalls at once, and the search then goes on as
    the eager one does."""
    def exact(lo, hi):
        c = np.clip(0.5, lo[:, :1], hi[:, :1])
        return c * (1 - c)

    calls = {"tighten": 0}

    def value(x):
        return x[:, :1] * (1 - x[:, :1])

    def shrinking(lo, hi):  # improves with every split of either side
        return Bounded(exact(lo, hi) + 0.1 * (hi - lo).sum(axis=1, keepdims=True))

    def tighten(lo, hi):  # no sharper at all here: it only counts the boxes it is given
        calls["tighten"] += 1
        return shrinking(lo, hi)

    kw = dict(start_values=np.zeros(1), start_x=np.zeros((1, 2)), split="smart",
              choose="gain", target=0.26, time_budget=30, max_boxes=20_000)
    box = (np.zeros((1, 2)), np.ones((1, 2)))
    counts = {}
    for lazy in (True, False):
        calls["tighten"] = 0
        res = bab(*box, shrinking, value, tighten=tighten, lazy=lazy, **kw)
        assert res.reason == "exhausted"
        counts[lazy] = calls["tighten"]
    assert counts[True] == 1 < counts[False]  # the first box only, against every kept half
    calls["tighten"] = 0
    res = bab(*box, lambda lo, hi: Bounded(np.ones((len(lo), 1))), value,
                    tighten=tighten, lazy=True, **kw)
    assert res.reason == "exhausted" and calls["tighten"] > 1
    # (a first box sharper than its halves' plain bounds counts as a stall too: the halves
    # cannot score better than it)


def test_ctrl_c_stops_between_steps_with_boxes_and_bounds_in_line():
    """A SIGINT (as from Ctrl-C) during the search is answered at the next step: the result is
    interrupted, sound, and its open boxes line up with their bounds (resumable)."""
    rng = np.random.default_rng(11)
    n1, n2 = random_network([2, 16, 16, 1], rng), random_network([2, 8, 1], rng)
    merged = merge_networks(n1, n2).network
    steps: list[int] = []

    def ctrl_c(best: float, top: float, boxes: int) -> None:
        steps.append(boxes)
        if len(steps) == 4:
            os.kill(os.getpid(), signal.SIGINT)

    res = search(merged, [-1.0, -1.0], [1.0, 1.0], [[1.0]], rel_gap=0.0, abs_gap=0.0,
                 batch=4, progress=ctrl_c)
    assert res.reason == "interrupted" and len(steps) == 4
    left = res.left
    assert len(left.lo) == len(left.hi) == len(left.ub) > 0
    g = np.linspace(-1, 1, 201)
    xs = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    assert res.upper[0] >= merged.forward(xs).max()
    again = search(merged, [-1.0, -1.0], [1.0, 1.0], [[1.0]], start=res.value, rel_gap=1e-3,
                   resume=left)
    assert again.upper[0] <= res.upper[0] and again.upper[0] >= merged.forward(xs).max()
