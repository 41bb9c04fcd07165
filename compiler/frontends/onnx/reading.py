"""Reading an ONNX file: the protobuf, its external data, the opset (upgraded when older than 7), a node's
attributes and the per-sample shapes of the run-time inputs; and what a file may lie about, checked before
any mapping sees it: every node against its op's schema, one definition per tensor, initializer dims."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import BatchAxisError, ModelError

try:
    import onnx
    import onnx.version_converter
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ModelError("reading .onnx models needs the onnx package: pip install convc[onnx]") from e

MAX_MODEL_BYTES = 2 * 1024 ** 3
LATEST_OPSET = onnx.defs.onnx_opset_version()


def read_model(path: Path, allow_outside_paths: bool = False) -> "onnx.ModelProto":
    """Parse the protobuf and pull in external data (only from inside the model's folder unless allowed)."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ModelError(f"{path}: cannot read the ONNX model: {e.strerror}") from None
    if size > MAX_MODEL_BYTES:
        raise ModelError(f"{path}: the model is {size} bytes; protobuf files are limited to 2 GiB")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # google.protobuf DecodeError, OSError, ...
        raise ModelError(f"{path}: not a readable ONNX model (malformed or truncated): "
                         f"{type(e).__name__}: {e}") from None
    if not model.graph.node and not model.graph.input:
        raise ModelError(f"{path}: not a readable ONNX model: it has no graph (empty or not an ONNX file)")
    load_external_data(model, path, allow_outside_paths)
    return model


def _model_tensors(model) -> list:
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                tensors.append(a.t)
    return tensors


def load_external_data(model, path: Path, allow_outside_paths: bool) -> None:
    base = path.parent.resolve()
    for tensor in _model_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        where = f"{path}: tensor '{tensor.name}'"
        if not location:
            raise ModelError(f"{where}: external data without a location")
        if "\0" in location:
            raise ModelError(f"{where}: external data location {location!r} contains a NUL byte")
        file = (base / location).resolve()
        if not allow_outside_paths and not file.is_relative_to(base):
            raise ModelError(f"{where}: external data file {location!r} lies outside the model's folder {base}; "
                             "pass allow_outside_paths=True to allow it")
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else None
            if file.exists() and not file.is_file():  # a FIFO or /dev/zero would be read forever
                raise ModelError(f"{where}: external data {location!r} is not a regular file")
            with open(file, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                # Checked before reading: a lying length would allocate it, a lying offset read nothing.
                if offset < 0 or offset > size or (length is not None and not 0 <= length <= size - offset):
                    raise ModelError(f"{where}: external data {location!r} has {size} bytes; the tensor claims "
                                     f"{length if length is not None else 'the rest'} bytes at offset {offset}")
                f.seek(offset)
                data = f.read() if length is None else f.read(length)
        except (OSError, ValueError) as e:
            if isinstance(e, ModelError):
                raise
            raise ModelError(f"{where}: cannot read external data {location!r}: {e}") from None
        tensor.raw_data = data
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT


def node_attrs(node) -> dict[str, Any]:
    """A node's attributes as Python values (strings decoded)."""
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode("utf-8", "replace") for x in v]
        out[a.name] = v
    return out


def default_opset(model) -> int:
    opset = 1
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = imp.version
    return opset


def check_opset(opset: int, source: str) -> None:
    if opset < 1:
        raise ModelError(f"{source}: the default-domain opset import is {opset}; ONNX opsets start at 1")
    if opset > LATEST_OPSET:
        raise ModelError(f"{source}: the model imports opset {opset}, newer than the {LATEST_OPSET} that the "
                         "installed onnx package defines (pip install -U onnx)")


def upgrade_opset(model, source: str):
    """(model, its default-domain opset, the opset it had before an upgrade or None). Models older than opset 7
    (before numpy-style broadcasting) are rewritten to 7 by onnx's version converter."""
    opset = default_opset(model)
    check_opset(opset, source)
    if opset >= 7:
        return model, opset, None
    try:
        upgraded = onnx.version_converter.convert_version(model, 7)
    except Exception as e:
        raise ModelError(f"{source}: opset {opset} is older than 7 and onnx's version converter cannot "
                         f"upgrade it: {type(e).__name__}: {e}") from None
    return upgraded, default_opset(upgraded), opset


def input_dims(value_info) -> list | None:
    """A value's dimensions (int, a symbolic name, or None when unknown), or None without a tensor shape."""
    t = value_info.type
    if not t.HasField("tensor_type"):
        return None
    if not t.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.tensor_type.shape.dim]


