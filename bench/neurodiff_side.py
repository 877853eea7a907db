"""NeuroDiff (ASE 2020) and nnbisim side by side on NeuroDiff's own ACAS Xu float16 benchmark.

The instances are the artifact's (``DiffNN-Code/table_scripts/acas_cmds.sh``: 143 lines
``delta_network_test PROP nnet/X_Y.nnet compressed_nnets/X_Y_16bit.nnet EPS``): property 1 on
the 45 networks, properties 3 and 4 on 42, and a few others; N2 is N1 with every weight and bias
rounded to float16; the question is "is ``|(N1 - N2)[t]| < eps`` on the property's box", ``t``
the property's target output (hard-coded in NeuroDiff's ``nnet.c``: :data:`PROPERTIES`).

- NeuroDiff: its C code, built here from the public artifact (pauls658/NeuroDiff-ASE2020-Artifact,
  the snapshot ``--source`` points at) as "full NeuroDiff" (``-DLINEQ -DLINEQDELTA -DEXTRAVARS
  -DEXTRAVARSSYM``), OpenBLAS from the ``scipy-openblas32`` wheel, one thread (its threads are a
  compile-time option, off; ``OPENBLAS_NUM_THREADS=1``). Verified = its ``No adv!`` line;
  falsified = ``adv found:``; no ``time:`` line = unknown (timeout).
- nnbisim: ``nnbisim epsilon N1.onnx N2.onnx --lower .. --upper .. --eps E --outputs t`` as a
  whole process (start-up included), one torch thread. ``--pair artifact`` (the default): N1
  and N2 are the artifact's own ``.nnet`` files written as float32 ONNX (NeuroDiff reads them
  into C floats: the same numbers), so both tools answer the same question. Its
  ``*_16bit.nnet`` keeps each float16 weight as text with 4 significant digits, up to 0.0025
  away from the float16 value (4_2), which moves answers near eps (4_2 property 3 at 0.01:
  0.0103 on the exact float16 copy, 0.00585 on the artifact's at that input).
  ``--pair onnx``: N1 is the VNN-COMP ONNX of the network (checked equal to the .nnet's weights
  to float32 precision), N2 its exact float16 copy (``nnbisim compress --method float16``),
  as the first tables were made. The box is NeuroDiff's, normalised as its
  ``normalize_input`` does (clamped to the file's range, ``(x - mean) / range``). ``holds``
  certifies ``|(N1 - N2)[t]| <= eps``, NeuroDiff's ``< eps``: equal for a continuous function
  but on a set of measure zero, and the certified bounds carry a margin anyway.

The two tools run at the same time on an instance, each on its own core, ``--timeout`` seconds
each (default 120, the issue's), so both see the same machine load.

    python bench/neurodiff_side.py [--eps 0.01] [--props 1] [--nets 1_1,2_1] [--only 7:1_9]
                                   [--pair artifact|onnx] [--timeout 120] [--fresh]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _threads  # noqa: F401 - first: one thread per process
import numpy as np
from acas import network_file
from harness import WORK, Results, cli_process, parser

SOURCE = Path("/work/.mirror/pauls658+NeuroDiff-ASE2020-Artifact/repo")
BUILD = WORK / "neurodiff"
OPENBLAS = "scipy-openblas32==0.3.34.481.3"
# NeuroDiff's boxes (raw ACAS Xu units) and target outputs, from its nnet.c (load_inputs)
PI, PI7 = 3.141592, 3.1415926
PROPERTIES = {
    1: ([55947.691, -PI, -PI, 1145, 0], [60760, PI, PI, 1200, 60], 0),
    3: ([1500, -0.06, 3.10, 980, 960], [1800, 0.06, PI, 1200, 1200], 0),
    4: ([1500, -0.06, 0, 1000, 700], [1800, 0.06, 0, 1200, 800], 0),
    5: ([250, 0.2, -PI7, 100, 0], [400, 0.4, -PI7 + 0.005, 400, 400], 4),
    7: ([0, -PI, -PI, 100, 0], [60760, PI, PI, 1200, 1200], 4),
    8: ([0, -PI, -0.1, 600, 600], [60760, -PI * 0.75, 0.1, 1200, 1200], 1),
    9: ([2000, -0.4, -PI, 100, 0], [7000, -0.14, -PI + 0.01, 150, 150], 3),
    10: ([36000, 0.7, -PI, 900, 600], [60760, PI, -PI + 0.01, 1200, 1200], 0),
    11: ([250, 0.2, -PI7, 100, 0], [400, 0.4, -PI7 + 0.005, 400, 400], 4),
    12: ([55947.691, -PI, -PI, 1145, 0], [60760, PI, PI, 1200, 60], 0),
    13: ([60000, -PI, -PI, 0, 0], [60760, PI, PI, 360, 360], 0),
    14: ([250, 0.2, -PI7, 100, 0], [400, 0.4, -PI7 + 0.005, 400, 400], 4),
    15: ([250, -0.4, -PI7, 100, 0], [400, -0.2, -PI7 + 0.005, 400, 400], 3),
    16: ([12000, -PI, -PI, 100, 0], [62000, -0.7, -PI + 0.005, 200, 1200], 0),
    26: ([12000, 0.7, -PI, 100, 0], [62000, PI, -PI + 0.005, 200, 1200], 0),
}
PAIRS = {"artifact": "the artifact's .nnet files (N1 and its 16-bit copy) written as float32 "
                      "ONNX, the networks NeuroDiff reads",
         "onnx": "the VNN-COMP ONNX file and its exact float16 copy (N2 within 0.0025 per "
                 "weight of the artifact's 16-bit .nnet)"}
NEURODIFF_FLAGS = "-DLINEQ -DLINEQDELTA -DEXTRAVARS -DEXTRAVARSSYM"


def build(source: Path, build_dir: Path) -> Path:
    """NeuroDiff's ``delta_network_test``, built once under ``build_dir`` (the path returned)."""
    code = build_dir / "src" / "DiffNN-Code"
    binary = code / "delta_network_test"
    if binary.exists():
        return binary
    if not (source / "HEAD").exists():
        sys.exit(f"bench: no git snapshot of NeuroDiff's artifact at {source}; fetch "
                 "pauls658/NeuroDiff-ASE2020-Artifact and pass its git directory as --source")
    (build_dir / "src").mkdir(parents=True, exist_ok=True)
    # MNIST files missing from the snapshot are left out (git archive would stop at them)
    archive = subprocess.run(
        ["git", "--git-dir", str(source), "archive", "HEAD", "--", "DiffNN-Code",
         ":(exclude)DiffNN-Code/*mnist_relu_2_512*", ":(exclude)DiffNN-Code/*mnist_relu_4_1024*"],
        capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(build_dir / "src")], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target",
                    str(build_dir / "pylib"), OPENBLAS], check=True)
    ob = build_dir / "pylib" / "scipy_openblas32"
    env = {**os.environ, "CFLAGS": "-fcommon",  # split.h defines a global in a header
           "CPPFLAGS": f"-I{ob / 'include'} -Dcblas_sgemm=scipy_cblas_sgemm "
                       "-Dopenblas_set_num_threads=scipy_openblas_set_num_threads"}
    with open(build_dir / "build.log", "w") as log:
        subprocess.run(["make", "clean", "lineqall", "extravarssym", "all",
                        f"LDFLAGS=-L{ob / 'lib'} -Wl,-rpath,{ob / 'lib'} -lscipy_openblas "
                        "-lpthread -lm"], cwd=code, env=env, stdout=log, stderr=log, check=True)
    return binary


