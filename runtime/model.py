"""A compiled model: a shared library loaded through cffi, called with NumPy arrays.

The library carries its own metadata (names, shapes, dtype, versions), so this
module never needs the compiler. A library is checked (ELF structure, checksum stamp) before
dlopen maps it, and every argument is checked before a pointer reaches C.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import cffi
import numpy as np

from . import __version__
from .cpu import missing_features
from .elf import check_library, check_library_bytes, stamp
from .errors import LibraryError
from .scratch import scratch

ABI_VERSION = 3
_ffi = cffi.FFI()
_ffi.cdef("""
int convc_abi_version(void);
const unsigned char *convc_metadata(size_t *size);
size_t convc_arena_floats(void);
size_t convc_group_floats(void);
int convc_run(size_t batch, const float *const *inputs, float *const *outputs, float *arena, size_t arenas);
void convc_set_threads(int n);
int convc_get_threads(void);
const double *convc_profile(size_t *n);
void convc_profile_reset(void);
extern const char convc_required_isa[];
""")


class Model:
    """Call it: `model(x)` -> output array (a tuple for several outputs), or `model.run({name: x})` -> dict."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self._path = Path(path).resolve()
        # Kept open: the checks read these bytes, and save() and pickling copy them even after
        # the file at the path is replaced or evicted from the cache.
        self._file, library = _open_checked(self._path, str(path))
        _check_sanitizer_runtime(self._path, library.needed)
        try:
            self._lib = _dlopen(_path_to_open(self._path, self._file))
        except OSError as e:
            raise LibraryError(f"{path}: cannot load the library (corrupt, or built for another system): {e}") from None
        self._check_cpu()
        try:
            abi = self._lib.convc_abi_version()
            size = _ffi.new("size_t *")
            raw = _ffi.buffer(self._lib.convc_metadata(size), size[0])[:]
        except AttributeError:
            raise LibraryError(f"{path}: not a convc model (its convc_* functions are missing)") from None
        if abi != ABI_VERSION:
            raise LibraryError(f"{path}: built for convc ABI {abi}, this runtime speaks ABI {ABI_VERSION}; "
                               "recompile the model with this convc")
        try:
            self.metadata: dict[str, Any] = json.loads(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise LibraryError(f"{path}: its metadata is corrupt; recompile the model") from None
        if self.metadata.get("convc_version") != __version__:
            raise LibraryError(f"{path}: built by convc {self.metadata.get('convc_version')}, this is convc "
                               f"{__version__}; recompile the model")
        self.name: str = self.metadata["name"]
        self.input_names = [d["name"] for d in self.metadata["inputs"]]
        self.output_names = [d["name"] for d in self.metadata["outputs"]]
        self.input_shapes = {d["name"]: tuple(d["shape"]) for d in self.metadata["inputs"]}
        self.output_shapes = {d["name"]: tuple(d["shape"]) for d in self.metadata["outputs"]}
        # False: a whole-tensor model; its calls take exactly input_shapes (no batch axis added).
        self.batched: bool = bool(self.metadata.get("batched", True))
        self.arena_floats = int(self._lib.convc_arena_floats())
        # A batch of more than one sample also needs this after the arena slots: the group area where the
        # batched tail's layers (compiler/batching.py) run once per group of samples.
        self.group_floats = int(self._lib.convc_group_floats())
        self.build_info = None  # set by compiler.compile: runtime.build.BuildResult
        self._arenas: list[np.ndarray] = []  # scratch reused across calls; each call takes its own
        if threads is not None:
            self.set_threads(threads)

    def _check_cpu(self) -> None:
        """Before running any of the library's code: does this CPU have the extensions it was built for?"""
        try:
            required = _ffi.string(self._lib.convc_required_isa).decode("ascii", "replace")
        except (AttributeError, KeyError):  # cffi reports a missing variable as KeyError
            return  # not a convc library, or an old one: the ABI and version checks report it
        missing = missing_features(required)
        if missing:
            raise LibraryError(f"{self._path}: built for instruction-set extensions this CPU lacks: "
                               f"{', '.join(missing)}; recompile on this machine (compile(..., march='native')), "
                               "or with march=None for a portable library")

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        lead = "N, " if self.batched else ""
        ins = ", ".join(f"{n} [{lead}{', '.join(map(str, s))}]" for n, s in self.input_shapes.items())
        outs = ", ".join(f"{n} [{lead}{', '.join(map(str, s))}]" for n, s in self.output_shapes.items())
        return f"<convc.Model {self.name!r}: {ins} -> {outs}>"

    # -- threads
    @property
    def threads(self) -> int:
        """Threads the parallel kernels use (1 for libraries built without them)."""
        try:
            return int(self._lib.convc_get_threads())
        except AttributeError:  # built by a convc without threads
            return 1

    def set_threads(self, n: int | None) -> None:
        """Use n threads (None or 0: $OMP_NUM_THREADS, else all CPUs). Applies to every Model of this file."""
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
            raise ValueError(f"threads must be a positive integer or None, got {n!r}")
        try:
            self._lib.convc_set_threads(n or 0)
        except AttributeError:
            if n not in (None, 0, 1):
                raise LibraryError(f"{self._path}: built without thread support; recompile it to use threads={n}")

    # -- profiling builds (compiler.compile(..., profile=True))
    def profile(self, reset: bool = False) -> dict[str, float]:
        """Seconds spent in each layer over all calls so far (a profiling build only); reset: start again."""
        names = self.metadata.get("profile_layers")
        if names is None:
            raise LibraryError(f"{self._path}: not a profiling build; compile with profile=True")
        n = _ffi.new("size_t *")
        seconds = self._lib.convc_profile(n)
        out = {name: float(seconds[i]) for i, name in enumerate(names[:n[0]])}
        if reset:
            self._lib.convc_profile_reset()
        return out

    # -- calling
    def _check(self, name: str, x: Any) -> np.ndarray:
        want = self.input_shapes[name]
        lead = "N, " if self.batched else ""
        if not isinstance(x, np.ndarray):
            raise ValueError(f"input {name!r}: expected a numpy.ndarray of float32 [{lead}{', '.join(map(str, want))}], "
                             f"got {type(x).__name__}")
        if x.dtype != np.float32:
            raise ValueError(f"input {name!r}: expected dtype float32, got {x.dtype} (use x.astype(numpy.float32))")
        if not self.batched and tuple(x.shape) != want:
            raise ValueError(f"input {name!r}: expected shape {list(want)} exactly (the model was compiled for these "
                             f"fixed shapes, as it computes across the leading axis), got {list(x.shape)}")
        if self.batched and (x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want):
            raise ValueError(f"input {name!r}: expected shape [N, {', '.join(map(str, want))}], got {list(x.shape)}")
        if self.batched and x.shape[0] < 1:
            raise ValueError(f"input {name!r}: the batch size N must be at least 1, got {x.shape[0]}")
        if not x.flags.c_contiguous:
            raise ValueError(f"input {name!r}: expected a C-contiguous array, got a strided view "
                             "(use numpy.ascontiguousarray(x))")
        if not x.flags.aligned:
            raise ValueError(f"input {name!r}: expected an aligned array (use x.copy())")
        if x.dtype.byteorder == ">":
            raise ValueError(f"input {name!r}: expected native byte order")
        return x

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(inputs, dict):
            raise ValueError(f"run() takes a dict of input name -> array, got {type(inputs).__name__}")
        unknown = sorted(set(inputs) - set(self.input_names))
        missing = [n for n in self.input_names if n not in inputs]
        if unknown or missing:
            raise ValueError(f"model {self.name!r} takes inputs {self.input_names}; missing {missing}, unknown {unknown}")
        xs = [self._check(n, inputs[n]) for n in self.input_names]
        batch = xs[0].shape[0] if self.batched else 1  # a whole-tensor model runs as one sample
        for n, x in zip(self.input_names, xs):
            if self.batched and x.shape[0] != batch:
                raise ValueError(f"input {n!r}: batch size {x.shape[0]} differs from {self.input_names[0]!r}'s {batch}")
        lead = (batch,) if self.batched else ()
        outs = [np.empty((*lead, *self.output_shapes[n]), np.float32) for n in self.output_names]
        # One arena slot per sample that may run at once: a batch's samples run in parallel, one per thread.
        slots = max(1, min(batch, self.threads))
        need = max(slots * self.arena_floats + (self.group_floats if batch > 1 else 0), 1)
        try:
            arena = self._arenas.pop()  # atomic: concurrent calls never share scratch
        except IndexError:
            arena = None
        if arena is None or arena.size < need:
            arena = scratch(need)
        in_ptrs = _ffi.new("const float *[]", [_ffi.from_buffer("float[]", x) for x in xs])
        out_ptrs = _ffi.new("float *[]", [_ffi.from_buffer("float[]", y, require_writable=True) for y in outs])
        rc = self._lib.convc_run(batch, in_ptrs, out_ptrs, _ffi.from_buffer("float[]", arena, require_writable=True),
                                 slots)
        self._arenas.append(arena)
        if rc != 0:
            raise LibraryError(f"model {self.name!r}: the library returned error code {rc}")
        return dict(zip(self.output_names, outs))

    def __call__(self, *xs: np.ndarray):
        if len(xs) != len(self.input_names):
            raise ValueError(f"model {self.name!r} takes {len(self.input_names)} input(s) "
                             f"({', '.join(self.input_names)}), got {len(xs)}")
        outs = self.run(dict(zip(self.input_names, xs)))
        values = [outs[n] for n in self.output_names]
        return values[0] if len(values) == 1 else tuple(values)

    # -- files and pickling
    def save(self, path: str | os.PathLike) -> Path:
        """Copy the library (with its checksum stamp) to `path`; `runtime.load(path)` reopens it without the compiler."""
        path = Path(path)
        # Write then rename: overwriting a library in place would crash every process that has it loaded.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(stamp(self._library_bytes()))
        os.replace(tmp, path)
        return path

    def _library_bytes(self) -> bytes:
        return _read_all(self._file)

    def __reduce__(self):
        return (_from_bytes, (self._library_bytes(),))


SANITIZER_PRELOAD = ('LD_PRELOAD="$(cc -print-file-name=libasan.so) $(cc -print-file-name=libubsan.so)" '
                     'ASAN_OPTIONS=detect_leaks=0')


def _check_sanitizer_runtime(path: Path, needed: tuple[str, ...]) -> None:
    """A library built with sanitize=True needs ASan loaded first; without it, dlopen would exit the process."""
    if not any(name.startswith("libasan.so") for name in needed):
        return
    import ctypes
    if not hasattr(ctypes.CDLL(None), "__asan_init"):
        raise LibraryError(f"{path}: built with sanitize=True, but AddressSanitizer is not loaded in this process; "
                           f"start Python with {SANITIZER_PRELOAD} (see docs/SECURITY.md)")


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _open_checked(path: Path, shown: str):
    """Open the library (never blocking, even on a FIFO) and check it; returns (file, LibraryFile)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise LibraryError(f"{shown}: no such compiled model") from None
    except OSError as e:
        raise LibraryError(f"{shown}: cannot open the library: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        kind = next((name for test, name in _KINDS if test(st.st_mode)), None)
        if kind is not None:
            raise LibraryError(f"{shown}: not a compiled model but {kind}")
    except BaseException:
        os.close(fd)
        raise
    f = os.fdopen(fd, "rb", buffering=0)
    try:
        return f, check_library(f, st.st_size, shown)
    except BaseException:
        f.close()
        raise


# dlopen hands back the library already loaded under the same path, even if the file was replaced since;
# so each path remembers the file it was first opened as, and a different file there is opened by content.
_opened: dict[Path, tuple[int, int, int, int]] = {}


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _path_to_open(path: Path, checked) -> Path:
    """A path whose file is the one `checked` holds: `path` itself, or a private copy of the checked bytes."""
    identity = _identity(os.fstat(checked.fileno()))
    try:
        same = _identity(path.stat()) == identity  # not replaced since it was checked
    except OSError:
        same = False
    if same and _opened.setdefault(path, identity) == identity:
        return path
    return _private_copy(_read_all(checked))


# A library is never unmapped (-z nodelete), and cffi keeps every handle it opens: so one handle per file
# opened, not one per load, or a process that reloads a model would grow with every load.
_handles: dict[Path, Any] = {}


def _dlopen(path: Path):
    lib = _handles.get(path)
    if lib is None:
        lib = _handles[path] = _ffi.dlopen(str(path))
    return lib


def _read_all(f) -> bytes:
    """The whole file behind the open `f`, whatever has happened to its path since."""
    size = os.fstat(f.fileno()).st_size
    parts, offset = [], 0
    while offset < size:
        part = os.pread(f.fileno(), min(size - offset, 1 << 30), offset)
        if not part:
            break
        parts.append(part)
        offset += len(part)
    return b"".join(parts)


def _private_copy(data: bytes) -> Path:
    """The library bytes, written (once) to a private folder under a name that is their hash."""
    folder = Path(tempfile.gettempdir()) / f"convc-{os.getuid()}-models"
    folder.mkdir(mode=0o700, exist_ok=True)
    st = folder.lstat()
    if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077 or not stat.S_ISDIR(st.st_mode):
        # someone else could swap the library between our check and dlopen
        raise LibraryError(f"{folder}: not a private folder of this user (owner uid {st.st_uid}, mode "
                           f"{stat.S_IMODE(st.st_mode):o}); remove it")
    path = folder / f"{hashlib.sha256(data).hexdigest()[:40]}.so"
    if not path.is_file() or path.read_bytes() != data:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def _from_bytes(data: bytes) -> Model:
    """Re-create a pickled model from its library bytes, checked before anything is written or mapped."""
    check_library_bytes(data, "the library of an unpickled model")
    return Model(_private_copy(data))


def load(path: str | os.PathLike, threads: int | None = None) -> Model:
    """Open a compiled model (.so written by `convc compile` or Model.save)."""
    return Model(path, threads=threads)
