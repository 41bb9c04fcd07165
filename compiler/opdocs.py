"""The op reference (docs/ops.md) and the table of supported ONNX operators in docs/onnx.md, generated from
the registry so they cannot drift from the code.

    python -m compiler.opdocs > docs/ops.md
    python -m compiler.opdocs --onnx docs/onnx.md     # rewrites the table in place (needs the onnx package)
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
from pathlib import Path

from .ops import ONNX_TYPES, REGISTRY, onnx_types_of


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
        imported = ", ".join(f"`{t}`" for t in onnx_types_of(name))
        onnx = f" Imported from ONNX {imported}." if imported else ""
        lines += [f"## `{name}`", "", f"{op.doc[:1].upper()}{op.doc[1:]}. Inputs: {arity}.{onnx}", ""]
        fields = dataclasses.fields(op.Attrs)
        if fields:
            lines += ["| attribute | default | meaning |", "|---|---|---|"]
            lines += [f"| `{f.name}` | {_default(f)} | {f.metadata.get('doc', '').replace('|', '&#124;')} |"
                      for f in fields]
        else:
            lines.append("No attributes.")
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "&#124;")


def onnx_table() -> str:
    """docs/onnx.md's table of supported operators: a row per handler of the ONNX front end, with the ONNX
    types it imports, the native ops the registry maps them to, and the handler's docstring as the note."""
    from .frontends.onnx import HANDLERS  # needs the optional onnx package
    from .frontends.onnx.handlers import one_to_one
    types_by_handler: dict = {}
    for onnx_type, handler in HANDLERS.items():
        types_by_handler.setdefault(handler, []).append(onnx_type)
    lines = ["| ONNX | native op | notes |", "|---|---|---|"]
    for handler, types in types_by_handler.items():
        if handler is one_to_one:  # one row per type: its attributes
            for t in types:
                mapping = REGISTRY[ONNX_TYPES[t]].onnx_attributes
                note = ", ".join(f"{onnx_name} (default {default}) → {native}"
                                 for native, (onnx_name, default) in mapping.items()) or "No attributes"
                lines.append(f"| {t} | {ONNX_TYPES[t]} | {_cell(note)} |")
            continue
        native = ", ".join(dict.fromkeys(ONNX_TYPES[t] for t in types))
        note = _cell(inspect.getdoc(handler) or "").removesuffix(".")
        lines.append(f"| {', '.join(types)} | {native} | {note} |")
    return "\n".join(lines)


def with_onnx_table(page: str) -> str:
    """`page` (docs/onnx.md) with the table under its "## Supported operators" heading replaced by
    onnx_table(); the rest of the page is kept as it is."""
    lines = page.split("\n")
    try:
        heading = lines.index("## Supported operators")
        first = next(i for i in range(heading, len(lines)) if lines[i].startswith("| ONNX |"))
    except (ValueError, StopIteration):
        raise ValueError("the page has no '## Supported operators' section with a table starting '| ONNX |'") from None
    end = first
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[:first] + onnx_table().split("\n") + lines[end:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m compiler.opdocs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", metavar="PAGE", type=Path,
                        help="rewrite the table of supported operators in PAGE (docs/onnx.md) instead")
    args = parser.parse_args(argv)
    if args.onnx:
        args.onnx.write_text(with_onnx_table(args.onnx.read_text()))
    else:
        print(op_reference(), end="")


if __name__ == "__main__":
    main()
