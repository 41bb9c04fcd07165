"""Golden tests: every op and attribute form, compiled to C (float32) vs the NumPy interpreter (float64).

Each case is a small description; the compiled library and `compiler.interpret` must agree on
every output within conftest's tolerances (rtol 1e-4, atol 1e-5). The case table is checked
against the op registry, so an op a model file may name (or one of its attributes) without a golden case
fails, whichever module of compiler/ops/ defines it.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

import compiler
from compiler import passes as compiler_passes
from compiler.ops import REGISTRY, model_file_ops
from compiler.pipeline import DEFAULT_OPT_LEVEL
from conftest import assert_close, model_dict

@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    layers: list
    shape: tuple = (3, 8, 8)
    batch: int = 2
    outputs: list | None = None
    scale: float = 1.0  # input = scale * N(0, 1) + shift
    shift: float = 0.0

    def description(self) -> dict:
        extra = {"outputs": self.outputs} if self.outputs is not None else {}
        return model_dict(self.layers, shape=self.shape, name=self.id.replace("-", "_"), **extra)

    def input(self, seed: int = 0) -> np.ndarray:
        x = np.random.default_rng(seed).standard_normal((self.batch, *self.shape))
        return (self.scale * x + self.shift).astype(np.float32)


def conv(**kw):
    return {"op": "conv2d", **kw}


CASES = [
    # ---------------------------------------------------------------- conv2d
    Case("conv-basic", [conv(name="c", filters=4, kernel=3)]),
    Case("conv-kernel-pair", [conv(name="c", filters=5, kernel=[3, 5])], shape=(3, 9, 11)),
    Case("conv-kernel-1x1", [conv(name="c", filters=7, kernel=1)], shape=(5, 6, 7)),
    Case("conv-kernel-whole-input", [conv(name="c", filters=3, kernel=[8, 7])], shape=(2, 8, 7)),
    Case("conv-stride-2", [conv(name="c", filters=4, kernel=3, stride=2)], shape=(3, 9, 9)),
    Case("conv-stride-pair", [conv(name="c", filters=4, kernel=3, stride=[1, 3])], shape=(3, 7, 11)),
    Case("conv-stride-drops-rows", [conv(name="c", filters=2, kernel=3, stride=2)], shape=(2, 8, 10)),
    Case("conv-padding-int", [conv(name="c", filters=4, kernel=3, padding=1)]),
    Case("conv-padding-pair", [conv(name="c", filters=4, kernel=3, padding=[2, 1])], shape=(3, 7, 9)),
    Case("conv-padding-quad", [conv(name="c", filters=4, kernel=3, padding=[0, 1, 2, 3])], shape=(3, 7, 9)),
    Case("conv-padding-quad-stride", [conv(name="c", filters=3, kernel=[2, 4], stride=[2, 3],
                                           padding=[3, 0, 1, 2])], shape=(2, 9, 10)),
    Case("conv-padding-valid", [conv(name="c", filters=4, kernel=3, padding="valid")], shape=(3, 9, 7)),
    Case("conv-padding-same-odd-kernel", [conv(name="c", filters=4, kernel=3, padding="same")], shape=(3, 7, 10)),
    Case("conv-padding-same-even-kernel", [conv(name="c", filters=4, kernel=[4, 2], padding="same")],
         shape=(3, 7, 6)),
    Case("conv-padding-same-stride-2", [conv(name="c", filters=4, kernel=3, stride=2, padding="same")],
         shape=(3, 7, 10)),
    Case("conv-padding-same-stride-dilation", [conv(name="c", filters=3, kernel=[3, 2], stride=[3, 2],
                                                    dilation=[2, 3], padding="same")], shape=(2, 11, 8)),
    Case("conv-dilation-2", [conv(name="c", filters=4, kernel=3, dilation=2)], shape=(3, 9, 10)),
    Case("conv-dilation-pair-padded", [conv(name="c", filters=4, kernel=3, dilation=[3, 1], padding=2)],
         shape=(3, 8, 6)),
    Case("conv-dilation-same", [conv(name="c", filters=4, kernel=3, dilation=2, padding="same")], shape=(3, 7, 9)),
    Case("conv-groups-3", [conv(name="c", filters=9, kernel=3, groups=3, padding=1)], shape=(6, 7, 7)),
    Case("conv-groups-2-strided", [conv(name="c", filters=4, kernel=[3, 1], groups=2, stride=2)], shape=(4, 9, 6)),
    Case("conv-depthwise", [conv(name="c", filters=5, kernel=3, groups=5, padding=1)], shape=(5, 8, 9)),
    Case("conv-depthwise-multiplier", [conv(name="c", filters=8, kernel=3, groups=4, stride=2, padding=1)],
         shape=(4, 9, 9)),
    Case("conv-depthwise-no-bias", [conv(name="c", filters=3, kernel=5, groups=3, bias=False, padding="same")],
         shape=(3, 6, 6)),
    Case("conv-no-bias", [conv(name="c", filters=4, kernel=3, bias=False)]),
    Case("conv-bias-true", [conv(name="c", filters=4, kernel=3, bias=True)]),
    Case("conv-batch-1", [conv(name="c", filters=4, kernel=3, padding=1)], batch=1),
    # the Winograd F(2x2, 3x3) kernel of opt_level 2 (enough channels, 3x3, stride 1): odd map, residual + relu
    Case("conv-winograd-odd-map", [conv(name="c", filters=32, kernel=3, padding=1)], shape=(32, 9, 11)),
    Case("conv-winograd-residual-relu", [conv(name="c", filters=32, kernel=3, padding=[1, 1, 1, 1], bias=False),
                                         {"name": "s", "op": "add", "inputs": ["c", "x"]}, {"op": "relu"}],
         shape=(32, 10, 7), batch=3),
    # channel-blocked tensors at opt_level 2 (compiler/kernels/layouts.py): 1x1 -> depthwise -> 1x1 (+ residual) -> conv
    Case("conv-blocked-layout-residual", [conv(name="a", filters=16, kernel=1), conv(name="e", filters=32, kernel=1),
                                          {"op": "relu6"}, conv(name="d", filters=32, kernel=3, groups=32, padding=1),
                                          {"op": "relu6"}, conv(name="p", filters=16, kernel=1),
                                          {"name": "s", "op": "add", "inputs": ["p", "a"]},
                                          conv(name="z", filters=4, kernel=3, stride=2)], shape=(12, 9, 11)),
    Case("conv-blocked-layout-stride-2", [conv(name="e", filters=16, kernel=1),
                                          conv(name="d", filters=16, kernel=[3, 5], groups=16, stride=2,
                                               padding=[0, 1, 2, 3], bias=False),
                                          conv(name="p", filters=3, kernel=1)], shape=(12, 11, 13)),
    Case("conv-batch-5", [conv(name="c", filters=4, kernel=3, stride=2, padding=1)], shape=(3, 11, 6), batch=5),
    Case("conv-one-channel-odd", [conv(name="c", filters=1, kernel=[5, 3], padding=[2, 0])], shape=(1, 13, 5)),
    Case("conv-deep-accumulation", [conv(name="c", filters=16, kernel=3, padding=1)], shape=(16, 12, 12)),
    Case("conv-flat-1xW", [conv(name="c", filters=2, kernel=[1, 3], padding=[0, 1])], shape=(2, 1, 9)),

    # ---------------------------------------------------------------- maxpool2d
    Case("maxpool-kernel-2", [{"op": "maxpool2d", "kernel": 2}]),
    Case("maxpool-kernel-pair-stride-pair", [{"op": "maxpool2d", "kernel": [2, 3], "stride": [2, 1]}],
         shape=(3, 7, 9)),
    Case("maxpool-stride-explicit", [{"op": "maxpool2d", "kernel": 3, "stride": 1}], shape=(2, 6, 7)),
    Case("maxpool-padding-negative-input", [{"op": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1}],
         shape=(3, 9, 8), shift=-5.0),
    Case("maxpool-padding-pair", [{"op": "maxpool2d", "kernel": 3, "stride": 2, "padding": [1, 0]}],
         shape=(2, 7, 8), shift=-5.0),
    Case("maxpool-padding-quad", [{"op": "maxpool2d", "kernel": 3, "stride": 2, "padding": [2, 0, 1, 2]}],
         shape=(2, 7, 8), shift=-5.0),
    Case("maxpool-padding-valid", [{"op": "maxpool2d", "kernel": 2, "padding": "valid"}], shape=(2, 6, 5)),
    Case("maxpool-ceil-mode", [{"op": "maxpool2d", "kernel": 2, "ceil_mode": True}], shape=(3, 7, 7)),
    Case("maxpool-ceil-mode-false", [{"op": "maxpool2d", "kernel": 2, "ceil_mode": False}], shape=(3, 7, 7)),
    Case("maxpool-ceil-mode-padded", [{"op": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1,
                                       "ceil_mode": True}], shape=(2, 8, 10), shift=-5.0),
    Case("maxpool-ceil-mode-last-window-dropped", [{"op": "maxpool2d", "kernel": 2, "stride": 2, "padding": 1,
                                                    "ceil_mode": True}], shape=(2, 5, 5), shift=-5.0),
    Case("maxpool-dilation", [{"op": "maxpool2d", "kernel": 3, "stride": 1, "dilation": 2}], shape=(2, 9, 8)),
    Case("maxpool-dilation-pair-padded-ceil", [{"op": "maxpool2d", "kernel": 2, "stride": 2, "dilation": [2, 3],
                                                "padding": 1, "ceil_mode": True}], shape=(2, 9, 10), shift=-5.0),
    Case("maxpool-batch-1", [{"op": "maxpool2d", "kernel": 3, "stride": 2}], shape=(4, 9, 9), batch=1),

    # ---------------------------------------------------------------- avgpool2d
    Case("avgpool-kernel-2", [{"op": "avgpool2d", "kernel": 2}]),
    Case("avgpool-kernel-pair-stride-pair", [{"op": "avgpool2d", "kernel": [3, 2], "stride": [1, 2]}],
         shape=(3, 7, 9)),
    Case("avgpool-padding-include-pad", [{"op": "avgpool2d", "kernel": 3, "stride": 1, "padding": 1,
                                          "count_include_pad": True}], shape=(2, 6, 7)),
    Case("avgpool-padding-exclude-pad", [{"op": "avgpool2d", "kernel": 3, "stride": 1, "padding": 1,
                                          "count_include_pad": False}], shape=(2, 6, 7)),
    Case("avgpool-padding-pair", [{"op": "avgpool2d", "kernel": 3, "stride": 2, "padding": [0, 1]}],
         shape=(2, 7, 8)),
    Case("avgpool-padding-quad-exclude", [{"op": "avgpool2d", "kernel": 3, "stride": 2, "padding": [1, 2, 2, 0],
                                           "count_include_pad": False}], shape=(2, 7, 8)),
    Case("avgpool-padding-quad-include", [{"op": "avgpool2d", "kernel": 3, "stride": 2, "padding": [1, 2, 2, 0]}],
         shape=(2, 7, 8)),
    Case("avgpool-padding-valid", [{"op": "avgpool2d", "kernel": 2, "stride": 1, "padding": "valid"}],
         shape=(2, 5, 6)),
    Case("avgpool-ceil-mode", [{"op": "avgpool2d", "kernel": 2, "ceil_mode": True}], shape=(3, 7, 9)),
    Case("avgpool-ceil-mode-include-pad", [{"op": "avgpool2d", "kernel": 3, "stride": 2, "padding": 1,
                                            "ceil_mode": True, "count_include_pad": True}], shape=(2, 8, 10)),
    Case("avgpool-ceil-mode-exclude-pad", [{"op": "avgpool2d", "kernel": 3, "stride": 2, "padding": 1,
                                            "ceil_mode": True, "count_include_pad": False}], shape=(2, 8, 10)),
    Case("avgpool-batch-4", [{"op": "avgpool2d", "kernel": 3, "stride": 3}], shape=(3, 10, 9), batch=4),

    # ---------------------------------------------------------------- global pooling
    Case("global-avgpool", [{"op": "global_avgpool"}], shape=(4, 5, 7)),
    Case("global-maxpool", [{"op": "global_maxpool"}], shape=(4, 7, 5), shift=-3.0),
    Case("global-pools-1x1", [{"name": "a", "op": "global_avgpool"},
                              {"name": "m", "op": "global_maxpool", "inputs": ["x"]}],
         shape=(3, 1, 1), outputs=["a", "m"]),

    # ---------------------------------------------------------------- dense, flatten, dropout
    Case("dense-flat", [{"op": "dense", "units": 7}], shape=(12,)),
    Case("dense-flat-no-bias", [{"op": "dense", "units": 5, "bias": False}], shape=(9,), batch=3),
    Case("dense-flat-bias-true", [{"op": "dense", "units": 5, "bias": True}], shape=(9,)),
    Case("dense-on-chw", [{"op": "dense", "units": 6}], shape=(3, 4, 5)),
    Case("dense-on-conv-output", [conv(name="c", filters=3, kernel=3), {"op": "dense", "units": 4}],
         shape=(2, 6, 5)),
    Case("flatten-dense", [conv(name="c", filters=3, kernel=3), {"op": "flatten"}, {"op": "dense", "units": 4}],
         shape=(2, 6, 5)),
    Case("flatten-output", [conv(name="c", filters=3, kernel=2), {"op": "flatten"}], shape=(2, 5, 4)),
    Case("dropout-identity", [conv(name="c", filters=3, kernel=3), {"op": "dropout", "rate": 0.3},
                              {"op": "relu"}]),
    Case("dropout-default-rate-output", [{"op": "relu"}, {"op": "dropout"}], shape=(3, 5, 5)),

    # ---------------------------------------------------------------- batchnorm
    Case("batchnorm-chw", [conv(name="c", filters=4, kernel=3), {"op": "batchnorm"}]),
    Case("batchnorm-eps", [{"op": "batchnorm", "eps": 0.01}], shape=(5, 4, 3)),
    Case("batchnorm-flat", [{"op": "dense", "units": 6}, {"op": "batchnorm", "eps": 1e-3}], shape=(10,)),

    # ---------------------------------------------------------------- activations
    Case("relu", [{"op": "relu"}], shape=(3, 5, 7)),
    Case("relu-flat", [{"op": "relu"}], shape=(11,)),
    Case("leaky-relu-default", [{"op": "leaky_relu"}], shape=(3, 5, 7)),
    Case("leaky-relu-slope", [{"op": "leaky_relu", "negative_slope": 0.2}], shape=(3, 5, 7)),
    Case("leaky-relu-slope-above-1", [{"op": "leaky_relu", "negative_slope": 3.5}], shape=(3, 4, 4)),
    Case("relu6", [{"op": "relu6"}], shape=(3, 5, 7), scale=5.0),
    Case("clip-min-max", [{"op": "clip", "min": -0.5, "max": 1.25}], shape=(3, 5, 7), scale=2.0),
    Case("clip-min-only", [{"op": "clip", "min": -0.3}], shape=(3, 5, 7), scale=2.0),
    Case("clip-max-only", [{"op": "clip", "max": 0.7}], shape=(3, 5, 7), scale=2.0),
    Case("clip-neither", [{"op": "clip"}], shape=(3, 5, 7), scale=2.0),
    Case("clip-null-bounds", [{"op": "clip", "min": None, "max": None}], shape=(6,), scale=2.0),
    Case("sigmoid", [{"op": "sigmoid"}], shape=(3, 5, 7), scale=4.0),
    Case("tanh", [{"op": "tanh"}], shape=(3, 5, 7), scale=3.0),
    # hardswish, hardsigmoid, silu, gelu, mish, softplus, elu, selu; exp, log, sqrt, erf, abs, neg, reciprocal
    Case("hardswish", [{"op": "hardswish"}], shape=(3, 5, 7), scale=4.0),
    Case("hardsigmoid", [{"op": "hardsigmoid"}], shape=(3, 5, 7), scale=4.0),
    Case("hardsigmoid-onnx-alpha-beta", [{"op": "hardsigmoid", "alpha": 0.2, "beta": 0.4}], shape=(3, 5, 7), scale=4.0),
    Case("silu", [{"op": "silu"}], shape=(3, 5, 7), scale=4.0),
    Case("silu-large", [{"op": "silu"}], shape=(2, 4, 4), scale=60.0),
    Case("gelu", [{"op": "gelu"}], shape=(3, 5, 7), scale=3.0),
    Case("gelu-tanh", [{"op": "gelu", "approximate": "tanh"}], shape=(3, 5, 7), scale=3.0),
    Case("gelu-none-large", [{"op": "gelu", "approximate": "none"}], shape=(2, 4, 4), scale=50.0),
    Case("mish", [{"op": "mish"}], shape=(3, 5, 7), scale=4.0),
    Case("mish-large", [{"op": "mish"}], shape=(9,), scale=60.0),
    Case("softplus", [{"op": "softplus"}], shape=(3, 5, 7), scale=8.0),
    Case("softplus-beta-threshold", [{"op": "softplus", "beta": 2.5, "threshold": 4.0}], shape=(3, 5, 7), scale=3.0),
    Case("elu", [{"op": "elu"}], shape=(3, 5, 7), scale=3.0),
    Case("elu-alpha", [{"op": "elu", "alpha": 0.3}], shape=(3, 5, 7), scale=3.0),
    Case("selu", [{"op": "selu"}], shape=(3, 5, 7), scale=3.0),
    Case("exp", [{"op": "exp"}], shape=(3, 5, 7), scale=4.0),
    Case("log-of-abs", [{"name": "a", "op": "abs"}, {"op": "log"}], shape=(3, 5, 7), scale=3.0),
    Case("sqrt-of-abs", [{"name": "a", "op": "abs"}, {"op": "sqrt"}], shape=(3, 5, 7), scale=3.0),
    Case("erf", [{"op": "erf"}], shape=(3, 5, 7), scale=2.0),
    Case("neg", [{"op": "neg"}], shape=(3, 5, 7)),
    Case("reciprocal", [{"op": "reciprocal"}], shape=(3, 5, 7), shift=3.0),
    Case("unary-chain-rank-2", [{"op": "neg"}, {"op": "exp"}, {"op": "reciprocal"}, {"op": "sqrt"}], shape=(4, 6)),

    # ---------------------------------------------------------------- softmax
    Case("softmax-flat", [{"op": "softmax"}], shape=(10,), batch=3, scale=3.0),
    Case("softmax-chw-over-channels", [{"op": "softmax"}], shape=(5, 3, 4), scale=3.0),
    Case("softmax-large-logits", [{"op": "softmax"}], shape=(6,), scale=60.0, shift=500.0),
    Case("softmax-after-dense", [{"op": "flatten"}, {"op": "dense", "units": 10}, {"op": "softmax"}],
         shape=(2, 4, 4)),

    # ---------------------------------------------------------------- add, concat
    Case("add-2", [conv(name="a", filters=3, kernel=3, padding=1),
                   {"name": "s", "op": "add", "inputs": ["a", "x"]}]),
    Case("add-3", [conv(name="a", filters=3, kernel=3, padding=1),
                   conv(name="b", filters=3, kernel=1, inputs=["x"]),
                   {"name": "s", "op": "add", "inputs": ["a", "b", "x"]}]),
    Case("add-same-input-twice", [{"name": "r", "op": "relu"}, {"name": "s", "op": "add", "inputs": ["r", "r"]}]),
    Case("add-flat", [{"name": "a", "op": "dense", "units": 5}, {"name": "b", "op": "dense", "units": 5,
                                                                  "inputs": ["x"]},
                      {"op": "add", "inputs": ["a", "b"]}], shape=(7,)),
    Case("concat-channels-3", [conv(name="a", filters=2, kernel=3, padding=1),
                               conv(name="b", filters=5, kernel=1, inputs=["x"]),
                               {"name": "cat", "op": "concat", "inputs": ["a", "x", "b"]}], shape=(3, 5, 6)),
    Case("concat-rank-1", [{"name": "a", "op": "dense", "units": 3}, {"name": "b", "op": "dense", "units": 5,
                                                                       "inputs": ["x"]},
                           {"op": "concat", "inputs": ["b", "a", "x"]}], shape=(4,)),
    Case("concat-same-input-twice", [{"name": "r", "op": "tanh"}, {"op": "concat", "inputs": ["r", "x", "r"]}],
         shape=(2, 3, 3)),

    # ---------------------------------------------------------------- constant (an operand from the weights)
    Case("constant-per-channel-operand", [{"name": "k", "op": "constant", "shape": [3, 1, 1]},
                                          {"name": "s", "op": "add", "inputs": ["x", "k"]}]),
    Case("constant-as-output-and-view", [{"name": "k", "op": "constant", "shape": [2, 3]},
                                         {"name": "kr", "op": "reshape", "shape": [6], "inputs": ["k"]},
                                         {"name": "r", "op": "relu", "inputs": ["x"]}],
         shape=(4,), outputs=["r", "k", "kr"]),
    Case("constant-into-concat-and-conv", [{"name": "k", "op": "constant", "shape": [2, 5, 6]},
                                           conv(name="c", filters=3, kernel=3, inputs=["k"]),
                                           {"name": "k2", "op": "constant", "shape": [1, 3, 4]},
                                           {"name": "cat", "op": "concat", "inputs": ["x", "k2", "c"]},
                                           {"name": "m", "op": "mul", "inputs": ["c", "x"]}],
         shape=(3, 3, 4), outputs=["cat", "m"]),

    # ---------------------------------------------------------------- element-wise with broadcasting
    Case("add-broadcast-scalar", [{"name": "k", "op": "constant", "shape": [1]},
                                  {"op": "add", "inputs": ["k", "x"]}], shape=(2, 3, 4)),
    Case("add-broadcast-both-ways", [{"name": "k", "op": "constant", "shape": [4, 1]},
                                     {"name": "s", "op": "add", "inputs": ["x", "k", "x"]}], shape=(3, 1, 5)),
    Case("add-broadcast-lower-rank-row", [{"name": "k", "op": "constant", "shape": [6]},
                                          {"name": "s", "op": "add", "inputs": ["x", "k"]}], shape=(2, 5, 6)),
    Case("add-broadcast-middle-axis", [{"name": "k", "op": "constant", "shape": [3, 1, 6]},
                                       {"name": "s", "op": "add", "inputs": ["k", "x"]}], shape=(3, 5, 6)),
    Case("add-rank-2", [{"name": "r", "op": "relu"}, {"op": "add", "inputs": ["x", "r"]}], shape=(4, 5)),
    Case("sub-three-inputs", [{"name": "k", "op": "constant", "shape": [3, 1, 1]},
                              {"name": "r", "op": "relu"},
                              {"name": "d", "op": "sub", "inputs": ["x", "r", "k"]}], shape=(3, 4, 5)),
    Case("mul-per-channel-and-same", [{"name": "k", "op": "constant", "shape": [4, 1, 1]},
                                      {"name": "m", "op": "mul", "inputs": ["x", "k", "x"]}], shape=(4, 3, 5)),
    Case("mul-squeeze-excitation", [{"name": "gap", "op": "global_avgpool"}, {"name": "gate", "op": "sigmoid"},
                                    {"name": "se", "op": "mul", "inputs": ["x", "gate"]}], shape=(4, 5, 6)),
    Case("sub-activations-of-different-rank", [{"name": "f", "op": "dense", "units": 6},
                                               {"name": "d", "op": "sub", "inputs": ["x", "f"]}], shape=(2, 3, 6)),
    Case("div-by-positive", [{"name": "s", "op": "sigmoid"}, {"name": "d", "op": "div", "inputs": ["x", "s"]}],
         shape=(3, 4, 5)),
    Case("div-broadcast-divisor", [{"name": "k", "op": "constant", "shape": [5]},
                                   {"name": "kp", "op": "sigmoid", "inputs": ["k"]},
                                   {"name": "d", "op": "div", "inputs": ["x", "kp"]}], shape=(2, 3, 5)),
    Case("max-min", [{"name": "k", "op": "constant", "shape": [3, 1, 1]},
                     {"name": "hi", "op": "max", "inputs": ["x", "k"]},
                     {"name": "lo", "op": "min", "inputs": ["x", "k", "hi"]}], shape=(3, 4, 4), outputs=["hi", "lo"]),
    Case("pow-positive-base", [{"name": "k", "op": "constant", "shape": [1, 4]},
                               {"name": "b", "op": "sigmoid", "inputs": ["x"]},
                               {"name": "p", "op": "pow", "inputs": ["b", "k"]}], shape=(3, 4)),

    # ---------------------------------------------------------------- prelu, lrn
    Case("prelu-shared-slope", [{"op": "prelu"}], shape=(3, 4, 5)),
    Case("prelu-per-channel", [{"op": "prelu", "num_parameters": 4}], shape=(4, 3, 5)),
    Case("prelu-flat", [{"op": "prelu", "num_parameters": 6}], shape=(6,)),
    Case("lrn-size-3", [{"op": "lrn", "size": 3}], shape=(5, 4, 3), scale=3.0),
    Case("lrn-even-size-all-attributes", [{"op": "lrn", "size": 4, "alpha": 0.02, "beta": 0.5, "bias": 2.0}],
         shape=(6, 3, 3), scale=3.0),
    Case("lrn-window-wider-than-channels", [{"op": "lrn", "size": 7, "alpha": 0.1}], shape=(3, 2, 5), scale=2.0),
    Case("lrn-rank-2", [{"op": "lrn", "size": 2}], shape=(5, 7), scale=2.0),

    # ---------------------------------------------------------------- transpose, reshape, identity, pad
    Case("transpose-hw", [{"op": "transpose", "perm": [0, 1, 3, 2]}], shape=(3, 4, 5)),
    Case("transpose-cycle", [{"op": "transpose", "perm": [0, 3, 1, 2]}], shape=(3, 4, 5)),
    Case("transpose-identity-perm", [{"op": "transpose", "perm": [0, 1, 2]}], shape=(3, 4)),
    Case("channel-shuffle", [{"name": "g", "op": "reshape", "shape": [2, 3, 4, 5]},
                             {"name": "t", "op": "transpose", "perm": [0, 2, 1, 3, 4]},
                             {"name": "back", "op": "reshape", "shape": [6, 4, 5]},
                             {"op": "relu"}], shape=(6, 4, 5)),
    Case("reshape-infer-and-output", [{"name": "r", "op": "reshape", "shape": [-1, 6]}], shape=(2, 3, 4)),
    Case("reshape-then-kernel", [{"name": "r", "op": "reshape", "shape": [4, 6]}, {"op": "softmax", "axis": 2}],
         shape=(2, 3, 4)),
    Case("identity", [{"name": "c", "op": "conv2d", "filters": 2, "kernel": 3}, {"name": "i", "op": "identity"},
                      {"op": "tanh"}], outputs=["i", "tanh_3"]),
    Case("pad-all-axes-value", [{"op": "pad", "pads": [1, 0, 2, 0, 3, 1], "value": -1.5}], shape=(2, 3, 4)),
    Case("pad-spatial-only", [{"op": "pad", "pads": [0, 1, 1, 0, 1, 1]}], shape=(3, 4, 4)),
    Case("pad-nothing", [{"op": "pad", "pads": [0, 0, 0, 0]}, {"op": "relu"}], shape=(3, 4)),
    Case("pad-flat", [{"op": "pad", "pads": [2, 3], "value": 0.25}], shape=(5,)),

    # ---------------------------------------------------------------- concat and softmax along other axes
    Case("concat-axis-1-explicit", [{"name": "r", "op": "relu"}, {"op": "concat", "axis": 1, "inputs": ["x", "r"]}],
         shape=(2, 3, 3)),
    Case("concat-axis-1", [conv(name="a", filters=2, kernel=[2, 1]),
                           {"name": "cat", "op": "concat", "axis": 2, "inputs": ["x", "a", "x"]}], shape=(2, 4, 3)),
    Case("concat-axis-last-negative", [{"name": "t", "op": "transpose", "perm": [0, 1, 3, 2]},
                                       {"name": "cat", "op": "concat", "axis": -1, "inputs": ["t", "x"]}],
         shape=(3, 4, 4)),
    Case("softmax-axis-2", [{"op": "softmax", "axis": 2}], shape=(3, 5, 4), scale=3.0),
    Case("softmax-axis-last", [{"op": "softmax", "axis": -1}], shape=(3, 5, 4), scale=3.0),
    Case("softmax-rank-2-axis-0", [{"op": "softmax"}], shape=(4, 5), scale=3.0),

    # ---------------------------------------------------------------- other ranks for the existing ops
    Case("batchnorm-rank-2", [{"op": "batchnorm"}], shape=(4, 5)),
    Case("batchnorm-rank-4", [{"op": "batchnorm", "eps": 1e-3}], shape=(3, 2, 3, 4)),
    Case("unary-rank-2", [{"name": "a", "op": "sigmoid"}, {"name": "b", "op": "leaky_relu", "inputs": ["x"]}],
         shape=(4, 5), outputs=["a", "b"]),
    Case("dense-on-rank-2", [{"op": "dense", "units": 3}], shape=(4, 5)),

    # ---------------------------------------------------------------- layernorm, groupnorm, instancenorm, upsample,
    # conv_transpose2d
    Case("layernorm-last-axis", [{"op": "layernorm"}], shape=(3, 5, 7), scale=2.0, shift=1.0),
    Case("layernorm-channels-convnext", [conv(name="c", filters=16, kernel=3, padding=1),
                                         {"name": "ln", "op": "layernorm", "axis": 1, "last_axis": 1, "eps": 1e-6}],
         shape=(3, 9, 15)),
    Case("layernorm-channels-one-tile", [{"op": "layernorm", "axis": 1, "last_axis": 1}], shape=(5, 4, 4)),
    Case("layernorm-axes-2-to-end", [{"op": "layernorm", "axis": 2, "last_axis": -1}], shape=(3, 5, 7)),
    Case("layernorm-whole-sample-flat", [{"op": "dense", "units": 12}, {"op": "layernorm", "axis": 1, "eps": 1e-3}],
         shape=(10,)),
    Case("layernorm-middle-axes-rank-4", [{"op": "layernorm", "axis": -3, "last_axis": 3}], shape=(2, 3, 4, 5)),
    Case("groupnorm", [{"op": "groupnorm", "num_groups": 2}], shape=(4, 5, 7), shift=3.0),
    Case("groupnorm-one-group-eps", [conv(name="c", filters=6, kernel=3), {"op": "groupnorm", "num_groups": 1,
                                                                          "eps": 1e-3}], shape=(3, 7, 6)),
    Case("groupnorm-flat", [{"op": "groupnorm", "num_groups": 3}], shape=(6,)),
    Case("instancenorm", [{"op": "instancenorm"}], shape=(3, 5, 7), scale=3.0, shift=-2.0),
    Case("instancenorm-eps-rank-2", [{"op": "instancenorm", "eps": 0.01}], shape=(4, 9)),
    Case("upsample-nearest-2x", [{"op": "upsample", "scale_factor": 2}], shape=(3, 4, 5)),
    Case("upsample-nearest-size-down", [{"op": "upsample", "size": [3, 7]}], shape=(2, 7, 5)),
    Case("upsample-nearest-half-pixel-round", [{"op": "upsample", "scale_factor": [1.5, 0.75],
                                                 "coordinate_transformation_mode": "half_pixel",
                                                 "nearest_mode": "round_prefer_floor"}], shape=(2, 5, 8)),
    Case("upsample-nearest-ceil-asymmetric", [{"op": "upsample", "size": [4, 9], "mode": "nearest",
                                               "coordinate_transformation_mode": "asymmetric",
                                               "nearest_mode": "ceil"}], shape=(2, 7, 5)),
    Case("upsample-bilinear-fraction", [{"op": "upsample", "scale_factor": [1.7, 2.3], "mode": "bilinear"}],
         shape=(3, 5, 4)),
    Case("upsample-bilinear-align-corners", [{"op": "upsample", "size": [9, 3], "mode": "bilinear",
                                              "coordinate_transformation_mode": "align_corners"}], shape=(2, 4, 6)),
    Case("upsample-bilinear-to-one-pixel", [{"op": "upsample", "size": 1, "mode": "bilinear",
                                             "coordinate_transformation_mode": "pytorch_half_pixel"}],
         shape=(2, 4, 6)),
    Case("upsample-bilinear-symmetric-keep-aspect", [{"op": "upsample", "scale_factor": 1.6, "size": [8, 6],
                                                      "mode": "bilinear",
                                                      "coordinate_transformation_mode": "half_pixel_symmetric"}],
         shape=(2, 5, 4)),
    Case("upsample-segmentation-head", [conv(name="c", filters=4, kernel=3, stride=2, padding=1),
                                        {"op": "upsample", "size": [13, 11], "mode": "bilinear"}], shape=(3, 13, 11)),
    Case("conv-transpose-basic", [{"op": "conv_transpose2d", "filters": 4, "kernel": 3}], shape=(3, 5, 6)),
    Case("conv-transpose-stride-2-output-padding", [{"op": "conv_transpose2d", "filters": 4, "kernel": 3, "stride": 2,
                                                     "padding": 1, "output_padding": 1}], shape=(3, 5, 6)),
    Case("conv-transpose-grouped-dilated-quad-padding", [
        {"op": "conv_transpose2d", "filters": 6, "kernel": [3, 2], "stride": [2, 3], "padding": [2, 0, 1, 3],
         "output_padding": [1, 2], "dilation": [2, 1], "groups": 3, "bias": False}], shape=(6, 5, 6)),
    Case("conv-transpose-stride-beyond-kernel", [{"op": "conv_transpose2d", "filters": 2, "kernel": [2, 1],
                                                  "stride": [3, 2], "padding": [1, 0], "bias": True}],
         shape=(3, 4, 5)),
    Case("conv-transpose-depthwise-decoder", [conv(name="c", filters=4, kernel=3, stride=2, padding=1),
                                              {"op": "conv_transpose2d", "filters": 4, "kernel": 4, "stride": 2,
                                               "padding": 1, "groups": 4}, {"op": "relu"}], shape=(4, 8, 7)),

    # ---------------------------------------------------------------- DAGs and several outputs
    Case("dag-residual-block", [
        conv(name="stem", filters=4, kernel=3, padding=1),
        {"name": "stem_bn", "op": "batchnorm"},
        {"name": "stem_relu", "op": "relu"},
        conv(name="b_conv1", filters=4, kernel=3, padding=1, bias=False),
        {"name": "b_bn1", "op": "batchnorm"},
        {"op": "relu"},
        conv(name="b_conv2", filters=4, kernel=3, padding=1, bias=False),
        {"name": "b_bn2", "op": "batchnorm"},
        {"name": "b_add", "op": "add", "inputs": ["b_bn2", "stem_relu"]},
        {"name": "b_out", "op": "relu"},
        {"op": "global_avgpool"}, {"op": "flatten"}, {"name": "fc", "op": "dense", "units": 5},
        {"op": "softmax"}], shape=(3, 9, 7), batch=3),
    Case("dag-projection-shortcut", [
        conv(name="c1", filters=6, kernel=3, stride=2, padding=1),
        {"op": "relu"},
        conv(name="c2", filters=6, kernel=3, padding="same"),
        conv(name="proj", filters=6, kernel=1, stride=2, inputs=["x"]),
        {"name": "sum", "op": "add", "inputs": ["c2", "proj"]}], shape=(3, 9, 10)),
    Case("dag-inception-concat", [
        conv(name="b1", filters=2, kernel=1),
        conv(name="b3", filters=3, kernel=3, padding=1, inputs=["x"]),
        conv(name="b5", filters=2, kernel=5, padding="same", inputs=["x"]),
        {"name": "bp", "op": "maxpool2d", "kernel": 3, "stride": 1, "padding": 1, "inputs": ["x"]},
        {"name": "cat", "op": "concat", "inputs": ["b1", "b3", "b5", "bp"]},
        {"op": "relu"}, conv(name="head", filters=4, kernel=1)], shape=(3, 7, 6)),
    Case("outputs-several", [
        conv(name="c", filters=4, kernel=3, padding=1),
        {"name": "r", "op": "relu"},
        {"name": "p", "op": "maxpool2d", "kernel": 2},
        {"name": "f", "op": "flatten"},
        {"name": "d", "op": "dense", "units": 3}], outputs=["d", "c", "p"]),
    Case("outputs-view-and-its-root", [
        conv(name="c", filters=2, kernel=3),
        {"name": "f", "op": "flatten"},
        {"name": "d", "op": "dense", "units": 3}], outputs=["f", "c", "d"]),
    Case("outputs-view-of-input", [
        {"name": "drop", "op": "dropout"},
        {"name": "r", "op": "relu", "inputs": ["x"]}], shape=(2, 3, 4), outputs=["drop", "r"]),
    Case("outputs-default-every-sink", [
        conv(name="c", filters=2, kernel=3),
        {"name": "s", "op": "sigmoid"},
        {"name": "t", "op": "tanh", "inputs": ["c"]}], batch=3),
    Case("outputs-read-later", [
        conv(name="c", filters=3, kernel=3, padding=1),
        {"name": "r", "op": "relu"},
        conv(name="c2", filters=3, kernel=3, padding=1),
        {"name": "s", "op": "add", "inputs": ["c2", "r"]}], outputs=["r", "s"]),

    # ---------------------------------------------------------------- slice, split, chunk, gather, channel_shuffle,
    # squeeze, unsqueeze, reduce_mean / reduce_max / reduce_sum, matmul (issue 13)
    Case("slice-channels", [{"op": "slice", "axes": [1], "starts": [1], "ends": [3]}, {"op": "relu"}],
         shape=(4, 5, 6)),
    Case("slice-clamped-negative-and-steps", [{"op": "slice", "axes": [-1, 2], "starts": [-2, 0], "ends": [100, 5],
                                               "steps": [1, 2]}], shape=(3, 6, 7)),
    Case("slice-negative-steps", [{"op": "slice", "axes": [1, 3], "starts": [-1, 10], "ends": [-100, 0],
                                   "steps": [-2, -3]}], shape=(5, 4, 8)),
    Case("slice-rank-2-rows", [{"op": "slice", "axes": [2], "starts": [3], "ends": [-1]}], shape=(3, 9)),
    Case("split-sections", [{"name": "a", "op": "split", "split_size_or_sections": [1, 3, 2], "index": 1},
                            {"name": "b", "op": "split", "split_size_or_sections": [1, 3, 2], "index": -1,
                             "inputs": ["x"]}], shape=(6, 4, 5), outputs=["a", "b"]),
    Case("split-size-last-axis", [{"op": "split", "split_size_or_sections": 4, "index": 2, "axis": -1}],
         shape=(3, 5, 10)),
    Case("chunk-shufflenet-unit", [
        {"name": "left", "op": "chunk", "chunks": 2, "index": 0, "axis": 1},
        {"name": "right", "op": "chunk", "chunks": 2, "index": 1, "inputs": ["x"]},
        conv(name="c", filters=4, kernel=3, padding=1, inputs=["right"]), {"name": "r", "op": "relu"},
        {"name": "cat", "op": "concat", "inputs": ["left", "r"]},
        {"name": "shuffle", "op": "channel_shuffle", "groups": 2}], shape=(8, 6, 6)),
    Case("chunk-uneven-height", [{"op": "chunk", "chunks": 3, "index": 2, "axis": 2}], shape=(3, 7, 4)),
    Case("gather-list-negative", [{"op": "gather", "indices": [2, -1, 0, 2], "axis": 1}], shape=(4, 3, 5)),
    Case("gather-select-width", [{"op": "gather", "indices": -2, "axis": 3}], shape=(3, 4, 5)),
    Case("gather-rank-2-last-axis", [{"op": "gather", "indices": [1, 1, 0]}], shape=(4, 2)),
    Case("channel-shuffle-3-groups", [{"op": "channel_shuffle", "groups": 3}], shape=(6, 4, 5)),
    Case("squeeze-unsqueeze", [{"name": "u", "op": "unsqueeze", "axes": [2, -1]}, {"op": "relu"},
                               {"name": "s", "op": "squeeze", "axes": [2, 4]}], shape=(3, 5)),
    Case("squeeze-every-size-1-axis", [{"op": "global_maxpool"}, {"op": "squeeze"}, {"op": "dense", "units": 3}],
         shape=(4, 5, 5)),
    Case("reduce-mean-spatial-keepdims", [{"op": "reduce_mean", "axes": [2, 3], "keepdims": True}], shape=(4, 5, 6)),
    Case("reduce-mean-spatial-after-blocked-conv", [conv(name="c", filters=16, kernel=1),
                                                    {"op": "reduce_mean", "axes": [-1, -2]}], shape=(8, 5, 6)),
    Case("reduce-max-spatial", [{"op": "reduce_max", "axes": [2, 3]}], shape=(4, 5, 6), shift=-3.0),
    Case("reduce-max-channels-keepdims", [{"op": "reduce_max", "axes": [1], "keepdims": True}], shape=(4, 5, 6)),
    Case("reduce-sum-channels-and-width", [{"op": "reduce_sum", "axes": [1, -1], "keepdims": False}], shape=(4, 5, 6)),
    Case("reduce-mean-rank-2-last", [{"op": "reduce_mean", "axes": [-1], "keepdims": False}], shape=(4, 7)),
    Case("matmul-constant-right", [{"name": "w", "op": "constant", "shape": [6, 4]},
                                   {"op": "matmul", "inputs": ["x", "w"]}], shape=(3, 5, 6)),
    Case("matmul-constant-left-broadcast", [{"name": "w", "op": "constant", "shape": [2, 1, 4, 5]},
                                            {"op": "matmul", "inputs": ["w", "x"]}], shape=(3, 5, 6)),
    Case("matmul-vectors", [{"name": "v", "op": "constant", "shape": [5]},
                            {"name": "u", "op": "constant", "shape": [3]},
                            {"name": "xv", "op": "matmul", "inputs": ["x", "v"]},
                            {"name": "ux", "op": "matmul", "inputs": ["u", "x"]}], shape=(3, 5), outputs=["xv", "ux"]),
    Case("matmul-two-activations", [{"name": "r", "op": "tanh"}, {"op": "matmul", "inputs": ["x", "r"]}],
         shape=(2, 4, 4)),
]
CASE_BY_ID = {c.id: c for c in CASES}
assert len(CASE_BY_ID) == len(CASES), "duplicate golden case ids"


def load_quietly(desc):
    """compiler.load without the ConvcWarnings some cases provoke on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        return compiler.load(desc)


