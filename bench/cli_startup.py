"""How fast the command line answers: ``--help``, every subcommand's ``--help`` and bad input,
against the code before the redesign (baseline commit), in the same run.

Each command runs as ``python -m nnbisim.cli ...`` in a fresh process, from a scratch folder,
``--repeat`` times alternating baseline and now; the median wall-clock seconds of each are
compared. The baseline is the tree of ``--baseline`` (default 8eefc77, the last commit before
the layout redesign of issue 25), extracted by ``git archive`` and put on ``PYTHONPATH`` as the
package ``nnbisim`` (its ``plugin/``, ``adapters/`` and ``specs/`` as the design card maps them).
Bad input: a missing or unreadable file, a malformed option value, an output that exists; each
must exit 2 with one line on stderr in both versions.

    python bench/cli_startup.py [--repeat 5] [--baseline 8eefc77]

Measures everything each run: bench/results/cli_startup.jsonl and the table cli_startup.md.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import _threads  # noqa: F401 - first: one thread per process
from acas import ACAS, network_file
from harness import Results, baseline_tree, cli_process, parser

N1 = network_file("1_1")
PROP = ACAS / "prop_1.vnnlib"
SUBCOMMANDS = ["merge", "spec", "check", "epsilon", "assure", "enlarge", "convert",
               "discrepancy", "repair", "demo", "vnncomp", "vnncomp translate", "vnncomp back",
               "vnncomp run", "vnncomp benchmark", "vnncomp acasxu"]


def cases(work: Path) -> list[tuple[str, list[str], int]]:
    """(what, arguments, expected exit code)."""
    none = str(work / "none.onnx")
    garbage = work / "garbage.onnx"
    garbage.write_bytes(b"not an onnx file at all")
    exists = work / "exists.vnnlib"
    exists.write_text("; already here\n")
    full = work / "full"
    full.mkdir(exist_ok=True)
    (full / "x").write_text("x")
    out = [("--help", ["--help"], 0)]
    out += [(f"{c} --help", [*c.split(), "--help"], 0) for c in SUBCOMMANDS]
    n1, prop = str(N1), str(PROP)
    out += [
        ("merge: missing N1", ["merge", none, n1, "-o", str(work / "m.onnx")], 2),
        ("merge: not an ONNX file", ["merge", str(garbage), n1, "-o", str(work / "m.onnx")], 2),
        ("spec: empty box", ["spec", "--lower", "1", "--upper", "0", "--eps", "0.1",
                             "--n-outputs", "1", "-o", str(work / "s.vnnlib")], 2),
        ("check: missing files", ["check", none, none, none], 2),
        ("epsilon: missing N2", ["epsilon", n1, none, "--input", prop], 2),
        ("epsilon: --rel-gap 2", ["epsilon", n1, n1, "--input", prop, "--rel-gap", "2"], 2),
        ("epsilon: malformed --lower", ["epsilon", n1, n1, "--lower", "0,x", "--upper", "1,1"],
         2),
        ("assure: missing property", ["assure", n1, str(work / "none.vnnlib")], 2),
        ("assure: --quick-direct 2", ["assure", n1, prop, "--quick-direct", "2"], 2),
        ("enlarge: output exists", ["enlarge", n1, n1, prop, "-o", str(exists)], 2),
        ("convert: missing .pth", ["convert", str(work / "none.pth"), "-o",
                                   str(work / "c.onnx")], 2),
        ("discrepancy: missing N1", ["discrepancy", none, n1, "--lower", "0", "--upper", "1"],
         2),
        ("repair: missing N1", ["repair", none, n1, "-o", str(work / "r.onnx")], 2),
        ("demo: non-empty folder", ["demo", "--out", str(full)], 2),
        ("vnncomp run: missing property", ["vnncomp", "run", n1, str(work / "none.vnnlib"),
                                           str(work / "r.txt"), "10"], 2),
        ("vnncomp translate: missing query", ["vnncomp", "translate", n1,
                                              str(work / "none.vnnlib"), "--out",
                                              str(work / "t")], 2),
        ("vnncomp benchmark: missing pairs", ["vnncomp", "benchmark", str(work / "p.csv"),
                                              "--out", str(work / "b")], 2),
        ("vnncomp acasxu: --properties x", ["vnncomp", "acasxu", "--properties", "x", "--out",
                                            str(work / "a")], 2),
    ]
    return out


def timed(args: list[str], cwd: Path, pythonpath: str | None) -> tuple[float, int, str]:
    """Seconds, exit code and the last line on stderr."""
    seconds, code, _out, err = cli_process(args, cwd, pythonpath)
    return seconds, code, err.strip().splitlines()[-1:][0] if err.strip() else ""


def measure(res: Results, commit: str, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="nnbisim-cli-") as tmp:
        work = Path(tmp)
        old_path = str(baseline_tree(commit, work))
        for what, args, code in cases(work):
            old, new = [], []
            for _ in range(repeat):
                old.append(timed(args, work, old_path))
                new.append(timed(args, work, None))
            row = {"case": what, "expected_exit": code, "baseline": commit,
                   "baseline_s": statistics.median(t for t, _, _ in old),
                   "now_s": statistics.median(t for t, _, _ in new),
                   "baseline_exit": old[0][1], "now_exit": new[0][1],
                   "baseline_error": old[0][2] if code else "",
                   "now_error": new[0][2] if code else ""}
            res.add(row)
            print(f"{what}: {row['baseline_s']:.2f} s -> {row['now_s']:.2f} s "
                  f"(exit {row['baseline_exit']} -> {row['now_exit']})", flush=True)


def summarise(res: Results, repeat: int) -> None:
    rows = res.rows
    commit = rows[0]["baseline"] if rows else "-"
    intro = ("Generated by `bench/cli_startup.py`: `python -m nnbisim.cli ...` in a fresh "
             f"process, median of {repeat} runs each, alternating, wall clock, against the "
             f"code of {commit} (before the layout redesign) in the same run. Target: every "
             "`--help` and every bad-input error under 1 s, exit 2 and one line on stderr.")
    lines = res.header("Command-line start-up: help and bad input", intro)
    under = [r for r in rows if r["now_s"] < 1.0]
    lines += [f"- under 1 s now: {len(under)} of {len(rows)} (baseline: "
              f"{sum(r['baseline_s'] < 1.0 for r in rows)}); median "
              f"{statistics.median(r['now_s'] for r in rows):.2f} s against "
              f"{statistics.median(r['baseline_s'] for r in rows):.2f} s" if rows else "", "",
              "| case | baseline s | now s | ratio | exit (baseline / now) | now says |",
              "|---|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['baseline_s']:.2f} | {r['now_s']:.2f} | "
                     f"{r['now_s'] / r['baseline_s']:.2f} | {r['baseline_exit']} / "
                     f"{r['now_exit']} | {r['now_error'][:90].replace('|', '/')} |")
    res.md.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = parser(__doc__, "cli_startup")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", default="8eefc77")
    args = ap.parse_args()
    res = Results(args.results, fresh=not args.summarise, check=not args.summarise)
    if not args.summarise:
        measure(res, args.baseline, args.repeat)
    summarise(res, args.repeat)


if __name__ == "__main__":
    main()
