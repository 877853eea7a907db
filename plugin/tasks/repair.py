"""The repair loop of the second paper, done soundly: certify, retrain towards N1, repeat.

Each round: certify the discrepancy ``[min, max]`` of ``(N1 - N2)_i`` over every region
(:func:`nnbisim.bounds.qbounds.discrepancy`, exact on the int8 model); stop when every region's
discrepancy (the mean over outputs of the certified ``max |N1 - N2|_i``, the paper's Table II
metric) is at most ``target_ratio`` times its initial value; else retrain N2 quantization-aware
for ``epochs`` epochs on

* samples of each region with targets ``N2(x) + delta / lambda`` (``delta`` the per-output
  midpoint of the region's certified interval: the paper's rule (20)), and
* a replay set (test images 0-4999) with targets ``N2(x) + (N1(x) - N2(x)) / lambda``, the same
  rule pointwise, which keeps (and restores) accuracy,

and export the retrained int8 network. Decisions where the paper is silent or ambiguous:

* ``qparams="calibrate"`` (default): before the first retraining the activation scales and zero
  points are set from the ranges on the retraining data, as QAT observers do. The paper's int8
  network has every activation scale 1.0 and zero point 0 (its observers never ran): its inputs
  are rounded to {0, 1} and its logits to non-negative integers, which no weight change can
  undo (negative logits alone are 60-70% of its discrepancy). ``"keep"`` retrains the weights
  only, the paper's loop taken literally. Either way the result is an int8 network of the same
  size (per-channel symmetric int8 weights, per-tensor uint8 activations).
* The stop test uses certified values, never sampled ones; witnessed values are reported beside.
* Accuracy is measured on the held-out test images 5000-9999 only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from nnbisim.adapters.repair import QPARAMS, QATNet, retrain
from nnbisim.bounds.qbounds import Discrepancy, discrepancy
from nnbisim.core.errors import InputError
from nnbisim.core.model import Network
from nnbisim.core.quant import QuantizedNetwork

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Region:
    """An input box around an image (``name``: e.g. the test index)."""

    name: str
    lower: np.ndarray
    upper: np.ndarray


@dataclass
class RoundRecord:
    round: int
    stage: str  # "initial", "calibrated", "retrained"
    certified: list[float]  # per region: mean over outputs of the certified eps_i
    witnessed: list[float]
    accuracy: float | None
    seconds: float
    loss: list[float] = field(default_factory=list)
    ranges: list[dict] = field(default_factory=list)  # per region N1/N2 ranges, intervals

    def to_json(self) -> dict:
        return {"round": self.round, "stage": self.stage, "certified": self.certified,
                "witnessed": self.witnessed, "mean_certified": float(np.mean(self.certified)),
                "mean_witnessed": float(np.mean(self.witnessed)), "accuracy": self.accuracy,
                "seconds": self.seconds, "loss": self.loss, "regions": self.ranges}


@dataclass
class RepairReport:
    regions: list[str]
    target_ratio: float
    lam: float
    qparams: str
    rounds: list[RoundRecord]
    network: QuantizedNetwork
    met: bool
    seconds: float

    @property
    def initial(self) -> RoundRecord:
        return self.rounds[0]

    @property
    def final(self) -> RoundRecord:
        return self.rounds[-1]

    def to_json(self) -> dict:
        init, fin = self.initial.certified, self.final.certified
        return {"regions": self.regions, "target_ratio": self.target_ratio,
                "lambda": self.lam, "qparams": self.qparams, "met": self.met,
                "targets": [self.target_ratio * c for c in init],
                "ratio_final_to_initial": [f / i if i > 0 else 0.0 for f, i in
                                           zip(fin, init, strict=True)],
                "mean_ratio": float(np.mean(fin) / np.mean(init)) if np.mean(init) else 0.0,
                "rounds": [r.to_json() for r in self.rounds], "seconds": self.seconds}


def _certify(n1: Network, n2: QuantizedNetwork, regions: Sequence[Region], budget: float
             ) -> list[Discrepancy]:
    return [discrepancy(n1, n2, r.lower, r.upper, time_budget=budget) for r in regions]


def _record(k: int, stage: str, ds: list[Discrepancy], acc: float | None, t: float,
            loss: list[float] | None = None) -> RoundRecord:
    return RoundRecord(k, stage, [float(d.eps_certified.mean()) for d in ds],
                       [float(d.eps_witnessed.mean()) for d in ds], acc, t, loss or [],
                       [{"n1": d.y1.tolist(), "n2": d.y2.tolist(),
                         "difference": [[o.min_certified, o.max_certified] for o in d.outputs],
                         "method": d.method, "cells": d.cells} for d in ds])


def repair(n1: Network, n2: QuantizedNetwork, regions: Sequence[Region], *,
           replay: np.ndarray | None = None, target_ratio: float = 0.67, lam: float = 10.0,
           rounds: int = 10, epochs: int = 3, samples: int = 256, qparams: str = "calibrate",
           domain: tuple[float, float] = (-1.0, 1.0), lr: float = 1e-3,
           accuracy: Callable[[QuantizedNetwork], float] | None = None,
           certify_budget: float = 30.0, seed: int = 0, progress: Progress | None = None
           ) -> RepairReport:
    """Run the loop (module doc) and return every round's certified discrepancy."""
    if not isinstance(n2, QuantizedNetwork):
        raise InputError("N2 must be a quantized network (a quantized state dict or ONNX); "
                         "for a float N2 compute eps with nnbisim epsilon")
    if not regions:
        raise InputError("no regions to repair on")
    if not 0 < target_ratio <= 1:
        raise InputError(f"--target-ratio {target_ratio}: give a number in (0, 1]")
    if lam <= 0 or rounds < 1 or epochs < 1 or samples < 1:
        raise InputError("--lambda must be positive and --rounds, --epochs, samples at least 1")
    if qparams not in QPARAMS:
        raise InputError(f"qparams {qparams!r}: use one of {', '.join(QPARAMS)}")
    for r in regions:
        if np.any(r.lower < domain[0]) or np.any(r.upper > domain[1]):
            raise InputError(f"region {r.name} leaves the input domain [{domain[0]}, "
                             f"{domain[1]}]; clip it")
    t0 = time.perf_counter()
    say = progress or (lambda s: None)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    ds = _certify(n1, n2, regions, certify_budget)
    history = [_record(0, "initial", ds, accuracy(n2) if accuracy else None,
                       time.perf_counter() - t0)]
    targets = np.array(history[0].certified) * target_ratio
    say(f"initial mean discrepancy {np.mean(history[0].certified):.4f} (certified), targets "
        f"{target_ratio:g} x per region")
    net, model = n2, QATNet(n2)
    replay = np.zeros((0, n1.in_size)) if replay is None else np.asarray(replay, np.float64)
    met = bool(np.all(np.array(history[-1].certified) <= targets))
    k = 0
    while not met and k < rounds:
        k += 1
        xs = np.concatenate([rng.uniform(r.lower, r.upper, size=(samples, r.lower.size))
                             for r in regions] + [np.stack([(r.lower + r.upper) / 2 for r in
                                                            regions])])
        if k == 1 and qparams == "calibrate":
            model.calibrate(torch.tensor(np.concatenate([xs, replay]), dtype=torch.float32),
                            domain)
            net = model.export()
            ds = _certify(n1, net, regions, certify_budget)
            history.append(_record(0, "calibrated", ds, accuracy(net) if accuracy else None,
                                   time.perf_counter() - t0))
            say(f"calibrated activation quantization: mean discrepancy "
                f"{np.mean(history[-1].certified):.4f}")
            if np.all(np.array(history[-1].certified) <= targets):
                met = True
                break
        deltas = np.concatenate([np.repeat(d.midpoints[None], samples, 0) for d in ds]
                                + [np.stack([d.midpoints for d in ds])])
        y_regions = net.forward(xs) + deltas / lam
        if len(replay):
            y2 = net.forward(replay)
            y_replay = y2 + (n1.forward(replay) - y2) / lam
        else:
            y_replay = np.zeros((0, n1.out_size))
        log = retrain(model, np.concatenate([xs, replay]), np.concatenate([y_regions, y_replay]),
                      epochs=epochs, lr=lr, seed=seed + k)
        net = model.export()
        ds = _certify(n1, net, regions, certify_budget)
        history.append(_record(k, "retrained", ds, accuracy(net) if accuracy else None,
                               time.perf_counter() - t0, log.loss))
        met = bool(np.all(np.array(history[-1].certified) <= targets))
        say(f"round {k}: mean discrepancy {np.mean(history[-1].certified):.4f} certified, "
            f"{np.mean(history[-1].witnessed):.4f} witnessed"
            + (f", accuracy {history[-1].accuracy:.2%}" if accuracy else "")
            + (", every region at its target" if met else ""))
    return RepairReport([r.name for r in regions], target_ratio, lam, qparams, history, net, met,
                        time.perf_counter() - t0)


def accuracy_on(images: np.ndarray, labels: np.ndarray) -> Callable[[Network | QuantizedNetwork],
                                                                    float]:
    """Top-1 accuracy; ties in the (integer) outputs go to the lowest label, as argmax does."""
    def acc(net: Network | QuantizedNetwork) -> float:
        return float(np.mean(net.forward(images).argmax(1) == labels))
    return acc
