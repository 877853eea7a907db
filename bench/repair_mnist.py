"""Repair of the second paper's int8 MNIST network: its Tables I-II and Figs. 2-4, measured.

    python bench/repair_mnist.py [--rounds 10] [--lambdas 2,5,10,20] [--out bench/results]

Runs, in one go and on the paper's ten regions (2x2 centre patch +-0.05):

* ``calibrate`` (nnbisim's default, lambda 10): activation quantization calibrated, then the
  loop until every region's certified discrepancy is at most 2/3 of its initial value;
* ``keep`` for each lambda: the paper's loop taken literally (weights retrained, the original
  int8 network's activation scales 1.0 and zero points 0 kept), for ``--rounds`` rounds;
* ``calibrate, 1% target`` (lambda 10, 3 rounds): what retraining adds after calibration.

The baseline is the unrepaired int8 network, certified in the same run. Accuracy is on the
held-out test images 5000-9999 only. Measures everything each run: one row per run in
``repair_mnist.jsonl``, every round in ``repair_mnist.json``, the tables in ``repair_mnist.md``
and ``repair_fig2.png``, ``repair_fig3.png``, ``repair_fig4.png``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import _threads  # noqa: F401 - first: one thread per process
import numpy as np
from harness import DATA, Results, parser
from matplotlib.figure import Figure

from nnbisim.adapters.mnist import HELD_OUT, TRAIN, load_test_set, paper_images, patch_box
from nnbisim.adapters.onnx_quant_write import quantized_to_model
from nnbisim.adapters.onnx_write import network_to_model
from nnbisim.adapters.torch_io import load_torch
from nnbisim.tasks.options import RepairOptions
from nnbisim.tasks.repair import Region, accuracy_on, repair

PAPER = {  # Table II of the paper: mean discrepancy before and after repair, per image
    "before": [0.4750, 0.4189, 0.6339, 0.4746, 0.8272, 0.6200, 0.6458, 0.5440, 0.5908, 0.8283],
    "after": [0.0625, 0.0969, 0.1034, 0.0870, 0.1217, 0.1189, 0.0701, 0.1505, 0.0953, 0.1053]}


def _plan(rounds: int, lambdas: str) -> list[tuple[str, RepairOptions]]:
    plan = [("calibrate", RepairOptions(qparams="calibrate", lam=10.0, rounds=rounds))]
    plan += [(f"keep, lambda {lam:g}", RepairOptions(qparams="keep", lam=lam, rounds=rounds))
             for lam in map(float, lambdas.split(","))]
    plan += [("calibrate, 1% target", RepairOptions(qparams="calibrate", lam=10.0, rounds=3,
                                                    target_ratio=0.01))]
    return plan


def _tables(d: dict, reports: dict, runs: dict, seconds: float) -> list[str]:
    idx, labels, size, params, acc = d["idx"], d["labels"], d["size"], d["params"], d["acc"]
    main_rep = reports["calibrate"]
    lines = ["Paper's networks from `../shared/data/fnn-repair`, its ten images (MNIST test "
             "indices " + ", ".join(map(str, idx)) + "; the regions use the lossless test-set "
             "images, the .jpg files only name them), 2x2 centre patch +-0.05. Discrepancy of "
             "a region: mean over the 10 outputs of the certified max |N1 - N2|_i (the paper's "
             "Table II metric); certified by nnbisim's exact-cell engine on the int8 model "
             "itself (activation rounding included), witnessed by real inputs. Accuracy on the "
             "held-out test images 5000-9999 only; retraining used test images 0-4999. "
             f"Measured in one run, {seconds:.0f} s in all.", "",
             "## Table I: networks", "",
             "| network | parameters | ONNX size (KB) | accuracy (held-out) |",
             "|---|---|---|---|",
             f"| original (float) | {params} | {size['original'] / 1024:.0f} | {acc:.2%} |",
             f"| compressed (int8, given) | {params} | {size['compressed'] / 1024:.0f} | "
             f"{main_rep.initial.accuracy:.2%} |",
             f"| repaired (int8, calibrate, lambda 10) | {params} | "
             f"{size['repaired'] / 1024:.0f} | {main_rep.final.accuracy:.2%} |"]
    for name, rep in reports.items():
        if name != "calibrate":
            lines.append(f"| repaired ({name}) | {params} | {size['compressed'] / 1024:.0f} | "
                         f"{rep.final.accuracy:.2%} |")
    lines += ["", "## Table II: mean discrepancy per image, before and after", "",
              "| image | label | before, certified | before, witnessed | after (calibrate), "
              "certified | after, witnessed | ratio | after (keep, lambda 10), certified | "
              "paper before | paper after |", "|---|---|---|---|---|---|---|---|---|---|"]
    keep10 = reports.get("keep, lambda 10")
    b, a = main_rep.initial, main_rep.final
    for k, i in enumerate(idx):
        kc = f"{keep10.final.certified[k]:.4f}" if keep10 else "-"
        lines.append(f"| {i} | {labels[k]} | {b.certified[k]:.4f} | {b.witnessed[k]:.4f} | "
                     f"{a.certified[k]:.4f} | {a.witnessed[k]:.4f} | "
                     f"{a.certified[k] / b.certified[k]:.3f} | {kc} | {PAPER['before'][k]:.4f} |"
                     f" {PAPER['after'][k]:.4f} |")
    return lines + _runs_table(reports, runs, idx)


def _runs_table(reports: dict, runs: dict, idx: list[int]) -> list[str]:
    lines = ["", "## Every run", "",
             "| run | steps | met | mean before | mean after | mean ratio | worst region ratio "
             "| accuracy after | seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for name, rep in reports.items():
        j = runs[name]
        lines.append(f"| {name} | {len(rep.rounds) - 1} | {'yes' if rep.met else 'no'} | "
                     f"{np.mean(rep.initial.certified):.4f} | {np.mean(rep.final.certified):.4f}"
                     f" | {j['mean_ratio']:.3f} | {max(j['ratio_final_to_initial']):.3f} | "
                     f"{rep.final.accuracy:.2%} | {rep.seconds:.0f} |")
    return lines + ["", "Steps: the calibration (for calibrate runs) and each retraining round. "
                    "Figures: `repair_fig2.png` (per-label guaranteed output range of N2 before "
                    "and after, with N1's range, image " + str(idx[0]) + "), `repair_fig3.png` "
                    "(discrepancy per round and lambda), `repair_fig4.png` (accuracy per "
                    "round).", ""]


def _figures(reports: dict, idx: list[int], labels: list[int], out: Path) -> None:
    main_rep = reports["calibrate"]
    fig = Figure(figsize=(7, 4))  # Fig. 2: per label, N1's range and N2's before and after
    ax = fig.subplots()
    before, after = main_rep.initial.ranges[0], main_rep.final.ranges[0]
    lab = np.arange(10)
    for rng_, dx, col, name in ((before["n2"], -0.15, "tab:green", "N2 before repair"),
                                (after["n2"], 0.15, "tab:red", "N2 after repair")):
        r = np.array(rng_)
        ax.errorbar(lab + dx, r.mean(1), yerr=(r[:, 1] - r[:, 0]) / 2, fmt="none", ecolor=col,
                    capsize=4, label=name)
    r1 = np.array(before["n1"])
    ax.scatter(lab, r1.mean(1), color="tab:blue", s=14, zorder=3, label="N1 (original)")
    ax.set_xticks(lab)
    ax.set_xlabel("label")
    ax.set_ylabel("output score")
    ax.set_title(f"image {idx[0]} (label {labels[0]}): guaranteed output ranges")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "repair_fig2.png", dpi=120)
    for fname, key, ylabel in (("repair_fig3.png", "certified", "mean certified discrepancy"),
                               ("repair_fig4.png", "accuracy", "held-out accuracy")):
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        for name, rep in reports.items():
            ys = [np.mean(r.certified) if key == "certified" else r.accuracy for r in rep.rounds]
            ax.plot(range(len(ys)), ys, marker="o", ms=3, label=name)
        ax.set_xlabel("step (0: initial; calibrate runs: 1 = calibration)")
        ax.set_ylabel(ylabel)
        if key == "certified":
            ax.set_yscale("log")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=120)


def main() -> int:
    ap = parser(__doc__, "repair_mnist")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--lambdas", default="2,5,10,20")
    args = ap.parse_args()
    res = Results(args.results, fresh=True)
    n1 = load_torch(DATA / "fnn-repair" / "mnist_fnn_l_ori.pth")
    n2 = load_torch(DATA / "fnn-repair" / "mnist_fnn_s_quan.pth")
    x, y = load_test_set(DATA / "mnist")
    held, train = np.array(list(HELD_OUT)), np.array(list(TRAIN))
    acc = accuracy_on(x[held], y[held])
    idx = [i for i, _ in paper_images(DATA / "fnn-repair" / "images")]
    regions = [Region(str(i), *patch_box(x[i])) for i in idx]
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", file=sys.stderr, flush=True)

    reports, runs = {}, {}
    for name, opts in _plan(args.rounds, args.lambdas):
        say(f"run {name}")
        rep = reports[name] = repair(n1, n2, regions, opts, replay=x[train], accuracy=acc,
                                     progress=say)
        runs[name] = rep.to_json()
        res.add({"run": name, "met": rep.met, "mean_before": float(np.mean(
            rep.initial.certified)), "mean_after": float(np.mean(rep.final.certified)),
            "accuracy_after": rep.final.accuracy, "seconds": round(rep.seconds, 1)})
        for r in runs[name]["rounds"][1:-1]:  # ranges per region: first and last step only
            r.pop("regions", None)
    d = {"idx": idx, "labels": [int(y[i]) for i in idx], "acc": acc(n1),
         "params": sum(q.w_codes.size + q.bias.size for q in n2.layers),
         "size": {"original": len(network_to_model(n1).SerializeToString()),
                  "compressed": len(quantized_to_model(n2).SerializeToString()),
                  "repaired": len(quantized_to_model(
                      reports["calibrate"].network).SerializeToString())}}
    (res.path.with_suffix(".json")).write_text(json.dumps(
        {**res.stamp, "images": idx, "labels": d["labels"], "runs": runs,
         "onnx_bytes": d["size"], "parameters": d["params"],
         "accuracy_images": "test 5000-9999"}))
    lines = res.header("Repair of the int8 MNIST network (second paper)", "Generated by "
                       "`bench/repair_mnist.py`.")
    res.md.write_text("\n".join(lines + _tables(d, reports, runs, time.perf_counter() - t0)))
    _figures(reports, idx, d["labels"], res.path.parent)
    print(res.md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
