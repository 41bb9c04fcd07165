"""The op reference (docs/ops.md), generated from the registry so it cannot drift from the code.

    python -m compiler.opdocs > docs/ops.md
"""
from __future__ import annotations

import dataclasses

from .ops import REGISTRY


def _default(f: dataclasses.Field) -> str:
    if f.default is dataclasses.MISSING:
        return "required"
    v = f.default
    if isinstance(v, tuple):
        v = list(v)
    return "none" if v is None else f"`{v}`".replace("True", "true").replace("False", "false")


def op_reference() -> str:
    lines = ["# Op reference", "",
             "Generated from the op registry by `python -m compiler.opdocs`; every layer of a description is one "
             "of these ops. Inputs: `1` takes the previous layer (or `inputs: [name]`), `2+` needs "
             "`inputs: [a, b, ...]`.", ""]
    for name in sorted(REGISTRY, key=lambda n: (REGISTRY[n].internal, n)):
        op = REGISTRY[name]
        if name == "input":
            continue
        if op.internal and not any(line.startswith("Internal ops") for line in lines):
            lines += ["Internal ops are made by the optimization passes (`opt_level` ≥ 1) and cannot appear in a "
                      "model file; their NumPy reference defines them, like every other op.", ""]
        arity = "2+" if op.arity is None else str(op.arity)
        if op.internal:
            arity = "1, or 2 with a residual"
        lines += [f"## `{name}`", "", f"{op.doc[:1].upper()}{op.doc[1:]}. Inputs: {arity}.", ""]
        fields = dataclasses.fields(op.Attrs)
        if fields:
            lines += ["| attribute | default | meaning |", "|---|---|---|"]
            lines += [f"| `{f.name}` | {_default(f)} | {f.metadata.get('doc', '').replace('|', '&#124;')} |"
                      for f in fields]
        else:
            lines.append("No attributes.")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(op_reference(), end="")
