"""Templates are C with holes: every integer, table and decision comes from Python (the kernels' parameter
records, the ops' kernel_args), so a template only prints values, iterates over records and tests flags."""
from pathlib import Path

import jinja2
import jinja2.nodes as nodes
import pytest

from compiler.codegen import TEMPLATE_DIR

TEMPLATES = sorted(p.relative_to(TEMPLATE_DIR) for p in TEMPLATE_DIR.rglob("*.j2"))
ARITHMETIC = (nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Pow, nodes.Neg,
              nodes.Compare)


def test_the_check_sees_every_template():
    assert len(TEMPLATES) > 30 and Path("ops/conv2d_direct.c.j2") in TEMPLATES


@pytest.mark.parametrize("path", TEMPLATES, ids=str)
def test_no_arithmetic_or_comparison_in_a_template(path):
    tree = jinja2.Environment().parse((TEMPLATE_DIR / path).read_text())
    found = sorted({f"{type(n).__name__} on line {n.lineno}" for n in tree.find_all(ARITHMETIC)})
    assert not found, f"{path}: compute these in Python and pass the result: {', '.join(found)}"


def test_the_check_catches_arithmetic():
    tree = jinja2.Environment().parse("{{ OH * OW }} {% if LASTN != VL %}{% endif %}")
    assert {type(n) for n in tree.find_all(ARITHMETIC)} == {nodes.Mul, nodes.Compare}
