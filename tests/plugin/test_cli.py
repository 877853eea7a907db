"""The command line end to end: merge + spec + real Marabou, check, and every refusal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import vnnlib
from conftest import acas_net
from netbuild import random_network, save
from onnx import TensorProto, helper, numpy_helper

from nnbisim.adapters.onnx_write import network_to_model
from nnbisim.adapters.replay import replay_difference
from nnbisim.cli.main import main
from nnbisim.verifiers.registry import get_verifier

CENTER = "0,0.1,-0.1,0.2,0.3"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *argv: str, match: str) -> str:
    code, _, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    return lines[0]


@pytest.mark.marabou
@pytest.mark.parametrize("pair", [((1, 1), (1, 2)), ((3, 3), (4, 7))])
def test_merge_and_spec_give_files_marabou_answers_both_ways(tmp_path, capsys, acas_dir, pair):
    n1, n2 = acas_net(*pair[0]), acas_net(*pair[1])
    m = tmp_path / "m.onnx"
    assert run(capsys, "merge", n1, n2, "-o", m)[0] == 0
    # the sampled extremes of (y1 - y2)_0 over the box tell which thresholds are on which side
    c = np.array([float(v) for v in CENTER.split(",")])
    x = np.random.default_rng(0).uniform(c - 0.02, c + 0.02, size=(5000, 5))
    y1, y2 = replay_difference(n1, n2, x)
    top = float((y1 - y2)[:, 0].max())
    marabou = get_verifier("marabou")
    for eps, want in ((top + 1.0, "holds"), (top - 0.5 * abs(top) - 1e-4, "violated")):
        prop = tmp_path / f"d_{want}.vnnlib"
        code, _, _ = run(capsys, "spec", "--center", CENTER, "--radius", "0.02", "--model", m,
                         "--eps", repr(eps), "--output", "0", "--sign", "+", "-o", prop)
        assert code == 0
        verdict = marabou.check(m, prop, 60)
        assert verdict.status.value == want, verdict
        if want == "violated":  # replay on the two original files, not only the merged one
            a, b = replay_difference(n1, n2, verdict.counterexample.reshape(1, -1))
            assert (a - b)[0, 0] >= eps - 1e-5
            assert np.all(np.abs(verdict.counterexample - c) <= 0.02 + 1e-6)


def test_spec_folder_in_both_versions_and_the_pair_query(tmp_path, capsys, acas_dir):
    m = tmp_path / "m.onnx"
    run(capsys, "merge", acas_net(1, 1), acas_net(2, 2), "-o", m, "--outputs", "all")
    for version in ("1.0", "2.0"):
        out = tmp_path / f"specs{version}"
        code, stdout, _ = run(capsys, "spec", "--input", acas_dir / "prop_6.vnnlib", "--model", m,
                              "--eps", "0.5", "--vnnlib-version", version, "-o", out)
        assert code == 0 and stdout.count("wrote") == 11
        names = sorted(p.name for p in out.iterdir())
        assert "diff_inf.vnnlib" in names and "diff_4_neg.vnnlib" in names
        text = (out / "diff_2_pos.vnnlib").read_text()
        if version == "2.0":
            q = vnnlib.parse_query_string(text)
            assert [tuple(o.shape) for o in q.networks[0].outputs] == [(1, 15)]
        else:  # outputs=all: the difference starts at index 10 of 15
            assert "Y_12" in text and "Y_14" in text
    pair = tmp_path / "pair.vnnlib"
    code, _, _ = run(capsys, "spec", "--center", CENTER, "--radius", "0.05", "--pair",
                     acas_net(1, 1), acas_net(2, 2), "--eps", "0.1", "--output", "1",
                     "--vnnlib-version", "2.0", "-o", pair)
    assert code == 0
    assert {n.name for n in vnnlib.parse_query_string(pair.read_text()).networks} == {"f", "g"}


def test_check_reports_agreement_and_writes_json(tmp_path, capsys, acas_dir):
    m = tmp_path / "m.onnx"
    run(capsys, "merge", acas_net(1, 1), acas_net(5, 9), "-o", m, "--separate-comparison")
    report = tmp_path / "check.json"
    code, out, _ = run(capsys, "check", m, acas_net(1, 1), acas_net(5, 9), "--input",
                       acas_dir / "prop_1.vnnlib", "--json", report)
    assert code == 0 and "OK" in out
    data = json.loads(report.read_text())
    assert data["ok"] and data["samples"] == 5000 and data["max_abs_diff"] > 0


def test_check_flags_a_wrong_merged_file(tmp_path, capsys):
    rng = np.random.default_rng(1)
    a, b = (save(network_to_model(random_network([3, 5, 2], rng)), tmp_path / f"{k}.onnx")
            for k in "ab")
    wrong = save(network_to_model(random_network([3, 5, 2], rng)), tmp_path / "wrong.onnx")
    code, out, _ = run(capsys, "check", wrong, a, b, "--samples", "200")
    assert code == 1 and "MISMATCH" in out


def test_refusals_are_one_line_with_exit_code_2(tmp_path, capsys, acas_dir):
    nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["z"], name="fc", transB=1),
             helper.make_node("Sigmoid", ["z"], ["y"], name="squash")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        initializer=[numpy_helper.from_array(np.eye(5, dtype=np.float32), "W"),
                     numpy_helper.from_array(np.zeros(5, np.float32), "B")])
    sig = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                                 ir_version=8), tmp_path / "sigmoid.onnx")
    m = tmp_path / "m.onnx"
    line = refused(capsys, "merge", acas_net(1, 1), sig, "-o", m, match="sigmoid.onnx")
    assert "Sigmoid" in line and "squash" in line
    assert not m.exists()
    refused(capsys, "merge", acas_net(1, 1), tmp_path / "none.onnx", "-o", m, match="none.onnx")
    assert run(capsys, "merge", acas_net(1, 1), acas_net(1, 2), "-o", m)[0] == 0
    before = m.read_bytes()
    refused(capsys, "merge", acas_net(1, 1), acas_net(1, 3), "-o", m, match="--force")
    assert m.read_bytes() == before
    small = save(network_to_model(random_network([4, 3, 5], np.random.default_rng(0))),
                 tmp_path / "four.onnx")
    refused(capsys, "merge", acas_net(1, 1), small, "-o", tmp_path / "x.onnx", match="inputs")
    spec = ("spec", "--model", m, "--eps", "0.1", "--output", "0", "-o", tmp_path / "s.vnnlib")
    refused(capsys, *spec, "--lower", "1,1,1,1,1", "--upper", "0,0,0,0,0", match="empty")
    refused(capsys, *spec, "--lower", "0,0,0", "--upper", "1,1,1", match="5")
    refused(capsys, *spec, "--center", "0,0,0,0,0", "--radius", "-1", match="radius")
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(assert (<= X_0 1.0)\n")
    refused(capsys, *spec, "--input", bad, match="bad.vnnlib")
    refused(capsys, "spec", "--lower", "0", "--upper", "1", "--eps", "1", "-o",
            tmp_path / "t.vnnlib", "--output", "0", match="--n-outputs")
    refused(capsys, *spec, "--lower", "0,0,0,0,0", "--upper", "1,1,1,1,1", "--output", "7",
            match="out of range")
    refused(capsys, "merge", acas_net(1, 1), match="required")


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nnbisim.cli", "merge", str(tmp_path / "a"),
                           str(tmp_path / "b"), "-o", str(tmp_path / "m.onnx")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_merged_files_load_back_and_pass_the_checker(tmp_path, capsys, acas_dir):
    for form in ("sequential", "graph"):
        m = tmp_path / f"{form}.onnx"
        assert run(capsys, "merge", acas_net(2, 1), acas_net(2, 9), "-o", m, "--form", form)[0] == 0
        onnx.checker.check_model(onnx.load(str(m)), full_check=True)


def test_threads_come_from_the_option_or_the_environment_and_bad_counts_are_refused(
        tmp_path, capsys, monkeypatch):
    import torch

    before = torch.get_num_threads()
    missing = tmp_path / "none.onnx"
    try:
        monkeypatch.delenv("NNBISIM_THREADS", raising=False)
        run(capsys, "check", missing, missing, missing)  # refused, but threads are set first
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("NNBISIM_THREADS", "2")
        run(capsys, "check", missing, missing, missing)
        assert torch.get_num_threads() == 2
        run(capsys, "--threads", "1", "check", missing, missing, missing)
        assert torch.get_num_threads() == 1
        refused(capsys, "--threads", "0", "check", missing, missing, missing,
                match="--threads '0': give a whole number of threads")
        monkeypatch.setenv("NNBISIM_THREADS", "many")
        refused(capsys, "check", missing, missing, missing,
                match="$NNBISIM_THREADS 'many'")
    finally:
        torch.set_num_threads(before)


def test_bad_input_is_refused_before_anything_heavy_loads(tmp_path, acas_dir):
    """Each refusal in one line and exit 2, decided before torch, onnx or onnxruntime load:
    missing and unreadable files, pairs and properties that do not fit, bad option values,
    outputs that exist."""
    n1, prop = str(acas_net(1, 1)), str(acas_dir / "prop_1.vnnlib")
    three = str(save(network_to_model(random_network([5, 8, 3], np.random.default_rng(0))),
                     tmp_path / "three.onnx"))
    small = str(save(network_to_model(random_network([3, 8, 5], np.random.default_rng(1))),
                     tmp_path / "small.onnx"))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07 not a model at all")
    exists = tmp_path / "exists.json"
    exists.write_text("{}")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    fifteen = tmp_path / "fifteen.vnnlib"
    fifteen.write_text("".join(f"(declare-const X_{i} Real)\n" for i in range(5))
                       + "".join(f"(declare-const Y_{i} Real)\n" for i in range(15))
                       + "".join(f"(assert (>= X_{i} 0))\n(assert (<= X_{i} 1))\n"
                                 for i in range(5)) + "(assert (>= Y_14 0))\n")
    cases = {
        "no such file": ["merge", str(tmp_path / "none.onnx"), n1, "-o", str(tmp_path / "m")],
        "not a readable ONNX": ["merge", str(garbage), n1, "-o", str(tmp_path / "m.onnx")],
        "outputs": ["check", n1, n1, three],
        "gives 5 outputs but": ["epsilon", n1, three, "--input", prop],
        "takes 5 inputs but": ["merge", n1, small, "-o", str(tmp_path / "m.onnx")],
        "the input set has 2 values": ["epsilon", n1, n1, "--lower", "0,0", "--upper", "1,1"],
        "15 outputs": ["assure", n1, str(fifteen)],
        "--quick-direct": ["assure", n1, prop, "--quick-direct", "2"],
        "--time-budget": ["epsilon", n1, n1, "--input", prop, "--time-budget", "0"],
        "--rel-gap": ["epsilon", n1, n1, "--input", prop, "--rel-gap", "1.5"],
        "already exists": ["epsilon", n1, n1, "--input", prop, "--json", str(exists)],
        "not empty": ["demo", "--out", str(full)],
        "not a number": ["spec", "--lower", "0,x", "--upper", "1,1", "--eps", "1", "-o",
                         str(tmp_path / "s.vnnlib"), "--n-outputs", "1"],
    }
    for match, argv in cases.items():
        code = ("import sys; from nnbisim.cli.main import main; c = main(sys.argv[1:]); "
                "heavy = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]; "
                "print(c, heavy)")
        proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                              text=True, timeout=120)
        assert proc.stdout.strip() == "2 []", (match, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and match in lines[0], (match, lines)


def _refused_light(match: str, argv: list[str]) -> None:
    """One line naming the problem and exit 2, with torch, onnx and onnxruntime not loaded."""
    code = ("import sys; from nnbisim.cli.main import main; c = main(sys.argv[1:]); "
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]; "
            "print(c, heavy)")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=120)
    assert proc.stdout.strip() == "2 []", (match, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], (match, lines)


def test_outputs_counts_numbers_and_weights_are_refused_before_any_work(tmp_path, acas_dir):
    """Outputs that cannot be written, a property or merged file that does not fit, budgets
    and counts out of range, weights that are not finite, sizes beyond the memory budget: one
    line, exit 2, before anything heavy loads (so before any distillation, branch and bound or
    Marabou run)."""
    n1, prop = str(acas_net(1, 1)), str(acas_dir / "prop_1.vnnlib")
    three = str(save(network_to_model(random_network([5, 8, 3], np.random.default_rng(0))),
                     tmp_path / "three.onnx"))
    fifteen = tmp_path / "fifteen.vnnlib"
    fifteen.write_text("".join(f"(declare-const X_{i} Real)\n" for i in range(5))
                       + "".join(f"(declare-const Y_{i} Real)\n" for i in range(15))
                       + "".join(f"(assert (>= X_{i} 0))\n(assert (<= X_{i} 1))\n"
                                 for i in range(5)) + "(assert (>= Y_14 0))\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    weights = numpy_helper.from_array(np.array([[np.nan] * 5] * 5, np.float32), "W")
    nan_model = helper.make_model(helper.make_graph(
        [helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], initializer=[weights]),
        opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    nan = str(save(nan_model, tmp_path / "nan.onnx"))
    int_model = helper.make_model(helper.make_graph(
        [helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [1, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        initializer=[numpy_helper.from_array(np.eye(5, dtype=np.float32), "W")]),
        opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    int_input = str(tmp_path / "int.onnx")
    onnx.save(int_model, int_input)  # onnx.checker would refuse it; a file can still hold it
    huge_model = network_to_model(random_network([5, 8, 5], np.random.default_rng(2)))
    huge_model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 100_000_000  # declared
    huge = str(tmp_path / "huge.onnx")
    onnx.save(huge_model, huge)
    spec = ["spec", "--lower", "0,0,0,0,0", "--upper", "1,1,1,1,1", "--model", n1]
    field = f"[('f', '{n1}')]"
    pairs = tmp_path / "pairs.csv"  # the second line does not pair: checked before the first
    pairs.write_text(f"{n1},{n1},{prop}\n{n1},{three},{prop}\n")
    cases = {
        "a_file is a file, not a folder": ["merge", n1, n1, "-o", str(a_file / "m.onnx")],
        "--json ": ["epsilon", n1, n1, "--input", prop, "--json", str(a_file / "e.json")],
        "is a folder; give a file name": ["check", n1, n1, n1, "--json", str(tmp_path)],
        "without --output, -o names a folder": [*spec, "--eps", "0.1", "-o", str(a_file)],
        "RESULTFILE": ["vnncomp", "run", field, prop, str(tmp_path / "none" / "r.txt"), "5"],
        "fifteen.vnnlib is about 15 outputs": ["vnncomp", "run", field, str(fifteen),
                                               str(tmp_path / "r.txt"), "5"],
        "three.onnx gives 3 outputs": ["check", three, n1, n1],
        "--time-budget nan": ["assure", n1, prop, "--time-budget", "nan"],
        "--time-budget -1": ["assure", n1, prop, "--time-budget", "-1"],
        "--time-budget inf": ["enlarge", n1, n1, prop, "-o", str(tmp_path / "e.vnnlib"),
                              "--time-budget", "inf"],
        "--query-timeout 0": ["epsilon", n1, n1, "--input", prop, "--query-timeout", "0"],
        "--timeout -5": ["vnncomp", "acasxu", "--out", str(tmp_path / "b"), "--timeout", "-5"],
        "--eps-budget nan": ["vnncomp", "acasxu", "--out", str(tmp_path / "b"),
                             "--eps-budget", "nan"],
        "--eps -0.1": [*spec, "--eps", "-0.1", "--output", "0", "-o", str(tmp_path / "s")],
        "--samples -5": ["check", n1, n1, n1, "--samples", "-5"],
        "--samples 10000000000: the inputs and outputs replayed need 1.5 TiB": [
            "check", n1, n1, n1, "--samples", "10000000000"],
        "--hidden '10,100000': layer 2 holds 100000 values": ["assure", n1, prop, "--hidden",
                                                              "10,100000"],
        "--lambda 0": ["repair", n1, n1, "--lambda", "0", "-o", str(tmp_path / "r.onnx")],
        "NaN or infinite values in weight 'W'": ["merge", n1, nan, "-o", str(tmp_path / "m")],
        "huge.onnx: its input holds 100000000 values": ["epsilon", huge, huge, "--input", prop],
        "pairs.csv:2: ": ["vnncomp", "benchmark", str(pairs), "-o", str(tmp_path / "b")],
        "its input 'x' holds int64 values": ["merge", n1, int_input, "-o", str(tmp_path / "m")],
        "--device 'gpu0'": ["epsilon", n1, n1, "--input", prop, "--device", "gpu0"],
        "--verifier 'marabu'": ["assure", n1, prop, "--verifier", "marabu"],
        "has no run_instance.sh": ["epsilon", n1, n1, "--input", prop, "--verifier",
                                   f"vnncomp:{tmp_path}"],
    }
    if Path("/proc").is_dir():  # Linux: nothing can be created there
        cases["no file can be written in /proc"] = ["merge", n1, n1, "-o", "/proc/x.onnx"]
        cases["-o /proc/specs"] = [*spec, "--eps", "0.1", "-o", "/proc/specs/"]
        cases["--json /proc/e.json"] = ["epsilon", n1, n1, "--input", prop, "--json",
                                        "/proc/e.json"]
    for match, argv in cases.items():
        _refused_light(match, argv)
    assert (tmp_path / "r.txt").read_text().startswith("error\n")  # VNN-COMP's answer


def test_outputs_that_exist_need_force_and_missing_folders_are_made(tmp_path, capsys,
                                                                      acas_dir):
    n1, prop = acas_net(1, 1), acas_dir / "prop_1.vnnlib"
    report = tmp_path / "new" / "folder" / "check.json"  # made when missing
    code, _, _ = run(capsys, "check", n1, n1, n1, "--samples", "10", "--json", report)
    assert code in (0, 1) and json.loads(report.read_text())["samples"] == 10
    before = report.read_text()
    refused(capsys, "check", n1, n1, n1, "--samples", "10", "--json", report,
            match="already exists; pass --force")
    assert report.read_text() == before
    folder = tmp_path / "specs"
    spec = ("spec", "--input", prop, "--model", n1, "--eps", "0.1", "-o")
    assert run(capsys, *spec, folder)[0] == 0
    refused(capsys, *spec, folder, match="diff_")
    refused(capsys, *spec, folder / "diff_0_pos.vnnlib", "--output", "0", match="--force")
    assert run(capsys, *spec, folder, "--force")[0] == 0


def test_refusal_of_other_operators_suggests_what_the_command_can_do(tmp_path, capsys):
    nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["z"], name="fc", transB=1),
             helper.make_node("Sigmoid", ["z"], ["y"], name="squash")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[numpy_helper.from_array(np.eye(2, dtype=np.float32), "W"),
                     numpy_helper.from_array(np.zeros(2, np.float32), "B")])
    sig = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                                 ir_version=8), tmp_path / "sigmoid.onnx")
    line = refused(capsys, "epsilon", sig, sig, "--lower", "0,0", "--upper", "1,1",
                   "--verifier", "bounds", match="sigmoid.onnx")
    assert "Sigmoid" in line and "nnbisim merge --form graph" in line
    assert "(use --form graph" not in line  # epsilon has no --form


def test_the_light_verifier_check_knows_the_registry():
    from nnbisim.cli import checks
    from nnbisim.verifiers import registry

    assert set(checks.VERIFIERS) == set(registry.BUILTIN_VERIFIERS)
    assert checks.ENTRY_POINT_GROUP == registry.ENTRY_POINT_GROUP


def test_check_refuses_networks_with_non_finite_outputs(tmp_path, capsys):
    """A Div by a standard deviation of 0: finite weights, infinite outputs."""
    nodes = [helper.make_node("Div", ["x", "std"], ["z"], name="normalise"),
             helper.make_node("Gemm", ["z", "W"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[numpy_helper.from_array(np.array([1, 0, 1], np.float32), "std"),
                     numpy_helper.from_array(np.eye(3, dtype=np.float32), "W")])
    z = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                               ir_version=8), tmp_path / "z.onnx")
    ok = save(network_to_model(random_network([3, 4, 3], np.random.default_rng(0))),
              tmp_path / "ok.onnx")
    refused(capsys, "check", ok, ok, z, "--samples", "50",
            match="z.onnx: gives NaN or infinite outputs")


def test_a_command_bash_execs_does_not_inherit_the_scripts_age():
    # bash -c "...; nnbisim ..." runs its last command in place of the shell: /proc then
    # dates it from the script's start, which once left a quick start's last run a 0.1 s budget
    import subprocess
    import sys

    probe = f"{sys.executable} -c 'from nnbisim.cli.main import process_age; print(process_age())'"
    out = subprocess.run(["bash", "-c", f"sleep 4; {probe}"], capture_output=True, text=True,
                         check=True).stdout
    assert float(out) < 3.0  # the 4 s the shell slept are not this program's
