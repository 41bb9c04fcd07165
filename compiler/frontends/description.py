"""convc's own model description (YAML or JSON) -> Graph, and a Graph back to a description.

The format is documented in docs/format.md. Parsing is strict: every key is known,
every value typed, and every error names the file and the layer.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import ModelError
from ..ir import Graph, Layer
from ..ops import REGISTRY, model_file_ops
from ..ops.base import attrs_to_dict, int_at_least, parse_attrs

TOP_LEVEL_KEYS = {"name", "input", "layers", "weights", "seed", "outputs", "batch"}
LAYER_KEYS = {"name", "op", "inputs"}
MAX_DESCRIPTION_BYTES = 64 * 1024 * 1024
MAX_WEIGHTS_BYTES = 8 * 2**28 + 2**20  # compiler.Limits' default max_weights as float64, plus headers


def read_description(path: Path) -> dict[str, Any]:
    """Read a .yaml/.yml/.json file into a dict (safe loaders only)."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ModelError(f"{path}: cannot read the model description: {e.strerror}") from None
    if size > MAX_DESCRIPTION_BYTES:
        raise ModelError(f"{path}: the description is {size} bytes; the limit is {MAX_DESCRIPTION_BYTES}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: cannot read the model description: {e}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, RecursionError) as e:
        raise ModelError(f"{path}: malformed {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {e}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: a model description must be a mapping with 'input' and 'layers', "
                         f"got {type(data).__name__}")
    return data


def load_weights_file(path: Path, source: str, max_bytes: int = MAX_WEIGHTS_BYTES) -> dict[str, np.ndarray]:
    """An .npz of float arrays keyed "layer.suffix" (a PyTorch state_dict saved with numpy.savez).

    max_bytes bounds the arrays' unpacked size, checked from the archive's directory before anything is
    unpacked (a few kilobytes of compressed zeros can claim gigabytes).
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            unpacked = sum(info.file_size for info in npz.zip.infolist())
            if unpacked > max_bytes:
                raise ModelError(f"{source}: weights file {path.name} unpacks to {unpacked} bytes; the limit is "
                                 f"{max_bytes} (compiler.Limits.max_weights)")
            out = {}
            for key in npz.files:
                arr = npz[key]
                if arr.dtype.kind not in "fiub":
                    raise ModelError(f"{source}: weights file {path.name}: '{key}' has dtype {arr.dtype}, "
                                     "expected numbers")
                out[key] = arr
            return out
    except ModelError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError (pickled arrays), OSError, EOFError ...
        raise ModelError(f"{source}: cannot read weights file {path}: {type(e).__name__}: {e}") from None


def resolve_weights_path(value: Any, base: Path, source: str, allow_outside: bool) -> Path:
    if not isinstance(value, str) or not value:
        raise ModelError(f"{source}: 'weights' must be a file name, got {value!r}")
    path = (base / value).resolve()
    if not allow_outside and not path.is_relative_to(base.resolve()):
        raise ModelError(f"{source}: weights file {value!r} lies outside the description's folder {base}; "
                         "pass allow_outside_paths=True to allow it")
    if not path.is_file():
        raise ModelError(f"{source}: weights file {value!r} not found (looked for {path})")
    return path


def parse_description(data: dict[str, Any], source: str = "<dict>", base: Path | None = None,
                      allow_outside_paths: bool = False,
                      max_weights_bytes: int = MAX_WEIGHTS_BYTES) -> tuple[Graph, int | None]:
    """A description dict -> (Graph without shapes, seed for initial weights or None if a weights file was given)."""
    base = Path(base) if base is not None else Path.cwd()
    unknown = sorted(set(data) - TOP_LEVEL_KEYS, key=repr)
    if unknown:
        raise ModelError(f"{source}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(sorted(TOP_LEVEL_KEYS))}")
    name = data.get("name", Path(source).stem if source != "<dict>" else "model")
    if not isinstance(name, str) or not name:
        raise ModelError(f"{source}: 'name' must be a non-empty string, got {name!r}")

    spec = data.get("input")
    if not isinstance(spec, dict):
        raise ModelError(f"{source}: 'input' must be a mapping like {{name: image, shape: [1, 28, 28]}}, got {spec!r}")
    extra = sorted(set(spec) - {"name", "shape"}, key=repr)
    if extra:
        raise ModelError(f"{source}: 'input' has unknown key(s) {', '.join(map(repr, extra))}; known: name, shape")
    input_name = spec.get("name", "input")
    if not isinstance(input_name, str) or not input_name:
        raise ModelError(f"{source}: input 'name' must be a non-empty string, got {input_name!r}")
    # batch: N compiles the model for exactly N samples as one tensor, so its ops may act across them.
    batch = None if data.get("batch") is None else int_at_least(1)(data["batch"], f"{source}: 'batch'")
    shape = {k: v for k, v in spec.items() if k == "shape"}
    if batch is not None and isinstance(shape.get("shape"), list):
        shape["shape"] = [batch, *shape["shape"]]
    in_layer = Layer(input_name, "input", parse_attrs(REGISTRY["input"].Attrs, shape, f"{source}: input '{input_name}'"),
                     (), source, batched=batch is None)

    raw_layers = data.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise ModelError(f"{source}: 'layers' must be a non-empty list")
    layers = [in_layer]
    names = {input_name}
    explicit = {d["name"] for d in raw_layers if isinstance(d, dict) and isinstance(d.get("name"), str)}
    previous = input_name
    for index, raw in enumerate(raw_layers):
        layer = _parse_layer(raw, index, previous, source, names, explicit, batched=batch is None)
        names.add(layer.name)
        layers.append(layer)
        previous = layer.name

    outputs = data.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or not outputs or not all(isinstance(o, str) for o in outputs):
            raise ModelError(f"{source}: 'outputs' must be a list of layer names, got {outputs!r}")
        if len(set(outputs)) != len(outputs):
            raise ModelError(f"{source}: 'outputs' lists a layer more than once: {outputs}")
        missing = [o for o in outputs if o not in names]
        if missing:
            raise ModelError(f"{source}: 'outputs' names unknown layer(s) {', '.join(map(repr, missing))}")

    weights: dict[str, np.ndarray] = {}
    seed = data.get("seed", 0)
    if "weights" in data:
        weights = load_weights_file(resolve_weights_path(data["weights"], base, source, allow_outside_paths), source,
                                    max_weights_bytes)
        seed = None
    else:
        seed = int_at_least(0)(seed, f"{source}: 'seed'")
    return Graph.from_layers(name, layers, outputs, weights, source), seed


def _parse_layer(raw: Any, index: int, previous: str, source: str, taken: set[str], explicit: set[str],
                 batched: bool = True) -> Layer:
    at = f"{source}: layers[{index}]"
    if not isinstance(raw, dict):
        raise ModelError(f"{at}: a layer must be a mapping with an 'op', got {raw!r}")
    op = raw.get("op")
    known = model_file_ops()
    if not isinstance(op, str) or op not in known:
        raise ModelError(f"{at}{_named(raw)}: unknown op {op!r}; known ops: {', '.join(known)}")
    name = raw.get("name")
    if name is None:
        name = f"{op}_{index + 1}"  # stable: depends only on the layer's position
        while name in taken or name in explicit:
            name += "_"
    elif not isinstance(name, str) or not name:
        raise ModelError(f"{at}: 'name' must be a non-empty string, got {name!r}")
    if name in taken:
        raise ModelError(f"{at}: duplicate layer name {name!r}")
    where = f"{source}: layer '{name}' ({op})"
    inputs = raw.get("inputs", [previous] if REGISTRY[op].arity != 0 else [])
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise ModelError(f"{where}: 'inputs' must be a list of layer names, got {inputs!r}")
    arity = REGISTRY[op].arity
    if arity is None and len(inputs) < 2:
        raise ModelError(f"{where}: needs two or more 'inputs', got {len(inputs)}")
    if arity is not None and len(inputs) != arity:
        raise ModelError(f"{where}: takes {arity} input(s), got {len(inputs)}: {inputs}")
    attrs = parse_attrs(REGISTRY[op].Attrs, {k: v for k, v in raw.items() if k not in LAYER_KEYS}, where)
    return Layer(name, op, attrs, tuple(inputs), source, batched=batched)


def _named(raw: dict) -> str:
    name = raw.get("name")
    return f" ('{name}')" if isinstance(name, str) else ""


def parse_file(path: str | os.PathLike, allow_outside_paths: bool = False,
               max_weights_bytes: int = MAX_WEIGHTS_BYTES) -> tuple[Graph, int | None]:
    path = Path(path)
    return parse_description(read_description(path), str(path), path.parent, allow_outside_paths, max_weights_bytes)


# ---------------------------------------------------------------- back out: the native description
def to_description(graph: Graph, weights_file: str) -> dict[str, Any]:
    """A Graph -> a native description dict (docs/format.md) naming `weights_file` for its weights."""
    layers = []
    input_name = graph.inputs[0]
    for layer in graph.layers():
        if layer.op == "input":
            continue
        entry = {"name": layer.name, "op": layer.op, "inputs": list(layer.inputs)}
        for k, v in attrs_to_dict(layer.attrs).items():
            entry[k] = v
        layers.append(entry)
    shape = list(graph.layer(input_name).attrs.shape)
    whole = {} if graph.batched else {"batch": shape.pop(0)}  # a whole-tensor model: its fixed batch
    return {"name": graph.name, **whole, "input": {"name": input_name, "shape": shape},
            "layers": layers, "outputs": list(graph.outputs), "weights": weights_file}
