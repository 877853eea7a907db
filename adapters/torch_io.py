"""PyTorch state dicts -> :class:`~nnbisim.core.model.Network`, loaded without running pickled code.

Reads the plain float state dict of a stack of ``nn.Linear`` layers (``fc1.weight``,
``fc1.bias``, ...) and the quantized state dict PyTorch's eager-mode quantization writes
(``fc1._packed_params._packed_params = (qint8 weight, float bias)``, per-layer activation
``scale``/``zero_point``). :func:`load_state_dict_network` gives the dense model (for a
quantized file the *dequantized weights*, without activation rounding); :func:`load_torch`
gives a quantized file as a :class:`~nnbisim.core.quant.QuantizedNetwork` with its activation
quantization (the second paper's int8 network has activation scale 1 and zero point 0
everywhere, so inputs in [-1, 1] are rounded to {0, 1}). The activation dtype is not stored in
a state dict: it is taken to be quint8 (codes 0..255), PyTorch's default and what the paper's
model uses.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nnbisim.core.errors import InputError
from nnbisim.core.limits import check_widths
from nnbisim.core.model import Layer, Network
from nnbisim.core.quant import QuantizedLayer, QuantizedNetwork, Quantizer, check_arch


@dataclass(frozen=True)
class ActivationQuant:
    """Per-layer output quantization parameters of a quantized model."""

    scale: float
    zero_point: int


def _load_state_dict(path: Path) -> dict:
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
    sd, prefixes = _linear_layers(path)
    return _dense(sd, prefixes, path, input_shape)


def _linear_layers(path: Path) -> tuple[dict, list[str]]:
    """The state dict and its linear layers' prefixes, refusing a file without any."""
    sd = _load_state_dict(path)
    prefixes = _layer_order(list(sd))
    if not prefixes:
        raise InputError(f"{path}: no linear layer weights found (expected keys like "
                         "'fc1.weight' or 'fc1._packed_params._packed_params')")
    return sd, prefixes


def _tensor(value: object, key: str, path: Path) -> np.ndarray:
    """A state dict entry as float64 numbers, refused by name where it is no tensor."""
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{path}: '{key}' holds a {type(value).__name__}, not a tensor; save "
                         "the model's state_dict() as torch.save makes it")
    return value.detach().double().numpy()


def _packed_pair(value: object, prefix: str, path: Path) -> tuple[torch.Tensor, object]:
    """A quantized layer's packed ``(weight, bias)``, refused by name where it is not one."""
    if (not isinstance(value, tuple | list) or len(value) != 2
            or not isinstance(value[0], torch.Tensor) or not value[0].is_quantized):
        raise InputError(f"{path}: '{prefix}._packed_params._packed_params' is not a packed "
                         "(quantized weight, bias) pair; save the quantized model's "
                         "state_dict() as torch.save makes it")
    return value[0], value[1]


def _dense(sd: dict, prefixes: list[str], path: Path, input_shape: tuple[int, ...]
           ) -> tuple[Network, list[ActivationQuant] | None]:
    layers: list[Layer] = []
    quant: list[ActivationQuant] = []
    for p in prefixes:
        packed = sd.get(f"{p}._packed_params._packed_params")
        if packed is not None:
            w, b = _packed_pair(packed, p, path)
            weight = w.dequantize().double().numpy()
            bias = (np.zeros(weight.shape[0]) if b is None
                    else _tensor(b, f"{p} packed bias", path))
            quant.append(ActivationQuant(float(sd[f"{p}.scale"]), int(sd[f"{p}.zero_point"])))
        else:
            weight = _tensor(sd[f"{p}.weight"], f"{p}.weight", path)
            b = sd.get(f"{p}.bias")
            bias = (np.zeros(weight.shape[0]) if b is None
                    else _tensor(b, f"{p}.bias", path))
        if weight.ndim != 2:
            raise InputError(f"{path}: layer '{p}' has a {weight.ndim}-D weight; only fully "
                             "connected layers are supported")
        _finite(path, p, weight, bias)
        layers.append(Layer(weight, bias))
    net = Network(tuple(layers), input_shape or (1, layers[0].in_size), name=str(path))
    return net, (quant if quant else None)


