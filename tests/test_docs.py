"""The docs promise what the code does: the op reference and the ONNX operator table are generated, the README's
commands are CI's."""
import re

import pytest

from compiler.opdocs import op_reference, with_onnx_table
from compiler.ops import ONNX_TYPES, REGISTRY
from conftest import ROOT


def test_op_reference_is_up_to_date():
    assert (ROOT / "docs" / "ops.md").read_text() == op_reference(), \
        "docs/ops.md is stale: run `python -m compiler.opdocs > docs/ops.md`"


def test_every_op_is_documented_with_every_attribute():
    text = op_reference()
    import dataclasses
    for name, op in REGISTRY.items():
        if name == "input":
            continue
        assert f"## `{name}`" in text and op.doc
        for f in dataclasses.fields(op.Attrs):
            assert f.metadata.get("doc"), f"{name}.{f.name} has no doc"


def test_onnx_operator_table_is_up_to_date():
    pytest.importorskip("onnx")
    page = (ROOT / "docs" / "onnx.md").read_text()
    assert page == with_onnx_table(page), \
        "docs/onnx.md's table of supported operators is stale: run `python -m compiler.opdocs --onnx docs/onnx.md`"


def test_onnx_operator_table_names_every_declared_type_once_with_its_op():
    pytest.importorskip("onnx")
    lines = (ROOT / "docs" / "onnx.md").read_text().split("\n")
    rows = []
    for line in lines[lines.index("| ONNX | native op | notes |") + 2:]:
        if not line.startswith("|"):
            break
        types, ops, _ = line.strip("| ").split(" | ", 2)
        rows.append((types.split(", "), ops.split(", ")))
    assert sorted(t for types, _ in rows for t in types) == sorted(ONNX_TYPES), "one row per declared ONNX type"
    for types, ops in rows:
        assert {ONNX_TYPES[t] for t in types} == set(ops), types


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    assert len(blocks) >= 2
    assert blocks[1].strip() in (ROOT / ".ci" / "run").read_text()
