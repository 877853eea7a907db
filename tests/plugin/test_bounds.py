"""The bound engine: every bound must contain every sampled (and grid-exact) value."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from netbuild import random_network

from nnbisim.adapters.merge import merge_networks
from nnbisim.bounds.crown import Branch, CrownOptions, crown_bounds, interval_bounds, prepare
from nnbisim.core.errors import InputError, ShapeMismatchError
from nnbisim.core.model import Network

SLACK = 1e-12  # float64 evaluation of sampled points may differ from the real value by this


def _boxes(rng: np.random.Generator, n_boxes: int, n_in: int, width: float
           ) -> tuple[np.ndarray, np.ndarray]:
    lower = rng.uniform(-1, 1 - width, (n_boxes, n_in))
    return lower, lower + rng.uniform(0.2, 1.0, (n_boxes, n_in)) * width


def _sample_outputs(net: Network, lower: np.ndarray, upper: np.ndarray, n: int,
                    rng: np.random.Generator) -> np.ndarray:
    """``(B, n + 2, m)`` outputs at random points of each box, its centre and a corner."""
    u = rng.uniform(size=(len(lower), n, lower.shape[1]))
    xs = np.concatenate([lower[:, None] + (upper - lower)[:, None] * u,
                         ((lower + upper) / 2)[:, None], upper[:, None]], axis=1)
    return net.forward(xs.reshape(-1, lower.shape[1])).reshape(len(lower), n + 2, -1)


def _assert_contains(lo, hi, values: np.ndarray) -> None:
    lo, hi = np.asarray(lo), np.asarray(hi)
    assert np.all(values.min(axis=1) >= lo - SLACK), (values.min(axis=1) - lo).min()
    assert np.all(values.max(axis=1) <= hi + SLACK), (hi - values.max(axis=1)).min()


@pytest.mark.parametrize(("sizes", "width"), [
    ([3, 20, 20, 2], 0.8), ([5, 30, 30, 30, 5], 0.3), ([2, 12, 1], 2.0),
    ([80, 24, 16, 3], 0.1),  # above the forward-screen input size: back-substitution only
])
def test_bounds_contain_sampled_values(sizes: list[int], width: float) -> None:
    rng = np.random.default_rng(sum(sizes))
    net = random_network(sizes, rng)
    lower, upper = _boxes(rng, 4, sizes[0], width)
    values = _sample_outputs(net, lower, upper, 10_000, rng)
    for res in (interval_bounds(net, lower, upper), crown_bounds(net, lower, upper),
                crown_bounds(net, lower, upper, options=CrownOptions(alpha=True, alpha_iters=10))):
        _assert_contains(res.lo, res.hi, values)


def test_hidden_layer_bounds_contain_sampled_preactivations() -> None:
    rng = np.random.default_rng(3)
    net = random_network([4, 16, 16, 16, 2], rng)
    lower, upper = _boxes(rng, 3, 4, 0.6)
    res = crown_bounds(net, lower, upper, options=CrownOptions(return_layers=True))
    xs = lower[:, None] + (upper - lower)[:, None] * rng.uniform(size=(3, 5000, 4))
    h = xs
    for k, (lo, hi) in enumerate(res.layers):
        z = h @ net.layers[k].weight.T + net.layers[k].bias
        _assert_contains(lo, hi, z)
        h = np.maximum(z, 0)


@pytest.mark.parametrize("n_in", [1, 2])
def test_bounds_contain_grid_maximum(n_in: int) -> None:
    rng = np.random.default_rng(10 + n_in)
    net = random_network([n_in, 24, 24, 1], rng)
    grid = np.linspace(-1, 1, 200_001 if n_in == 1 else 701)
    xs = np.stack(np.meshgrid(*[grid] * n_in), -1).reshape(-1, n_in)
    ys = net.forward(xs)[:, 0]
    box = -np.ones((1, n_in)), np.ones((1, n_in))
    for res in (crown_bounds(net, *box), crown_bounds(net, *box, options=CrownOptions(alpha=True))):
        assert float(res.lo[0, 0]) <= ys.min() + SLACK
        assert float(res.hi[0, 0]) >= ys.max() - SLACK


def test_crown_is_not_looser_than_interval() -> None:
    for seed in range(4):
        rng = np.random.default_rng(seed)
        net = random_network([5, 32, 32, 32, 4], rng)
        lower, upper = _boxes(rng, 8, 5, 0.3)
        ibp, crown = interval_bounds(net, lower, upper), crown_bounds(net, lower, upper)
        assert torch.all(crown.hi <= ibp.hi + 1e-9)
        assert torch.all(crown.lo >= ibp.lo - 1e-9)
        assert torch.sum(crown.hi - crown.lo) < torch.sum(ibp.hi - ibp.lo)


def test_alpha_is_at_least_as_tight() -> None:
    rng = np.random.default_rng(7)
    net = random_network([4, 32, 32, 3], rng)
    lower, upper = _boxes(rng, 6, 4, 0.8)
    plain = crown_bounds(net, lower, upper)
    opt = crown_bounds(net, lower, upper, options=CrownOptions(alpha=True))
    assert torch.all(opt.hi <= plain.hi + 1e-9) and torch.all(opt.lo >= plain.lo - 1e-9)
    assert torch.sum(opt.hi - opt.lo) < torch.sum(plain.hi - plain.lo)


def test_identical_networks_merged_contain_zero() -> None:
    rng = np.random.default_rng(5)
    net = random_network([3, 20, 20, 2], rng)
    merged = merge_networks(net, net).network
    lower, upper = _boxes(rng, 5, 3, 0.5)
    for res in (interval_bounds(merged, lower, upper), crown_bounds(merged, lower, upper),
                crown_bounds(merged, lower, upper, options=CrownOptions(alpha=True))):
        assert torch.all(res.lo <= 0) and torch.all(res.hi >= 0)


def test_relu_kink_bounds() -> None:
    """relu(x) - 0 on [-1, 1]: the maximum 1 is reached at x = 1, the minimum 0 for x <= 0."""
    n1 = Network.from_weights([np.array([[1.0]]), np.array([[1.0]])], [np.zeros(1), np.zeros(1)])
    n2 = Network.from_weights([np.array([[1.0]]), np.array([[0.0]])], [np.zeros(1), np.zeros(1)])
    res = crown_bounds(merge_networks(n1, n2).network, [[-1.0]], [[1.0]])
    assert 1.0 <= float(res.hi[0, 0]) <= 1.0 + 1e-9
    assert -1e-9 <= float(res.lo[0, 0]) <= 0.0


def test_specification_matrix_shapes() -> None:
    rng = np.random.default_rng(2)
    net = random_network([3, 10, 4], rng)
    lower, upper = _boxes(rng, 5, 3, 0.5)
    full = crown_bounds(net, lower, upper)
    c = np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.5]])
    shared = crown_bounds(net, torch.tensor(lower), torch.tensor(upper), C=c)
    per_box = crown_bounds(net, lower, upper, C=np.repeat(c[None], 5, axis=0))
    assert shared.hi.shape == (5, 2)
    torch.testing.assert_close(shared.hi, per_box.hi)
    values = _sample_outputs(net, lower, upper, 5000, rng) @ c.T
    _assert_contains(shared.lo, shared.hi, values)
    upper_only = crown_bounds(net, lower, upper, options=CrownOptions(sides="upper"), C=c[:1])
    assert torch.all(torch.isneginf(upper_only.lo))
    torch.testing.assert_close(upper_only.hi[:, 0], shared.hi[:, 0])
    assert torch.all(full.hi[:, 0] >= values[..., 0].max(axis=1).min())


def test_point_box_is_tight_and_margin_small() -> None:
    rng = np.random.default_rng(4)
    net = random_network([6, 40, 40, 3], rng)
    x = rng.uniform(-1, 1, (3, 6))
    res = crown_bounds(net, x, x)
    y = net.forward(x)
    assert torch.all(res.lo <= torch.tensor(y)) and torch.all(res.hi >= torch.tensor(y))
    assert float((res.hi - res.lo).max()) < 1e-11


def test_rounding_margin_covers_cancellation() -> None:
    """1e16 + 1 rounds to 1e16 in float64, so the float evaluation of this network gives 0 at
    x = 1 although the real network gives exactly 1: the margin must cover that."""
    net = Network.from_weights([np.array([[1e16], [1e16]]), np.array([[1.0, -1.0]])],
                               [np.array([1.0, 0.0]), np.zeros(1)])
    assert net.forward(np.ones((1, 1)))[0, 0] == 0.0
    for res in (interval_bounds(net, [[1.0]], [[1.0]]), crown_bounds(net, [[1.0]], [[1.0]])):
        assert float(res.lo[0, 0]) <= 1.0 <= float(res.hi[0, 0])


def _satisfies(net: Network, xs: np.ndarray, splits: list[np.ndarray]) -> np.ndarray:
    ok, h = np.ones(len(xs), dtype=bool), xs
    for layer, s in zip(net.layers, splits, strict=False):
        z = h @ layer.weight.T + layer.bias
        ok &= np.all((s == 0) | ((s > 0) & (z >= 0)) | ((s < 0) & (z <= 0)), axis=1)
        h = np.maximum(z, 0)
    return ok


def test_split_bounds_are_sound_on_the_restricted_region() -> None:
    rng = np.random.default_rng(8)
    net = random_network([2, 10, 10, 1], rng)
    lower, upper = np.array([[-1.0, -1.0]]), np.array([[1.0, 1.0]])
    xs = rng.uniform(-1, 1, (40_000, 2))
    for trial in range(6):
        splits = [np.zeros(10), np.zeros(10)]
        for _ in range(3):
            splits[trial % 2][rng.integers(10)] = rng.choice([-1, 1])
        inside = _satisfies(net, xs, splits)
        if inside.sum() < 100:
            continue
        values = net.forward(xs[inside])[None]
        for beta in (False, True):
            res = crown_bounds(net, lower, upper,
                               options=CrownOptions(beta=beta, return_layers=True),
                               branch=Branch([s[None] for s in splits]))
            assert not bool(res.infeasible[0])
            _assert_contains(res.lo, res.hi, values)


def test_splits_tighten_and_infeasible_splits_are_flagged() -> None:
    # z1 = x - 0.5 cannot be active for x in [-1, 0]; z2 = relu(z1) + 1 is never inactive
    net = Network.from_weights([np.array([[1.0]]), np.array([[1.0]]), np.array([[1.0]])],
                               [np.array([-0.5]), np.array([1.0]), np.zeros(1)])
    lower, upper = np.array([[-1.0], [-1.0], [-1.0]]), np.array([[0.0], [0.0], [1.0]])
    splits = [np.array([[1.0], [0.0], [-1.0]]), np.array([[0.0], [-1.0], [0.0]])]
    res = crown_bounds(net, lower, upper, branch=Branch(splits))
    assert res.infeasible.tolist() == [True, True, False]
    assert torch.isposinf(res.hi[0, 0]) and torch.isneginf(res.lo[0, 0])
    assert float(res.lo[2, 0]) <= 1.0 <= float(res.hi[2, 0]) <= 1.0 + 1e-9  # inactive: y = 1


def test_prepared_network_and_bad_input() -> None:
    rng = np.random.default_rng(9)
    net = random_network([3, 8, 2], rng)
    tn = prepare(net)
    lower, upper = _boxes(rng, 2, 3, 0.5)
    torch.testing.assert_close(crown_bounds(tn, lower, upper).hi,
                               crown_bounds(net, lower, upper).hi)
    with pytest.raises(InputError, match="lower > upper"):
        crown_bounds(net, upper, lower)
    with pytest.raises(ShapeMismatchError, match="takes 3 inputs"):
        interval_bounds(net, np.zeros((2, 4)), np.ones((2, 4)))
    with pytest.raises(ShapeMismatchError, match="C has shape"):
        crown_bounds(net, lower, upper, C=np.ones((1, 3)))
    with pytest.raises(InputError, match="finite"):
        crown_bounds(net, np.full((1, 3), -np.inf), np.zeros((1, 3)))


def test_focused_rows_are_optimised_on_the_same_intermediate_bounds():
    """``focus`` re-bounds the rows it picks with optimised slopes: never above plain CROWN,
    never below a sampled value, as tight as alpha-CROWN on that row alone; other rows keep
    their plain bounds; the slopes come along."""
    rng = np.random.default_rng(11)
    net = random_network([3, 24, 24, 24, 4], rng)
    lower, upper = _boxes(rng, 12, 3, 0.6)
    c = rng.normal(size=(5, 4))
    plain = crown_bounds(net, lower, upper, options=CrownOptions(sides="upper", slopes=True), C=c)
    pick = lambda hi: torch.argmin(hi, dim=1, keepdim=True)  # noqa: E731
    res = crown_bounds(net, lower, upper, options=CrownOptions(sides="upper", slopes=True), C=c,
                       focus=pick)
    j = torch.argmin(plain.hi, dim=1)
    rows = torch.arange(len(j))
    alpha = crown_bounds(net, lower, upper, options=CrownOptions(sides="upper", alpha=True),
                         C=torch.tensor(c)[j][:, None])
    assert torch.all(res.hi <= plain.hi)
    assert torch.all(res.hi[rows, j] <= alpha.hi[:, 0] + 1e-9)
    assert torch.all(res.hi[rows, j] < plain.hi[rows, j] - 1e-6)  # deep: optimising pays
    other = torch.ones_like(res.hi, dtype=torch.bool)
    other[rows, j] = False
    assert torch.equal(res.hi[other], plain.hi[other])
    values = _sample_outputs(net, lower, upper, 3000, rng) @ c.T
    assert np.all(values.max(axis=1) <= res.hi.numpy() + SLACK)
    assert res.slopes.shape == plain.slopes.shape
    with pytest.raises(ValueError, match="focus"):
        crown_bounds(net, lower, upper, C=c, focus=pick)


def test_focus_proves_a_box_of_acasxu_plain_crown_cannot(acas_dir):
    """A thin box inside property 2's region of ACAS Xu 3_3, where a branch and bound on plain
    CROWN used to stall (its halves got looser bounds than it): y0 stays below y3 on it, so
    the box cannot reach property 2's unsafe set; plain CROWN bounds ``y0 - y3`` above 0, the
    focused bound below it (and above every sampled value)."""
    from nnbisim.adapters.onnx_load import load_network

    net = load_network(acas_dir / "ACASXU_run2a_3_3_batch_2000.onnx")
    lo = np.array([[0.6, 0.00452805, -0.49742126, 0.45, -0.5]])
    hi = np.array([[0.63992888, 0.00453186, -0.49740601, 0.5, -0.4875]])
    c = np.array([[1.0, 0.0, 0.0, -1.0, 0.0]])
    plain = crown_bounds(net, lo, hi, options=CrownOptions(sides="upper"), C=c)
    focused = crown_bounds(net, lo, hi, options=CrownOptions(sides="upper"), C=c,
                           focus=lambda h: torch.zeros((len(h), 1), dtype=torch.long))
    seen = (_sample_outputs(net, lo, hi, 4000, np.random.default_rng(0)) @ c.T).max()
    assert float(plain.hi) > 0 > float(focused.hi) >= seen
