"""Differential bounds of N1 - N2: known answers, containment of dense samples, refusals."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import acas_net
from netbuild import random_network

from nnbisim.adapters.onnx_load import load_network
from nnbisim.bounds.diffbounds import (
    METHODS,
    DiffEngine,
    differential_bounds,
    same_architecture,
)
from nnbisim.bounds.diffrelax import relaxation
from nnbisim.core.errors import InputError, ShapeMismatchError
from nnbisim.core.model import Network
from nnbisim.specs.io import read_spec

SAMPLES = 10_000
# float64 evaluation of the sampled networks is itself rounded; the bounds are for real arithmetic
EVAL_TOL = 1e-11


def float16_copy(net: Network) -> Network:
    return Network.from_weights(
        [layer.weight.astype(np.float16).astype(np.float64) for layer in net.layers],
        [layer.bias.astype(np.float16).astype(np.float64) for layer in net.layers],
        net.input_shape)


def int8_copy(net: Network) -> Network:
    """Per-tensor symmetric int8 weights (scale = max |W| / 127), float biases."""
    weights = []
    for layer in net.layers:
        scale = np.abs(layer.weight).max() / 127
        weights.append(np.clip(np.round(layer.weight / scale), -127, 127) * scale)
    return Network.from_weights(weights, [layer.bias for layer in net.layers], net.input_shape)


def pruned_copy(net: Network, rng: np.random.Generator, fraction: float = 0.1) -> Network:
    """Zero rows (and biases) for ``fraction`` of the neurons of every hidden layer."""
    weights, biases = [], []
    for k, layer in enumerate(net.layers):
        w, b = layer.weight.copy(), layer.bias.copy()
        if k < len(net.layers) - 1:
            gone = rng.choice(w.shape[0], size=max(1, round(fraction * w.shape[0])),
                              replace=False)
            w[gone], b[gone] = 0.0, 0.0
        weights.append(w)
        biases.append(b)
    return Network.from_weights(weights, biases, net.input_shape)


def interval_difference(n1: Network, n2: Network, lo: np.ndarray, hi: np.ndarray):
    """The naive baseline: interval bounds of N1 and N2 separately, subtracted (not outward
    rounded: only compared against)."""
    ranges = []
    for net in (n1, n2):
        a, b = np.atleast_2d(lo), np.atleast_2d(hi)
        for k, layer in enumerate(net.layers):
            pos, neg = np.maximum(layer.weight, 0), np.minimum(layer.weight, 0)
            a, b = a @ pos.T + b @ neg.T + layer.bias, b @ pos.T + a @ neg.T + layer.bias
            if k < net.depth:
                a, b = np.maximum(a, 0), np.maximum(b, 0)
        ranges.append((a, b))
    (lo1, hi1), (lo2, hi2) = ranges
    return lo1 - hi2, hi1 - lo2


def sampled_range(n1: Network, n2: Network, lo: np.ndarray, hi: np.ndarray,
                  rng: np.random.Generator, c: np.ndarray | None = None):
    """Min and max of (C @) (N1 - N2) over uniform samples and all corners of the box."""
    x = lo + (hi - lo) * rng.random((SAMPLES, lo.size))
    if lo.size <= 10:
        corners = np.array(list(itertools.product((0.0, 1.0), repeat=lo.size)))
        x = np.concatenate([x, lo + (hi - lo) * corners])
    d = n1.forward(x) - n2.forward(x)
    if c is not None:
        d = d @ c.T
    return d.min(0), d.max(0)


def assert_contains(res, smin, smax, row: int = 0) -> None:
    lo, hi = res.lo[row].numpy(), res.hi[row].numpy()
    assert np.all(lo <= smin + EVAL_TOL), (lo, smin)
    assert np.all(hi >= smax - EVAL_TOL), (hi, smax)


@pytest.fixture(scope="module")
def acas():
    net = load_network(acas_net(1, 1))
    box = read_spec(acas_net(1, 1).parent / "prop_1.vnnlib").inputs.boxes[0]
    return net, box


def test_same_architecture():
    rng = np.random.default_rng(0)
    a = random_network([4, 8, 8, 2], rng)
    assert same_architecture(a, random_network([4, 8, 8, 2], rng))
    assert not same_architecture(a, random_network([4, 8, 6, 2], rng))
    assert not same_architecture(a, random_network([4, 8, 2], rng))
    assert not same_architecture(a, random_network([3, 8, 8, 2], rng))


def test_refusals_name_the_problem():
    rng = np.random.default_rng(1)
    a, b = random_network([4, 8, 2], rng), random_network([4, 6, 2], rng)
    with pytest.raises(ShapeMismatchError, match="same layer sizes.*4-8-2.*4-6-2"):
        differential_bounds(a, b, np.zeros(4), np.ones(4))
    with pytest.raises(ShapeMismatchError, match=r"shape \(B, 4\)"):
        differential_bounds(a, a, np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(InputError, match="lower <= upper"):
        differential_bounds(a, a, np.ones(4), np.zeros(4))
    with pytest.raises(ShapeMismatchError, match=r"\(K, 2\)"):
        differential_bounds(a, a, np.zeros(4), np.ones(4), C=np.ones((1, 3)))


def test_identical_networks_give_zero():
    rng = np.random.default_rng(2)
    net = random_network([5, 16, 16, 16, 3], rng)
    lo = rng.uniform(-1, 0, (6, 5))
    res = differential_bounds(net, net, lo, lo + rng.uniform(0, 2, (6, 5)))
    assert res.lo.shape == (6, 3)
    assert torch.all(res.lo <= 0) and torch.all(res.hi >= 0)
    assert res.lo.abs().max() < 1e-290 and res.hi.abs().max() < 1e-290


def test_identical_acas_gives_zero(acas):
    net, box = acas
    res = differential_bounds(net, net, box.lower, box.upper)
    assert res.lo.abs().max() < 1e-290 and res.hi.abs().max() < 1e-290


def test_shifted_output_bias_is_exact():
    rng = np.random.default_rng(3)
    net = random_network([4, 12, 12, 3], rng)
    shift = np.array([0.25, -1.5, 1e-3])
    shifted = Network.from_weights([layer.weight for layer in net.layers],
                                   [*(layer.bias for layer in net.layers[:-1]),
                                    net.layers[-1].bias + shift])
    lo = rng.uniform(-1, 0, (4, 4))
    res = differential_bounds(net, shifted, lo, lo + 1.0)
    exact = [Fraction(float(a)) - Fraction(float(b))
             for a, b in zip(net.layers[-1].bias, shifted.layers[-1].bias, strict=True)]
    for row in range(4):
        for i, value in enumerate(exact):
            assert Fraction(float(res.lo[row, i])) <= value <= Fraction(float(res.hi[row, i]))
    np.testing.assert_allclose(res.lo.numpy(), np.tile(-shift, (4, 1)), rtol=0, atol=1e-13)
    np.testing.assert_allclose(res.hi.numpy(), np.tile(-shift, (4, 1)), rtol=0, atol=1e-13)
    c = np.array([[1.0, 2.0, -1.0]])
    res_c = differential_bounds(net, shifted, lo, lo + 1.0, C=c)
    np.testing.assert_allclose(res_c.hi.numpy(), np.full((4, 1), -c @ shift), atol=1e-13)


def test_shifted_relu_input_is_exact():
    """relu(x) - relu(x - 0.1) on [-1, 1] ranges exactly over [0, 0.1]: the envelope finds it."""
    n1 = Network.from_weights([np.ones((1, 1)), np.ones((1, 1))], [np.zeros(1), np.zeros(1)])
    n2 = Network.from_weights([np.ones((1, 1)), np.ones((1, 1))], [np.full(1, -0.1), np.zeros(1)])
    res = differential_bounds(n1, n2, np.array([-1.0]), np.array([1.0]))
    assert 0.0 >= res.lo.item() > -1e-14
    assert 0.1 <= res.hi.item() < 0.1 + 1e-14


@pytest.mark.parametrize("sizes", [[3, 10, 2], [5, 20, 20, 3], [4, 16, 16, 16, 2],
                                   [6, 24, 24, 24, 24, 3]])
@pytest.mark.parametrize("compress", ["float16", "pruned", "int8"])
@pytest.mark.parametrize("method", METHODS)
def test_random_networks_contain_samples(sizes, compress, method):
    rng = np.random.default_rng(len(sizes) * 10 + len(compress))
    n1 = random_network(sizes, rng)
    n2 = {"float16": float16_copy, "int8": int8_copy,
          "pruned": lambda n: pruned_copy(n, rng)}[compress](n1)
    centres = rng.uniform(-1, 1, (3, sizes[0]))
    radii = np.array([1.0, 0.1, 0.01])[:, None] * np.ones(sizes[0])
    lo, hi = centres - radii, centres + radii
    res = DiffEngine(n1, n2, method=method).bounds(lo, hi)
    for row in range(3):
        assert_contains(res, *sampled_range(n1, n2, lo[row], hi[row], rng), row=row)
    if method == "backsub":  # zonotopes can be looser than intervals on wide boxes
        naive_lo, naive_hi = interval_difference(n1, n2, lo, hi)
        assert np.all((res.hi - res.lo).numpy() <= naive_hi - naive_lo + 1e-12)


def test_objective_matrix_contains_samples():
    rng = np.random.default_rng(5)
    n1 = random_network([4, 16, 16, 3], rng)
    n2 = int8_copy(n1)
    c = np.array([[1.0, -1.0, 0.0], [0.5, 0.5, 2.0]])
    lo, hi = -0.3 * np.ones(4), 0.2 * np.ones(4)
    res = differential_bounds(n1, n2, lo, hi, C=c)
    assert res.lo.shape == (1, 2)
    assert_contains(res, *sampled_range(n1, n2, lo, hi, rng, c))
    plain = differential_bounds(n1, n2, lo, hi, C=np.eye(3))
    direct = differential_bounds(n1, n2, lo, hi)
    np.testing.assert_allclose(plain.hi.numpy(), direct.hi.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("method", METHODS)
def test_batches_and_chunks_agree_with_single_boxes(method):
    rng = np.random.default_rng(6)
    n1 = random_network([4, 12, 12, 12, 2], rng)
    n2 = float16_copy(n1)
    lo = rng.uniform(-1, 0.5, (7, 4))
    hi = lo + rng.uniform(0.01, 1.0, (7, 4))
    engine = DiffEngine(n1, n2, "cpu", method=method)
    batch = engine.bounds(torch.tensor(lo), torch.tensor(hi))
    chunked = DiffEngine(n1, n2, chunk_elements=1, method=method).bounds(lo, hi)  # a box each
    for i in range(7):
        single = engine.bounds(lo[i], hi[i])
        for res in (batch, chunked):
            np.testing.assert_allclose(res.lo[i].numpy(), single.lo[0].numpy(), rtol=1e-9,
                                       atol=1e-15)
            np.testing.assert_allclose(res.hi[i].numpy(), single.hi[0].numpy(), rtol=1e-9,
                                       atol=1e-15)
    assert engine.bounds(lo[:0], hi[:0]).lo.shape == (0, 2)


@pytest.mark.parametrize("compress", ["float16", "int8", "pruned"])
def test_acas_copy_contains_samples_and_beats_intervals(acas, compress):
    net, box = acas
    rng = np.random.default_rng(7)
    copy = {"float16": float16_copy, "int8": int8_copy,
            "pruned": lambda n: pruned_copy(n, rng)}[compress](net)
    fractions = (1.0, 1 / 16, 1 / 256)
    lo = np.stack([box.center - f * box.radius for f in fractions])
    hi = np.stack([box.center + f * box.radius for f in fractions])
    res = differential_bounds(net, copy, lo, hi)
    naive_lo, naive_hi = interval_difference(net, copy, lo, hi)
    for row in range(len(fractions)):
        assert_contains(res, *sampled_range(net, copy, lo[row], hi[row], rng), row=row)
    width, naive_width = (res.hi - res.lo).numpy().max(1), (naive_hi - naive_lo).max(1)
    assert np.all(width * 5 <= naive_width)


def test_acas_float16_small_boxes_are_tight(acas):
    """On 1/256 of property 1's box the certified bound is within 10% of the sampled maximum."""
    net, box = acas
    copy = float16_copy(net)
    rng = np.random.default_rng(8)
    radius = box.radius / 256
    centres = box.lower + radius + (box.upper - box.lower - 2 * radius) * rng.random((4, 5))
    res = differential_bounds(net, copy, centres - radius, centres + radius)
    for row in range(4):
        smin, smax = sampled_range(net, copy, centres[row] - radius, centres[row] + radius, rng)
        assert_contains(res, smin, smax, row=row)
        certified = max(-res.lo[row].min().item(), res.hi[row].max().item())
        assert certified <= 1.1 * max(-smin.min(), smax.max())


