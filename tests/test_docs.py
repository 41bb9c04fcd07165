"""The docs promise what the code does: the op reference is generated, the README's commands are CI's."""
import re

from compiler.opdocs import op_reference
from compiler.ops import REGISTRY
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


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    assert len(blocks) >= 2
    assert blocks[1].strip() in (ROOT / ".ci" / "run").read_text()
