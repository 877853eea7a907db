"""Coupled two-network queries (inputs related otherwise than by equality) as one merged network
with a single-network property, for any verifier (:func:`~nnbisim.vnncomp.bridge.translate`
calls :func:`translate_coupled`).

The merged network's input is ``u = [x_f ; d]`` of :func:`~nnbisim.tasks.coupled.reduce_query`
(``x_g = x_f + d`` folded into ``g``'s first layer, weights copied, not recomputed), its outputs
``[y_f ; y_g ; y_f - y_g]`` and, where some coupling is not a bound of ``u`` (``x_g[0]``'s own
range), ``u`` itself: ``relu(u - lo)`` carried through every hidden layer and ``lo`` added back,
exact on the property's box ``u >= lo``. The comparison is its own layer and every weight is
stored unrounded (float64 where float32 would round), so an exact verifier's ``unsat`` is a
proof about the pair. Strict relations are written closed in 1.0 and strict in 2.0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnbisim.adapters.merge import merge_networks
from nnbisim.adapters.merged_meta import exact_dtype
from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.onnx_write import network_to_model, save_model
from nnbisim.core.errors import InputError
from nnbisim.core.model import Layer, Network
from nnbisim.specs.coupled import CoupledQuery
from nnbisim.specs.sets import InputSet, OutputConstraint, Polytope, Property
from nnbisim.specs.vnnlib1 import write_vnnlib1
from nnbisim.specs.vnnlib2 import write_vnnlib2
from nnbisim.tasks.coupled import Reduction, lifted, reduce_query


def with_input(net: Network, lower: np.ndarray) -> Network:
    """``net``'s outputs followed by its input ``u``, for ``u >= lower``: ``relu(u - lower)``
    rides along every hidden layer (identity weights) and ``lower`` is added back."""
    k, depth = len(lower), len(net.layers)
    layers = []
    for j, layer in enumerate(net.layers):
        carried = 0 if j == 0 else layer.in_size  # where u (or relu(u - lower)) comes in
        w = np.zeros((layer.out_size + k, carried + k))
        w[:layer.out_size, :layer.in_size] = layer.weight
        w[layer.out_size:, carried:] = np.eye(k)
        if depth == 1:
            shift = np.zeros(k)  # no ReLU on the way: u passes as it is
        elif j == 0:
            shift = -lower  # into the first ReLU: u - lower >= 0 on the box
        else:
            shift = lower if j == depth - 1 else np.zeros(k)
        layers.append(Layer(w, np.concatenate([layer.bias, shift])))
    return Network(tuple(layers), (k,), name=f"{net.name} with its input")


def _unsafe(q: CoupledQuery, red: Reduction) -> OutputConstraint:
    """The query's unsafe set over the merged outputs ``[y_f; y_g; y_f - y_g; u]``: a row
    ``a y_f - a y_g`` on the difference outputs, others on ``y_f``/``y_g``; the reduction's
    rows on ``u``."""
    m, k = q.n_outputs, red.m.shape[1]
    width = 3 * m + (k if len(red.rhs) else 0)
    polys = []
    for p in q.unsafe.disjuncts:
        rows = np.zeros((len(p.rhs), width))
        for r, row in enumerate(p.mat):
            a, b = row[:m], row[m:]
            if np.array_equal(a, -b) and a.any():
                rows[r, 2 * m:3 * m] = a
            else:
                rows[r, :2 * m] = row
        rhs, strict = p.rhs, p.strict or (False,) * len(p.rhs)
        if len(red.rhs):
            extra = np.zeros((len(red.rhs), width))
            extra[:, 3 * m:] = red.mat
            rows, rhs = np.vstack([rows, extra]), np.concatenate([rhs, red.rhs])
            strict = (*strict, *(False,) * len(red.rhs))
        polys.append(Polytope(rows, rhs, strict))
    return OutputConstraint(tuple(polys))


def translate_coupled(query_path: Path, q: CoupledQuery, p_f: Path, p_g: Path, out: Path
                      ) -> tuple[Path, Path, Path, dict]:
    """Write ``merged.onnx``, ``merged.vnnlib`` (1.0) and ``merged_v2.vnnlib`` (2.0) under
    ``out``; the manifest's extra fields (the reduction, for the way back)."""
    red = reduce_query(q)
    if red.box is None:
        raise InputError(f"{query_path}: its input constraints contradict each other (no "
                         "input of f and g meets them all); nothing to translate")
    n = q.n_inputs
    net_f = load_network(p_f)
    net_g = net_f if p_g == p_f else load_network(p_g)
    merged = merge_networks(lifted(net_f, red.m[:n], red.c[:n], "f"),
                            lifted(net_g, red.m[n:], red.c[n:], "g"), "all")
    stacked, post = merged.stacked, merged.comparison
    if len(red.rhs):
        k = red.m.shape[1]
        stacked = with_input(stacked, red.box.lower)
        post = np.block([[post, np.zeros((len(post), k))],
                         [np.zeros((k, post.shape[1])), np.eye(k)]])
    model = network_to_model(stacked, post=post, dtype=exact_dtype(stacked),
                             doc=f"translated by nnbisim from {query_path.name}")
    merged_path, v1, v2 = out / "merged.onnx", out / "merged.vnnlib", out / "merged_v2.vnnlib"
    save_model(model, merged_path, force=True)
    m = q.n_outputs
    unsafe = _unsafe(q, red)
    prop = Property(InputSet.of(red.box), unsafe, unsafe.out_dim, (1, red.m.shape[1]),
                    (1, unsafe.out_dim))
    comment = (f"translated by nnbisim from {query_path.name}: X = [X_{q.first} ; offsets of "
               f"X_{q.second}] (translation.json), Y_0..Y_{m - 1} = {q.first}, "
               f"Y_{m}..Y_{2 * m - 1} = {q.second}, Y_{2 * m}..Y_{3 * m - 1} = their "
               "difference, then the input where some coupling needs it; strict relations "
               "written closed")
    write_vnnlib1(prop, v1, comment=comment)
    write_vnnlib2(prop, path=v2)
    extra = {"coupled": {"m": red.m.tolist(), "c": red.c.tolist()}}
    return merged_path, v1, v2, extra


def coupled_inputs(info: dict, u: np.ndarray) -> np.ndarray:
    """``z = [x_f ; x_g]`` of a translated instance's input ``u`` (manifest ``info``)."""
    m = np.array(info["coupled"]["m"], np.float64)
    c = np.array(info["coupled"]["c"], np.float64)
    return np.asarray(u, np.float64).reshape(-1) @ m.T + c