def compare(case: Case, batch: int | None = None, seed: int = 0, **compile_kw):
    graph = load_quietly(case.description())
    model = compiler.compile(graph, **compile_kw)
    if batch is not None:
        case = dataclasses.replace(case, batch=batch)
    x = case.input(seed)
    got = model.run({"x": x})
    ref = compiler.interpret(graph, {"x": x}, dtype=np.float64)
    assert list(got) == list(graph.outputs)
    for name in graph.outputs:
        assert got[name].shape == (case.batch, *graph.shape(name)), name
        assert np.all(np.isfinite(got[name])), name
        assert_close(got[name], ref[name])
    return graph, model, x, got


def case_layers(op: str):
    for case in CASES:
        for layer in case.layers:
            if layer["op"] == op:
                yield case, layer


# ---------------------------------------------------------------- the table covers the registry
def test_the_registry_lists_the_ops_of_every_module():
    """The coverage tests below are not vacuous: the ops they range over include those of every module."""
    expected = {"conv2d", "maxpool2d", "avgpool2d", "global_avgpool", "global_maxpool", "dense", "flatten",
                "dropout", "batchnorm", "relu", "leaky_relu", "relu6", "clip", "sigmoid", "tanh", "softmax",
                "add", "concat", "constant", "lrn", "transpose", "pad", "reshape", "prelu", "pow"}
    assert expected <= set(model_file_ops())
    assert not {"input", "fused_conv2d", "fused_dense"} & set(model_file_ops())