def _random_neuron_bounds(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Bounds of z1, z2, dz of every kind: stable either way, unstable, degenerate, dz = 0."""
    def interval():
        kind = rng.integers(0, 4, n)
        a = np.where(kind == 0, rng.uniform(0, 2, n), np.where(kind == 1, rng.uniform(-3, -0.5, n),
                     rng.uniform(-2, 0, n)))
        b = np.where(kind == 1, a + rng.random(n) * (-0.1 - a), a + rng.uniform(0, 2, n))
        b = np.where(kind == 3, a, b)  # a point
        return np.round(a, 3), np.round(b, 3)  # round: hits kinks like z = 0 exactly
    (a1, b1), (a2, b2) = interval(), interval()
    lo, hi = a1 - b2, b1 - a2
    cut = rng.uniform(0, 1, (2, n)) * (hi - lo) * (rng.random(n) < 0.5)
    dlo, dhi = lo + cut[0] * 0.5, hi - cut[1] * 0.5
    zero = rng.random(n) < 0.1
    dlo, dhi = np.where(zero, 0.0, dlo), np.where(zero, 0.0, dhi)
    return [a1, b1, a2, b2, dlo, dhi]


def piece_vertices(bounds: list[np.ndarray], i: int) -> list[tuple[Fraction, Fraction]]:
    """The points ``(z1, z2)`` (exact) where two of {z1, z2, z1 - z2 at their bounds, z1 = 0,
    z2 = 0} meet within neuron ``i``'s bounds: the vertices of the pieces on which
    relu(z1) - relu(z2) is linear, where a line above or below it is tightest."""
    a1, b1, a2, b2, dlo, dhi = (Fraction(float(b[i])) for b in bounds)
    lines = [(1, 0, a1), (1, 0, b1), (0, 1, a2), (0, 1, b2), (1, -1, dlo), (1, -1, dhi),
             (1, 0, Fraction(0)), (0, 1, Fraction(0))]  # p z1 + q z2 = c
    out = []
    for (p1, q1, c1), (p2, q2, c2) in itertools.combinations(lines, 2):
        det = p1 * q2 - p2 * q1
        if det == 0:
            continue
        z1, z2 = (c1 * q2 - c2 * q1) / det, (p1 * c2 - p2 * c1) / det
        if a1 <= z1 <= b1 and a2 <= z2 <= b2 and dlo <= z1 - z2 <= dhi:
            out.append((z1, z2))
    return out


def test_relaxations_hold_at_every_vertex():
    """Exact check (fractions) of every line at every vertex of the pieces on which
    relu(z1) - relu(z2) is linear: {z1, z2, z1 - z2 at their bounds, z1 = 0, z2 = 0}."""
    rng = np.random.default_rng(9)
    bounds = _random_neuron_bounds(rng, 400)
    r = relaxation(*(torch.tensor(b)[None] for b in bounds))
    coef = {name: getattr(r, name)[0].numpy()
            for name in ("mu1", "lam1", "beta1", "mu2", "lam2", "beta2", "dl0", "du0")}
    dl, du = (np.stack([x[0].numpy() for x in side]) for side in (r.dl, r.du))
    checked = 0
    for i in range(400):
        for z1, z2 in piece_vertices(bounds, i):
            checked += 1
            h1, h2 = max(z1, 0), max(z2, 0)
            f = Fraction(coef["mu1"][i])
            assert f * z1 <= h1 <= Fraction(coef["lam1"][i]) * z1 + Fraction(coef["beta1"][i])
            assert Fraction(coef["mu2"][i]) * z2 <= h2
            assert h2 <= Fraction(coef["lam2"][i]) * z2 + Fraction(coef["beta2"][i])
            u = (z1, z2, z1 - z2)
            low = Fraction(coef["dl0"][i]) + sum(Fraction(dl[s, i]) * u[s] for s in range(3))
            up = Fraction(coef["du0"][i]) + sum(Fraction(du[s, i]) * u[s] for s in range(3))
            assert low <= h1 - h2 <= up, (i, [float(b[i]) for b in bounds], float(z1), float(z2))
            assert Fraction(float(r.vbounds[2][0][0, i])) <= h1 - h2
            assert h1 - h2 <= Fraction(float(r.vbounds[2][1][0, i]))
    assert checked > 1000


def _exact_forward(net: Network, x: np.ndarray) -> list[Fraction]:
    h = [Fraction(float(v)) for v in x]
    for k, layer in enumerate(net.layers):
        h = [sum((Fraction(float(w)) * v for w, v in zip(row, h, strict=True)), Fraction(0))
             + Fraction(float(b)) for row, b in zip(layer.weight, layer.bias, strict=True)]
        if k < net.depth:
            h = [max(v, Fraction(0)) for v in h]
    return h


@pytest.mark.parametrize("method", METHODS)
def test_rounding_is_covered_for_one_ulp_apart_networks(method):
    """N2 differs from N1 by one ulp in some weights: the true difference (exact rationals) is
    of the order of float64 rounding itself, and must still lie within the bounds."""
    rng = np.random.default_rng(10)
    n1 = random_network([3, 8, 8, 2], rng, scale=2.0)
    weights = [np.where(rng.random(layer.weight.shape) < 0.3,
                        np.nextafter(layer.weight, np.inf), layer.weight) for layer in n1.layers]
    n2 = Network.from_weights(weights, [layer.bias for layer in n1.layers])
    points = rng.uniform(-1, 1, (6, 3))
    engine = DiffEngine(n1, n2, method=method)
    res = engine.bounds(points, points)  # point boxes
    tiny = engine.bounds(points - 1e-9, points + 1e-9)
    for row, x in enumerate(points):
        exact = [a - b for a, b in zip(_exact_forward(n1, x), _exact_forward(n2, x), strict=True)]
        for i, value in enumerate(exact):
            for r in (res, tiny):
                assert Fraction(float(r.lo[row, i])) <= value <= Fraction(float(r.hi[row, i]))
        assert (res.hi[row] - res.lo[row]).max() < 1e-12


@pytest.mark.parametrize("method", METHODS)
def test_row_bounds_cover_any_linear_function_of_both_outputs(method):
    rng = np.random.default_rng(12)
    n1 = random_network([3, 12, 12, 3], rng)
    n2 = float16_copy(n1)
    engine = DiffEngine(n1, n2, method=method)
    a1, a2, ad = (rng.normal(size=(4, 3)) for _ in range(3))
    lo = rng.uniform(-1, 0, (5, 3))
    hi = lo + rng.uniform(0.01, 0.5, (5, 3))
    low, slope = engine.row_bounds(lo, hi, a1, a2, ad, slopes=True)
    assert low.shape == (5, 4) and slope.shape == (5, 4, 3)
    for b in range(5):
        x = lo[b] + (hi[b] - lo[b]) * rng.random((5000, 3))
        y1, y2 = n1.forward(x), n2.forward(x)
        vals = y1 @ a1.T + y2 @ a2.T + (y1 - y2) @ ad.T
        assert np.all(low[b].numpy() <= vals.min(0) + EVAL_TOL)
    only_diff, _ = engine.row_bounds(lo, hi, None, None, ad)
    direct = engine.bounds(lo, hi, C=ad)
    np.testing.assert_allclose(only_diff.numpy(), direct.lo.numpy(), rtol=1e-12, atol=1e-15)
