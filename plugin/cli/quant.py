"""``nnbisim convert``, ``discrepancy`` and ``repair``: the handlers (quantized networks)."""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort

from nnbisim.adapters.mnist import HELD_OUT, TRAIN, load_test_set
from nnbisim.adapters.models import load_any, replay_witnesses, run_session
from nnbisim.adapters.onnx_quant_write import quantized_to_model
from nnbisim.adapters.onnx_write import network_to_model, save_model
from nnbisim.bounds.qbounds import Discrepancy, DiscrepancyOptions, Method, discrepancy
from nnbisim.cli.common import progress_to_stderr, write_json
from nnbisim.core.errors import InputError
from nnbisim.core.quant import QuantizedNetwork, parse_arch
from nnbisim.tasks.options import RepairOptions
from nnbisim.tasks.repair import RepairReport, accuracy_on, regions_from, repair


def cmd_convert(args: argparse.Namespace) -> int:
    arch = parse_arch(args.arch) if args.arch else None
    net = load_any(args.model, arch)
    quantized = isinstance(net, QuantizedNetwork)
    model = quantized_to_model(net) if quantized else network_to_model(net)
    path = save_model(model, args.out_file, force=args.force)
    # replay: onnxruntime on the written file against the model's own forward
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(64, net.in_size)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = np.stack([run_session(sess, net, xi) for xi in x])
    want = net.forward(x.astype(np.float64))
    worst = float(np.max(np.abs(got - want)))
    kind = "int8 (int32 MatMul, float64 rounding)" if quantized else "float32 (Gemm/Relu)"
    print(f"{path}: {net.describe()}, {kind}; onnxruntime vs the model on 64 random inputs: "
          f"max difference {worst:.3g}")
    return 0


def _print_box(k: int, d: Discrepancy) -> None:
    unit = "cells" if d.method is Method.EXACT_CELLS else "boxes"
    print(f"box {k}: {d.method} ({d.cells} {unit}, {d.seconds:.1f} s); mean eps witnessed "
          f"{d.eps_witnessed.mean():.6g}, certified {d.eps_certified.mean():.6g}")
    print("  out   min witnessed   min certified   max witnessed   max certified")
    for o in d.outputs:
        print(f"  {o.index:>3} {o.min_witnessed:>15.6g} {o.min_certified:>15.6g} "
              f"{o.max_witnessed:>15.6g} {o.max_certified:>15.6g}")
    for note in d.notes:
        print(f"  note: {note}")


def cmd_discrepancy(args: argparse.Namespace) -> int:
    n1, n2 = load_any(args.n1), load_any(args.n2)
    say = progress_to_stderr(time.perf_counter(), args.quiet)
    results = []
    for k, box in enumerate(args.inputs.boxes):
        d = discrepancy(n1, n2, box.lower, box.upper,
                        DiscrepancyOptions(time_budget=args.time_budget,
                                           max_boxes=args.max_boxes), progress=say)
        _print_box(k, d)
        replayed = replay_witnesses(n1, n2, d.witness_x)
        own = np.array([[o.min_witnessed, o.max_witnessed] for o in d.outputs])
        gap = float(np.max(np.abs(replayed - own)))  # float32 evaluation against float64
        print(f"  witnesses replayed in onnxruntime on both networks: largest difference to "
              f"the values above {gap:.3g}")
        data = d.to_json()
        data["replayed"] = {"min": replayed[:, 0].tolist(), "max": replayed[:, 1].tolist(),
                            "largest_difference": gap}
        results.append(data)
    if args.json:
        write_json(args.json, {"max_boxes": args.max_boxes, "boxes": results})
    return 0


def _print_repair(rep: RepairReport, original: float, path: object, mean_ratio: float) -> None:
    print(f"accuracy on the held-out test images 5000-9999: original {original:.2%}, "
          f"compressed {rep.initial.accuracy:.2%}, repaired {rep.final.accuracy:.2%}")
    print("region   initial certified   final certified   final witnessed   target   met")
    for k, name in enumerate(rep.regions):
        c0, c1 = rep.initial.certified[k], rep.final.certified[k]
        print(f"{name:>6} {c0:>19.4f} {c1:>17.4f} {rep.final.witnessed[k]:>17.4f} "
              f"{rep.target_ratio * c0:>8.4f}   {'yes' if c1 <= rep.target_ratio * c0 else 'no'}")
    print(f"mean {np.mean(rep.initial.certified):.4f} -> {np.mean(rep.final.certified):.4f} "
          f"(ratio {mean_ratio:.3f}); {len(rep.rounds) - 1} step(s), "
          f"{rep.seconds:.1f} s; {'every region at its target' if rep.met else 'target NOT met'}"
          f"; repaired network: {path}")


def cmd_repair(args: argparse.Namespace) -> int:
    arch = parse_arch(args.arch) if args.arch else None
    n1, n2 = load_any(args.n1, arch), load_any(args.n2, arch)
    if isinstance(n1, QuantizedNetwork):
        raise InputError(f"{args.n1}: N1, the original, must be a float network")
    if not isinstance(n2, QuantizedNetwork):
        raise InputError(f"{args.n2}: N2 must be a quantized network (a quantized state dict "
                         "or quantized ONNX)")
    regions = regions_from(args.regions, args.data, args.delta)
    images, labels = load_test_set(args.data / "mnist" if args.data else None)
    if images.shape[1] != n1.in_size:
        raise InputError(f"the networks take {n1.in_size} inputs, MNIST images have 784")
    held = np.array(list(HELD_OUT))
    acc = accuracy_on(images[held], labels[held])
    opts = RepairOptions(target_ratio=args.target_ratio, lam=args.lam, rounds=args.rounds,
                         epochs=args.epochs, samples=args.samples, qparams=args.qparams,
                         seed=args.seed, workers=args.workers or 1, ray=args.ray)
    rep = repair(n1, n2, regions, opts, replay=images[np.array(list(TRAIN))], accuracy=acc,
                 progress=progress_to_stderr(time.perf_counter(), args.quiet))
    path = save_model(quantized_to_model(rep.network), args.out_file, force=args.force)
    data = rep.to_json()
    data["accuracy"] = {"original": acc(n1), "compressed": rep.initial.accuracy,
                        "repaired": rep.final.accuracy, "images": "test 5000-9999"}
    _print_repair(rep, acc(n1), path, data["mean_ratio"])
    if args.json:
        write_json(args.json, data)
    return 0