@pytest.mark.parametrize("op", model_file_ops())
def test_every_op_has_a_golden_case(op):
    assert any(True for _ in case_layers(op)), f"op {op!r} has no case in tests/test_golden_ops.py CASES"


@pytest.mark.parametrize("op", model_file_ops())
def test_every_attribute_of_an_op_is_set_in_some_case(op):
    fields = [f.name for f in dataclasses.fields(REGISTRY[op].Attrs)]
    used = {key for _, layer in case_layers(op) for key in layer}
    missing = [f for f in fields if f not in used]
    assert not missing, f"op {op!r}: no golden case sets attribute(s) {missing}"


def test_every_padding_form_is_covered():
    forms = set()
    for op in ("conv2d", "maxpool2d", "avgpool2d"):
        for _, layer in case_layers(op):
            p = layer.get("padding")
            if p is not None:
                forms.add((op, p if isinstance(p, str) else f"list{len(p)}" if isinstance(p, list) else "int"))
    want = {("conv2d", f) for f in ("int", "list2", "list4", "same", "valid")}
    want |= {(op, f) for op in ("maxpool2d", "avgpool2d") for f in ("int", "list2", "list4", "valid")}
    assert want <= forms, sorted(want - forms)


# ---------------------------------------------------------------- compiled == interpreter
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_golden(case):
    compare(case)


