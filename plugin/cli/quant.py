"""``nnbisim convert``, ``nnbisim discrepancy`` and ``nnbisim repair`` (quantized networks)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from nnbisim.core.errors import InputError


def load_any(path: Path, arch: tuple[int, ...] | None = None):
    """A ``.pth`` state dict (float or quantized) or an ONNX file (float or quantized)."""
    from nnbisim.adapters.onnx_load import load_network, read_model
    from nnbisim.adapters.onnx_quant import is_quantized, quantized_from_model
    from nnbisim.adapters.torch_io import load_torch
    from nnbisim.core.quant import check_arch

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


def _checked_out(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise InputError(f"{path}: already exists; pass --force to overwrite it")


def cmd_convert(args: argparse.Namespace) -> int:
    import onnxruntime as ort

    from nnbisim.adapters.onnx_quant import quantized_to_model
    from nnbisim.adapters.onnx_write import network_to_model, save_model
    from nnbisim.core.quant import QuantizedNetwork, parse_arch

    arch = parse_arch(args.arch) if args.arch else None
    _checked_out(args.output, args.force)
    net = load_any(args.model, arch)
    quantized = isinstance(net, QuantizedNetwork)
    model = quantized_to_model(net) if quantized else network_to_model(net)
    path = save_model(model, args.output, force=args.force)
    # replay: onnxruntime on the written file against the model's own forward
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(64, net.in_size)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    got = np.concatenate([sess.run(None, {name: xi.reshape(net.input_shape)})[0] for xi in x])
    want = net.forward(x.astype(np.float64))
    worst = float(np.max(np.abs(got - want)))
    kind = "int8 (int32 MatMul, float64 rounding)" if quantized else "float32 (Gemm/Relu)"
    print(f"{path}: {net.describe()}, {kind}; onnxruntime vs the model on 64 random inputs: "
          f"max difference {worst:.3g}")
    return 0


def _regions(args: argparse.Namespace):
    from nnbisim.adapters.mnist import TRAIN, load_test_set, paper_images, patch_box
    from nnbisim.specs.io import read_spec
    from nnbisim.tasks.repair import Region

    spec = args.regions
    images, _ = load_test_set(args.data / "mnist" if args.data else None)
    if spec == "paper":
        idx = [i for i, _ in paper_images(args.data / "fnn-repair" / "images" if args.data
                                          else None)]
        return [Region(str(i), *patch_box(images[i], args.delta)) for i in idx]
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
    boxes = read_spec(path).inputs.boxes
    return [Region(f"{path.stem}[{k}]", b.lower, b.upper) for k, b in enumerate(boxes)]


def _session(net):
    """An onnxruntime session on the ONNX form nnbisim writes for ``net``."""
    import onnxruntime as ort

    from nnbisim.adapters.onnx_quant import quantized_to_model
    from nnbisim.adapters.onnx_write import network_to_model
    from nnbisim.core.quant import QuantizedNetwork

    model = quantized_to_model(net) if isinstance(net, QuantizedNetwork) else network_to_model(net)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def replay_witnesses(n1, n2, d) -> tuple[np.ndarray, float]:
    """The witnesses of ``d`` replayed in onnxruntime on both networks (as written to ONNX):
    ``(m, 2)`` replayed values of ``(N1 - N2)_i`` at the min and max witnesses, and the largest
    gap to the values nnbisim computed (float32 evaluation of N1 against float64)."""
    sessions = [_session(n) for n in (n1, n2)]
    m = d.witness_x.shape[0]
    out = np.zeros((m, 2))
    for i in range(m):
        for side in (0, 1):
            x = d.witness_x[i, side].astype(np.float32)
            ys = [s.run(None, {s.get_inputs()[0].name: x.reshape(n.input_shape)})[0].reshape(-1)
                  for s, n in zip(sessions, (n1, n2), strict=True)]
            out[i, side] = float(ys[0][i]) - float(ys[1][i])
    own = np.array([[o.min_witnessed, o.max_witnessed] for o in d.outputs])
    return out, float(np.max(np.abs(out - own)))


def cmd_discrepancy(args: argparse.Namespace) -> int:
    from nnbisim.bounds.qbounds import discrepancy
    from nnbisim.cli.main import _region

    if args.json:
        _checked_out(args.json, args.force)
    n1, n2 = load_any(args.n1), load_any(args.n2)
    inputs = _region(args)
    start = time.perf_counter()
    results = []
    for k, box in enumerate(inputs.boxes):
        d = discrepancy(n1, n2, box.lower, box.upper, time_budget=args.time_budget,
                        progress=None if args.quiet else _progress(start))
        print(f"box {k}: {d.method} ({d.cells} {'cells' if d.method == 'exact cells' else 'boxes'}"
              f", {d.seconds:.1f} s); mean eps witnessed {d.eps_witnessed.mean():.6g}, certified "
              f"{d.eps_certified.mean():.6g}")
        print("  out   min witnessed   min certified   max witnessed   max certified")
        for o in d.outputs:
            print(f"  {o.index:>3} {o.min_witnessed:>15.6g} {o.min_certified:>15.6g} "
                  f"{o.max_witnessed:>15.6g} {o.max_certified:>15.6g}")
        for note in d.notes:
            print(f"  note: {note}")
        replayed, gap = replay_witnesses(n1, n2, d)
        print(f"  witnesses replayed in onnxruntime on both networks: largest difference to "
              f"the values above {gap:.3g}")
        data = d.to_json()
        data["replayed"] = {"min": replayed[:, 0].tolist(), "max": replayed[:, 1].tolist(),
                            "largest_difference": gap}
        results.append(data)
    if args.json:
        args.json.write_text(json.dumps({"boxes": results}, indent=2))
    return 0


def _progress(start: float):
    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {msg}", file=sys.stderr, flush=True)
    return say


def cmd_repair(args: argparse.Namespace) -> int:
    from nnbisim.adapters.mnist import HELD_OUT, TRAIN, load_test_set
    from nnbisim.adapters.onnx_quant import quantized_to_model
    from nnbisim.adapters.onnx_write import save_model
    from nnbisim.core.quant import QuantizedNetwork, parse_arch
    from nnbisim.tasks.repair import accuracy_on, repair

    _checked_out(args.output, args.force)
    if args.json:
        _checked_out(args.json, args.force)
    arch = parse_arch(args.arch) if args.arch else None
    n1, n2 = load_any(args.n1, arch), load_any(args.n2, arch)
    if isinstance(n1, QuantizedNetwork):
        raise InputError(f"{args.n1}: N1, the original, must be a float network")
    if not isinstance(n2, QuantizedNetwork):
        raise InputError(f"{args.n2}: N2 must be a quantized network (a quantized state dict "
                         "or quantized ONNX)")
    regions = _regions(args)
    images, labels = load_test_set(args.data / "mnist" if args.data else None)
    if images.shape[1] != n1.in_size:
        raise InputError(f"the networks take {n1.in_size} inputs, MNIST images have 784")
    held = np.array(list(HELD_OUT))
    acc = accuracy_on(images[held], labels[held])
    rep = repair(n1, n2, regions, replay=images[np.array(list(TRAIN))],
                 target_ratio=args.target_ratio, lam=args.lam, rounds=args.rounds,
                 epochs=args.epochs, samples=args.samples, qparams=args.qparams,
                 accuracy=acc, seed=args.seed,
                 progress=None if args.quiet else _progress(time.perf_counter()))
    path = save_model(quantized_to_model(rep.network), args.output, force=args.force)
    data = rep.to_json()
    data["accuracy"] = {"original": acc(n1), "compressed": rep.initial.accuracy,
                        "repaired": rep.final.accuracy, "images": "test 5000-9999"}
    print(f"accuracy on the held-out test images 5000-9999: original {acc(n1):.2%}, "
          f"compressed {rep.initial.accuracy:.2%}, repaired {rep.final.accuracy:.2%}")
    print("region   initial certified   final certified   final witnessed   target   met")
    for k, name in enumerate(rep.regions):
        c0, c1 = rep.initial.certified[k], rep.final.certified[k]
        print(f"{name:>6} {c0:>19.4f} {c1:>17.4f} {rep.final.witnessed[k]:>17.4f} "
              f"{rep.target_ratio * c0:>8.4f}   {'yes' if c1 <= rep.target_ratio * c0 else 'no'}")
    print(f"mean {np.mean(rep.initial.certified):.4f} -> {np.mean(rep.final.certified):.4f} "
          f"(ratio {data['mean_ratio']:.3f}); {len(rep.rounds) - 1} step(s), "
          f"{rep.seconds:.1f} s; {'every region at its target' if rep.met else 'target NOT met'}"
          f"; repaired network: {path}")
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))
    return 0


def add_quant_parsers(sub) -> None:
    from nnbisim.cli.main import _add_region_args

    c = sub.add_parser("convert", help="a PyTorch state dict (float or int8) as ONNX")
    c.add_argument("model", type=Path, metavar="MODEL.pth")
    c.add_argument("--arch", help="layer sizes, e.g. 784-256-64-10 (checked against the file)")
    c.add_argument("-o", "--output", type=Path, required=True, metavar="MODEL.onnx")
    c.add_argument("--force", action="store_true")
    c.set_defaults(func=cmd_convert)

    d = sub.add_parser("discrepancy", help="certified [min, max] of N1 - N2 per output when "
                       "a network is quantized (int8 activations rounded exactly)")
    d.add_argument("n1", type=Path, metavar="N1")
    d.add_argument("n2", type=Path, metavar="N2")
    _add_region_args(d, required=True)
    d.add_argument("--time-budget", type=float, default=60.0, metavar="S")
    d.add_argument("--json", type=Path, metavar="OUT.json")
    d.add_argument("--force", action="store_true")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_discrepancy)

    r = sub.add_parser("repair", help="retrain an int8 N2 until its certified discrepancy "
                       "to N1 meets a target (second paper)")
    r.add_argument("n1", type=Path, metavar="N1")
    r.add_argument("n2", type=Path, metavar="N2")
    r.add_argument("--arch", help="layer sizes, e.g. 784-256-64-10 (checked against the files)")
    r.add_argument("--regions", default="paper",
                   help="paper (the ten images, 2x2 centre patch +-0.05), ball:R:I,J,... "
                   "(L-inf balls around test images 0-4999) or a VNN-LIB file of input boxes")
    r.add_argument("--delta", type=float, default=0.05, help="patch perturbation (paper)")
    r.add_argument("--target-ratio", type=float, default=0.67)
    r.add_argument("--lambda", dest="lam", type=float, default=10.0)
    r.add_argument("--rounds", type=int, default=10)
    r.add_argument("--epochs", type=int, default=3)
    r.add_argument("--samples", type=int, default=256, help="retraining samples per region")
    r.add_argument("--qparams", default="calibrate", choices=["calibrate", "keep"],
                   help="calibrate the activation quantization before retraining (default) or "
                   "keep N2's")
    r.add_argument("--data", type=Path, help="the data folder (default ../shared/data)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("-o", "--output", type=Path, required=True, metavar="REPAIRED.onnx")
    r.add_argument("--json", type=Path, metavar="OUT.json")
    r.add_argument("--force", action="store_true")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_repair)
