"""The repair loop and the quantized command line: convert, discrepancy, repair."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from nnbisim.adapters.mnist import load_test_set, patch_box
from nnbisim.adapters.onnx_quant import load_quantized
from nnbisim.adapters.torch_io import load_torch
from nnbisim.cli.main import main
from nnbisim.core.errors import InputError
from nnbisim.core.quant import QuantizedNetwork
from nnbisim.tasks.options import RepairOptions
from nnbisim.tasks.repair import Region, _certify, accuracy_on, repair


@pytest.fixture(scope="module")
def paper(data_dir):
    d = data_dir / "fnn-repair"
    return d / "mnist_fnn_l_ori.pth", d / "mnist_fnn_s_quan.pth"


@pytest.fixture(scope="module")
def mnist(data_dir):
    return load_test_set(data_dir / "mnist")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *argv, match):
    code, _, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], lines[0]


def test_loop_stops_at_the_target_and_stays_int8(paper, mnist):
    n1, n2 = load_torch(paper[0]), load_torch(paper[1])
    x, y = mnist
    regions = [Region(str(i), *patch_box(x[i])) for i in (12, 14)]
    acc = accuracy_on(x[5000:6000], y[5000:6000])
    rep = repair(n1, n2, regions, options=RepairOptions(rounds=3), replay=x[:1000], accuracy=acc)
    assert rep.met
    targets = 0.67 * np.array(rep.initial.certified)
    assert np.all(np.array(rep.final.certified) <= targets)
    # no round after the target was met, and the certified values are sound
    assert all(np.any(np.array(r.certified) > targets) for r in rep.rounds[:-1])
    assert all(w <= c + 1e-9 for w, c in zip(rep.final.witnessed, rep.final.certified,
                                              strict=True))
    net = rep.network
    assert isinstance(net, QuantizedNetwork)
    assert all(q.w_codes.min() >= -128 and q.w_codes.max() <= 127 for q in net.layers)
    assert rep.final.accuracy >= rep.initial.accuracy


def test_loop_keeps_to_its_round_limit(paper, mnist):
    n1, n2 = load_torch(paper[0]), load_torch(paper[1])
    x, _ = mnist
    regions = [Region("12", *patch_box(x[12]))]
    rep = repair(n1, n2, regions, options=RepairOptions(rounds=2, qparams="keep", target_ratio=0.1),
                 replay=x[:500])
    assert not rep.met and len(rep.rounds) == 3
    assert [r["stage"] for r in rep.to_json()["rounds"]] == ["initial", "retrained", "retrained"]
    # keep: the activation quantization is the original's, the weights were retrained
    assert rep.network.input == load_torch(paper[1]).input
    assert not np.array_equal(rep.network.layers[0].w_codes, load_torch(paper[1]).layers[0].w_codes)


def test_repair_refuses_bad_inputs(paper, mnist):
    n1, n2 = load_torch(paper[0]), load_torch(paper[1])
    x, _ = mnist
    outside = Region("bad", x[12] - 0.5, x[12] + 0.5)
    with pytest.raises(InputError, match="leaves the input domain"):
        repair(n1, n2, [outside])
    with pytest.raises(InputError, match="must be a quantized network"):
        repair(n1, n1, [Region("12", *patch_box(x[12]))])
    with pytest.raises(InputError, match="target-ratio"):
        repair(n1, n2, [Region("12", *patch_box(x[12]))], options=RepairOptions(target_ratio=1.5))


def test_convert_writes_onnx_that_runs_like_the_model(tmp_path, capsys, paper, mnist):
    x, _ = mnist
    for src, name in ((paper[1], "q.onnx"), (paper[0], "f.onnx")):
        out = tmp_path / name
        code, stdout, _ = run(capsys, "convert", src, "--arch", "784-256-64-10", "-o", out)
        assert code == 0 and "max difference" in stdout
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = np.concatenate([sess.run(None, {"input": xi[None].astype(np.float32)})[0]
                              for xi in x[:50]])
        want = load_torch(src).forward(x[:50].astype(np.float32).astype(np.float64))
        assert np.max(np.abs(got - want)) < (1e-9 if name == "q.onnx" else 1e-4)
    assert np.array_equal(load_quantized(tmp_path / "q.onnx").forward(x[:50]),
                          load_torch(paper[1]).forward(x[:50]))
    refused(capsys, "convert", paper[1], "-o", tmp_path / "q.onnx", match="already exists")


def test_convert_and_repair_refuse_clearly(tmp_path, capsys, paper):
    refused(capsys, "convert", paper[0], "--arch", "784-256-10", "-o", tmp_path / "a.onnx",
            match="not the 784-256-10 given by --arch")
    refused(capsys, "convert", paper[0], "--arch", "784-x", "-o", tmp_path / "a.onnx",
            match="give the layer sizes")
    junk = tmp_path / "junk.pth"
    torch.save({"something": torch.zeros(3)}, junk)
    refused(capsys, "convert", junk, "-o", tmp_path / "a.onnx", match="no linear layer weights")
    refused(capsys, "convert", tmp_path / "missing.pth", "-o", tmp_path / "a.onnx",
            match="no such file")
    refused(capsys, "repair", paper[0], paper[1], "--regions", "ball:0.1:6000",
            "-o", tmp_path / "r.onnx", match="held out")
    refused(capsys, "repair", paper[0], paper[1], "--regions", "ball:x",
            "-o", tmp_path / "r.onnx", match="ball:RADIUS")
    refused(capsys, "repair", paper[1], paper[1], "-o", tmp_path / "r.onnx",
            match="must be a float network")


def test_repair_and_discrepancy_commands(tmp_path, capsys, paper, mnist):
    x, _ = mnist
    out, js = tmp_path / "r.onnx", tmp_path / "r.json"
    code, stdout, _ = run(capsys, "repair", paper[0], paper[1], "--regions", "ball:0:12,14",
                          "--quiet", "-o", out, "--json", js)
    assert code == 0 and "every region at its target" in stdout
    data = json.loads(js.read_text())
    assert data["met"] and data["accuracy"]["images"] == "test 5000-9999"
    onnx.checker.check_model(onnx.load(out))
    lo, hi = patch_box(x[12])
    code, stdout, _ = run(capsys, "discrepancy", paper[0], out,
                          "--lower", ",".join(repr(float(v)) for v in lo),
                          "--upper", ",".join(repr(float(v)) for v in hi),
                          "--quiet", "--json", tmp_path / "d.json")
    assert code == 0 and "exact cells" in stdout
    box = json.loads((tmp_path / "d.json").read_text())["boxes"][0]
    assert box["replayed"]["largest_difference"] < 1e-4  # onnxruntime agrees with the witnesses
    xs = np.random.default_rng(0).uniform(lo, hi, size=(2000, 784))
    d = load_torch(paper[0]).forward(xs) - load_quantized(out).forward(xs)
    for o in box["outputs"]:
        assert o["min"]["certified"] <= d[:, o["index"]].min()
        assert o["max"]["certified"] >= d[:, o["index"]].max()


def test_regions_certified_on_two_workers_as_in_one_process(paper, mnist):
    n1, n2 = load_torch(paper[0]), load_torch(paper[1])
    x, _ = mnist
    regions = [Region(str(i), *patch_box(x[i])) for i in (12, 14, 16)]
    alone = _certify(n1, n2, regions, RepairOptions(workers=1))
    spread = _certify(n1, n2, regions, RepairOptions(workers=2))
    for a, b in zip(alone, spread, strict=True):
        assert np.allclose(a.eps_certified, b.eps_certified, rtol=1e-9, atol=1e-12)
        assert np.allclose(a.eps_witnessed, b.eps_witnessed, rtol=1e-9, atol=1e-12)
