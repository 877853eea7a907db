"""Any network file nnbisim reads, float or quantized: ONNX (float or int8) and PyTorch state
dicts (``.pth``), and onnxruntime sessions on the ONNX form nnbisim writes for a network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from nnbisim.adapters.onnx_load import load_network, read_model
from nnbisim.adapters.onnx_quant import is_quantized, quantized_from_model
from nnbisim.adapters.onnx_quant_write import quantized_to_model
from nnbisim.adapters.onnx_write import network_to_model
from nnbisim.adapters.torch_io import load_torch
from nnbisim.core.errors import InputError
from nnbisim.core.model import Network
from nnbisim.core.quant import QuantizedNetwork, check_arch

AnyNet = Network | QuantizedNetwork


def load_any(path: str | Path, arch: tuple[int, ...] | None = None) -> AnyNet:
    """A ``.pth`` state dict (float or quantized) or an ONNX file (float or quantized);
    ``arch``, the layer sizes, is checked where given."""
    path = Path(path)
    if path.suffix in (".pth", ".pt"):
        return load_torch(path, arch)
    if not path.is_file():
        raise InputError(f"{path}: no such file; give an ONNX model or a .pth state dict")
    model = read_model(path)
    net = quantized_from_model(model, str(path)) if is_quantized(model) else load_network(path)
    if arch is not None:
        check_arch(arch, [net.in_size, *net.hidden_sizes, net.out_size], str(path))
    return net


def session_of(net: AnyNet) -> ort.InferenceSession:
    """An onnxruntime session on the ONNX form nnbisim writes for ``net``."""
    model = quantized_to_model(net) if isinstance(net, QuantizedNetwork) else network_to_model(net)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run_session(sess: ort.InferenceSession, net: AnyNet, x: np.ndarray) -> np.ndarray:
    """One input row run through ``sess`` in float32, its outputs flattened."""
    feed = np.asarray(x, np.float32).reshape(net.input_shape)
    return sess.run(None, {sess.get_inputs()[0].name: feed})[0].reshape(-1)


def replay_witnesses(n1: AnyNet, n2: AnyNet, witness_x: np.ndarray) -> np.ndarray:
    """Witnesses ``(m, 2, n)`` (per output, at its minimum and its maximum) replayed in
    onnxruntime on both networks as written to ONNX: ``(m, 2)`` values of ``(N1 - N2)_i``."""
    sessions = [session_of(n) for n in (n1, n2)]
    m = witness_x.shape[0]
    out = np.zeros((m, 2))
    for i in range(m):
        for side in (0, 1):
            y1, y2 = (run_session(s, n, witness_x[i, side])
                      for s, n in zip(sessions, (n1, n2), strict=True))
            out[i, side] = float(y1[i]) - float(y2[i])
    return out
