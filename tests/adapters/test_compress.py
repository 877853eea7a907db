"""Compressed copies: rounding, integer quantization, pruning, distillation."""

from __future__ import annotations

import numpy as np
import pytest
from netbuild import random_network

from nnbisim.adapters.compress import (
    compress,
    distill,
    prune_neurons,
    prune_weights,
    quantize_weights,
    round_weights,
)
from nnbisim.adapters.options import CompressOptions, DistillOptions
from nnbisim.core.errors import InputError


@pytest.fixture()
def net():
    return random_network([5, 20, 20, 3], np.random.default_rng(0))


def test_float16_rounding_is_representable(net):
    copy = round_weights(net)
    for layer in copy.layers:
        assert np.array_equal(layer.weight, layer.weight.astype(np.float16).astype(np.float64))
    assert copy.hidden_sizes == net.hidden_sizes


@pytest.mark.parametrize("per_channel", [False, True])
def test_int8_weights_lie_on_the_grid(net, per_channel):
    copy = quantize_weights(net, 8, per_channel=per_channel)
    for orig, layer in zip(net.layers, copy.layers, strict=True):
        mag = np.abs(orig.weight).max(axis=1, keepdims=True) if per_channel \
            else np.abs(orig.weight).max()
        scale = mag / 127
        q = layer.weight / scale
        assert np.allclose(q, np.round(q), atol=1e-9) and np.abs(q).max() <= 127 + 1e-9
        assert np.abs(layer.weight - orig.weight).max() <= np.max(scale) / 2 + 1e-12
        assert np.array_equal(layer.bias, orig.bias)
    with pytest.raises(InputError, match="bits"):
        quantize_weights(net, 1)


def test_pruning_zeroes_or_removes_the_same_neurons(net):
    rng = np.random.default_rng(1)
    zeroed, removed = prune_neurons(net, 0.3), prune_neurons(net, 0.3, remove=True)
    assert zeroed.hidden_sizes == net.hidden_sizes and removed.hidden_sizes == (14, 14)
    for k in range(net.depth):
        dead = np.all(zeroed.layers[k].weight == 0, axis=1) & (zeroed.layers[k].bias == 0)
        assert dead.sum() == 6
        assert np.all(zeroed.layers[k + 1].weight[:, dead] == 0)
    x = rng.uniform(-1, 1, (1000, 5))
    np.testing.assert_allclose(zeroed.forward(x), removed.forward(x), rtol=1e-12, atol=1e-12)
    sparse = prune_weights(net, 0.5)
    assert all(np.mean(layer.weight == 0) == pytest.approx(0.5, abs=0.01)
               for layer in sparse.layers)
    with pytest.raises(InputError, match="fraction"):
        prune_neurons(net, 1.0)


def test_distillation_imitates_the_original_and_is_seeded():
    rng = np.random.default_rng(2)
    big = random_network([2, 30, 30, 1], rng)
    lo, hi = np.array([-1.0, 0.0]), np.array([0.0, 1.0])
    small = distill(big, lo, hi, DistillOptions((10, 10), samples=5000, steps=1500))
    assert small.describe() == "2-10-10-1"
    x = rng.uniform(lo, hi, (5000, 2))
    y = big.forward(x)
    err = np.abs(small.forward(x) - y).max()
    assert err <= 0.1 * (y.max() - y.min())
    again = distill(big, lo, hi, DistillOptions((10, 10), samples=5000, steps=1500))
    assert all(np.array_equal(a.weight, b.weight) for a, b in zip(small.layers, again.layers,
                                                                  strict=True))
    with pytest.raises(InputError, match="boxes"):
        distill(big, hi, lo)


def test_perturbation_is_seeded_gaussian_noise_of_sigma(net):
    a = compress(net, "perturb", options=CompressOptions(sigma=1e-3))
    b = compress(net, "perturb", options=CompressOptions(sigma=1e-3))
    other = compress(net, "perturb", options=CompressOptions(
        sigma=1e-3, distill=DistillOptions(seed=1)))
    noise = np.concatenate([np.concatenate([(la.weight - l0.weight).ravel(),
                                            la.bias - l0.bias])
                            for la, l0 in zip(a.layers, net.layers, strict=True)])
    assert [la.weight.shape for la in a.layers] == [l0.weight.shape for l0 in net.layers]
    assert np.std(noise) == pytest.approx(1e-3, rel=0.2) and abs(np.mean(noise)) < 3e-4
    assert all(np.array_equal(x.weight, y.weight) for x, y in zip(a.layers, b.layers,
                                                                 strict=True))
    assert not np.array_equal(a.layers[0].weight, other.layers[0].weight)
    same = compress(net, "perturb", options=CompressOptions(sigma=0.0))
    assert all(np.array_equal(x.weight, y.weight) for x, y in zip(same.layers, net.layers,
                                                                 strict=True))
    with pytest.raises(InputError, match="--sigma"):
        compress(net, "perturb", options=CompressOptions(sigma=-1.0))
