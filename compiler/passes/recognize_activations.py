"""recognize_activations: the element-wise expansions exporters write for SiLU, GELU and Mish -> one layer.

    mul(x, sigmoid(x))                                            -> silu(x)
    x · 0.5 · (1 + erf(x / √2))        (any order of the product)   -> gelu(x)
    x · 0.5 · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))              -> gelu(x, approximate="tanh")
    mul(x, tanh(softplus(x)))                                     -> mish(x)

torch.onnx writes these for nn.SiLU, nn.GELU (before opset 20) and nn.Mish (before opset 18); the TorchScript and
torch.export exporters order the products differently (x·T·0.5 or x·(0.5·T)), and x³ is x·x·x or pow(x, 3), so a
product is matched as the multiset of its factors. Every layer inside a pattern must be read only by the
pattern (x may have other readers); the result keeps the last layer's name. The single layer then runs as one
kernel, or fused into the epilogue of the conv/dense producing x (fuse_epilogue).
"""
from __future__ import annotations

import dataclasses
import math

from ..ir import Graph, Layer
from ..ops import REGISTRY
from .rewrite import replace_with

RTOL = 1e-6  # constants as exported (float32) vs their exact values


@dataclasses.dataclass
class _Match:
    """Layers a candidate pattern reads, as it is matched: `inner` the computed ones, `constants` the scalars."""
    graph: Graph
    root: str
    inner: list[str] = dataclasses.field(default_factory=list)
    constants: list[str] = dataclasses.field(default_factory=list)

    def layer(self, name: str) -> Layer:
        return self.graph.layer(name)

    def scalar(self, name: str) -> float | None:
        """The value of a one-element constant layer (recorded as read), else None."""
        value = self.graph.weights.get(f"{name}.value")
        if self.layer(name).op != "constant" or value is None or value.size != 1:
            return None
        self.constants.append(name)
        return float(value.reshape(-1)[0])

    def inner_op(self, name: str, op: str, arity: int) -> Layer | None:
        """Layer `name` if it computes `op` on `arity` inputs (recorded as part of the pattern), else None."""
        layer = self.layer(name)
        if layer.op != op or len(layer.inputs) != arity:
            return None
        self.inner.append(name)
        return layer

    def factors(self, name: str) -> list[str]:
        """The operands of the product `name` computes, through the two-input muls that only it reads."""
        layer = self.layer(name)
        if layer.op != "mul" or len(layer.inputs) != 2:
            return [name]
        out = []
        for i in layer.inputs:
            if self.layer(i).op == "mul" and self.graph.consumers(i) == [name] and i not in self.graph.outputs:
                self.inner.append(i)
                out += self.factors(i)
            else:
                out.append(i)
        return out

    def split(self, factors: list[str]) -> tuple[list[str], float | None]:
        """(the non-constant factors, the product of the constant ones; None if there is none)."""
        rest, product = [], None
        for f in factors:
            value = self.scalar(f)
            if value is None:
                rest.append(f)
            else:
                product = value if product is None else product * value
        return rest, product

    def state(self) -> tuple[int, int]:
        return len(self.inner), len(self.constants)

    def restore(self, state: tuple[int, int]) -> None:
        """Forget what a failed alternative recorded."""
        del self.inner[state[0]:], self.constants[state[1]:]

    def self_contained(self, x: str) -> bool:
        """Every inner layer is read only inside the pattern and is no model output; x is not inside."""
        inside = set(self.inner) | {self.root}
        return x not in inside and all(n not in self.graph.outputs and set(self.graph.consumers(n)) <= inside
                                       for n in self.inner)


def _near(value: float | None, want: float) -> bool:
    return value is not None and math.isclose(value, want, rel_tol=RTOL)


def _plus_one(m: _Match, name: str, op: str) -> str | None:
    """For add(op(z), 1) in either order: z."""
    add = m.inner_op(name, "add", 2)
    if add is None:
        return None
    for a, b in (add.inputs, add.inputs[::-1]):
        if m.layer(a).op == op and _near(m.scalar(b), 1.0):
            return m.inner_op(a, op, 1).inputs[0]
    return None


