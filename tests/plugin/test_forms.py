"""Forward linear forms of two networks: every layer's forms contain the sampled values."""

from __future__ import annotations

import numpy as np
import torch
from netbuild import random_network

from nnbisim.bounds import forms
from nnbisim.bounds.forms import FormLayer


def test_forms_contain_every_sampled_pre_activation():
    rng = np.random.default_rng(0)
    for trial in range(4):
        n1 = random_network([3, 12, 12, 12, 2], rng)
        n2 = random_network([3, 12, 12, 12, 2], rng) if trial % 2 else n1
        lo = rng.uniform(-1, 0.5, (6, 3))
        hi = lo + rng.uniform(0.0, 1.0, (6, 3)) * (trial + 1) / 4
        hi[0] = lo[0]  # a point box
        f = forms.input_forms(torch.tensor(lo), torch.tensor(hi))
        x = lo[:, None] + (hi - lo)[:, None] * rng.random((6, 2000, 3))
        h1 = h2 = x
        for k, (l1, l2) in enumerate(zip(n1.layers, n2.layers, strict=True)):
            layer = FormLayer.of(*(torch.tensor(v) for v in (l1.weight, l1.bias, l2.weight,
                                                             l2.bias)))
            f = forms.affine(f, layer)
            fmin, fmax = forms.bounds(f)
            z1, z2 = h1 @ l1.weight.T + l1.bias, h2 @ l2.weight.T + l2.bias
            n = l1.out_size
            assert np.all(fmin[:, :n].numpy()[:, None] <= z1 + 1e-12)
            assert np.all(fmax[:, n:2 * n].numpy()[:, None] >= z1 - 1e-12)
            assert np.all(fmin[:, 2 * n:3 * n].numpy()[:, None] <= z2 + 1e-12)
            assert np.all(fmax[:, 3 * n:].numpy()[:, None] >= z2 - 1e-12)
            if k == n1.depth:
                break
            a = torch.cat([fmin[:, :n], fmin[:, :n], fmin[:, 2 * n:3 * n],
                           fmin[:, 2 * n:3 * n]], 1)
            b = torch.cat([fmax[:, n:2 * n], fmax[:, n:2 * n], fmax[:, 3 * n:],
                           fmax[:, 3 * n:]], 1)
            f = forms.relu(f, fmin, fmax, a >= 0, b <= 0, layer.upper)
            h1, h2 = np.maximum(z1, 0), np.maximum(z2, 0)
