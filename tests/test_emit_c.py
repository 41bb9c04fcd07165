"""Standalone C export: model.c/model.h build with plain cc -std=c99 -pedantic -Werror at every opt level,
run without Python, and agree with the interpreter for every example."""
import shutil
import subprocess
import warnings

import numpy as np
import pytest

import compiler
from compiler.cli import main
from compiler.emit import ARRAY_WEIGHTS_LIMIT, c_prefix, emit_c
from compiler.passes import PIPELINES
from compiler.pipeline import DEFAULT_OPT_LEVEL
from conftest import EXAMPLES, TARGET_IDS, TARGETS, assert_close, kernel_plan, model_dict, random_input
from runtime.build import default_cc

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
OPT_LEVELS = sorted(PIPELINES)
FAST_LEVEL = max(OPT_LEVELS)
# One layer for each fast kernel of opt level 2: rowvec (C <= 8), blocked (large enough for the thread
# pool), depthwise, both Winograd kernels, pointwise, grouped, both max-pool kernels, and the vectorized dense.
EVERY_FAST_KERNEL = model_dict(
    [{"name": "rowvec", "op": "conv2d", "filters": 16, "kernel": 3, "padding": 1}, {"op": "relu"},
     # the row-vector kernel writes C×H×W, so the depthwise conv takes the plane kernel on either target
     {"name": "depthwise", "op": "conv2d", "filters": 16, "kernel": 3, "padding": 1, "groups": 16},
     {"name": "direct", "op": "conv2d", "filters": 24, "kernel": 3, "padding": 2, "dilation": 2},
     {"name": "winograd", "op": "conv2d", "filters": 64, "kernel": 3, "padding": 1},
     {"name": "winograd_planes", "op": "conv2d", "filters": 64, "kernel": 3, "padding": 2, "dilation": 2},
     {"name": "pointwise", "op": "conv2d", "filters": 20, "kernel": 1},
     # 5 groups of 4: vectors of 4 filters of a group (C×H×W in and out)
     {"name": "grouped", "op": "conv2d", "filters": 20, "kernel": 3, "padding": 1, "groups": 5},
     # channel-blocked tensors: expand writes them (blocked kernel), the depthwise conv reads and writes them,
     # project reads them (15×15 pixels: the blocked kernel, which reads either layout)
     {"name": "expand", "op": "conv2d", "filters": 32, "kernel": 1}, {"op": "relu6"},
     {"name": "depthwise_blocked", "op": "conv2d", "filters": 32, "kernel": 3, "stride": 2, "groups": 32},
     {"name": "project", "op": "conv2d", "filters": 16, "kernel": 1},
     {"op": "maxpool2d", "kernel": 2}, {"op": "maxpool2d", "kernel": 3, "padding": 1}, {"op": "flatten"}, {"name": "fc", "op": "dense", "units": 7}],
    shape=(3, 32, 32), name="every_kernel", seed=5)


def load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        return compiler.load(path)


