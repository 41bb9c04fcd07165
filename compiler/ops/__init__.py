"""The op registry: every op convc knows, one entry each (see base.Op)."""
from __future__ import annotations

from .base import Op

REGISTRY: dict[str, Op] = {}


def register(cls: type[Op]) -> type[Op]:
    if cls.name in REGISTRY:
        raise RuntimeError(f"op {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls()
    return cls


def get_op(name: str) -> Op:
    return REGISTRY[name]


# Importing the modules fills the registry.
from . import (activations, batchnorm, constant, dense, globalpool, inputs, lrn, merge, movement,  # noqa: E402,F401
               reshape, softmax, spatial)
from . import fused  # noqa: E402,F401  (internal ops of the optimization passes)

__all__ = ["REGISTRY", "register", "get_op", "Op"]