# Optimization levels other than the default (passes may fold, fuse or reorder): every case must still match.
OTHER_OPT_LEVELS = sorted(set(getattr(compiler_passes, "PIPELINES", {})) - {DEFAULT_OPT_LEVEL})


@pytest.mark.parametrize("case,opt_level", [pytest.param(c, level, id=f"{c.id}-O{level}")
                                             for level in OTHER_OPT_LEVELS for c in CASES])
def test_golden_at_other_opt_levels(case, opt_level):
    compare(case, opt_level=opt_level)


BATCH_CASES = ["conv-padding-quad-stride", "avgpool-ceil-mode-exclude-pad", "dag-residual-block",
               "dag-inception-concat", "outputs-several", "outputs-view-of-input", "concat-rank-1"]


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("case_id", BATCH_CASES)
def test_batch_sizes_and_independence(case_id, batch):
    """Any batch size works, and each sample's result does not depend on the others in the batch."""
    graph, model, x, got = compare(CASE_BY_ID[case_id], batch=batch, seed=3)
    last = model.run({"x": np.ascontiguousarray(x[-1:])})
    for name in graph.outputs:
        assert_close(last[name][0], got[name][-1])


def test_weights_reach_the_kernel():
    """Changing one weight changes the compiled output, exactly as the interpreter predicts."""
    case = CASE_BY_ID["conv-groups-3"]
    graph = load_quietly(case.description())
    before = compiler.compile(graph)(case.input())
    graph.weights["c.weight"] = graph.weights["c.weight"].copy()
    graph.weights["c.weight"][4, 1, 2, 0] += 1.0
    x = case.input()
    after = compiler.compile(graph)(x)
    assert not np.allclose(before, after)
    assert_close(after, compiler.interpret(graph, {"x": x}, dtype=np.float64)["c"])


