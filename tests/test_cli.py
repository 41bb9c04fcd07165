"""End-to-end CLI tests: the console script's subcommands on the bundled examples."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import compiler
from compiler.cli import main
from conftest import EXAMPLES, ROOT, assert_close

LENET = str(EXAMPLES / "lenet5.yaml")


def test_compile_writes_a_loadable_library(tmp_path, capsys):
    out = tmp_path / "lenet.so"
    assert main(["compile", LENET, "-o", str(out)]) == 0
    assert out.is_file()
    assert "lenet5" in capsys.readouterr().out
    import runtime
    model = runtime.load(out)
    assert model.input_shapes == {"image": (1, 28, 28)} and model.output_shapes == {"fc3": (10,)}


def test_run_on_npy_matches_interpreter(tmp_path):
    so, xin, yout = tmp_path / "m.so", tmp_path / "x.npy", tmp_path / "y.npy"
    assert main(["compile", LENET, "-o", str(so)]) == 0
    x = np.random.default_rng(3).standard_normal((4, 1, 28, 28)).astype(np.float32)
    np.save(xin, x)
    assert main(["run", str(so), "--input", str(xin), "-o", str(yout)]) == 0
    graph = compiler.load(LENET)
    assert_close(np.load(yout), compiler.interpret(graph, {"image": x}, dtype=np.float64)["fc3"])


def test_run_accepts_a_single_sample_and_float64(tmp_path):
    xin, yout = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(xin, np.zeros((1, 28, 28)))  # float64, no batch axis
    assert main(["run", LENET, "--input", str(xin), "-o", str(yout)]) == 0
    assert np.load(yout).shape == (1, 10)


def test_run_rejects_wrong_shape(tmp_path, capsys):
    xin = tmp_path / "x.npy"
    np.save(xin, np.zeros((2, 3, 28, 28), np.float32))
    assert main(["run", LENET, "--input", str(xin)]) == 2
    err = capsys.readouterr().err
    assert "expected shape [N, 1, 28, 28]" in err and "[2, 3, 28, 28]" in err


def test_summary_shows_formula_params_and_totals(capsys):
    assert main(["summary", LENET]) == 0
    out = capsys.readouterr().out
    assert "(28 − 5 + 2·2)/1 + 1 = 28" in out  # conv1
    assert "(14 − 5 + 2·0)/1 + 1 = 10" in out  # conv2
    # conv1: 5·5·1·6 + 6 = 156 parameters; the totals line sums every layer.
    row = next(line for line in out.splitlines() if line.startswith("conv1 "))
    assert " 156 " in row and "6×28×28" in row
    assert "total: 61,706 parameters" in out  # 156 + 2416 + 48120 + 10164 + 850


def test_summary_json_is_machine_readable(capsys):
    assert main(["summary", LENET, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in data["rows"]}
    assert rows["conv2"]["params"] == 5 * 5 * 6 * 16 + 16
    assert rows["conv2"]["macs"] == 16 * 10 * 10 * 6 * 5 * 5
    assert data["params"] == sum(r["params"] for r in data["rows"])


def test_check_passes_and_reports_errors(capsys):
    assert main(["check", str(EXAMPLES / "resnet_small.yaml"), "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "max abs error" in out and "check passed" in out


def test_check_fails_on_a_mismatch(monkeypatch, capsys):
    """If the compiled model disagrees with the interpreter, check says so and exits 1."""
    import runtime.model
    real_run = runtime.model.Model.run

    def broken_run(self, inputs):
        outs = real_run(self, inputs)
        return {k: v + 1e-2 for k, v in outs.items()}
    monkeypatch.setattr(runtime.model.Model, "run", broken_run)
    assert main(["check", LENET]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: {shape: [1, 8, 8]}\nlayers:\n  - {op: conv2d, filters: 2, kernel: 9}\n")
    assert main(["summary", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convc: error:") and "conv2d_1" in err and "≤ 0" in err


def test_console_script_entry_point(tmp_path):
    """`python -m compiler` is the same program as the `convc` script."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "compiler", "summary", LENET], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "fc3" in proc.stdout


@pytest.mark.parametrize("argv", [["--version"], ["compile", "--help"]])
def test_help_and_version(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0


def test_threads_option_reaches_the_model(tmp_path, capsys, monkeypatch):
    """--threads N sets the library's thread count for run; a bad value is an argparse error, not a traceback."""
    import runtime
    seen = []
    real_load = runtime.load

    def spy(path, threads=None):
        model = real_load(path, threads=threads)
        seen.append(model.threads)
        return model

    so = tmp_path / "lenet5.so"
    assert main(["compile", LENET, "-o", str(so), "--quiet"]) == 0
    monkeypatch.setattr(runtime, "load", spy)
    assert main(["run", str(so), "--random", "1", "--threads", "3"]) == 0
    assert seen == [3]  # not the default (the CPU count)
    with pytest.raises(SystemExit) as exc:
        main(["run", str(so), "--random", "1", "--threads", "0"])
    assert exc.value.code == 2
    assert "expected an integer >= 1" in capsys.readouterr().err


def test_bench_times_convc_and_onnxruntime_on_the_same_onnx_file(tmp_path, capsys):
    import onnx
    from bench.export import onnx_model
    path = tmp_path / "lenet5.onnx"
    onnx.save(onnx_model(compiler.load(EXAMPLES / "lenet5.yaml")), str(path))
    assert main(["bench", str(path), "--batch", "3", "--threads", "1", "--budget", "0.2", "--march", "x86-64-v3",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "host: native" in out and "compiled for x86-64-v3 (8 lanes)" in out and "batch 3, 1 thread(s)" in out
    error = float(out.split("max |convc − onnxruntime| / max |onnxruntime| = ")[1].split()[0])
    assert error <= 1e-5
    assert "convc        median" in out and "onnxruntime  median" in out and "convc/onnxruntime = " in out


def test_bench_of_a_description_times_convc_alone(capsys):
    assert main(["bench", str(EXAMPLES / "lenet5.yaml"), "--budget", "0.1", "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "batch 1, 2 thread(s)" in out and "convc        median" in out and "onnxruntime" not in out


def test_bench_keeps_one_section_per_host_and_build():
    from bench.run import merge_sections
    doc = "# Benchmarks\n\nintro\n\n## AVX512 host (x), convc built for AVX512 (native)\n\nold 512\n"
    avx2 = "## AVX512 host (x), convc built for AVX2 (x86-64-v3)\n\nnew 256\n"
    both = merge_sections(doc, avx2)
    assert both.startswith("# Benchmarks\n\nintro\n") and "old 512" in both and "new 256" in both
    again = merge_sections(both, "## AVX512 host (x), convc built for AVX2 (x86-64-v3)\n\nnewer 256\n")
    assert "new 256" not in again and "newer 256" in again and "old 512" in again
    assert merge_sections("", avx2).startswith("# Benchmarks") and "new 256" in merge_sections("", avx2)
