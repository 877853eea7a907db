"""Options of two-network decisions, one study at a time, every variant on the same instances
in the same run.

``--study rules`` (the default): the split rule, ``smart:gain`` (bound
both halves of every input dimension, keep the split that settles most) against ``smart:gain,
4 dims`` (the same on the 4 dimensions of largest slope times width, the relatively widest
always among them: 8 bounds per split instead of 10; ``BabOptions.smart_top``, the pair
subject's default since this bench). An earlier run of this bench (commit 5a265ca, in git
history) compared ``hybrid:worst`` with ``smart:gain``: smart:gain decided 10 of 13,
hybrid:worst 8.

``--study staged`` (rows to ``bench/results/staged_pairs.jsonl`` unless ``--results`` says
otherwise): where the probe proves nothing, a quick witness search and up to a tenth of the
time of branch and bound before the full witness search (``DecideOptions.search_after = 0.1``,
the default since this study) against the full search right after the probe (``0``).

Instances, all on property 1's box of ACAS Xu (the wide box where decisions are hard):

- ``float16``: N2 = N1 with every weight and bias rounded to float16, unsafe
  ``|N1 - N2|_j >= 0.01`` for some output j (NeuroDiff's question at its middle eps);
- ``isomorphic``: N2 = N1 + N(0, 0.001^2) on every weight and bias (own seeds, as VNN-COMP
  2026's isomorphic_acasxu_2026 builds them), unsafe ``|N1 - N2|_j >= 0.05``.

Each is decided by the pair subject (``decide``: witness search, then branch and bound on the
margins of the 10 one-row polytopes), ``--timeout`` seconds each (default 100, the 2026
category's), one thread per process; a ``violated`` is replayed in float64 on both networks.

    python bench/pair_rules.py [--study rules|staged] [--only float16:2_1,...] [--jobs 2]
                               [--timeout 100] [--fresh]
"""

from __future__ import annotations

import _threads  # noqa: F401 - first: one thread per process
import numpy as np
from acas import ACAS, network_file
from harness import Results, parser, run

FLOAT16 = ("1_1", "2_1", "2_4", "2_6", "3_1", "3_5", "4_1", "5_3")
ISOMORPHIC = ("1_6", "2_4", "3_3", "4_5", "5_9")
EVERY = 1 << 30  # smart_top at least the input size: every dimension
RULES = {"smart:gain": ("smart", "gain", EVERY), "smart:gain, 4 dims": ("smart", "gain", 4)}
# per study, its variants: (split, choose, smart_top) or DecideOptions' fields
STUDIES = {"rules": {name: {"split": a, "choose": b, "smart_top": top}
                     for name, (a, b, top) in RULES.items()},
           "staged": {"staged 0.1": {"search_after": 0.1},
                      "full search after the probe": {"search_after": 0.0}}}
EPS = {"float16": 0.01, "isomorphic": 0.05}


def _copy(net, kind: str, seed: int):
    from nnbisim.core.model import Network
    if kind == "float16":
        return Network.from_weights(
            [layer.weight.astype(np.float16).astype(np.float64) for layer in net.layers],
            [layer.bias.astype(np.float16).astype(np.float64) for layer in net.layers])
    rng = np.random.default_rng(seed)
    return Network.from_weights(
        [layer.weight + rng.normal(0, 1e-3, layer.weight.shape) for layer in net.layers],
        [layer.bias + rng.normal(0, 1e-3, layer.bias.shape) for layer in net.layers])


def instance(kind: str, net: str) -> tuple:
    """``(n1, n2, eps, case)``: the network, its copy and the case ``|N1 - N2|_j >= eps`` for
    some j on property 1's box (ten one-row polytopes over ``[y1; y2]``)."""
    from nnbisim.adapters.onnx_load import load_network
    from nnbisim.specs.io import read_spec_cases
    from nnbisim.specs.sets import OutputConstraint, Polytope, SpecCase
    n1 = load_network(network_file(net))
    n2 = _copy(n1, kind, seed=1000 + int(net.replace("_", "")))
    eps, polys = EPS[kind], []
    for j in range(5):
        for s in (1.0, -1.0):  # s (y1 - y2)_j >= eps as -s y1 + s y2 <= -eps
            row = np.zeros(10)
            row[j], row[5 + j] = -s, s
            polys.append(Polytope(row[None], [-eps]))
    box = read_spec_cases(ACAS / "prop_1.vnnlib")[0].box
    return n1, n2, eps, SpecCase(box, OutputConstraint(tuple(polys)))


