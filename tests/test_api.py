"""The public facade: every name it promises is there, and the one function defined for
callers alone (loading and merging two files in memory) gives N1 - N2 on real networks."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from conftest import acas_net

import nnbisim.api as api


def test_every_promised_name_is_there():
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert missing == []
    assert len(set(api.__all__)) == len(api.__all__)


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    return np.stack([sess.run(None, {inp.name: xi.reshape(shape).astype(np.float32)})[0].ravel()
                     for xi in x])


def test_merged_network_is_n1_minus_n2_on_acas_files(acas_dir):
    p1, p2 = acas_net(1, 1), acas_net(1, 2)
    merged = api.merged_network(p1, p2)
    assert merged.outputs == "diff" and merged.n_outputs == 5
    x = np.random.default_rng(3).uniform(-0.5, 0.5, size=(200, 5))
    expected = run_onnx(p1, x) - run_onnx(p2, x)
    got = merged.network.forward(x)
    assert got.shape == (200, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(expected).max() > 1e-2  # two different networks: the check is not vacuous


def test_merged_network_all_outputs_carry_both_networks(acas_dir):
    p1, p2 = acas_net(1, 1), acas_net(1, 2)
    merged = api.merged_network(p1, p2, outputs="all")
    x = np.random.default_rng(4).uniform(-0.5, 0.5, size=(50, 5))
    y = merged.network.forward(x)
    np.testing.assert_allclose(y[:, :5], run_onnx(p1, x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y[:, 5:10], run_onnx(p2, x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y[:, 10:], y[:, :5] - y[:, 5:10], atol=1e-9)
    assert merged.diff_offset == 10