def test_stride_that_drops_rows_warns_and_still_matches():
    with pytest.warns(compiler.ConvcWarning, match="never read"):
        compiler.load(CASE_BY_ID["conv-stride-drops-rows"].description())
    compare(CASE_BY_ID["conv-stride-drops-rows"])


def test_maxpool_padding_is_minus_infinity():
    """With all-negative input a zero-padded max would show 0 at the border; -inf padding never wins."""
    case = CASE_BY_ID["maxpool-padding-negative-input"]
    _, _, x, got = compare(case)
    (y,) = got.values()
    assert y.max() < 0


def test_avgpool_count_include_pad_changes_the_border():
    inc = compare(CASE_BY_ID["avgpool-padding-include-pad"])[3]
    exc = compare(CASE_BY_ID["avgpool-padding-exclude-pad"])[3]
    (a,), (b,) = inc.values(), exc.values()
    # Interior windows agree; the corner windows divide by 9 vs 4.
    assert_close(a[..., 1:-1, 1:-1], b[..., 1:-1, 1:-1])
    assert_close(a[..., 0, 0] * 9 / 4, b[..., 0, 0])


def test_layer_listed_twice_in_outputs():
    desc = model_dict([conv(name="c", filters=2, kernel=3)], outputs=["c", "c"])
    try:
        graph = load_quietly(desc)
    except compiler.ModelError:
        return  # rejecting the description is a fix too
    x = Case("dup", []).input()
    first, second = compiler.compile(graph)(x)
    ref = compiler.interpret(graph, {"x": x}, dtype=np.float64)["c"]
    assert_close(first, ref)
    assert_close(second, ref)
