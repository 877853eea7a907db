"""Compressed copies of a network that keep its layer sizes (weight rounding)."""

from __future__ import annotations

import numpy as np

from nnbisim.model import Network


def round_weights(net: Network, dtype: str = "float16") -> Network:
    """Every weight and bias rounded to ``dtype`` (e.g. float16) and back to float64."""
    np_type = np.dtype(dtype)
    return Network.from_weights(
        [layer.weight.astype(np_type).astype(np.float64) for layer in net.layers],
        [layer.bias.astype(np_type).astype(np.float64) for layer in net.layers],
        net.input_shape, name=f"{net.name}-{dtype}")