def build(folder, extra=("-O2",), main_c=None, sources=None):
    """Build the example program (or `main_c` with `sources`) with the strict flags; returns the binary."""
    exe = folder / "example" / "prog"
    main_c = main_c or folder / "example" / "main.c"
    sources = sources or [folder / "model.c"]
    cmd = [default_cc(), *STRICT, *extra, f"-I{folder}", "-o", str(exe), str(main_c), *map(str, sources), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", f"warnings: {proc.stderr}"
    return exe


def run_example(exe, folder, x, *extra_args, env=None):
    (folder / "in.bin").write_bytes(np.ascontiguousarray(x, np.float32).tobytes())
    proc = subprocess.run([str(exe), str(folder / "in.bin"), str(folder / "out.bin"), *map(str, extra_args)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    return np.fromfile(folder / "out.bin", np.float32)


@pytest.mark.parametrize("opt_level", OPT_LEVELS)
@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_example_builds_strict_and_matches_interpreter(path, opt_level, tmp_path):
    graph = load(path)
    emitted = emit_c(graph, tmp_path, opt_level=opt_level)
    assert {p.name for p in emitted.files} >= {"model.c", "model.h", "main.c", "Makefile"}
    exe = build(tmp_path)
    x = random_input(graph.shape(graph.inputs[0]), batch=3, seed=2)
    extra = [tmp_path / "weights.bin"] if emitted.weights == "file" else []
    y = run_example(exe, tmp_path, x, *extra)
    ref = compiler.interpret(graph, {graph.inputs[0]: x}, dtype=np.float64)[graph.outputs[0]]
    assert_close(y.reshape(ref.shape), ref)


def test_default_opt_level_is_the_shared_librarys_and_uses_the_fast_kernels(tmp_path):
    graph = load(EXAMPLES / "lenet5.yaml")
    emit_c(graph, tmp_path / "default")
    emit_c(graph, tmp_path / "same", opt_level=DEFAULT_OPT_LEVEL)
    emit_c(graph, tmp_path / "plain", opt_level=0)
    default = (tmp_path / "default" / "model.c").read_text()
    assert default == (tmp_path / "same" / "model.c").read_text()
    assert "vector_size" in default and "vector_size" not in (tmp_path / "plain" / "model.c").read_text()


def every_kernel_program(folder, graph, prefix="net", march="native"):
    """A program that sets 3 threads, prints the thread count, runs one sample from argv[1] and prints it."""
    emit_c(graph, folder, opt_level=FAST_LEVEL, prefix=prefix, march=march)
    main_c = folder / "threads.c"
    main_c.write_text(
        '#include <stdio.h>\n#include "model.h"\n'
        "static float x[NET_INPUT_SIZE], y[NET_OUTPUT_SIZE];\n"
        "int main(int argc, char **argv)\n{\n    int i;\n    FILE *f = fopen(argv[1], \"rb\");\n"
        "    (void)argc;\n    if (f == NULL || fread(x, sizeof(float), NET_INPUT_SIZE, f) != NET_INPUT_SIZE) return 1;\n"
        "    fclose(f);\n    net_set_threads(3);\n    printf(\"%d\\n\", net_get_threads());\n"
        "    if (net_run(x, y) != NET_OK) return 1;\n"
        "    for (i = 0; i < NET_OUTPUT_SIZE; ++i) printf(\"%.9g\\n\", y[i]);\n    return 0;\n}\n")
    return main_c


@pytest.mark.parametrize("defines, threads", [((), 1), (("-DNET_THREADS", "-pthread"), 3),
                                              (("-DCONVC_NO_VECTOR_EXTENSIONS",), 1),
                                              (("-DCONVC_NO_VECTOR_EXTENSIONS", "-DNET_THREADS", "-pthread"), 1)],
                         ids=["serial", "threads", "scalar", "scalar-threads"])
@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_fast_kernels_serial_threaded_and_scalar(defines, threads, target, tmp_path):
    """Every fast kernel, built strict: serial by default, on the pool with NET_THREADS, and through the
    portable path that compilers without GNU vector extensions take (which must stay on one thread).
    Built without -march, so both targets' kernels run on any x86-64 machine (wide vectors split by cc)."""
    graph = compiler.load(EVERY_FAST_KERNEL)
    main_c = every_kernel_program(tmp_path, graph, march=target)
    templates = {c.template for c in kernel_plan(graph, target, FAST_LEVEL)[1].choices.values()}
    assert {f"ops/conv2d_{kind}.c.j2" for kind in ("rowvec", "direct", "winograd", "winograd_planes", "depthwise",
                                                   "pointwise", "depthwise_blocked", "grouped")} <= templates
    assert "convc_parallel(L" in (tmp_path / "model.c").read_text()  # the pool has a layer to split
    # The switches select what the compiler sees: vector code, and pthreads only with NET_THREADS.
    seen = subprocess.run([default_cc(), "-std=c99", "-E", *defines, str(tmp_path / "model.c")],
                          capture_output=True, text=True, check=True).stdout
    assert ("vector_size" in seen) == ("-DCONVC_NO_VECTOR_EXTENSIONS" not in defines)
    assert ("pthread_create (" in seen or "pthread_create(" in seen) == (threads > 1)
    exe = build(tmp_path, extra=("-O2", *defines), main_c=main_c)
    x = random_input(graph.shape("x"), batch=1, seed=6)
    (tmp_path / "x.bin").write_bytes(x.tobytes())
    proc = subprocess.run([str(exe), str(tmp_path / "x.bin")], capture_output=True, text=True, timeout=120,
                          env={"OMP_NUM_THREADS": "1"})  # net_set_threads(3) must win over the environment
    assert proc.returncode == 0, proc.stderr
    got = proc.stdout.split()
    assert int(got[0]) == threads
    ref = compiler.interpret(graph, {"x": x}, dtype=np.float64)[graph.outputs[0]].ravel()
    assert_close(np.array(got[1:], dtype=np.float64), ref)


@pytest.mark.skipif(shutil.which("nm") is None, reason="nm is not installed")
def test_default_build_needs_no_pthreads_and_no_heap(tmp_path):
    graph = compiler.load(EVERY_FAST_KERNEL)
    emit_c(graph, tmp_path, prefix="net", weights="file")
    source = (tmp_path / "model.c").read_text()
    assert "malloc" not in source and "vector_size" in source
    obj = tmp_path / "model.o"
    proc = subprocess.run([default_cc(), *STRICT, "-O2", "-c", "-o", str(obj), str(tmp_path / "model.c")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    undefined = set(subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True, check=True).stdout.split())
    undefined -= {"U"}
    # The file loader's stdio, libm, and memset/memcpy (which even a freestanding C compiler may call);
    # nothing else (no pthread_*, malloc, getenv, sysconf).
    assert undefined <= {"fopen", "fread", "fgetc", "fclose", "expf", "logf", "tanhf", "sqrtf", "powf",
                         "memset", "memcpy"}, undefined
    assert {"fopen", "fread"} <= undefined


def test_auto_weights_follow_size(tmp_path):
    small, large = load(EXAMPLES / "lenet5.yaml"), load(EXAMPLES / "vgg_cifar.yaml")
    assert sum(w.size for w in small.weights.values()) < ARRAY_WEIGHTS_LIMIT
    assert emit_c(small, tmp_path / "s").weights == "array"
    assert sum(w.size for w in large.weights.values()) > ARRAY_WEIGHTS_LIMIT
    emitted = emit_c(large, tmp_path / "l")
    assert emitted.weights == "file"
    assert (tmp_path / "l" / "weights.bin").stat().st_size % 4 == 0
    assert "static const float convc_weights" not in (tmp_path / "l" / "model.c").read_text()


def test_header_documents_sizes_and_api(tmp_path):
    graph = load(EXAMPLES / "lenet5.yaml")
    emit_c(graph, tmp_path, weights="array")
    header = (tmp_path / "model.h").read_text()
    arena_floats = compiler.compile(graph, opt_level=DEFAULT_OPT_LEVEL).arena_floats
    for text in ("#define LENET5_INPUT0_SIZE 784", "#define LENET5_OUTPUT0_SIZE 10", "#define LENET5_INPUT0_C 1",
                 f"#define LENET5_ARENA_FLOATS {arena_floats}", "int lenet5_run(const float *in0, float *out0);",
                 "int lenet5_run_batch(size_t batch,", "NCHW", "-DLENET5_THREADS -pthread",
                 "void lenet5_set_threads(int n);", "int lenet5_get_threads(void);"):
        assert text in header
    source = (tmp_path / "model.c").read_text()
    # weights as C arrays, not the assembler's .incbin; the only asm left is the empty statement that pins a
    # register block's values in registers, under #if for x86 with AVX
    assert "malloc" not in source and ".incbin" not in source and ".section" not in source
    assert all(line.strip().startswith('__asm__("" : "+x"(') for line in source.splitlines() if "__asm__" in line)


def test_file_weights_loader_and_its_errors(tmp_path):
    graph = load(EXAMPLES / "lenet5.yaml")
    emitted = emit_c(graph, tmp_path, weights="file")
    assert emitted.weights == "file" and "lenet5_load_weights" in (tmp_path / "model.h").read_text()
    exe = build(tmp_path)
    x = random_input((1, 28, 28), batch=2)
    ref = compiler.interpret(graph, {"image": x}, dtype=np.float64)[graph.outputs[0]]
    assert_close(run_example(exe, tmp_path, x, tmp_path / "weights.bin").reshape(ref.shape), ref)
    # The default path is ../weights.bin, relative to example/ as `make` leaves the program there.
    proc = subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out2.bin")], cwd=tmp_path / "example",
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # A truncated file and a missing file are refused with the header's error codes.
    short = tmp_path / "short.bin"
    short.write_bytes((tmp_path / "weights.bin").read_bytes()[:-4])
    long = tmp_path / "long.bin"
    long.write_bytes((tmp_path / "weights.bin").read_bytes() + b"\0\0\0\0")
    for path, code in ((short, 3), (long, 3), (tmp_path / "missing.bin", 2)):
        proc = subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "o.bin"), str(path)],
                              capture_output=True, text=True)
        assert proc.returncode == 1 and f"error {code}" in proc.stderr


def test_run_before_loading_weights_is_an_error(tmp_path):
    emit_c(load(EXAMPLES / "lenet5.yaml"), tmp_path, weights="file", prefix="net")
    main_c = tmp_path / "t.c"
    main_c.write_text('#include <stdio.h>\n#include "model.h"\n'
                      "static float x[NET_INPUT_SIZE], y[NET_OUTPUT_SIZE];\n"
                      "int main(void) { printf(\"%d\\n\", net_run(x, y)); return 0; }\n")
    exe = build(tmp_path, main_c=main_c)
    assert subprocess.run([str(exe)], capture_output=True, text=True).stdout.strip() == "1"  # NET_ERR_NO_WEIGHTS


def test_sanitizers_find_nothing(tmp_path):
    """One -O0 build under AddressSanitizer and UBSan of the residual network (arena reuse, adds, pools)
    at the default opt level."""
    graph = load(EXAMPLES / "resnet_small.yaml")
    emit_c(graph, tmp_path, weights="array")
    assert "vector_size" in (tmp_path / "model.c").read_text()
    exe = build(tmp_path, extra=("-O0", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"))
    x = random_input(graph.shape("image"), batch=1, seed=3)
    y = run_example(exe, tmp_path, x)
    ref = compiler.interpret(graph, {"image": x}, dtype=np.float64)[graph.outputs[0]]
    assert_close(y.reshape(ref.shape), ref)


def test_two_models_link_into_one_program(tmp_path):
    """Prefixes keep the public names apart; everything else in model.c is static."""
    a, b = load(EXAMPLES / "lenet5.yaml"), compiler.load(model_dict(
        [{"name": "c", "op": "conv2d", "filters": 2, "kernel": 3}, {"op": "global_maxpool"}], shape=(1, 28, 28),
        name="lenet5", seed=1))
    emit_c(a, tmp_path / "a", prefix="first")
    emit_c(b, tmp_path / "b", prefix="second", weights="file")
    main_c = tmp_path / "both.c"
    main_c.write_text(
        '#include <stdio.h>\n#include "a/model.h"\n#include "b/model.h"\n'
        "static float x[FIRST_INPUT_SIZE], ya[FIRST_OUTPUT_SIZE], yb[SECOND_OUTPUT_SIZE];\n"
        "int main(int argc, char **argv)\n{\n    int i;\n    FILE *f = fopen(argv[1], \"rb\");\n"
        "    (void)argc;\n    if (f == NULL || fread(x, sizeof(float), FIRST_INPUT_SIZE, f) != FIRST_INPUT_SIZE) return 1;\n"
        "    fclose(f);\n    if (second_load_weights(argv[2]) != SECOND_OK) return 1;\n"
        "    if (first_run(x, ya) != FIRST_OK || second_run(x, yb) != SECOND_OK) return 1;\n"
        "    for (i = 0; i < FIRST_OUTPUT_SIZE; ++i) printf(\"%.9g\\n\", ya[i]);\n"
        "    for (i = 0; i < SECOND_OUTPUT_SIZE; ++i) printf(\"%.9g\\n\", yb[i]);\n    return 0;\n}\n")
    (tmp_path / "example").mkdir()
    exe = build(tmp_path, main_c=main_c, sources=[tmp_path / "a" / "model.c", tmp_path / "b" / "model.c"])
    x = random_input((1, 28, 28), batch=1, seed=4)
    (tmp_path / "x.bin").write_bytes(x.tobytes())
    proc = subprocess.run([str(exe), str(tmp_path / "x.bin"), str(tmp_path / "b" / "weights.bin")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    got = np.array(proc.stdout.split(), dtype=np.float64)
    ref_a = compiler.interpret(a, {"image": x}, dtype=np.float64)[a.outputs[0]].ravel()
    ref_b = compiler.interpret(b, {"x": x}, dtype=np.float64)[b.outputs[0]].ravel()
    assert_close(got, np.concatenate([ref_a, ref_b]))


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_makefile_builds_the_example(tmp_path):
    graph = load(EXAMPLES / "lenet5.yaml")
    emit_c(graph, tmp_path)
    proc = subprocess.run(["make", "-C", str(tmp_path / "example"), f"CC={default_cc()}",
                           "CFLAGS=" + " ".join(STRICT + ["-O1"])], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    x = random_input((1, 28, 28), batch=2)
    y = run_example(tmp_path / "example" / "example", tmp_path, x)
    assert_close(y.reshape(2, 10), compiler.interpret(graph, {"image": x}, dtype=np.float64)[graph.outputs[0]])


def test_names_from_the_model_file_stay_out_of_c(tmp_path):
    desc = model_dict([{"name": 'c */ "x" \\', "op": "conv2d", "filters": 2, "kernel": 3}, {"op": "flatten"}],
                      name='3 */ evil "net"\n#define', seed=0)
    graph = compiler.load(desc)
    emitted = emit_c(graph, tmp_path)
    assert emitted.prefix == c_prefix(graph.name) == "m_3_evil_net_define"
    for name in ("model.c", "model.h", "example/main.c"):
        text = (tmp_path / name).read_text()
        assert '"net"' not in text and "*/ evil" not in text and "*/ \"x\"" not in text
    x = random_input((3, 8, 8), batch=1)
    y = run_example(build(tmp_path), tmp_path, x)
    assert_close(y, compiler.interpret(graph, {"x": x}, dtype=np.float64)[graph.outputs[0]].ravel())


def test_bad_options_are_clear(tmp_path):
    graph = load(EXAMPLES / "lenet5.yaml")
    with pytest.raises(ValueError, match="weights must be one of auto, array, file"):
        emit_c(graph, tmp_path, weights="incbin")
    with pytest.raises(ValueError, match="prefix must be a C identifier"):
        emit_c(graph, tmp_path, prefix="1abc")


def test_cli_emit_c(tmp_path, capsys):
    out = tmp_path / "lib"
    assert main(["compile", str(EXAMPLES / "lenet5.yaml"), "--emit-c", str(out), "--weights", "file",
                 "--prefix", "digits", "--quiet"]) == 0
    assert "digits_run" in capsys.readouterr().out
    assert (out / "weights.bin").is_file() and "int digits_load_weights(const char *path);" in (out / "model.h").read_text()
    assert not (tmp_path / "lenet5.so").exists()


def test_cli_opt_level_applies_to_emit_c(tmp_path):
    for level in (0, FAST_LEVEL):
        assert main(["compile", str(EXAMPLES / "lenet5.yaml"), "--emit-c", str(tmp_path / str(level)),
                     "--opt-level", str(level), "--quiet"]) == 0
    assert "vector_size" not in (tmp_path / "0" / "model.c").read_text()
    assert "vector_size" in (tmp_path / str(FAST_LEVEL) / "model.c").read_text()