def _quantizer(sd: dict, prefix: str, path: Path) -> Quantizer:
    try:
        scale = float(np.asarray(sd[f"{prefix}.scale"]).reshape(-1)[0])
        zero = int(np.asarray(sd[f"{prefix}.zero_point"]).reshape(-1)[0])
    except KeyError as exc:
        raise InputError(f"{path}: quantized layer '{prefix}' has no {exc.args[0]!r}; the file "
                         "is not a converted eager-mode quantized state dict") from None
    return Quantizer(scale, zero, 0, 255)


def load_torch(path: str | Path, arch: Sequence[int] | None = None,
               input_shape: tuple[int, ...] = ()) -> Network | QuantizedNetwork:
    """A float state dict as a :class:`Network`, a quantized one as a
    :class:`QuantizedNetwork` (input quantizer from ``quant.scale``/``quant.zero_point``, or
    scale 1 and zero point 0 if the file has no input stub). ``arch``: the expected sizes;
    a file of another shape is refused."""
    path = Path(path)
    sd, prefixes = _linear_layers(path)
    packed = [sd.get(f"{p}._packed_params._packed_params") for p in prefixes]
    net: Network | QuantizedNetwork
    if all(x is None for x in packed):
        net = _dense(sd, prefixes, path, input_shape)[0]
    else:
        net = _quantized(sd, prefixes, packed, path, input_shape)
    if arch is not None:
        check_arch(arch, [net.in_size, *net.hidden_sizes, net.out_size], str(path))
    check_widths([net.in_size, *net.hidden_sizes, net.out_size], str(path))
    return net


def _finite(path: Path, prefix: str, *arrays: np.ndarray) -> None:
    if not all(np.isfinite(a).all() for a in arrays):
        raise InputError(f"{path}: NaN or infinite values in layer '{prefix}'; nnbisim needs "
                         "finite weights: check the training run that wrote them")


def _quantized(sd: dict, prefixes: list[str], packed: list, path: Path,
               input_shape: tuple[int, ...]) -> QuantizedNetwork:
    if any(x is None for x in packed):
        raise InputError(f"{path}: mixes float and quantized linear layers; only all-float or "
                         "all-quantized stacks are supported")
    layers = []
    for p, value in zip(prefixes, packed, strict=True):
        w, b = _packed_pair(value, p, path)
        if w.dim() != 2:
            raise InputError(f"{path}: layer '{p}' has a {w.dim()}-D weight; only fully "
                             "connected layers are supported")
        codes = w.int_repr().double().numpy()
        if w.qscheme() in (torch_per_channel()):
            scales = w.q_per_channel_scales().double().numpy()
            zeros = w.q_per_channel_zero_points().double().numpy()
        else:
            scales = np.full(codes.shape[0], float(w.q_scale()))
            zeros = np.full(codes.shape[0], float(w.q_zero_point()))
        bias = np.zeros(codes.shape[0]) if b is None else _tensor(b, f"{p} packed bias", path)
        _finite(path, p, scales, zeros, bias)
        layers.append(QuantizedLayer(codes, scales, zeros, bias, _quantizer(sd, p, path)))
    stub = "quant" if "quant.scale" in sd else None
    inp = _quantizer(sd, stub, path) if stub else Quantizer(1.0, 0, 0, 255)
    return QuantizedNetwork(inp, tuple(layers), input_shape or (1, layers[0].in_size),
                            name=str(path))


def torch_per_channel() -> tuple:
    return (torch.per_channel_affine, torch.per_channel_symmetric,
            torch.per_channel_affine_float_qparams)
