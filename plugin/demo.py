"""The built-in example: the first paper's Example 1, end to end on the foundation.

N1 is a random ReLU network with 5 hidden layers of 50 neurons, one input on [-1, 1] and one
output; N2 is a 2x10 network trained on N1's input-output samples. The demo merges them, checks
the merged file against the originals in onnxruntime, writes the discrepancy properties and asks
Marabou on both sides of the sampled maximum, replaying every counterexample.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nnbisim.errors import OverwriteError
from nnbisim.model import Network

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
    """Fit a small ReLU network to ``n1`` on uniform samples of the input interval (MSE, Adam)."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.uniform(LOWER, UPPER, size=(samples, 1))
    y = n1.forward(x)
    layers: list[torch.nn.Module] = []
    width = 1
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1)).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.mean((model(xt) - yt) ** 2)
        loss.backward()
        opt.step()
        sched.step()
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    return Network.from_weights([m.weight.detach().numpy() for m in linears],
                                [m.bias.detach().numpy() for m in linears], (1, 1), name="N2")


def run_demo(out: Path, force: bool = False, echo: Callable[[str], None] = print,
             timeout: float = 60.0) -> int:
    """Run the example into ``out``; returns 0 when every answer is consistent."""
    from nnbisim.adapters.onnx_write import network_to_model, save_model
    from nnbisim.adapters.replay import replay_difference
    from nnbisim.api import check_merged, merge_files
    from nnbisim.specs.discrepancy import violation_property
    from nnbisim.specs.sets import Box, InputSet
    from nnbisim.specs.vnnlib1 import write_vnnlib1
    from nnbisim.verifiers import get_verifier

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise OverwriteError(f"{out}: exists and is not empty; pass --force to overwrite or "
                             "choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    echo("[1/5] N1: random ReLU network 1-50x5-1; training N2 (2x10) on 2000 samples of N1 ...")
    n1 = example_n1()
    n2 = train_small(n1)
    p1 = save_model(network_to_model(n1), out / "n1.onnx", force=True)
    p2 = save_model(network_to_model(n2), out / "n2.onnx", force=True)
    echo("[2/5] merging into one network whose output is N1(x) - N2(x) ...")
    pm = save_model(merge_files(p1, p2), out / "merged.onnx", force=True)
    rep = check_merged(pm, p1, p2, np.array([LOWER]), np.array([UPPER]), 5000)
    echo(f"      onnxruntime: merged vs N1 - N2 on 5000 inputs, largest disagreement "
         f"{rep.max_abs:.2g}")
    echo("[3/5] sampling |N1 - N2| on a grid of 20001 points ...")
    grid = np.linspace(LOWER, UPPER, 20001).reshape(-1, 1)
    d = (n1.forward(grid) - n2.forward(grid))[:, 0]
    k = int(np.argmax(np.abs(d)))
    sampled, sign = float(abs(d[k])), (1 if d[k] >= 0 else -1)
    echo(f"      largest sampled |N1 - N2| = {sampled:.6f} at x = {grid[k, 0]:.5f}")
    echo("[4/5] writing VNN-LIB properties 'exists x in [-1, 1]: s*(y1 - y2) >= t' ...")
    inputs = InputSet.of(Box([LOWER], [UPPER]))
    verifier = get_verifier("marabou")
    queries = [("below", 0.9 * sampled, sign)]
    queries += [("above", 1.1 * sampled + 1e-3, s) for s in (1, -1)]
    echo(f"[5/5] asking Marabou {len(queries)} questions (one output, one sign each) ...")
    rows = []
    for label, t, s in queries:
        prop = out / f"diff_{label}_{'pos' if s > 0 else 'neg'}.vnnlib"
        write_vnnlib1(violation_property(inputs, 1, 0, s, t), prop)
        verdict = verifier.check(pm, prop, timeout)
        row = {"threshold": t, "sign": s, "property": prop.name, **verdict.to_json()}
        if verdict.counterexample is not None:
            y1, y2 = replay_difference(p1, p2, verdict.counterexample.reshape(1, -1))
            row["replayed_difference"] = float((y1 - y2)[0, 0])
        rows.append(row)
    echo("")
    echo(f"{'question':>24} {'answer':>9} {'seconds':>8}  meaning")
    for r in rows:
        question = f"{'+' if r['sign'] > 0 else '-'}(y1 - y2) >= {r['threshold']:.6f}"
        if r["status"] == "holds":
            meaning = "proved unreachable on [-1, 1]"
        elif r["status"] == "violated":
            meaning = (f"counterexample x = {r['counterexample'][0]:.5f}, replayed on n1.onnx "
                       f"and n2.onnx: y1 - y2 = {r['replayed_difference']:.6f}")
        else:
            meaning = r["message"]
        echo(f"{question:>24} {r['status']:>9} {r['seconds']:>8.2f}  {meaning}")
    consistent = [r["status"] for r in rows] == ["violated", "holds", "holds"]
    if consistent:
        echo(f"\nso {abs(rows[0]['replayed_difference']):.6f} (witnessed) <= max |N1 - N2| "
             f"< {rows[1]['threshold']:.6f} (proved by Marabou) on [-1, 1]")
    report = {"n1": n1.describe(), "n2": n2.describe(), "input": [LOWER, UPPER],
              "sampled_max": sampled, "sampled_argmax": float(grid[k, 0]),
              "merge_check_max_abs": rep.max_abs, "queries": rows,
              "seconds": time.perf_counter() - t0}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    echo(f"\nfiles in {out}: n1.onnx n2.onnx merged.onnx diff_*.vnnlib report.json "
         f"({report['seconds']:.1f} s)")
    return 0 if consistent else 1