def type_name(elem: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(elem)
    except ValueError:
        return f"element type {elem} (not an ONNX type)"


def per_sample_shape(inp, source: str, batched: bool = True) -> list[int]:
    """A run-time input's shape without its leading batch axis (batched), or its whole shape (a whole-tensor
    model, whose every axis must then have a fixed size); float32 and static sizes only."""
    elem = inp.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise ModelError(f"{source}: input '{inp.name}' has element type {type_name(elem)}; convc computes in float32")
    dims = input_dims(inp)
    if dims is None:
        raise ModelError(f"{source}: input '{inp.name}' has no shape; convc needs its static per-sample shape")
    if batched and len(dims) < 2:
        raise BatchAxisError(f"{source}: input '{inp.name}' has shape {dims}: no axis besides the first, so it "
                             "cannot be a batch of samples")
    if not all(isinstance(d, int) and d >= 1 for d in dims[1:]):
        raise ModelError(f"{source}: input '{inp.name}' has shape {dims}; every axis after the batch must have a "
                         "fixed positive size")
    if not batched and not (dims and isinstance(dims[0], int) and dims[0] >= 1):
        raise ModelError(f"{source}: input '{inp.name}' has shape {dims}, and the model acts across its first axis "
                         "(the batch), so convc compiles it for fixed shapes: export it with a fixed batch size "
                         "(no dynamic first axis)")
    return [int(d) for d in (dims[1:] if batched else dims)]



# ---------------------------------------------------------------- what a file may lie about
# INT attributes that the ONNX operators define as 0 or 1.
FLAG_ATTRIBUTES = {"ceil_mode", "count_include_pad", "transA", "transB", "keepdims", "allowzero",
                   "select_last_index", "noop_with_empty_axes"}


def check_node(b, node, opset: int) -> None:
    """Attribute types, required attributes and inputs as the op's ONNX schema states them, so no mapping
    meets an attribute of the wrong type or a missing input (a file may lie about any of them). b: the Builder."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        raise b.fail(f"ONNX has no op {node.op_type} at opset {opset}") from None
    seen = set()
    for a in node.attribute:
        if a.name in seen:
            raise b.fail(f"attribute '{a.name}' is given twice")
        seen.add(a.name)
        spec = schema.attributes.get(a.name)
        if spec is None:
            raise b.fail(f"{node.op_type} (opset {schema.since_version}) has no attribute '{a.name}'")
        if a.type != spec.type.value:
            raise b.fail(f"attribute '{a.name}' is {onnx.AttributeProto.AttributeType.Name(a.type)}; "
                         f"{node.op_type} takes {spec.type.name}")
        if a.name in FLAG_ATTRIBUTES and a.i not in (0, 1):  # runtimes differ on what 2 means
            raise b.fail(f"attribute '{a.name}' is {a.i}; it is a flag, 0 or 1")
    missing = [name for name, spec in schema.attributes.items() if spec.required and name not in seen]
    if missing:
        raise b.fail(f"missing required attribute '{missing[0]}'")
    if not schema.min_input <= len(node.input) <= schema.max_input:
        raise b.fail(f"{len(node.input)} inputs; {node.op_type} takes {schema.min_input} to {schema.max_input}")
    for i, (name, formal) in enumerate(zip(node.input, schema.inputs)):
        if not name and formal.option != onnx.defs.OpSchema.FormalParameterOption.Optional:
            raise b.fail(f"input {i} ({formal.name}) is required but not given")


def check_unique_names(model, source: str) -> None:
    """Every tensor has one definition: one initializer or graph input or node output."""
    g = model.graph
    defined: dict[str, str] = {}
    inputs = {i.name for i in g.input}
    for init in g.initializer:
        if init.name in defined:
            raise ModelError(f"{source}: initializer '{init.name}' is defined twice")
        defined[init.name] = "an initializer"
        if any(d < 0 for d in init.dims):
            raise ModelError(f"{source}: initializer '{init.name}' has negative dims {list(init.dims)}")
    for node in g.node:
        for o in node.output:
            if o and o in defined:
                raise ModelError(f"{source}: node '{node.name or node.output[0]}' ({node.op_type}) writes "
                                 f"'{o}', which {defined[o]} already defines")
            if o and o in inputs:
                raise ModelError(f"{source}: node '{node.name or node.output[0]}' ({node.op_type}) writes "
                                 f"'{o}', which is a graph input")
            if o:
                defined[o] = f"node '{node.name or o}'"


def check_outputs(model, source: str) -> None:
    """Every graph output is named and declared float32 (or undeclared)."""
    for i, out in enumerate(model.graph.output):
        if not out.name:
            raise ModelError(f"{source}: graph output {i} has no name")
        elem = out.type.tensor_type.elem_type if out.type.HasField("tensor_type") else onnx.TensorProto.FLOAT
        if elem not in (onnx.TensorProto.FLOAT, onnx.TensorProto.UNDEFINED):
            raise ModelError(f"{source}: output '{out.name}' is declared {type_name(elem)}; convc computes "
                             "float32 outputs")
