"""The built-in example: the first paper's Example 1, end to end on the foundation.

N1 is a random ReLU network with 5 hidden layers of 50 neurons, one input on [-1, 1] and one
output; N2 is a 2x10 network trained on N1's input-output samples. The demo merges them, checks
the merged file against the originals in onnxruntime, brackets eps between a replayed witness
and a certified bound (own bound engine, then Marabou bisection), writes the property
``|y1 - y2| <= eps`` and draws the paper's Fig. 2: N1 inside the band N2 +- eps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from nnbisim.adapters.compress import distill
from nnbisim.adapters.merged_onnx import merge_files
from nnbisim.adapters.onnx_write import network_to_model, save_model
from nnbisim.adapters.options import DistillOptions
from nnbisim.core.errors import OverwriteError
from nnbisim.core.model import Network
from nnbisim.specs.discrepancy import infinity_norm_property, violation_property
from nnbisim.specs.sets import Box, InputSet
from nnbisim.specs.vnnlib1 import write_vnnlib1
from nnbisim.tasks.check import check_merged
from nnbisim.tasks.epsilon import compute_epsilon
from nnbisim.tasks.options import EpsilonOptions
from nnbisim.verifiers.registry import get_verifier

LOWER, UPPER = -1.0, 1.0


def example_n1(seed: int = 0) -> Network:
    """A random 1-50-50-50-50-50-1 ReLU network (He-scaled so its output is not flat)."""
    rng = np.random.default_rng(seed)
    sizes = [1, 50, 50, 50, 50, 50, 1]
    ws = [rng.normal(size=(o, i)) * np.sqrt(2.0 / i) for i, o in zip(sizes[:-1], sizes[1:],
                                                                       strict=True)]
    bs = [rng.normal(size=o) * 0.3 for o in sizes[1:]]
    return Network.from_weights(ws, bs, (1, 1), name="N1")


def train_small(n1: Network, hidden: tuple[int, ...] = (10, 10), samples: int = 2000,
                steps: int = 3000, seed: int = 0) -> Network:
    """Fit a small ReLU network to ``n1`` on uniform samples of the input interval (MSE, Adam,
    full batch): the paper's distillation of N1 into N2."""
    opts = DistillOptions(hidden=hidden, samples=samples, steps=steps, batch=samples, seed=seed)
    return distill(n1, [LOWER], [UPPER], opts, name="N2")


def plot_band(n1: Network, n2: Network, eps: float, path: Path) -> bool:
    """The paper's Fig. 2: N1's samples, N2, and the band N2 +- eps. True if all lie inside."""
    x = np.linspace(LOWER, UPPER, 2001).reshape(-1, 1)
    y1, y2 = n1.forward(x)[:, 0], n2.forward(x)[:, 0]
    inside = bool(np.all(np.abs(y1 - y2) <= eps))
    fig = Figure(figsize=(7, 4), dpi=120)
    ax = fig.subplots()
    ax.fill_between(x[:, 0], y2 - eps, y2 + eps, color="tab:orange", alpha=0.25,
                    label=f"N2 $\\pm$ eps (eps = {eps:.4f}, certified)")
    ax.plot(x[:, 0], y2, color="tab:orange", lw=1.5, label="N2 (2x10, compressed)")
    ax.plot(x[::10, 0], y1[::10], ".", ms=2.5, color="tab:blue",
            label="N1 (5x50, original), samples")
    ax.set_xlabel("x")
    ax.set_ylabel("output")
    ax.set_title("Approximate bisimulation: every N1 output lies within N2 +- eps")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return inside


def run_demo(out: Path, force: bool = False, echo: Callable[[str], None] = lambda _m: None,
             time_budget: float = 40.0) -> int:
    """Run the example into ``out``; returns 0 when every answer is consistent."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise OverwriteError(f"{out}: exists and is not empty; pass --force to overwrite or "
                             "choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    echo("[1/5] N1: random ReLU network 1-50x5-1; training N2 (2x10) on 2000 samples of N1")
    n1 = example_n1()
    n2 = train_small(n1)
    p1 = save_model(network_to_model(n1), out / "n1.onnx", force=True)
    p2 = save_model(network_to_model(n2), out / "n2.onnx", force=True)
    echo("[2/5] merging into one network whose output is N1(x) - N2(x)")
    pm = save_model(merge_files(p1, p2), out / "merged.onnx", force=True)
    rep = check_merged(pm, p1, p2, np.array([LOWER]), np.array([UPPER]), 5000)
    echo(f"      onnxruntime: merged vs N1 - N2 on 5000 inputs, largest disagreement "
         f"{rep.max_abs:.2g}")
    echo("[3/5] eps over [-1, 1]: witnesses, own bounds with branch and bound, Marabou")
    inputs = InputSet.of(Box([LOWER], [UPPER]))
    opts = EpsilonOptions(verifier="marabou", time_budget=time_budget, rel_gap=0.01,
                          workdir=out / "queries")
    eps = compute_epsilon(p1, p2, inputs, opts, progress=lambda msg: echo(f"      {msg}"))
    echo("[4/6] the VNN-LIB property |y1 - y2| <= eps for any verifier: diff_inf.vnnlib")
    write_vnnlib1(infinity_norm_property(inputs, 1, eps.certified), out / "diff_inf.vnnlib")
    echo("[5/6] Marabou on merged.onnx, one sign per query: can y1 - y2 reach +eps or -eps?")
    checks = confirm_with_marabou(pm, inputs, eps.certified, out / "queries", echo)
    echo("[6/6] plotting N1, N2 and the band N2 +- eps: fig2_band.png")
    inside = plot_band(n1, n2, eps.certified, out / "fig2_band.png")
    echo("")
    echo(eps.table())
    report = {"n1": n1.describe(), "n2": n2.describe(), "input": [LOWER, UPPER],
              "merge_check_max_abs": rep.max_abs, "all_n1_samples_inside_band": inside,
              **eps.to_json(), "marabou_confirms": checks, "seconds": time.perf_counter() - t0}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    echo(f"\nall 2001 sampled N1 outputs inside N2 +- eps: {'yes' if inside else 'NO'}")
    echo(f"files in {out}: n1.onnx n2.onnx merged.onnx diff_inf.vnnlib fig2_band.png "
         f"report.json queries/ ({report['seconds']:.1f} s)")
    refuted = any(c["answer"] == "sat" for c in checks)
    return 0 if inside and eps.witnessed <= eps.certified and not refuted else 1


def confirm_with_marabou(merged: Path, inputs, eps: float, workdir: Path,
                         echo: Callable[[str], None], timeout: float = 30.0) -> list[dict]:
    """Ask Marabou whether ``sign * (y1 - y2) >= eps`` is reachable, for both signs (``unsat``
    confirms the certified bound independently)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tool = get_verifier("marabou")
    out = []
    for sign in (1, -1):
        prop = workdir / f"confirm_{'pos' if sign > 0 else 'neg'}.vnnlib"
        write_vnnlib1(violation_property(inputs, 1, 0, sign, eps), prop)
        verdict = tool.check(merged, prop, timeout)
        out.append({"sign": sign, "threshold": eps, "answer": verdict.status.vnncomp,
                    "seconds": round(verdict.seconds, 2), "property": prop.name})
        echo(f"      {'+' if sign > 0 else '-'}(y1 - y2) >= {eps:.6g}: "
             f"{verdict.status.vnncomp} ({verdict.seconds:.1f} s)")
    return out
