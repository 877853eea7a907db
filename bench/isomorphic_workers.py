"""``nnbisim vnncomp run`` on VNN-COMP 2026-style isomorphic equivalence queries with one
worker and with two, same run: what the machine's second core buys one instance.

Per ACAS Xu network: g = f + N(0, 0.001^2) on every weight and bias (``compress --method
perturb``, seed 1000 + the network's number), the VNN-LIB 2.0 query ``|Y_f - Y_g|_j >= 0.05``
for some j on property 1's box (``spec --pair``), as ``bench/vnncomp_pairs.py`` writes them;
answered by whole ``nnbisim vnncomp run`` processes (start-up included) with a 100 s timeout,
``--workers 1`` and ``--workers 2``, one process at a time (two workers take both cores).

    python bench/isomorphic_workers.py [--networks 1_1,1_6,...] [--fresh]
"""

from __future__ import annotations

from pathlib import Path

import _threads  # noqa: F401 - first: one thread per process
from acas import network_file
from harness import WORK, Results, cli_process, parser
from vnncomp_pairs import TIMEOUT, _instance

NETS = "1_1,1_6,2_4,2_9,3_3,3_7,4_5,5_9"


def answer(net: str, workers: int, work: Path) -> dict:
    query = work / f"q_{net}" / "diff_inf.vnnlib"
    if query.exists():  # written for the other worker count
        field = f"[('f', '{network_file(net)}'), ('g', '{work / f'g_{net}.onnx'}')]"
    else:
        field, query = _instance(work, net)
    result = work / f"result_{net}_{workers}.txt"
    seconds, code, _, err = cli_process(["vnncomp", "run", field, str(query), str(result),
                                         str(TIMEOUT), "--workers", str(workers)], work, None,
                                        timeout=3 * TIMEOUT)
    word = result.read_text().split()[0] if result.exists() else f"none (exit {code})"
    return {"net": net, "workers": workers, "answer": word, "seconds": round(seconds, 1),
            "exit": code}


def summarise(res: Results) -> None:
    rows = {(r["net"], r["workers"]): r for r in res.rows}
    lines = res.header("vnncomp run on isomorphic queries: 1 worker and 2",
                       __doc__.split("\n\n")[1].replace("\n", " "))
    lines += ["| network | 1 worker | s | 2 workers | s |", "|---|---|---:|---|---:|"]
    decided = {1: 0, 2: 0}
    for net in dict.fromkeys(r["net"] for r in res.rows):
        a, b = rows.get((net, 1)), rows.get((net, 2))
        cells = []
        for w, r in ((1, a), (2, b)):
            if r is None:
                cells += ["-", "-"]
                continue
            cells += [r["answer"], f"{r['seconds']:.1f}"]
            decided[w] += r["answer"] in ("sat", "unsat")
        lines.append(f"| {net} | " + " | ".join(cells) + " |")
    lines += ["", f"- decided within {TIMEOUT:g} s: {decided[1]} with 1 worker, {decided[2]} "
              "with 2"]
    res.md.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = parser(__doc__, "isomorphic_workers", jobs=1)
    ap.add_argument("--networks", default=NETS)
    args = ap.parse_args()
    res = Results(args.results, args.fresh, check=not args.summarise)
    done = {(r["net"], r["workers"]) for r in res.rows}
    work = WORK / "isomorphic_workers"
    work.mkdir(parents=True, exist_ok=True)
    if not args.summarise:
        for net in args.networks.split(","):
            for workers in (1, 2):
                if (net, workers) not in done:
                    row = res.add(answer(net, workers, work))
                    print(f"{net} workers {workers}: {row['answer']} {row['seconds']} s",
                          flush=True)
                    summarise(res)
    summarise(res)


if __name__ == "__main__":
    main()
