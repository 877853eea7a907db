"""``nnbisim vnncomp run`` on two-network equivalence queries over property 1's box, as VNN-COMP
2026's isomorphic_acasxu_2026 asks them, against an earlier commit in the same run.

Per ACAS Xu network: g = f + N(0, 0.001^2) on every weight and bias (``nnbisim compress
--method perturb``, seed 1000 + the network's number), the VNN-LIB 2.0 query ``|Y_f - Y_g|_j >=
0.05`` for some j on property 1's box (``nnbisim spec --pair ... --eps 0.05``, its
``diff_inf.vnnlib``), answered by ``nnbisim vnncomp run`` with a 100 s timeout, whole process
(start-up included), now and at ``--baseline`` (default be50bdc: hybrid:worst splits for pairs,
60% of the timeout for the own engine), each on its own core, the two versions side by side.

    python bench/vnncomp_pairs.py [--networks 1_6,2_4,3_3] [--baseline be50bdc] [--fresh]
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _threads  # noqa: F401 - first: one thread per process
from acas import ACAS, network_file
from harness import Results, baseline_tree, cli_process, parser

TIMEOUT, SIGMA, EPS = 100.0, 0.001, 0.05


def _instance(work: Path, net: str) -> tuple[str, Path]:
    """The network field and the query of one pair, written under ``work``."""
    g = work / f"g_{net}.onnx"
    f = network_file(net)
    seed = 1000 + int(net.replace("_", ""))
    code = cli_process(["compress", str(f), "-o", str(g), "--method", "perturb", "--sigma",
                        str(SIGMA), "--seed", str(seed)], work, None)[1]
    assert code == 0, f"compress {net}"
    code = cli_process(["spec", "--input", str(ACAS / "prop_1.vnnlib"), "--eps", str(EPS),
                        "--vnnlib-version", "2.0", "--pair", str(f), str(g), "-o",
                        str(work / f"q_{net}")], work, None)[1]
    assert code == 0, f"spec {net}"
    return f"[('f', '{f}'), ('g', '{g}')]", work / f"q_{net}" / "diff_inf.vnnlib"


def _answer(version: str, path: str | None, field: str, query: Path, work: Path) -> dict:
    result = work / f"result_{version}_{query.parent.name}.txt"
    seconds, code, _, err = cli_process(["vnncomp", "run", field, str(query), str(result),
                                         str(TIMEOUT)], work, path, timeout=3 * TIMEOUT)
    answer = result.read_text().split()[0] if result.exists() else f"none (exit {code})"
    return {"version": version, "answer": answer, "seconds": round(seconds, 1),
            "exit": code, "stderr_tail": err.strip().splitlines()[-1:] if err else []}


def summarise(results: Results, baseline: str) -> None:
    lines = results.header("vnncomp run on noisy-copy equivalence queries",
                           f"Made by bench/vnncomp_pairs.py: property 1's box, g = f + "
                           f"N(0, {SIGMA}^2), unsafe |Y_f - Y_g|_j >= {EPS}, {TIMEOUT:g} s, "
                           f"whole processes, now against {baseline} side by side.")
    lines += ["| network | now | s | baseline | s |", "|---|---|---:|---|---:|"]
    for r in results.rows:
        lines.append(f"| {r['net']} | {r['now']} | {r['now_s']} | {r['base']} | "
                     f"{r['base_s']} |")
    results.md.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = parser(__doc__, "vnncomp_pairs")
    ap.add_argument("--networks", default="1_6,2_4,3_3")
    ap.add_argument("--baseline", default="be50bdc")
    opts = ap.parse_args()
    results = Results(opts.results, opts.fresh)
    done = {r["net"] for r in results.rows}
    with tempfile.TemporaryDirectory(prefix="nnbisim-pairs-") as tmp:
        work = Path(tmp)
        old = str(baseline_tree(opts.baseline, work))
        for net in opts.networks.split(","):
            if net in done or opts.summarise:
                continue
            field, query = _instance(work, net)
            with ThreadPoolExecutor(2) as pool:
                now = pool.submit(_answer, "now", None, field, query, work)
                base = pool.submit(_answer, opts.baseline, old, field, query, work)
                a, b = now.result(), base.result()
            results.add({"net": net, "now": a["answer"], "now_s": a["seconds"],
                         "base": b["answer"], "base_s": b["seconds"], "baseline": opts.baseline,
                         "timeout": TIMEOUT})
            summarise(results, opts.baseline)
            print(results.rows[-1], flush=True)
    summarise(results, opts.baseline)


if __name__ == "__main__":
    main()
