"""The compiled-library cache folder: entries, their locks, its size, and least-recently-used eviction.

An entry is `<key>.so` (the library), `<key>.json` (how it was built; its mtime is the entry's last
use) and `<key>.lock`, an flock that a build and an eviction hold exclusively and that a process
holds shared from checking the library until it has opened it. Eviction only ever unlinks files, and
only those of an entry whose lock it gets without waiting: a process that has opened or mapped a
library keeps its bytes (Linux keeps an unlinked file while it is open or mapped), so evicting an
entry never disturbs a model that is loaded, and an entry being built or opened is never evicted.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

DEFAULT_MAX_BYTES = 2 * 1024 ** 3
MAX_BYTES_VARIABLE = "CONVC_CACHE_MAX_BYTES"
# A build folder older than this belongs to a killed build (a compiler run is stopped after an hour).
STALE_BUILD_SECONDS = 2 * 3600
LOGS = "logs"

_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


def parse_size(text: str | int) -> int:
    """A byte count: an integer, or a number with K, M, G or T (powers of 1024; 'B', 'iB' optional)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", str(text), re.IGNORECASE)
        if match is None:
            raise ValueError(f"cache size {text!r}: expected a byte count such as 500M, 2G or 1073741824")
        value = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if value < 0:
        raise ValueError(f"cache size {text!r} is negative")
    return value


def max_bytes(value: int | str | None = None) -> int:
    """The cache's cap: `value` if given, else $CONVC_CACHE_MAX_BYTES, else 2 GiB."""
    if value is not None:
        return parse_size(value)
    env = os.environ.get(MAX_BYTES_VARIABLE)
    if env:
        try:
            return parse_size(env)
        except ValueError as e:
            raise ValueError(f"${MAX_BYTES_VARIABLE}: {e}") from None
    return DEFAULT_MAX_BYTES


def entry_paths(cache: Path, key: str) -> tuple[Path, Path, Path]:
    """(library, build record, lock) of one entry."""
    return cache / f"{key}.so", cache / f"{key}.json", cache / f"{key}.lock"


@contextmanager
def entry_lock(cache: Path, key: str, shared: bool = False, wait: bool = True) -> Iterator[bool]:
    """Hold the entry's flock (exclusive or shared); yields False if `wait` is off and someone else holds it.

    An evictor unlinks the lock file while holding it, so after locking, the file must still be the
    one at the path; if it is not, lock the new one.
    """
    path = entry_paths(cache, key)[2]
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, mode)
            except BlockingIOError:
                yield False
                return
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                yield True
                return
        finally:
            os.close(fd)  # closing releases the flock


def touch(path: Path) -> None:
    """Mark an entry used now (its build record's mtime orders eviction)."""
    try:
        os.utime(path)
    except OSError:
        pass  # evicted meanwhile: it will be rebuilt when next needed


@dataclass(frozen=True)
class Entry:
    key: str
    bytes: int
    last_used: float


@dataclass(frozen=True)
class Usage:
    folder: Path
    entries: list[Entry]  # least recently used first
    other_bytes: int  # build logs, folders of running or killed builds, stray files
    max_bytes: int

    @property
    def total_bytes(self) -> int:
        return sum(e.bytes for e in self.entries) + self.other_bytes


def _size(path: Path) -> int:
    try:
        if path.is_dir() and not path.is_symlink():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
        return path.lstat().st_size
    except OSError:
        return 0


def usage(cache: Path, cap: int | str | None = None) -> Usage:
    """What the cache holds: its entries (by last use) and everything else, with sizes."""
    sizes: dict[str, int] = {}
    mtimes: dict[str, dict[str, float]] = {}
    other = 0
    try:
        children = list(cache.iterdir())
    except FileNotFoundError:
        children = []
    for child in children:
        key, dot, suffix = child.name.partition(".")
        if key and suffix in ("so", "json", "lock") and not child.is_dir():
            try:
                st = child.lstat()
            except FileNotFoundError:
                continue
            sizes[key] = sizes.get(key, 0) + st.st_size
            mtimes.setdefault(key, {})[suffix] = st.st_mtime
        else:
            other += _size(child)
    # last use: the build record's mtime (touched on every hit), else the newest of the entry's files
    entries = sorted((Entry(k, sizes[k], mtimes[k].get("json", max(mtimes[k].values()))) for k in sizes),
                     key=lambda e: (e.last_used, e.key))
    return Usage(cache, entries, other, max_bytes(cap))


def _evict(cache: Path, key: str) -> bool:
    """Unlink one entry's files if nobody is building or opening it; False if it is in use."""
    with entry_lock(cache, key, wait=False) as locked:
        if not locked:
            return False
        lib, record, lock = entry_paths(cache, key)
        for path in (record, lib, lock):  # the record first: without it the entry counts as absent
            try:
                path.unlink()
            except FileNotFoundError:
                pass
    return True


def _remove_stale(cache: Path, now: float, everything: bool) -> None:
    """Folders of killed builds; with `everything`, the logs of failed builds too."""
    for child in cache.glob("build-*"):
        try:
            if now - child.stat().st_mtime > STALE_BUILD_SECONDS:
                shutil.rmtree(child, ignore_errors=True)
        except OSError:
            pass
    if everything:
        shutil.rmtree(cache / LOGS, ignore_errors=True)


def prune(cache: Path, cap: int | str | None = None, keep: frozenset[str] = frozenset(), wait: bool = True) -> list[Entry]:
    """Evict least-recently-used entries until the cache fits `cap` (default: max_bytes()); returns them.

    Entries in `keep` and entries another process is building or opening stay. One process prunes a
    folder at a time; with `wait` off, a call that finds another pruning returns at once.
    """
    limit = max_bytes(cap)
    if not cache.is_dir():
        return []
    with _prune_lock(cache, wait) as locked:
        if not locked:
            return []
        now = time.time()
        _remove_stale(cache, now, everything=False)
        state = usage(cache, limit)
        total = state.total_bytes
        if total > limit and (cache / LOGS).is_dir():
            logs = sorted((p for p in (cache / LOGS).iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime)
            for log in logs:  # failed builds' logs go before any library
                if total <= limit:
                    break
                total -= _size(log)
                log.unlink(missing_ok=True)
        evicted = []
        for entry in state.entries:
            if total <= limit:
                break
            if entry.key in keep:
                continue
            if _evict(cache, entry.key):
                evicted.append(entry)
                total -= entry.bytes
        return evicted


def clear(cache: Path) -> list[Entry]:
    """Remove every entry nobody is using, and the build logs."""
    evicted = prune(cache, 0)
    if cache.is_dir():
        _remove_stale(cache, time.time(), everything=True)
    return evicted


@contextmanager
def _prune_lock(cache: Path, wait: bool) -> Iterator[bool]:
    fd = os.open(cache / ".prune.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
