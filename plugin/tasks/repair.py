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

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nnbisim.adapters.executor import Executor, one_torch_thread
from nnbisim.adapters.mnist import TRAIN, load_test_set, paper_images, patch_box
from nnbisim.adapters.options import QPARAMS
from nnbisim.adapters.repair import QATNet, retrain
from nnbisim.bounds.qbounds import Discrepancy, DiscrepancyOptions, discrepancy
from nnbisim.core.errors import InputError, NnbisimError
from nnbisim.core.model import Network
from nnbisim.core.pool import OK, Outcome, Unit
from nnbisim.core.quant import QuantizedNetwork
from nnbisim.specs.io import read_input_set
from nnbisim.tasks.options import RepairOptions

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Region:
    """An input box around an image (``name``: e.g. the test index)."""

    name: str
    lower: np.ndarray
    upper: np.ndarray


class Stage(enum.StrEnum):
    INITIAL = "initial"
    CALIBRATED = "calibrated"  # after calibrating the activation quantization
    RETRAINED = "retrained"


@dataclass
class RoundRecord:
    round: int
    stage: Stage
    certified: list[float]  # per region: mean over outputs of the certified eps_i
    witnessed: list[float]
    accuracy: float | None
    seconds: float
    loss: list[float] = field(default_factory=list)
    ranges: list[dict] = field(default_factory=list)  # per region N1/N2 ranges, intervals

    def to_json(self) -> dict:
        return {"round": self.round, "stage": self.stage.value, "certified": self.certified,
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


def _certify(n1: Network, n2: QuantizedNetwork, regions: Sequence[Region], o: RepairOptions
             ) -> list[Discrepancy]:
    """Every region's certified discrepancy, each its own unit on the executor unless
    ``o.workers`` is 1 (a unit is killed at twice its budget plus a minute)."""
    opts = DiscrepancyOptions(time_budget=o.certify_budget)
    ex = Executor(workers=o.workers, ray=o.ray)
    if ex.slots == 1 and ex.ray is None or len(regions) == 1:
        return [discrepancy(n1, n2, r.lower, r.upper, opts) for r in regions]
    got: dict[int, Outcome] = {}
    ex.run([Unit(str(k), discrepancy, (n1, n2, r.lower, r.upper, opts),
                 timeout=2 * o.certify_budget + 60) for k, r in enumerate(regions)],
           lambda out: got.__setitem__(int(out.key), out), initializer=one_torch_thread)
    for k, r in enumerate(regions):
        if k not in got or got[k].status != OK:
            why = got[k].message if k in got else "interrupted"
            raise NnbisimError(f"region {r.name}: its discrepancy was not certified ({why})")
    return [got[k].value for k in range(len(regions))]


def _record(k: int, stage: Stage, ds: list[Discrepancy], acc: float | None, t: float,
            loss: list[float] | None = None) -> RoundRecord:
    return RoundRecord(k, stage, [float(d.eps_certified.mean()) for d in ds],
                       [float(d.eps_witnessed.mean()) for d in ds], acc, t, loss or [],
                       [{"n1": d.y1.tolist(), "n2": d.y2.tolist(),
                         "difference": [[o.min_certified, o.max_certified] for o in d.outputs],
                         "method": d.method.value, "cells": d.cells} for d in ds])


def _check(n2: QuantizedNetwork, regions: Sequence[Region], o: RepairOptions) -> None:
    if not isinstance(n2, QuantizedNetwork):
        raise InputError("N2 must be a quantized network (a quantized state dict or ONNX); "
                         "for a float N2 compute eps with nnbisim epsilon")
    if not regions:
        raise InputError("no regions to repair on")
    if not 0 < o.target_ratio <= 1:
        raise InputError(f"--target-ratio {o.target_ratio}: give a number in (0, 1]")
    if o.lam <= 0 or o.rounds < 1 or o.epochs < 1 or o.samples < 1:
        raise InputError("--lambda must be positive and --rounds, --epochs, samples at least 1")
    if o.qparams not in QPARAMS:
        raise InputError(f"qparams {o.qparams!r}: use one of {', '.join(QPARAMS)}")
    for r in regions:
        if np.any(r.lower < o.domain[0]) or np.any(r.upper > o.domain[1]):
            raise InputError(f"region {r.name} leaves the input domain [{o.domain[0]}, "
                             f"{o.domain[1]}]; clip it")


class _Loop:
    """The repair loop's state: the network being retrained, its certified discrepancies and
    the history of rounds."""

    def __init__(self, n1: Network, n2: QuantizedNetwork, regions: Sequence[Region],
                 options: RepairOptions, accuracy: Callable | None) -> None:
        self.n1, self.regions, self.opts, self.accuracy = n1, regions, options, accuracy
        self.t0 = time.perf_counter()
        self.net, self.model = n2, QATNet(n2)
        self.ds = _certify(n1, n2, regions, options)
        self.history = [self.record(0, Stage.INITIAL)]
        self.targets = np.array(self.history[0].certified) * options.target_ratio

    def record(self, k: int, stage: Stage, loss: list[float] | None = None) -> RoundRecord:
        acc = self.accuracy(self.net) if self.accuracy else None
        return _record(k, stage, self.ds, acc, time.perf_counter() - self.t0, loss)

    def met(self) -> bool:
        return bool(np.all(np.array(self.history[-1].certified) <= self.targets))

    def calibrate(self, xs: np.ndarray, replay: np.ndarray) -> None:
        """Activation scales and zero points set from the ranges on the retraining data."""
        self.model.calibrate(torch.tensor(np.concatenate([xs, replay]), dtype=torch.float32),
                             self.opts.domain)
        self.net = self.model.export()
        self.ds = _certify(self.n1, self.net, self.regions, self.opts)
        self.history.append(self.record(0, Stage.CALIBRATED))

    def retrain(self, k: int, xs: np.ndarray, replay: np.ndarray) -> None:
        """One round: targets stepped ``1 / lam`` towards N1 (regions by their certified
        midpoints, the replay set pointwise), QAT epochs, export, certify."""
        o, n1, net, samples = self.opts, self.n1, self.net, self.opts.samples
        deltas = np.concatenate([np.repeat(d.midpoints[None], samples, 0) for d in self.ds]
                                + [np.stack([d.midpoints for d in self.ds])])
        y_regions = net.forward(xs) + deltas / o.lam
        if len(replay):
            y2 = net.forward(replay)
            y_replay = y2 + (n1.forward(replay) - y2) / o.lam
        else:
            y_replay = np.zeros((0, n1.out_size))
        log = retrain(self.model, np.concatenate([xs, replay]),
                      np.concatenate([y_regions, y_replay]), epochs=o.epochs, lr=o.lr,
                      seed=o.seed + k)
        self.net = self.model.export()
        self.ds = _certify(n1, self.net, self.regions, o)
        self.history.append(self.record(k, Stage.RETRAINED, log.loss))


def repair(n1: Network, n2: QuantizedNetwork, regions: Sequence[Region],
           options: RepairOptions = RepairOptions(), *, replay: np.ndarray | None = None,
           accuracy: Callable[[QuantizedNetwork], float] | None = None,
           progress: Progress | None = None) -> RepairReport:
    """Run the loop (module doc) and return every round's certified discrepancy. ``replay``:
    inputs whose outputs are stepped towards N1's too (keeps accuracy); ``accuracy``: measured
    after every round."""
    _check(n2, regions, options)
    o, say = options, progress or (lambda s: None)
    rng = np.random.default_rng(o.seed)
    torch.manual_seed(o.seed)
    loop = _Loop(n1, n2, regions, o, accuracy)
    say(f"initial mean discrepancy {np.mean(loop.history[0].certified):.4f} (certified), "
        f"targets {o.target_ratio:g} x per region")
    replay = np.zeros((0, n1.in_size)) if replay is None else np.asarray(replay, np.float64)
    met, k = loop.met(), 0
    while not met and k < o.rounds:
        k += 1
        xs = np.concatenate([rng.uniform(r.lower, r.upper, size=(o.samples, r.lower.size))
                             for r in regions]
                            + [np.stack([(r.lower + r.upper) / 2 for r in regions])])
        if k == 1 and o.qparams == "calibrate":
            loop.calibrate(xs, replay)
            say(f"calibrated activation quantization: mean discrepancy "
                f"{np.mean(loop.history[-1].certified):.4f}")
            if loop.met():
                met = True
                break
        loop.retrain(k, xs, replay)
        met = loop.met()
        last = loop.history[-1]
        say(f"round {k}: mean discrepancy {np.mean(last.certified):.4f} certified, "
            f"{np.mean(last.witnessed):.4f} witnessed"
            + (f", accuracy {last.accuracy:.2%}" if accuracy else "")
            + (", every region at its target" if met else ""))
    return RepairReport([r.name for r in regions], o.target_ratio, o.lam, o.qparams,
                        loop.history, loop.net, met, time.perf_counter() - loop.t0)


def accuracy_on(images: np.ndarray, labels: np.ndarray) -> Callable[[Network | QuantizedNetwork],
                                                                    float]:
    """Top-1 accuracy; ties in the (integer) outputs go to the lowest label, as argmax does."""
    def acc(net: Network | QuantizedNetwork) -> float:
        return float(np.mean(net.forward(images).argmax(1) == labels))
    return acc


def regions_from(spec: str, data: Path | None = None, delta: float = 0.05) -> list[Region]:
    """Regions from a ``--regions`` text: ``paper`` (the second paper's ten images, a 2x2 centre
    patch perturbed by ``delta``), ``ball:RADIUS:I,J,...`` (L-inf balls around test images
    0-4999) or a VNN-LIB file whose input boxes are the regions."""
    images, _ = load_test_set(data / "mnist" if data else None)
    if spec == "paper":
        idx = [i for i, _ in paper_images(data / "fnn-repair" / "images" if data else None)]
        return [Region(str(i), *patch_box(images[i], delta)) for i in idx]
    if spec.startswith("ball:"):
        parts = spec.split(":")
        try:
            radius, idx = float(parts[1]), [int(v) for v in parts[2].split(",")]
        except (IndexError, ValueError):
            raise InputError(f"--regions {spec!r}: write ball:RADIUS:I,J,... (test image "
                             "indices), e.g. ball:0.01:12,14") from None
        if radius < 0 or any(i not in TRAIN for i in idx):
            raise InputError(f"--regions {spec!r}: the radius must be >= 0 and the indices in "
                             "0-4999 (images 5000-9999 are held out for accuracy)")
        return [Region(str(i), np.clip(images[i] - radius, -1, 1),
                       np.clip(images[i] + radius, -1, 1)) for i in idx]
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"--regions {spec!r}: give paper, ball:RADIUS:I,J,... or a VNN-LIB "
                         "file whose input boxes are the regions")
    boxes = read_input_set(path).boxes
    return [Region(f"{path.stem}[{k}]", b.lower, b.upper) for k, b in enumerate(boxes)]
