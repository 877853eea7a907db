"""PyTorch state dicts -> :class:`~nnbisim.model.Network`, loaded without running pickled code.

Reads the plain float state dict of a stack of ``nn.Linear`` layers (``fc1.weight``,
``fc1.bias``, ...) and the quantized state dict PyTorch's eager-mode quantization writes
(``fc1._packed_params._packed_params = (qint8 weight, float bias)``, per-layer activation
``scale``/``zero_point``). For a quantized model this module gives the *dequantized weights*;
the activation rounding between layers is not part of the dense model (the second paper's
networks have activation scale 1 and zero point 0).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnbisim.errors import InputError
from nnbisim.model import Layer, Network


@dataclass(frozen=True)
class ActivationQuant:
    """Per-layer output quantization parameters of a quantized model."""

    scale: float
    zero_point: int


def _load_state_dict(path: Path) -> dict:
    import torch

    if not path.is_file():
        raise InputError(f"{path}: no such file; give the path of a .pth state dict")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), weights_only=True, map_location="cpu")
    except Exception as exc:  # weights_only refuses pickled code; corrupt files raise anything
        raise InputError(
            f"{path}: not a loadable state dict ({type(exc).__name__}); save it with "
            "torch.save(model.state_dict(), path) (pickled whole models are refused for safety)"
        ) from exc
    if not isinstance(obj, dict):
        raise InputError(f"{path}: holds a {type(obj).__name__}, not a state dict; save "
                         "model.state_dict()")
    return obj


def _layer_order(keys: list[str]) -> list[str]:
    """Prefixes of linear layers in the order they appear (``fc1``, ``fc2``, ...)."""
    prefixes: list[str] = []
    for key in keys:
        m = re.match(r"(.+?)\.(weight|_packed_params\._packed_params)$", key)
        if m and m.group(1) not in prefixes:
            prefixes.append(m.group(1))
    return prefixes


def load_state_dict_network(
    path: str | Path, input_shape: tuple[int, ...] = ()
) -> tuple[Network, list[ActivationQuant] | None]:
    """Read a fully connected ReLU network from a float or quantized PyTorch state dict.

    Returns the network (dequantized weights for a quantized file) and, for a quantized file, the
    activation quantization of each layer's output (else ``None``). ReLU is assumed between
    consecutive linear layers, as in ``nn.Sequential(Linear, ReLU, ..., Linear)``.
    """
    path = Path(path)
    sd = _load_state_dict(path)
    prefixes = _layer_order(list(sd))
    if not prefixes:
        raise InputError(f"{path}: no linear layer weights found (expected keys like "
                         "'fc1.weight' or 'fc1._packed_params._packed_params')")
    layers: list[Layer] = []
    quant: list[ActivationQuant] = []
    for p in prefixes:
        packed = sd.get(f"{p}._packed_params._packed_params")
        if packed is not None:
            w, b = packed
            weight = w.dequantize().double().numpy()
            bias = np.zeros(weight.shape[0]) if b is None else b.detach().double().numpy()
            quant.append(ActivationQuant(float(sd[f"{p}.scale"]), int(sd[f"{p}.zero_point"])))
        else:
            weight = sd[f"{p}.weight"].detach().double().numpy()
            b = sd.get(f"{p}.bias")
            bias = np.zeros(weight.shape[0]) if b is None else b.detach().double().numpy()
        if weight.ndim != 2:
            raise InputError(f"{path}: layer '{p}' has a {weight.ndim}-D weight; only fully "
                             "connected layers are supported")
        layers.append(Layer(weight, bias))
    net = Network(tuple(layers), input_shape or (1, layers[0].in_size), name=str(path))
    return net, (quant if quant else None)