def _half_x_times(m: _Match) -> list[tuple[str, str]]:
    """For a product x · T · 0.5 at the root: the candidate (x, T) pairs."""
    rest, c = m.split(m.factors(m.root))
    if len(rest) != 2 or not _near(c, 0.5):
        return []
    return [(rest[0], rest[1]), (rest[1], rest[0])]


def _gelu_erf(m: _Match) -> tuple[str, dict] | None:
    pairs = _half_x_times(m)
    start = m.state()
    for x, t in pairs:
        m.restore(start)
        z = _plus_one(m, t, "erf")
        if z is None:
            continue
        inner = m.layer(z)
        if inner.op == "div" and len(inner.inputs) == 2 and inner.inputs[0] == x and _near(m.scalar(inner.inputs[1]),
                                                                                           math.sqrt(2.0)):
            m.inner.append(z)
            return x, {"approximate": "none"}
        if inner.op == "mul":
            m.inner.append(z)
            rest, c = m.split(m.factors(z))
            if rest == [x] and _near(c, math.sqrt(0.5)):
                return x, {"approximate": "none"}
    return None


def _is_cube(m: _Match, factors: list[str], x: str) -> bool:
    if factors == [x, x, x]:
        return True
    if len(factors) == 1 and m.layer(factors[0]).op == "pow":
        base, exponent = m.layer(factors[0]).inputs
        if base == x and _near(m.scalar(exponent), 3.0):
            m.inner.append(factors[0])
            return True
    return False


def _gelu_tanh(m: _Match) -> tuple[str, dict] | None:
    pairs = _half_x_times(m)
    start = m.state()
    for x, t in pairs:
        m.restore(start)
        u = _plus_one(m, t, "tanh")
        if u is None or m.layer(u).op != "mul":
            continue
        m.inner.append(u)
        rest, c = m.split(m.factors(u))
        if len(rest) != 1 or not _near(c, math.sqrt(2.0 / math.pi)) or m.inner_op(rest[0], "add", 2) is None:
            continue
        tried = m.state()
        for a, w in (m.layer(rest[0]).inputs, m.layer(rest[0]).inputs[::-1]):
            m.restore(tried)
            if a == x and m.layer(w).op == "mul":
                cube, k = m.split(m.factors(w))
                if _near(k, 0.044715) and _is_cube(m, cube, x):
                    m.inner.append(w)
                    return x, {"approximate": "tanh"}
    return None


def _x_times(m: _Match, chain: tuple[str, ...]) -> str | None:
    """For mul(x, op1(op2(...(x)))) in either order, with the ops of `chain` (outermost first): x."""
    root = m.layer(m.root)
    if root.op != "mul" or len(root.inputs) != 2:
        return None
    start = m.state()
    for x, a in (root.inputs, root.inputs[::-1]):
        m.restore(start)
        for op in chain:
            layer = m.inner_op(a, op, 1)
            if layer is None:
                break
            a = layer.inputs[0]
        else:
            if a == x:
                return x
    return None


def _silu(m: _Match) -> tuple[str, dict] | None:
    x = _x_times(m, ("sigmoid",))
    return None if x is None else (x, {})


def _mish(m: _Match) -> tuple[str, dict] | None:
    x = _x_times(m, ("tanh", "softplus"))
    if x is None or m.layer(m.inner[-1]).attrs != REGISTRY["softplus"].Attrs():
        return None
    return x, {}


PATTERNS = (("gelu", _gelu_erf), ("gelu", _gelu_tanh), ("silu", _silu), ("mish", _mish))


def recognize_activations(graph: Graph) -> Graph:
    """Replace each expanded SiLU, GELU (erf and tanh forms) and Mish by one layer of that op."""
    for root in reversed(graph.layers()):
        if root.name not in graph.nx or root.op != "mul":
            continue
        for op, match in PATTERNS:
            m = _Match(graph, root.name)
            found = match(m)
            if found is None or not m.self_contained(found[0]) or graph.shape(found[0]) != graph.shape(root.name):
                continue
            x, attrs = found
            inside = set(m.inner) | {root.name}
            unused = [c for c in dict.fromkeys(m.constants) if set(graph.consumers(c)) <= inside
                      and c not in graph.outputs]
            layer = dataclasses.replace(root, op=op, attrs=REGISTRY[op].Attrs(**attrs), inputs=(x,))
            graph = replace_with(graph, layer, list(dict.fromkeys(m.inner)) + unused)
            break
    return graph
