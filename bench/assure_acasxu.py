"""Assured compression on the 186 VNN-COMP 2021 ACAS Xu instances, against Marabou on N1.

Per instance (network, property, timeout from ../shared/data/acasxu/acasxu_instances.csv):
compress N1 (default: the first paper's distillation to 5-10-10-5 on the property's boxes,
offline: its time is recorded, not counted; or 10% of the neurons pruned by magnitude, zeroed;
or float16 weights), run ``assure`` with its defaults within the timeout, and in the same run
Marabou on N1 directly with the same timeout (one disjunct per query). Per instance: verdict,
route, eps, times; the table is the first paper's Table I for all instances, plus a log-log plot
of the two times and the eps per compression.

    python bench/assure_acasxu.py [--compression distill|prune|float16] [--jobs 2]
        [--limit N] [--instances 1_1:1,2_3:4] [--summarise]

Instances run round robin over the properties. Appends each result to
bench/results/assure_acasxu.jsonl as it finishes (a rerun resumes) and rewrites
bench/results/assure_acasxu.md, assure_acasxu_times.png and assure_acasxu_eps.png after each.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
import traceback
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from _common import code_version

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "acasxu"
WORK = HERE / "work" / "assure_acasxu"


def compressed(net_file: str, prop: str, compression: str) -> Path:
    from nnbisim.adapters.compress import distill, prune_neurons, round_weights
    from nnbisim.adapters.onnx_load import load_network
    from nnbisim.adapters.onnx_write import network_to_model, save_model
    from nnbisim.specs.io import read_spec_cases

    stem = Path(net_file).stem
    tag = compression if compression != "distill" else f"distill_{Path(prop).stem}"
    out = WORK / f"{stem}_{tag}.onnx"
    if not out.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        n1 = load_network(DATA / net_file)
        if compression == "prune":
            n2 = prune_neurons(n1, 0.1)
        elif compression == "float16":
            n2 = round_weights(n1)
        else:
            import numpy as np

            cases = read_spec_cases(DATA / prop)
            n2 = distill(n1, np.array([c.box.lower for c in cases]),
                         np.array([c.box.upper for c in cases]), (10, 10), samples=50_000)
        save_model(network_to_model(n2), out, force=True)
    return out


def run_one(net_file: str, prop: str, timeout: float, compression: str) -> dict:
    import torch

    from nnbisim.specs.io import read_spec_cases
    from nnbisim.tasks.assure import assure
    from nnbisim.verifiers.queries import marabou_per_disjunct

    torch.set_num_threads(1)
    cases = read_spec_cases(DATA / prop)
    tc = time.perf_counter()
    n2 = compressed(net_file, prop, compression)
    compress_s = time.perf_counter() - tc  # 0 when a previous run left the file
    t0 = time.perf_counter()
    rep = assure(DATA / net_file, cases, n2, time_budget=timeout)
    ours = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        status, _ = marabou_per_disjunct(DATA / net_file, cases, timeout, Path(tmp))
        theirs = time.perf_counter() - t1
    data = rep.to_json()
    network, prop_id = _short(net_file, prop)
    return {"network": network, "prop": prop_id, "timeout": timeout,
            "compression": compression, "compress_seconds": round(compress_s, 2),
            "verdict": rep.verdict, "route": rep.route,
            "seconds": round(ours, 2), "eps_max": data["eps_max"],
            "eps_witnessed": data["eps_witnessed_max"],
            "eps_seconds": data["eps_seconds"], "n2_seconds": data["n2_seconds"],
            "direct_seconds": data["direct_seconds"], "boxes": len(rep.pieces),
            "marabou": {"holds": "holds", "violated": "violated"}.get(status.value,
                                                                       status.value),
            "marabou_seconds": round(theirs, 2)}


def load_instances() -> list[tuple[str, str, float]]:
    """The csv's instances: (network file, property file, timeout)."""
    return [(r[0], r[1], float(r[2]))
            for r in csv.reader((DATA / "acasxu_instances.csv").open())]


def _short(net_file: str, prop_file: str) -> tuple[str, str]:
    return (net_file.replace("ACASXU_run2a_", "").replace("_batch_2000.onnx", ""),
            prop_file.replace("prop_", "").replace(".vnnlib", ""))


