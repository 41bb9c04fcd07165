"""Hostile names and doc strings through the ONNX front end, and malformed ONNX files.

Conv -> Relu -> Flatten -> Gemm built with onnx.helper, every node, tensor, graph name and doc
string hostile; compiler.load -> compile -> run must match onnxruntime, and none of those
strings may appear in the generated C.
"""
import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler import ModelError
from conftest import assert_close
from fuzzing import HOSTILE_NAMES

DOC = 'doc */ #include <stdlib.h>\n system("x"); /* ünï\0'


def hostile_onnx(path, names: list[str]) -> None:
    rng = np.random.default_rng(0)
    n = (names * 9)[:9]
    x, w, b, conv_out, relu_out, flat_out, fc_w, fc_b, y = (f"{s}#{i}" for i, s in enumerate(n))
    inits = [numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), w),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), b),
             numpy_helper.from_array(rng.standard_normal((5, 4 * 4 * 4)).astype(np.float32), fc_w),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), fc_b)]
    nodes = [helper.make_node("Conv", [x, w, b], [conv_out], name=n[0] + "conv", kernel_shape=[3, 3],
                              pads=[0, 0, 0, 0], doc_string=DOC),
             helper.make_node("Relu", [conv_out], [relu_out], name=n[1] + "relu", doc_string=DOC),
             helper.make_node("Flatten", [relu_out], [flat_out], name=n[2] + "flat", axis=1),
             helper.make_node("Gemm", [flat_out, fc_w, fc_b], [y], name=n[3] + "fc", transB=1, doc_string=DOC)]
    graph = helper.make_graph(nodes, n[4] + "graph", [helper.make_tensor_value_info(x, TensorProto.FLOAT,
                                                                                    ["N", 2, 6, 6])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", 5])], inits,
                              doc_string=DOC)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], doc_string=DOC,
                              producer_name=n[5])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


@pytest.mark.parametrize("start", range(0, len(HOSTILE_NAMES), 4))
def test_hostile_onnx_names_build_and_match_onnxruntime(tmp_path, start):
    names = (HOSTILE_NAMES[start:] + HOSTILE_NAMES)[:6]
    path = tmp_path / "m.onnx"
    hostile_onnx(path, names)
    graph = compiler.load(path)
    code = compiler.generate_c(graph).code
    assert code.isascii()
    for token in ["system(", "doc */", "*/ #include", "*/ int evil", "{{ fn }}", "%s%n", "\0"]:
        assert token not in code, token
    model = compiler.compile(graph)
    x = np.random.default_rng(1).standard_normal((3, 2, 6, 6)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {session.get_inputs()[0].name: x})
    assert_close(model(x), want.astype(np.float64), rtol=1e-4, atol=1e-4)


def _good(tmp_path) -> bytes:
    hostile_onnx(tmp_path / "good.onnx", ["a", "b", "c", "d", "e", "f"])
    return (tmp_path / "good.onnx").read_bytes()


def test_every_truncation_of_an_onnx_file_is_a_result_or_a_clear_error(tmp_path):
    data = _good(tmp_path)
    path = tmp_path / "m.onnx"
    for cut in sorted({0, 1, 2, 10, 50, len(data) // 4, len(data) // 2, len(data) - 10, len(data) - 1}):
        path.write_bytes(data[:cut])
        try:
            compiler.load(path)
        except ModelError as e:
            assert str(path) in str(e) or "m.onnx" in str(e)


@pytest.mark.parametrize("content", [b"", b"garbage \xff\x00 not protobuf", b"\x08" * 1000,
                                     b"\x0a\xff\xff\xff\xff\x0f"])
def test_malformed_onnx_files(tmp_path, content):
    path = tmp_path / "m.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError):
        compiler.load(path)


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../outside.bin"])
def test_external_data_may_not_leave_the_folder(tmp_path, location):
    (tmp_path / "outside.bin").write_bytes(np.ones(4 * 2 * 3 * 3, np.float32).tobytes())
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    model = onnx.load_from_string(_good(tmp_path))
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(4 * 2 * 3 * 3 * 4))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    path = folder / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelError) as e:
        compiler.load(path)
    assert "outside" in str(e.value) or "allow_outside_paths" in str(e.value)
