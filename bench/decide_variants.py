"""The own engine's decision on N1 directly, in variants of its options: one study at a time,
every variant of it on every chosen instance, same run.

ACAS Xu properties decided on N1 (no compression) by ``decide`` (a witness search, then
branch and bound on the margin of every unsafe polytope), each ``violated`` replayed on N1 in
onnxruntime; per instance and variant the verdict, seconds and boxes bounded, with the csv's
timeouts; totals with timeouts counted at the timeout. The studies (each variant is a
``DecideOptions``; the first is today's default):

- ``split_rules``: ``smart:gain`` (bound the halves of every dimension, keep the split that
  settles most) against ``hybrid:worst`` (two candidate dimensions, the better worse half);
- ``smart_top``: ``4 dims`` (smart splits on the 4 dimensions of largest slope times width,
  the widest among them: ``BabOptions.smart_top``, what two-network decisions use) against
  ``every dimension`` (one network's default, kept for it by this study), on ``split_rules``'
  instances;
- ``decide_focus``: ``focus`` (per polytope the best row optimised with alpha-CROWN slopes in
  kept halves; splits re-chosen on those bounds where plain CROWN stalls; gains at rounding
  level and sides under 1e-9 of the widest ignored) against ``before`` (plain CROWN rows,
  those thresholds 0);
- ``bab_steps``: batches sized for steps of about 1 s against 0.1 s;
- ``probe``: up to 64 boxes of branch and bound before the witness search
  (``DecideOptions.probe``: a proof there skips the search) against the search first, on 12
  violated and 12 quickly held instances;
- ``staged``: where the probe proves nothing, a quick witness search and up to a tenth of the
  time of branch and bound before the full search (``DecideOptions.search_after``) against the
  full search right after the probe, on the probe's 24 instances;
- ``margin_rows``: bounding sums of a polytope's rows too against each row alone (instances:
  the suite's multi-row ones that took over ``--min-seconds``).

    python bench/decide_variants.py --study bab_steps [--instances 3_3:2,4_2:2] [--jobs 2]

Rows go to bench/results/STUDY.jsonl (a rerun resumes), the table to STUDY.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import _threads  # noqa: F401 - first: one thread per process
from acas import ACAS, by_name, chosen, short
from harness import RESULTS, Results, parser, run

from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.replay import confirm_violation
from nnbisim.core.verdict import Verdict
from nnbisim.search.bab_types import BabOptions
from nnbisim.search.decide import DecideOptions, Focus, decide
from nnbisim.search.subjects import single
from nnbisim.specs.io import read_spec_cases

FOCUS20 = ("1_1:5,3_3:2,4_2:2,1_1:6,3_3:9,5_3:2,4_9:1,1_5:2,5_8:1,4_7:1,4_6:1,2_9:1,2_7:1,"
           "1_1:1,1_1:2,1_1:3,1_1:4,1_9:7,2_9:8,4_5:10")

# 12 violated (the witness search's case) and 12 that hold quickly (the probe's)
PROBE24 = ("2_1:2,3_4:2,4_5:2,5_7:2,1_2:2,1_7:3,1_8:4,1_9:7,2_9:8,5_3:2,1_3:2,1_5:2,"
           "1_1:3,1_1:4,2_1:3,3_3:4,4_4:3,5_5:4,1_1:1,4_9:1,1_1:5,2_7:1,5_8:1,1_1:6")


@dataclass(frozen=True)
class Study:
    title: str
    variants: dict[str, DecideOptions]
    instances: str  # the default instances ("" for margin_rows: taken from the suite)


STUDIES = {
    "split_rules": Study("Split rules of the own engine's branch and bound", {
        "smart:gain": DecideOptions(split="smart", choose="gain"),
        "hybrid:worst": DecideOptions(split="hybrid", choose="worst")},
        "2_8:1,3_8:1,4_7:1,3_9:1,3_6:1,2_9:1,1_1:2,1_7:2,1_8:2,3_3:2,1_1:6,3_3:9,1_9:7"),
    "smart_top": Study("Smart splits on 4 input dimensions or on all", {
        "4 dims": DecideOptions(split="smart", choose="gain", bab=BabOptions(smart_top=4)),
        "every dimension": DecideOptions(split="smart", choose="gain")},
        "2_8:1,3_8:1,4_7:1,3_9:1,3_6:1,2_9:1,1_1:2,1_7:2,1_8:2,3_3:2,1_1:6,3_3:9,1_9:7"),
    "decide_focus": Study("Focused rows in the own engine's branch and bound", {
        "focus": DecideOptions(),
        "before": DecideOptions(focus=Focus.OFF, bab=BabOptions(gain_noise=0.0, thin=0.0))},
        FOCUS20),
    "bab_steps": Study("Step size of the own engine's branch and bound", {
        "1.0": DecideOptions(bab=BabOptions(step_seconds=1.0)),
        "0.1": DecideOptions(bab=BabOptions(step_seconds=0.1))}, FOCUS20),
    "probe": Study("Branch and bound before the witness search", {
        "probe 64": DecideOptions(probe=64),
        "search first": DecideOptions(probe=0)}, PROBE24),
    "staged": Study("More branch and bound before the full witness search", {
        "staged 0.1": DecideOptions(search_after=0.1),
        "full search after the probe": DecideOptions(search_after=0.0)}, PROBE24),
    "margin_rows": Study("Row sums in the margin bound", {
        "row sums": DecideOptions(combine=True),
        "rows alone": DecideOptions(combine=False)}, ""),
}


def decide_row(net_file: str, prop: str, timeout: float, study: str, variant: str) -> dict:
    """N1's property decided by the own engine with the variant's options, its violation
    replayed in onnxruntime: the bench row."""
    cases = read_spec_cases(ACAS / prop)
    subject = single(load_network(ACAS / net_file))
    t0 = time.perf_counter()
    d = decide(subject, cases, timeout, STUDIES[study].variants[variant])
    seconds = time.perf_counter() - t0
    status = confirm_violation(Verdict(d.status, "bounds", seconds, counterexample=d.x),
                               ACAS / net_file, cases).status
    network, prop_id = short(net_file, prop)
    return {"study": study, "variant": variant, "network": network, "prop": prop_id,
            "timeout": timeout, "status": status.value, "seconds": round(seconds, 2),
            "boxes": d.boxes, "rows": [len(p.rhs) for c in cases for p in c.unsafe.disjuncts]}


def _variant(r: dict) -> str:  # rows before the harness called it rule or mode
    return r.get("variant", r.get("rule", r.get("mode")))


def summarise(res: Results, study: str, planned: int) -> None:
    s = STUDIES[study]
    names = list(s.variants)
    intro = (f"Generated by `bench/decide_variants.py --study {study}`: ACAS Xu properties "
             "decided on N1 by the own engine (witness search, then branch and bound on the "
             "margin) in each variant (" + ", ".join(f"`{n}`" for n in names) + "; the first is "
             "the default; see the script's docstring), same run, one thread per process, the "
             "csv's timeouts. Every `violated` is replayed on N1 in onnxruntime.")
    lines = res.header(f"{s.title}: N1 decided directly", intro, planned)
    lines += ["| variant | instances | holds | violated | timeouts | total s | boxes |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    by: dict = {}
    for r in res.rows:
        by.setdefault((r["network"], r["prop"]), {})[_variant(r)] = r
    full = [v for v in by.values() if all(n in v for n in names)]
    for n in names:
        part = [v[n] for v in full]
        total = sum(min(r["seconds"], r["timeout"]) for r in part)
        lines.append(f"| {n} | {len(part)} | " + " | ".join(
            str(sum(r["status"] == w for r in part)) for w in ("holds", "violated", "timeout"))
            + f" | {total:.0f} | {sum(r['boxes'] for r in part)} |")
    lines += ["", "(totals over the instances run in every variant)", "",
              "| network | property | " + " | ".join(names) + " | speed-up |",
              "|---|---|" + "---|" * len(names) + "---:|"]
    for (net, prop), v in sorted(by.items(), key=lambda kv: (int(kv[0][1]), kv[0][0])):
        cells = [f"{v[n]['status']}, {v[n]['seconds']:.1f} s, {v[n]['boxes']} boxes"
                 if n in v else "" for n in names]
        speed = ""
        if all(n in v for n in names):
            a, b = (min(v[n]["seconds"], v[n]["timeout"]) for n in (names[1], names[0]))
            speed = f"{a / max(b, 1e-9):.2f}x"
        lines.append(f"| {net} | {prop} | " + " | ".join(cells) + f" | {speed} |")
    res.md.write_text("\n".join(lines) + "\n")


def _suite_instances(min_seconds: float) -> str:
    """The suite's instances with a multi-row unsafe polytope that took over ``min_seconds``."""
    suite = [json.loads(line) for line in (RESULTS / "assure_acasxu.jsonl").read_text()
             .splitlines() if line]
    return ",".join(f"{r['network']}:{r['prop']}" for r in sorted(suite,
                    key=lambda r: r["seconds"]) if r["prop"] != "1"
                    and r["seconds"] > min_seconds)


def main() -> None:
    ap = parser(__doc__, "STUDY")
    ap.add_argument("--study", required=True, choices=list(STUDIES))
    ap.add_argument("--instances", default="", help="network:property,... (default: the "
                    "study's)")
    ap.add_argument("--min-seconds", type=float, default=3.0, help="margin_rows: see above")
    args = ap.parse_args()
    if args.results.name == "STUDY.jsonl":
        args.results = RESULTS / f"{args.study}.jsonl"
    s = STUDIES[args.study]
    keys = chosen(args.instances or s.instances or _suite_instances(args.min_seconds))
    res = Results(args.results, args.fresh, check=not args.summarise)
    planned = len(keys) * len(s.variants)
    if not args.summarise:
        known = by_name()
        units = {(v, *k): (*known[k], args.study, v) for k in keys for v in s.variants}
        run(units, decide_row, res, lambda r: summarise(res, args.study, planned),
            row_key=lambda r: (_variant(r), r["network"], r["prop"]), jobs=args.jobs,
            fresh_process=True)
    summarise(res, args.study, planned)


if __name__ == "__main__":
    main()
