"""compiler.Target: what a -march name means for the kernels, and that it is the only way the host reaches them."""
import json
import re
import shutil

import pytest

import compiler
from compiler.cli import main
from compiler.target import Target, host_caches
from conftest import EXAMPLES, ROOT, host_lacks
from runtime.cpu import cpu_flags


@pytest.mark.parametrize("march, isa, lanes, registers", [
    ("x86-64-v3", "avx2", 8, 16),  # archspec's x86_64_v3: AVX2 + FMA
    ("x86-64-v4", "avx512", 16, 32),
    ("haswell", "avx2", 8, 16),
    ("skylake-avx512", "avx512", 16, 32),  # archspec spells it skylake_avx512
    ("none", "sse2", 4, 16),  # no -march: the x86-64 baseline
])
def test_a_named_target_is_the_same_on_every_machine(march, isa, lanes, registers):
    t = Target.from_march(march)
    assert (t.isa, t.lanes, t.vector_registers) == (isa, lanes, registers)
    assert t.cflags() == ([] if march == "none" else [f"-march={march}"])
    assert t.threads is None  # decided where the library runs, not read off this machine


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs cc")
def test_a_name_archspec_does_not_know_asks_the_compiler():
    t = Target.from_march("znver3")  # gcc's name for AMD Zen 3 (archspec: zen3)
    assert t.isa == "avx2" and t.lanes == 8 and "fma" in t.features


def test_unknown_or_malformed_names_are_refused():
    with pytest.raises(ValueError, match="no-such-cpu"):
        Target.from_march("no-such-cpu")
    with pytest.raises(ValueError, match="march must be"):
        Target.from_march("x86-64-v3; rm -rf /")


def test_native_is_this_machine():
    host = Target.from_march("native")
    flags = cpu_flags() or frozenset()
    assert host.march == "native" and host.threads >= 1
    assert host.lanes == (16 if "avx512f" in flags else 8 if "avx" in flags else 4)
    assert host.l2_bytes > 0 and Target.from_march(host) is host


def test_the_target_decides_the_kernels_not_the_host():
    graph = compiler.load(EXAMPLES / "resnet_small.yaml")
    avx2 = compiler.generate_c(graph, march="x86-64-v3").code
    assert "vector_size(32)" in avx2 and "vector_size(64)" not in avx2
    avx512 = compiler.generate_c(graph, march=Target.from_march("x86-64-v4")).code
    assert "vector_size(64)" in avx512
    assert compiler.generate_c(graph, march=Target.from_march("x86-64-v3")).code == avx2


def test_only_the_target_module_reads_the_host_cpu():
    readers = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "compiler").rglob("*.py")
                     if re.search(r"cpuinfo|sysconf|sched_getaffinity|archspec\.cpu\.host", p.read_text())
                     and p.name != "target.py")
    assert readers == []


def test_the_cli_summary_shows_the_kernels_per_target(capsys):
    assert main(["summary", str(EXAMPLES / "lenet5.yaml"), "--kernels", "--march", "x86-64-v3", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["target"].startswith("x86-64-v3") and "8 lanes" in plan["target"]
    kernels = {layer["sources"][0]: layer["kernel"] for layer in plan["layers"]}
    assert kernels["conv1"] == "rowvec" and kernels["pool1"] == "maxpool_interior"  # 1 input channel; 2×2/2
    assert main(["summary", str(EXAMPLES / "lenet5.yaml"), "--kernels", "--kernel", "conv2=direct"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"conv2 \+ relu_5 +fused_conv2d +direct +forced", out)


def test_the_cli_refuses_a_kernel_that_cannot_take_the_layer(tmp_path, capsys):
    args = ["compile", str(EXAMPLES / "lenet5.yaml"), "-o", str(tmp_path / "m.so"), "--quiet"]
    assert main(args + ["--kernel", "conv2=winograd"]) == 2
    assert "conv2 + relu_5" in capsys.readouterr().err  # 5×5: not Winograd's 3×3
    assert main(args + ["--kernel", "conv2"]) == 2
    assert "expected LAYER=KERNEL" in capsys.readouterr().err
    assert main(args + ["--kernel", "conv2=direct"]) == 0 and (tmp_path / "m.so").exists()


def test_a_target_the_host_lacks_still_builds_its_c(tmp_path):
    """The shared library for x86-64-v4 compiles anywhere; it runs only where the ISA is (else a clear error)."""
    model_path = tmp_path / "m.so"
    assert main(["compile", str(EXAMPLES / "lenet5.yaml"), "-o", str(model_path), "--march", "x86-64-v4",
                 "--quiet", "--cache-dir", str(tmp_path / "cache")]) == 0
    import runtime
    if host_lacks(Target.from_march("x86-64-v4")):
        with pytest.raises(runtime.LibraryError, match="avx512f"):
            runtime.load(model_path)
    else:
        assert runtime.load(model_path).output_shapes["fc3"] == (10,)




def test_build_writes_the_library_without_loading_it(tmp_path):
    """compiler.build: compile() for a file, not a loaded model (how a machine builds for a bigger one)."""
    import runtime
    import compiler
    out = compiler.build(EXAMPLES / "lenet5.yaml", tmp_path / "m.so", march="x86-64-v3", cache_dir=tmp_path / "c")
    assert out == tmp_path / "m.so" and out.stat().st_size > 0
    assert runtime.load(out).output_shapes["fc3"] == (10,)  # stamped: runtime.load's checks accept it


def test_the_host_caches_come_from_sysfs(tmp_path):
    # Python's os.sysconf has no cache names; Linux lists each cache one core sees under cpu0/cache.
    for index, (level, kind, size) in enumerate([(1, "Data", "32K"), (1, "Instruction", "32K"),
                                                 (2, "Unified", "512K"), (3, "Unified", "32768K")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        (folder / "level").write_text(f"{level}\n")
        (folder / "type").write_text(f"{kind}\n")
        (folder / "size").write_text(f"{size}\n")
    assert host_caches(tmp_path) == (32 * 1024, 512 * 1024, 32 * 1024 * 1024)
    (tmp_path / "index2" / "size").write_text("garbled\n")  # an unreadable level falls back, never raises
    l1, l2, l3 = host_caches(tmp_path)
    assert (l1, l3) == (32 * 1024, 32 * 1024 * 1024) and l2 > 0
