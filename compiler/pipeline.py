"""The pipeline, top to bottom: parse -> graph -> validate -> infer shapes -> optimize -> plan memory
-> lower -> render -> build -> load."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import runtime
from runtime.build import build_jobs, build_library, compile_flags

from .batching import plan_batch_tail
from .codegen import CSource, render
from .errors import ModelError
from .frontends.description import parse_description, parse_file
from .ir import Graph
from .kernels.select import KernelPlan, select_kernels
from .limits import DEFAULT_LIMITS, Limits, check_attributes, check_sizes, check_tensor
from .lower import lower
from .memory import plan_memory
from .passes import optimize
from .progress import Progress, no_progress
from .shapes import infer_shapes
from .target import Target
from .validate import init_weights, validate_structure, validate_weights

DEFAULT_OPT_LEVEL = 2


def load(model: str | os.PathLike | dict[str, Any], *, allow_outside_paths: bool = False,
         progress: Progress = no_progress, limits: Limits = DEFAULT_LIMITS) -> Graph:
    """A model description (.yaml, .yml, .json path, or an already-parsed dict) -> a shape-inferred Graph.

    limits: size bounds checked before any weight or C exists (compiler.Limits; defaults fit real CNNs).
    """
    if isinstance(model, Graph):
        check_attributes(model, limits)
        check_sizes(model, limits)
        return model
    progress("parse")
    if isinstance(model, dict):
        graph, seed = parse_description(model, allow_outside_paths=allow_outside_paths,
                                        max_weights_bytes=limits.max_weights_bytes)
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        _check_regular_file(path)
        if path.suffix.lower() == ".onnx":
            from .frontends.onnx import parse_onnx  # optional dependency
            graph, seed = parse_onnx(path, allow_outside_paths=allow_outside_paths, limits=limits)
        elif path.suffix.lower() in (".yaml", ".yml", ".json"):
            _check_file_size(path, limits.max_description_bytes)
            graph, seed = parse_file(path, allow_outside_paths=allow_outside_paths,
                                     max_weights_bytes=limits.max_weights_bytes)
        else:
            raise ModelError(f"{path}: unknown model format {path.suffix!r}; expected .yaml, .yml, .json or .onnx")
    else:
        raise TypeError(f"load() takes a path or a dict, got {type(model).__name__}")
    progress("infer")
    validate_structure(graph)
    check_attributes(graph, limits)
    infer_shapes(graph, check=lambda g, layer: check_tensor(g, layer, limits))
    check_sizes(graph, limits)
    if seed is not None:
        init_weights(graph, seed)
    validate_weights(graph)
    return graph


def _check_regular_file(path: Path) -> None:
    """A device or a FIFO (say, a symlink to /dev/zero) would be read forever."""
    if path.exists() and not path.is_file():
        raise ModelError(f"{path}: cannot read the model description: not a regular file")


def _check_file_size(path: Path, limit: int) -> None:
    try:
        size = path.stat().st_size
    except OSError:
        return  # the front end reports a missing file
    if size > limit:
        raise ModelError(f"{path}: the description is {size} bytes; the limit is {limit} "
                         "(compiler.Limits.max_description_bytes)")


def generate_c(graph: Graph, *, opt_level: int = DEFAULT_OPT_LEVEL, march: str | Target | None = "native",
               kernels: Mapping[str, str] | None = None, weights_mode: str = "incbin",
               progress: Progress = no_progress, profile: bool = False, jobs: int = 1) -> CSource:
    """Graph -> the model's C source: optimize, select kernels, plan memory, lower, render.

    march: the target (a -march name or a compiler.Target; see compiler.target).
    kernels: force kernels, layer name (or "*") -> kernel name (compiler.kernels), for debugging and benchmarking.
    jobs: cc processes the build will run at once; with more than one, a large model's kernels go to
    translation units of their own (CSource.units), built in parallel. 1 (the default): one model.c.
    """
    target = Target.from_march(march)
    progress("optimize")
    graph = optimize(graph, opt_level)
    progress("generate")
    plan = select_kernels(graph, target, opt_level, kernels)
    tail = None if profile else plan_batch_tail(graph, plan)  # a profile times each sample's layers alone
    return render(lower(graph, plan, plan_memory(graph, plan, tail), profile), weights_mode=weights_mode, jobs=jobs)


def plan_kernels(model: Graph | str | os.PathLike | dict[str, Any], *, opt_level: int = DEFAULT_OPT_LEVEL,
                 march: str | Target | None = "native", kernels: Mapping[str, str] | None = None,
                 limits: Limits = DEFAULT_LIMITS) -> KernelPlan:
    """The kernel every layer of the optimized model gets for the target, and why (`convc summary --kernels`):
    print it for a table, or .to_dict() / .to_json() for data. Arguments as compile()."""
    graph = optimize(load(model, limits=limits), opt_level)
    return select_kernels(graph, Target.from_march(march), opt_level, kernels)


def compile(model: Graph | str | os.PathLike | dict[str, Any], *, opt_level: int = DEFAULT_OPT_LEVEL,
            march: str | Target | None = "native", cflags: list[str] | tuple[str, ...] = (), cc: str | None = None,
            cache_dir: str | os.PathLike | None = None, cache_max_bytes: int | str | None = None,
            sanitize: bool = False, progress: Progress = no_progress, threads: int | None = None,
            profile: bool = False, limits: Limits = DEFAULT_LIMITS,
            kernels: Mapping[str, str] | None = None) -> runtime.Model:
    """Compile a model (Graph, path or dict) to a shared library and load it.

    march: the target: a -march value ("native" by default, "x86-64-v3", "x86-64-v4", any name cc knows; None
    or "none" for the compiler's default target) or a compiler.Target. The kernels are chosen and tuned for
    it, and cc gets its -march.
    cflags: extra compiler flags. cc: the C compiler (default $CC, else cc).
    cache_dir: where libraries are cached (default $CONVC_CACHE_DIR, else ~/.cache/convc).
    cache_max_bytes: the cache's cap, bytes or "500M"/"2G" (default $CONVC_CACHE_MAX_BYTES, else 2 GiB);
      a build evicts least-recently-used libraries until the cache fits.
    sanitize: build with AddressSanitizer + UBSan (the process must preload their runtimes).
    progress: called with each stage's name as it starts (compiler.progress.STAGES), then "done".
    threads: threads of the parallel kernels (default: $OMP_NUM_THREADS, else all cores).
    profile: time every layer (read with model.profile()); for finding what is slow, not for production.
    limits: size bounds (compiler.Limits), checked before any C is generated.
    kernels: force a layer's kernel, {layer name (or "*" for every layer it can take): kernel name}, e.g.
    {"conv3": "direct"}; names in compiler.kernels.KERNELS, shown per layer by `convc summary --kernels`.
    """
    result = _build(model, opt_level=opt_level, march=march, cflags=cflags, cc=cc, cache_dir=cache_dir,
                    cache_max_bytes=cache_max_bytes, sanitize=sanitize, progress=progress, profile=profile,
                    limits=limits, kernels=kernels, open_library=lambda path: runtime.load(path, threads=threads))
    model_ = result.opened
    model_.build_info = result
    return model_


def build(model: Graph | str | os.PathLike | dict[str, Any], output: str | os.PathLike, **options) -> Path:
    """compile() without loading the library: it is written to `output` (with its checksum stamp), also for a
    target whose instructions this machine lacks (`march="x86-64-v4"` on an AVX2 machine). Options as
    compile()'s, but threads."""
    result = _build(model, **options)
    output = Path(output)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    shutil.copyfile(result.path, tmp)  # the cached library carries its stamp already
    os.replace(tmp, output)
    return output


def _build(model, *, opt_level: int = DEFAULT_OPT_LEVEL, march: str | Target | None = "native",
           cflags: list[str] | tuple[str, ...] = (), cc: str | None = None, cache_dir=None, cache_max_bytes=None,
           sanitize: bool = False, progress: Progress = no_progress, profile: bool = False,
           limits: Limits = DEFAULT_LIMITS, kernels: Mapping[str, str] | None = None, open_library=None):
    graph = load(model, progress=progress, limits=limits)
    target = Target.from_march(march, cc)
    source = generate_c(graph, opt_level=opt_level, march=target, kernels=kernels, progress=progress,
                        profile=profile, jobs=build_jobs())
    flags = compile_flags(march=target.march, sanitize=sanitize, extra=tuple(cflags))
    progress("cc")
    result = build_library(source.code, source.files, cc=cc, flags=flags, cache_dir=cache_dir,
                           cache_max_bytes=cache_max_bytes, open_library=open_library, units=source.units)
    progress("done")
    return result