def options(study: str, rule: str):
    """The variant's DecideOptions."""
    from nnbisim.search.bab_types import BabOptions
    from nnbisim.search.decide import DecideOptions
    fields = dict(STUDIES[study][rule])
    top = fields.pop("smart_top", None)
    return DecideOptions(**fields, bab=BabOptions(smart_top=top))


def decide_one(kind: str, net: str, rule: str, timeout: float, study: str = "rules") -> dict:
    from nnbisim.search.decide import decide
    from nnbisim.search.subjects import pair
    n1, n2, eps, case = instance(kind, net)
    d = decide(pair(n1, n2, "stacked"), [case], timeout, options(study, rule))
    verdict = d.status.value
    if d.x is not None:  # replayed on both networks in float64
        diff = np.abs(n1.forward(d.x[None]) - n2.forward(d.x[None])).max()
        verdict = "violated" if diff >= eps else "not replayed"
    return {"kind": kind, "net": net, "rule": rule, "eps": eps, "verdict": verdict,
            "boxes": d.boxes, "seconds": round(d.seconds, 2), "timeout": timeout,
            "study": study}


TITLES = {"rules": "Split rules of two-network decisions",
          "staged": "The full witness search after more branch and bound, or right after the "
                    "probe: two-network decisions"}


def summarise(results: Results, study: str = "rules") -> None:
    rows = results.rows
    variants = STUDIES[study]
    lines = results.header(TITLES[study],
                           f"Made by bench/pair_rules.py --study {study} (see its docstring): "
                           "property 1's box of ACAS Xu, float16 copies at eps 0.01 and noisy "
                           "copies (sigma 0.001) at eps 0.05, per variant the verdict, boxes "
                           "and seconds.", len(variants) * (len(FLOAT16) + len(ISOMORPHIC)))
    lines += ["| rule | instances | decided | timeouts | total s (timeouts at the timeout) |",
              "|---|---:|---:|---:|---:|"]
    for rule in variants:
        mine = [r for r in rows if r["rule"] == rule]
        done = [r for r in mine if r["verdict"] in ("holds", "violated")]
        total = sum(r["seconds"] if r in done else r["timeout"] for r in mine)
        lines.append(f"| {rule} | {len(mine)} | {len(done)} | {len(mine) - len(done)} | "
                     f"{total:.0f} |")
    lines += ["", "| kind | net | eps | " + " | ".join(variants) + " |",
              "|---|---|---:|" + "---|" * len(variants)]
    keyed = {(r["kind"], r["net"], r["rule"]): r for r in rows}
    for kind, nets in (("float16", FLOAT16), ("isomorphic", ISOMORPHIC)):
        for net in nets:
            cells = []
            for rule in variants:
                r = keyed.get((kind, net, rule))
                cells.append("-" if r is None else
                             f"{r['verdict']}, {r['seconds']:.1f} s, {r['boxes']} boxes")
            lines.append(f"| {kind} | {net} | {EPS[kind]} | " + " | ".join(cells) + " |")
    results.md.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = parser(__doc__, "pair_rules")
    ap.add_argument("--timeout", type=float, default=100.0)
    ap.add_argument("--study", choices=sorted(STUDIES), default="rules")
    ap.add_argument("--only", help="only these instances, KIND:NET comma-separated, e.g. "
                    "float16:2_1,isomorphic:1_6")
    opts = ap.parse_args()
    if opts.study == "staged" and opts.results.name == "pair_rules.jsonl":
        opts.results = opts.results.with_name("staged_pairs.jsonl")
    results = Results(opts.results, opts.fresh)
    if not opts.summarise:
        units = {(kind, net, rule): (kind, net, rule, opts.timeout, opts.study)
                 for kind, nets in (("float16", FLOAT16), ("isomorphic", ISOMORPHIC))
                 for net in nets for rule in STUDIES[opts.study]
                 if not opts.only or f"{kind}:{net}" in opts.only.split(",")}
        run(units, decide_one, results, lambda _row: summarise(results, opts.study),
            row_key=lambda r: (r["kind"], r["net"], r["rule"]), jobs=opts.jobs)
    summarise(results, opts.study)


if __name__ == "__main__":
    main()
