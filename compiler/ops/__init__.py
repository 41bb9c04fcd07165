"""The op registry: every op convc knows, one entry each (see base.Op).

Every module of this package is imported below, so an op defined with @register in any of them is known
everywhere: model files, the ONNX front end (through the op's `onnx_types`), the docs and the tests'
coverage checks.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import Op

REGISTRY: dict[str, Op] = {}
# ONNX op type -> the native op it imports as, from the ops' `onnx_types`.
ONNX_TYPES: dict[str, str] = {}


def register(cls: type[Op]) -> type[Op]:
    if cls.name in REGISTRY:
        raise RuntimeError(f"op {cls.name!r} registered twice")
    declared = vars(cls).get("onnx_types", ())  # its own class's: fused_conv2d does not import Conv
    if declared and cls.internal:
        raise RuntimeError(f"op {cls.name!r} is internal (made by passes) but declares ONNX types {declared}")
    for onnx_type in declared:
        if onnx_type in ONNX_TYPES:
            raise RuntimeError(f"ONNX op type {onnx_type!r} is declared by both {ONNX_TYPES[onnx_type]!r} "
                               f"and {cls.name!r}")
    REGISTRY[cls.name] = cls()
    ONNX_TYPES.update(dict.fromkeys(declared, cls.name))
    return cls


def get_op(name: str) -> Op:
    return REGISTRY[name]


def model_file_ops() -> list[str]:
    """The ops a model file may name as a layer's `op`: all but the internal ones and `input`."""
    return sorted(name for name, op in REGISTRY.items() if not op.internal and name != "input")


def onnx_types_of(name: str) -> tuple[str, ...]:
    """The ONNX op types that import as op `name`, in their declared order."""
    return tuple(t for t, op in ONNX_TYPES.items() if op == name)


# Importing every module of the package fills the registry; a new module needs no list entry.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
del _module

__all__ = ["REGISTRY", "ONNX_TYPES", "register", "get_op", "model_file_ops", "onnx_types_of", "Op"]
