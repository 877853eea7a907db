"""Top-1 agreement of an ACAS Xu network with its float16 copy (a close pair): the differential
engine against CROWN on the product network, same instances, same run.

N1 is ACAS Xu 1_1, N2 its float16 copy (``nnbisim compress --method float16``); the input set
is property 4's box; "does argmax N2 = argmax N1 wherever N1 leads by more than delta?" for
each delta, decided by ``nnbisim.tasks.agree`` with each engine and a time budget.

    python bench/agree_acasxu.py [--deltas 0.01,0.003] [--budget 60]
"""

from __future__ import annotations

import time

import _threads  # noqa: F401 - first: one thread per process
from acas import ACAS, network_file
from harness import WORK, Results, parser, run

from nnbisim.adapters.compress import compress
from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.onnx_write import network_to_model, save_model
from nnbisim.specs.io import read_input_set
from nnbisim.tasks.agree import AgreeOptions, decide_agreement

ENGINES = ("differential", "product")


def unit(delta: float, engine: str, budget: float) -> dict:
    n1 = network_file("1_1")
    n2 = WORK / "agree" / "ACASXU_run2a_1_1_float16.onnx"
    if not n2.exists():
        n2.parent.mkdir(parents=True, exist_ok=True)
        save_model(network_to_model(compress(load_network(n1), "float16")), n2, force=True)
    t0 = time.perf_counter()
    a = decide_agreement(n1, n2, read_input_set(ACAS / "prop_4.vnnlib"), delta, budget,
                         AgreeOptions(engine=engine))
    return {"delta": delta, "engine": engine, "verdict": a.status.value, "boxes": a.boxes,
            "seconds": round(time.perf_counter() - t0, 1), "budget": budget}


def summarise(results: Results, planned: int) -> None:
    lines = results.header("top-1 agreement, ACAS Xu 1_1 against its float16 copy",
                           "Made by bench/agree_acasxu.py: property 4's box, both engines on "
                           "the same instances in the same run.", planned)
    lines += ["| delta | engine | verdict | boxes | s |", "|---:|---|---|---:|---:|"]
    for r in sorted(results.rows, key=lambda r: (-r["delta"], r["engine"])):
        lines.append(f"| {r['delta']:g} | {r['engine']} | {r['verdict']} | {r['boxes']} | "
                     f"{r['seconds']} |")
    results.md.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = parser(__doc__, "agree_acasxu")
    ap.add_argument("--deltas", default="0.01,0.003")
    ap.add_argument("--budget", type=float, default=60.0)
    opts = ap.parse_args()
    results = Results(opts.results, opts.fresh)
    units = {(float(d), e): (float(d), e, opts.budget) for d in opts.deltas.split(",")
             for e in ENGINES}
    if not opts.summarise:
        run(units, unit, results, lambda row: summarise(results, len(units)),
            row_key=lambda r: (r["delta"], r["engine"]), jobs=opts.jobs)
    summarise(results, len(units))


if __name__ == "__main__":
    main()
