"""Reading an ONNX file: the protobuf, its external data, the opset (upgraded when older than 7), a node's
attributes and the per-sample shapes of the run-time inputs."""
from __future__ import annotations

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
        file = (base / location).resolve()
        if not allow_outside_paths and not file.is_relative_to(base):
            raise ModelError(f"{where}: external data file {location!r} lies outside the model's folder {base}; "
                             "pass allow_outside_paths=True to allow it")
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else None
            with open(file, "rb") as f:
                f.seek(offset)
                data = f.read() if length is None else f.read(length)
        except (OSError, ValueError) as e:
            raise ModelError(f"{where}: cannot read external data {location!r}: {e}") from None
        if length is not None and len(data) != length:
            raise ModelError(f"{where}: external data {location!r} is truncated: wanted {length} bytes at "
                             f"offset {offset}, got {len(data)}")
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


def upgrade_opset(model, source: str):
    """(model, its default-domain opset, the opset it had before an upgrade or None). Models older than opset 7
    (before numpy-style broadcasting) are rewritten to 7 by onnx's version converter."""
    opset = default_opset(model)
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


def per_sample_shape(inp, source: str, batched: bool = True) -> list[int]:
    """A run-time input's shape without its leading batch axis (batched), or its whole shape (a whole-tensor
    model, whose every axis must then have a fixed size); float32 and static sizes only."""
    elem = inp.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise ModelError(f"{source}: input '{inp.name}' has element type "
                         f"{onnx.TensorProto.DataType.Name(elem)}; convc computes in float32")
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