def instances(code: Path) -> list[tuple[int, str]]:
    """(property, network) of every line of the artifact's ACAS Xu command list."""
    text = (code / "table_scripts" / "acas_cmds.sh").read_text()
    return [(int(p), n) for p, n in re.findall(r"^timeout .*delta_network_test (\d+) "
                                                 r"nnet/ACASXU_run2a_(\d_\d)_batch_2000\.nnet",
                                                 text, re.M)]


def read_nnet(path: Path) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Weights, biases and the input normalisation (mins, maxes, means, ranges) of a .nnet."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("//")]
    values = [[float(v) for v in ln.split(",") if v.strip()] for ln in lines]
    sizes = [int(v) for v in values[1]]
    norm = np.array([values[3][:5], values[4][:5], values[5][:5], values[6][:5]])
    rows, weights, biases = iter(values[7:]), [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        weights.append(np.array([next(rows)[:fan_in] for _ in range(fan_out)]))
        biases.append(np.array([next(rows)[0] for _ in range(fan_out)]))
    return weights, biases, norm


def normalised_box(prop: int, norm: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """NeuroDiff's box of ``prop`` in the networks' input units, and its target output."""
    lo, hi, target = PROPERTIES[prop]
    mins, maxes, means, ranges = norm
    f32 = np.float32  # its boxes are C floats
    scale = [(np.clip(np.asarray(v, f32).astype(np.float64), mins, maxes) - means) / ranges
             for v in (lo, hi)]
    return scale[0], scale[1], target


def run_neurodiff(binary: Path, prop: int, net: str, eps: float, timeout: float) -> dict:
    code = binary.parent
    cmd = (f"ulimit -s unlimited; exec timeout -s INT {timeout} ./delta_network_test {prop} "
           f"nnet/ACASXU_run2a_{net}_batch_2000.nnet "
           f"compressed_nnets/ACASXU_run2a_{net}_batch_2000_16bit.nnet {eps}")
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", "-c", cmd], cwd=code, capture_output=True, text=True,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    seconds = time.perf_counter() - t0
    err = proc.stderr
    done = re.search(r"^time: *([0-9.]+)", err, re.M)
    splits = re.search(r"^numSplits: *(\d+)", err, re.M)
    status = ("verified" if done and re.search(r"^No adv!", err, re.M) else
              "falsified" if done and re.search(r"^adv found:", err, re.M) else "unknown")
    return {"tool": "neurodiff", "status": status, "seconds": round(seconds, 2),
            "work": int(splits.group(1)) if splits else None}


def _nnet_path(net: str, compressed: bool) -> Path:
    code = BUILD / "src" / "DiffNN-Code"
    if compressed:
        return code / "compressed_nnets" / f"ACASXU_run2a_{net}_batch_2000_16bit.nnet"
    return code / "nnet" / f"ACASXU_run2a_{net}_batch_2000.nnet"


def _nnet_as_onnx(src: Path, out: Path) -> Path:
    """The ``.nnet`` file's network as float32 ONNX (NeuroDiff's C floats: the same values)."""
    if not out.exists():
        from nnbisim.adapters.onnx_write import network_to_model, save_model
        from nnbisim.core.model import Network
        w, b, _ = read_nnet(src)
        save_model(network_to_model(Network.from_weights(w, b, name=src.stem)), out)
    return out


def pair_files(work: Path, net: str, pair: str) -> tuple[Path, Path]:
    """N1 and N2 for nnbisim: the artifact's .nnet files as ONNX, or the VNN-COMP ONNX and
    its exact float16 copy (see the module docstring)."""
    if pair == "artifact":
        return (_nnet_as_onnx(_nnet_path(net, False), work / f"{net}_nnet.onnx"),
                _nnet_as_onnx(_nnet_path(net, True), work / f"{net}_16bit_nnet.onnx"))
    n1 = network_file(net)
    n2 = work / f"{net}_float16.onnx"
    if not n2.exists():
        code = cli_process(["compress", str(n1), "-o", str(n2), "--method", "float16"], work,
                           None)[1]
        assert code == 0, f"compress {net}"
    return n1, n2


def run_nnbisim(work: Path, prop: int, net: str, eps: float, timeout: float,
                pair: str = "artifact") -> dict:
    n1, n2 = pair_files(work, net, pair)
    _, _, norm = read_nnet(_nnet_path(net, False))
    lo, hi, target = normalised_box(prop, norm)
    out = work / f"{net}_{prop}_{eps}.json"
    out.unlink(missing_ok=True)
    lo_text, hi_text = (",".join(repr(float(v)) for v in side) for side in (lo, hi))
    args = ["epsilon", str(n1), str(n2), "--lower", lo_text, "--upper", hi_text,
            "--eps", str(eps), "--outputs", str(target),
            "--time-budget", str(timeout), "--json", str(out), "--quiet"]
    seconds, code, _, err = cli_process(args, work, None, timeout=timeout + 120)
    verdict = json.loads(out.read_text()).get("verdict") if out.exists() else None
    status = {"holds": "verified", "violated": "falsified"}.get(verdict, "unknown")
    if code not in (0, 1, 3):
        status = f"error {code}: {err.strip().splitlines()[-1] if err.strip() else ''}"
    return {"tool": "nnbisim", "status": status, "seconds": round(seconds, 2), "work": None,
            "pair": pair}


def same_weights(net: str) -> float:
    """Largest difference between the .nnet's weights and biases and the ONNX file's."""
    from nnbisim.adapters.onnx_load import load_network
    w, b, _ = read_nnet(_nnet_path(net, False))
    onnx = load_network(network_file(net))
    return float(max(max(np.abs(layer.weight - wi).max(), np.abs(layer.bias - bi).max())
                     for layer, wi, bi in zip(onnx.layers, w, b, strict=True)))


def summarise(results: Results) -> None:
    rows = results.rows
    lines = results.header(
        "NeuroDiff and nnbisim side by side on NeuroDiff's ACAS Xu float16 benchmark",
        "Made by bench/neurodiff_side.py (see its docstring): NeuroDiff's C code built here, "
        "one thread, and `nnbisim epsilon --eps` as a whole process, one thread, run at the "
        "same time on each instance (each on its own core), the same timeout.")
    pairs = sorted({r.get("pair", "onnx") for r in rows if r["tool"] == "nnbisim"})
    lines += [f"nnbisim's networks: {', '.join(PAIRS[p] for p in pairs)}.", ""]
    lines += ["| eps | tool | instances | verified | falsified | unknown | total s (unknown at "
              "the timeout) | median s |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for eps in sorted({r["eps"] for r in rows}, reverse=True):
        for tool in ("neurodiff", "nnbisim"):
            mine = [r for r in rows if r["eps"] == eps and r["tool"] == tool]
            if not mine:
                continue
            count = {s: sum(r["status"] == s for r in mine) for s in ("verified", "falsified")}
            count["unknown"] = len(mine) - count["verified"] - count["falsified"]
            secs = [r["seconds"] if r["status"] in ("verified", "falsified") else r["timeout"]
                    for r in mine]
            lines.append(f"| {eps} | {tool} | {len(mine)} | {count['verified']} | "
                         f"{count['falsified']} | {count['unknown']} | {sum(secs):.0f} | "
                         f"{np.median(secs):.1f} |")
    lines += ["", "| eps | property | network | NeuroDiff | s | splits | nnbisim | s |",
              "|---:|---:|---|---|---:|---:|---|---:|"]
    cell = {(r["eps"], r["prop"], r["net"], r["tool"]): r for r in rows}
    for eps, prop, net in sorted({(r["eps"], r["prop"], r["net"]) for r in rows},
                                 key=lambda k: (-k[0], k[1], k[2])):
        a, b = cell.get((eps, prop, net, "neurodiff")), cell.get((eps, prop, net, "nnbisim"))
        lines.append(f"| {eps} | {prop} | {net} | {a['status'] if a else '-'} | "
                     f"{a['seconds'] if a else '-'} | {a['work'] if a and a['work'] else '-'} | "
                     f"{b['status'] if b else '-'} | {b['seconds'] if b else '-'} |")
    checked = [r["weights_max_diff"] for r in rows if "weights_max_diff" in r]
    if checked:
        lines += ["", f"The .nnet and ONNX weights differ by at most {max(checked):.2g} "
                  "(the same networks; the .nnet text keeps fewer digits than float32)."]
    results.md.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = parser(__doc__, "neurodiff_side", jobs=2)
    ap.add_argument("--eps", default="0.01", help="comma-separated (NeuroDiff's: 0.05,0.01,0.001)")
    ap.add_argument("--props", help="only these properties (comma-separated)")
    ap.add_argument("--nets", help="only these networks, e.g. 1_1,2_1")
    ap.add_argument("--only", help="only these instances, PROPERTY:NETWORK comma-separated, "
                    "e.g. 1:2_1,7:1_9")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--pair", choices=("artifact", "onnx"), default="artifact",
                    help="nnbisim's N1 and N2: the artifact's .nnet files as ONNX (the same "
                    "networks as NeuroDiff's) or the VNN-COMP ONNX and its exact float16 copy")
    ap.add_argument("--source", type=Path, default=SOURCE,
                    help="the artifact's git snapshot (bare repository)")
    opts = ap.parse_args()
    results = Results(opts.results, opts.fresh)
    if not opts.summarise:
        binary = build(opts.source, BUILD)
        work = BUILD / "nnbisim"
        work.mkdir(exist_ok=True)
        todo = [(p, n) for p, n in instances(binary.parent)
                if (not opts.props or str(p) in opts.props.split(","))
                and (not opts.nets or n in opts.nets.split(","))
                and (not opts.only or f"{p}:{n}" in opts.only.split(","))]
        done = {(r["eps"], r["prop"], r["net"], r["tool"]) for r in results.rows}
        checked: set[str] = {r["net"] for r in results.rows if "weights_max_diff" in r}
        for eps in (float(e) for e in opts.eps.split(",")):
            for prop, net in todo:
                if (eps, prop, net, "nnbisim") in done and (eps, prop, net, "neurodiff") in done:
                    continue
                with ThreadPoolExecutor(2) as pool:
                    a = pool.submit(run_neurodiff, binary, prop, net, eps, opts.timeout)
                    b = pool.submit(run_nnbisim, work, prop, net, eps, opts.timeout,
                                    opts.pair)
                    both = [a.result(), b.result()]
                extra = {} if net in checked else {"weights_max_diff": same_weights(net)}
                checked.add(net)
                for row in both:
                    results.add({**row, "eps": eps, "prop": prop, "net": net,
                                 "timeout": opts.timeout, **extra})
                summarise(results)
                print(f"eps {eps} prop {prop} {net}: " + ", ".join(
                    f"{r['tool']} {r['status']} {r['seconds']} s" for r in both), flush=True)
    summarise(results)


if __name__ == "__main__":
    main()
