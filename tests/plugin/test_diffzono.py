"""Differential zonotopes (nnbisim.bounds.diffzono): containment of dense samples, the dh lines
checked exactly at every vertex of the pieces, and their tightness against the
back-substituting engine on small ACAS Xu boxes. Random networks' containment, batches against
single boxes, exact rationals for one-ulp-apart networks and any linear row of both outputs:
tests/plugin/test_diffbounds.py, for both methods."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from netbuild import random_network
from test_diffbounds import (
    _random_neuron_bounds,
    acas,  # noqa: F401 - a fixture
    assert_contains,
    float16_copy,
    int8_copy,
    piece_vertices,
    sampled_range,
)

from nnbisim.bounds.diffbounds import DiffEngine
from nnbisim.bounds.diffzono import _dh_line
from nnbisim.core.errors import InputError
from nnbisim.core.model import Network

COPIES = {"float16": float16_copy, "int8": int8_copy}


def zono(n1: Network, n2: Network, **kw) -> DiffEngine:
    return DiffEngine(n1, n2, method="zonotope", **kw)


def test_unknown_method_is_refused():
    net = random_network([2, 3, 1], np.random.default_rng(0))
    with pytest.raises(InputError, match="backsub, zonotope"):
        DiffEngine(net, net, method="zono")


def test_identical_networks_give_zero():
    rng = np.random.default_rng(2)
    net = random_network([5, 16, 16, 16, 3], rng)
    lo = rng.uniform(-1, 0, (6, 5))
    res = zono(net, net).bounds(lo, lo + rng.uniform(0, 2, (6, 5)))
    assert torch.all(res.lo <= 0) and torch.all(res.hi >= 0)
    assert res.lo.abs().max() < 1e-290 and res.hi.abs().max() < 1e-290


def test_few_symbols_stay_sound():
    """With one symbol per layer nearly every relaxation goes into the slack: looser, sound."""
    rng = np.random.default_rng(4)
    n1 = random_network([4, 24, 24, 24, 2], rng)
    n2 = float16_copy(n1)
    lo = rng.uniform(-1, 0, (4, 4))
    hi = lo + 0.5
    from nnbisim.bounds import diffzono
    rows = (None, None, torch.cat([torch.eye(2), -torch.eye(2)]).double())
    low, _ = diffzono.zonotope_rows(zono(n1, n2).layers, torch.tensor(lo), torch.tensor(hi),
                                    rows, False, per_layer=1)
    full, _ = diffzono.zonotope_rows(zono(n1, n2).layers, torch.tensor(lo), torch.tensor(hi),
                                     rows, False, per_layer=64)
    assert torch.all(low <= full + 1e-15)
    for b in range(4):
        smin, smax = sampled_range(n1, n2, lo[b], hi[b], rng)
        assert np.all(low[b, :2].numpy() <= smin + 1e-11)
        assert np.all(-low[b, 2:].numpy() >= smax - 1e-11)


def test_dh_lines_hold_at_every_vertex():
    """Exact check (fractions): ``dh - s dz`` lies in ``[t - w, t + w]`` at every vertex of the
    pieces on which relu(z1) - relu(z2) is linear, within the neuron's bounds."""
    rng = np.random.default_rng(9)
    bounds = _random_neuron_bounds(rng, 400)
    s, t, w = (v.numpy() for v in _dh_line(tuple(torch.tensor(b) for b in bounds)))
    checked = 0
    for i in range(400):
        for z1, z2 in piece_vertices(bounds, i):
            checked += 1
            gap = max(z1, 0) - max(z2, 0) - Fraction(float(s[i])) * (z1 - z2)
            assert Fraction(float(t[i])) - Fraction(float(w[i])) <= gap
            assert gap <= Fraction(float(t[i])) + Fraction(float(w[i]))
    assert checked > 1000


@pytest.mark.parametrize("compress", ["float16", "int8"])
def test_acas_small_boxes_contain_samples_and_match_backsub(acas, compress):  # noqa: F811
    """On 1/64 of property 1's box (per side) the zonotopes contain dense samples and are
    within 1.5x of the back-substituting engine's width (bench: median 1.2x at 1/64)."""
    net, box = acas
    copy = COPIES[compress](net)
    rng = np.random.default_rng(8)
    radius = box.radius / 64
    centres = box.lower + radius + (box.upper - box.lower - 2 * radius) * rng.random((6, 5))
    lo, hi = centres - radius, centres + radius
    z, b = zono(net, copy).bounds(lo, hi), DiffEngine(net, copy).bounds(lo, hi)
    for row in range(6):
        assert_contains(z, *sampled_range(net, copy, lo[row], hi[row], rng), row=row)
    ratio = ((z.hi - z.lo) / (b.hi - b.lo)).numpy()
    assert np.median(ratio) <= 1.5
