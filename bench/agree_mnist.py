"""Top-1 agreement (``nnbisim.tasks.agree``) of the second paper's MNIST classifier with two
compressed copies, over L-inf balls around test images, same instances, same run.

N1 is ``fnn-repair/mnist_fnn_l_ori.pth`` (784-256-64-10, float). Against it:
- ``int8-weights``: N1 with int8 weights (per tensor, ``nnbisim compress --method int8``, float
  activations), both written to ONNX; decided with the differential engine and with CROWN on
  the product network (as a single-network verifier sees the question);
- ``paper-int8``: the paper's int8 network ``mnist_fnn_s_quan.pth`` with quantized activations,
  as PyTorch runs it (its rounding in the bounds: its own interval propagation).
Per test image 0..19 (MNIST test set, normalised to [-1, 1]) and radius: the ball clipped to
[-1, 1]; "does argmax N2 = argmax N1 everywhere in it?" with a time budget.

    python bench/agree_mnist.py [--images 20] [--radii 0.005,0.01,0.02,0.05,0.1] [--budget 20]
"""

from __future__ import annotations

import time
from pathlib import Path

import _threads  # noqa: F401 - first: one thread per process
import numpy as np
from harness import DATA, WORK, Results, parser, run

from nnbisim.adapters.compress import compress
from nnbisim.adapters.mnist import load_test_set
from nnbisim.adapters.models import load_any
from nnbisim.adapters.onnx_write import network_to_model, save_model
from nnbisim.specs.sets import Box, InputSet
from nnbisim.tasks.agree import AgreeOptions, decide_agreement

CONFIGS = (("int8-weights", "differential"), ("int8-weights", "product"),
           ("paper-int8", "rounding"))


def networks() -> tuple[Path, Path]:
    folder = WORK / "agree"
    folder.mkdir(parents=True, exist_ok=True)
    n1 = load_any(DATA / "fnn-repair" / "mnist_fnn_l_ori.pth")
    p1, p2 = folder / "l_ori.onnx", folder / "l_ori_int8.onnx"
    if not p1.exists():
        save_model(network_to_model(n1), p1, force=True)
    if not p2.exists():
        save_model(network_to_model(compress(n1, "int8")), p2, force=True)
    return p1, p2


def unit(image: int, radius: float, config: tuple[str, str], budget: float) -> dict:
    p1, p2 = networks()
    copy, engine = config
    if copy == "paper-int8":
        p1 = DATA / "fnn-repair" / "mnist_fnn_l_ori.pth"
        p2, engine = DATA / "fnn-repair" / "mnist_fnn_s_quan.pth", "differential"
    x, labels = load_test_set()
    c = x[image].reshape(-1)
    box = Box(np.clip(c - radius, -1.0, 1.0), np.clip(c + radius, -1.0, 1.0))
    t0 = time.perf_counter()
    a = decide_agreement(p1, p2, InputSet.of(box), 0.0, budget, AgreeOptions(engine=engine))
    return {"image": image, "label": int(labels[image]), "radius": radius, "copy": copy,
            "engine": config[1],
            "verdict": a.status.value, "seconds": round(time.perf_counter() - t0, 2),
            "boxes": a.boxes, "classes": a.classes, "budget": budget}


def summarise(results: Results, planned: int) -> None:
    lines = results.header(
        "top-1 agreement, MNIST 784-256-64-10 against int8 copies",
        "Made by bench/agree_mnist.py: L-inf balls around MNIST test images (clipped to "
        "[-1, 1]), one decision per image, radius, copy and engine, all in the same run.",
        planned)
    radii = sorted({r["radius"] for r in results.rows})
    lines += ["| radius | N2 | engine | holds | violated | unknown | median s (decided) |",
              "|---:|---|---|---:|---:|---:|---:|"]
    for radius in radii:
        for copy, engine in CONFIGS:
            rows = [r for r in results.rows if r["radius"] == radius and r["engine"] == engine
                    and r["copy"] == copy]
            count = {v: sum(r["verdict"] == v for r in rows)
                     for v in ("holds", "violated", "unknown")}
            secs = sorted(r["seconds"] for r in rows if r["verdict"] != "unknown")
            med = f"{secs[len(secs) // 2]:.1f}" if secs else "-"
            lines.append(f"| {radius:g} | {copy} | {engine} | {count['holds']} | "
                         f"{count['violated']} | {count['unknown']} | {med} |")
    same = [r for r in results.rows if r["copy"] == "int8-weights"]
    bad = [(r["image"], r["radius"]) for r in same
           if {q["verdict"] for q in same
               if (q["image"], q["radius"]) == (r["image"], r["radius"])} >= {"holds",
                                                                              "violated"}]
    lines += ["", f"- int8-weights instances where the two engines contradict each other: "
              f"{len(set(bad))}"]
    results.md.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = parser(__doc__, "agree_mnist")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--radii", default="0.005,0.01,0.02,0.05,0.1")
    ap.add_argument("--budget", type=float, default=20.0)
    opts = ap.parse_args()
    results = Results(opts.results, opts.fresh)
    networks()
    radii = [float(r) for r in opts.radii.split(",")]
    units = {(i, r, *c): (i, r, c, opts.budget) for i in range(opts.images) for r in radii
             for c in CONFIGS}
    if not opts.summarise:
        run(units, unit, results, lambda row: summarise(results, len(units)),
            row_key=lambda r: (r["image"], r["radius"], r["copy"], r["engine"]),
            jobs=opts.jobs)
    summarise(results, len(units))


if __name__ == "__main__":
    main()