def spread(rows: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    """The csv's instances round robin over the properties (the first instance of each
    property, then the second, ...), so a run stopped part way covers every property."""
    by_prop: dict[str, list] = {}
    for r in rows:
        by_prop.setdefault(r[1], []).append(r)
    out, k = [], 0
    while len(out) < len(rows):
        out += [group[k] for group in by_prop.values() if k < len(group)]
        k += 1
    return out


def _answered(v: str) -> bool:
    return v in ("holds", "violated")


def _by_route(rows: list[dict]) -> dict[str, int]:
    return {route: sum(r["route"] == route and _answered(r["verdict"]) for r in rows)
            for route in ("direct", "compressed", "mixed")}


def _per_property(rows: list[dict]) -> list[str]:
    def counts(key: str, part: list[dict]) -> str:
        return (f"{sum(r[key] == 'holds' for r in part)} / "
                f"{sum(r[key] == 'violated' for r in part)} / "
                f"{sum(not _answered(r[key]) for r in part)}")

    out = []
    for prop in sorted({r["prop"] for r in rows}, key=int):
        part = [r for r in rows if r["prop"] == prop]
        ours = sum(min(r["seconds"], r["timeout"]) for r in part)
        theirs = sum(min(r["marabou_seconds"], r["timeout"]) for r in part)
        out.append(f"| {prop} | {len(part)} | {counts('verdict', part)} | {ours:.0f} | "
                   f"{counts('marabou', part)} | {theirs:.0f} |")
    return out


def summarise(rows: list[dict], out: Path, total: int) -> None:
    def agree(r):
        known = {r["verdict"], r["marabou"]} & {"holds", "violated"}
        return len(known) <= 1

    lines = ["# Assured compression of ACAS Xu: the VNN-COMP 2021 instances", "",
             "Generated by `bench/assure_acasxu.py`. Per instance: nnbisim assure with its "
             "defaults (a witness search on N1, then the route through N2: one branch and "
             "bound whose every piece is proved by its own certified eps and N2's bound "
             "against the unsafe set enlarged by it, points evaluated on N1 and "
             "counterexamples replayed in onnxruntime; N1 directly for what is left) and "
             "Marabou on N1 directly (one disjunct per query), same timeout, same run, one "
             "core each. Times of timeouts count at the timeout.", "",
             "- code measured: " + ", ".join(f"{v} ({n} rows)" for v, n in sorted(Counter(
                 r.get("code", "before the version was recorded") for r in rows).items())),
             ""]
    for comp in sorted({r["compression"] for r in rows}):
        part = [r for r in rows if r["compression"] == comp]
        wrong = sum(not agree(r) for r in part)
        ours = sum(min(r["seconds"], r["timeout"]) for r in part)
        theirs = sum(min(r["marabou_seconds"], r["timeout"]) for r in part)
        safe = [r for r in part if "holds" in (r["verdict"], r["marabou"])]
        via_n2 = sum(r["verdict"] == "holds" and r["route"] == "compressed" for r in safe)
        late = sum(r["seconds"] > r["timeout"] + 1 for r in part)
        lines += [f"## compression: {comp}", "",
                  f"- instances run: {len(part)} of {total}; disagreements where both "
                  f"answered: **{wrong}**; every `violated` of nnbisim carries a "
                  "counterexample replayed on N1 in onnxruntime",
                  f"- nnbisim: {sum(r['verdict'] == 'holds' for r in part)} holds, "
                  f"{sum(r['verdict'] == 'violated' for r in part)} violated, "
                  f"{sum(not _answered(r['verdict']) for r in part)} open "
                  f"({late} past the timeout by more than 1 s); total {ours:.0f} s",
                  f"- Marabou on N1: {sum(r['marabou'] == 'holds' for r in part)} holds, "
                  f"{sum(r['marabou'] == 'violated' for r in part)} violated, "
                  f"{sum(not _answered(r['marabou']) for r in part)} open; total {theirs:.0f} s",
                  f"- time ratio nnbisim / Marabou: **{ours / max(theirs, 1e-9):.2f}** "
                  "(target 0.1)",
                  f"- safe instances (holds by either tool): {len(safe)}; proved through N2 "
                  f"alone: **{via_n2}** ({100 * via_n2 / max(len(safe), 1):.0f}%, target 80%)",
                  "- answers by route: " + ", ".join(
                      f"{route} {n}" for route, n in _by_route(part).items()), "",
                  "| prop | instances | nnbisim holds / violated / open | s | "
                  "Marabou holds / violated / open | s |", "|---|---:|---|---:|---|---:|",
                  *_per_property(part), "",
                  "| network | prop | verdict | route | eps (seen / certified) | eps s | N2 s | "
                  "N1 s | total s | Marabou | Marabou s |",
                  "|---|---|---|---|---:|---:|---:|---:|---:|---|---:|"]
        for r in sorted(part, key=lambda r: (int(r["prop"]), r["network"])):
            eps = "-" if r["eps_max"] is None else f"{r['eps_max']:.3g}"
            if r.get("eps_witnessed") is not None:
                eps = f"{r['eps_witnessed']:.3g} / {eps}"
            lines.append(f"| {r['network']} | {r['prop']} | {r['verdict']} | {r['route']} | "
                         f"{eps} | {r['eps_seconds']:.1f} | {r['n2_seconds']:.1f} | "
                         f"{r['direct_seconds']:.1f} | {r['seconds']:.1f} | {r['marabou']} | "
                         f"{r['marabou_seconds']:.1f} |")
        lines.append("")
    lines += ["Plots: `assure_acasxu_times.png` (time per instance, nnbisim against Marabou, "
              "log-log), `assure_acasxu_eps.png` (the certified eps per instance, per "
              "compression; instances answered by N1 directly compute none). With the refined "
              "route the eps of a row is that of the whole box: seen at random points, "
              "certified by one pass of the bound engine (each piece's own, which is what "
              "proves it, is smaller)."]
    out.write_text("\n".join(lines) + "\n")
    _plot(rows, out.with_name(out.stem + "_times.png"))
    _plot_eps(rows, out.with_name(out.stem + "_eps.png"))


def _plot_eps(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = sorted({r["compression"] for r in rows})
    data = [[r["eps_max"] for r in rows if r["compression"] == c and r["eps_max"]]
            for c in comps]
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for k, vals in enumerate(data):
        ax.scatter([k] * len(vals), vals, s=10, alpha=0.6)
    ax.set_xticks(range(len(comps)), [f"{c} ({len(v)})" for c, v in zip(comps, data,
                                                                        strict=True)])
    if any(data):
        ax.set_yscale("log")
    else:  # every instance was settled before an eps was computed
        ax.text(0.5, 0.5, "no eps computed in these rows", ha="center",
                transform=ax.transAxes)
    ax.set_ylabel("certified eps over the box (max)")
    ax.set_title("ACAS Xu: eps per instance and compression")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    xs = [max(r["marabou_seconds"], 0.01) for r in rows]
    ys = [max(r["seconds"], 0.01) for r in rows]
    colours = ["tab:green" if r["verdict"] == "holds" else "tab:red"
               if r["verdict"] == "violated" else "tab:gray" for r in rows]
    ax.scatter(xs, ys, c=colours, s=12)
    top = max(xs + ys + [1.0]) * 1.5
    ax.plot([0.01, top], [0.01, top], "k--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Marabou on N1 directly (s)")
    ax.set_ylabel("nnbisim assure, all routes (s)")
    ax.set_title("ACAS Xu: time per instance")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compression", default="distill", choices=["prune", "float16", "distill"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="run at most this many new instances")
    ap.add_argument("--instances", default="", help="only these, as NET:PROP,NET:PROP")
    ap.add_argument("--summarise", action="store_true",
                    help="only rewrite the table and plots from the results so far")
    ap.add_argument("--results", type=Path, default=HERE / "results" / "assure_acasxu.jsonl")
    args = ap.parse_args()
    rows = load_instances()
    total = len(rows)
    rows = spread(rows)
    if args.instances:
        want = {tuple(s.split(":")) for s in args.instances.split(",")}
        rows = [r for r in rows if _short(r[0], r[1]) in want]
    done = []
    if args.results.exists():
        done = [json.loads(line) for line in args.results.read_text().splitlines() if line]
    seen = {(r["network"], r["prop"], r["compression"]) for r in done}
    todo = [r for r in rows if (*_short(r[0], r[1]), args.compression) not in seen]
    if args.limit:
        todo = todo[:args.limit]
    if args.summarise:
        todo = []
    print(f"{len(todo)} instances to run ({len(done)} already done)", flush=True)
    version = code_version()
    if todo:
        pool = ProcessPoolExecutor(args.jobs)
        try:
            with args.results.open("a") as sink:
                futures = {pool.submit(run_one, n, p, t, args.compression): (n, p)
                           for n, p, t in todo}
                for fut in as_completed(futures):
                    try:
                        row = {**fut.result(), "code": version}
                    except Exception:  # noqa: BLE001 - one failed instance must not stop the run
                        print(f"{futures[fut]}: failed (left for the next run)\n"
                              f"{traceback.format_exc()}", flush=True)
                        continue
                    done.append(row)
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                    print(f"{row['network']} prop {row['prop']}: {row['verdict']} "
                          f"({row['route']}) {row['seconds']} s; Marabou {row['marabou']} "
                          f"{row['marabou_seconds']} s", flush=True)
                    summarise(done, args.results.with_suffix(".md"), total)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    summarise(done, args.results.with_suffix(".md"), total)


if __name__ == "__main__":
    main()
