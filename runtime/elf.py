"""Check a compiled library before anything maps it: its ELF structure and convc's checksum stamp.

dlopen maps each loadable segment at the file range its program header names; a range past the
end of a truncated file maps pages that raise SIGBUS when touched, which kills the process. So
before dlopen the ELF header, the program and section header tables and every program header's
file range must lie inside the file (read with pyelftools), and the checksum convc appended when
it wrote the library must match the bytes before it, which catches every other damage (a flipped
bit in the code, a header field the loader would trust).

The stamp is a trailer after the ELF image; the loader reads only the ranges the headers name:
    STAMP_MAGIC (16 bytes) | length of the image (8 bytes, little-endian) | SHA-256 of the image (32 bytes)
"""
from __future__ import annotations

import hashlib
import io
import platform
import struct
from dataclasses import dataclass
from typing import BinaryIO

from elftools.elf.elffile import ELFFile

from .errors import LibraryError

STAMP_MAGIC = b"convc-sha256\0\0\0\1"
STAMP = struct.Struct(f"<{len(STAMP_MAGIC)}sQ32s")
ELF_HEADER_BYTES = 64  # ELF64's; a 32-bit header is shorter, but convc builds 64-bit libraries only
CHUNK = 1 << 20

# platform.machine() -> the ELF e_machine of libraries this process can load
HOST_MACHINES = {"x86_64": "EM_X86_64", "amd64": "EM_X86_64", "aarch64": "EM_AARCH64", "arm64": "EM_AARCH64"}


@dataclass(frozen=True)
class LibraryFile:
    """What the checks learned: the image's length (the file without its stamp) and its DT_NEEDED names."""
    image_bytes: int
    needed: tuple[str, ...]


def stamp(image: bytes) -> bytes:
    """`image` with convc's checksum trailer; bytes that already end in a valid stamp are returned as they are."""
    if _stamped_length(image) is not None:
        return image
    return image + STAMP.pack(STAMP_MAGIC, len(image), hashlib.sha256(image).digest())


def _stamped_length(data: bytes) -> int | None:
    if len(data) < STAMP.size:
        return None
    magic, length, digest = STAMP.unpack_from(data, len(data) - STAMP.size)
    if magic != STAMP_MAGIC or length != len(data) - STAMP.size:
        return None
    return length if hashlib.sha256(memoryview(data)[:length]).digest() == digest else None


def check_library_bytes(data: bytes, name: str) -> LibraryFile:
    """check_library on bytes in memory (a pickled model's library)."""
    return check_library(io.BytesIO(data), len(data), name)


def check_library(f: BinaryIO, size: int, name: str) -> LibraryFile:
    """Raise LibraryError naming `name` and what is wrong unless `f` (`size` bytes) is an intact convc library."""
    def bad(what: str) -> LibraryError:
        return LibraryError(f"{name}: {what}; recompile the model or copy it again")

    if size == 0:
        raise bad("the file is empty (0 bytes)")
    f.seek(0)
    head = f.read(ELF_HEADER_BYTES)
    if head[:4] != b"\x7fELF":
        raise bad("not a shared library: the file does not start with the ELF magic number")
    if len(head) < ELF_HEADER_BYTES:
        raise bad(f"truncated: the file has {size} bytes, fewer than the {ELF_HEADER_BYTES}-byte ELF header")
    try:
        elf = ELFFile(f)
        header = elf.header
        _check_kind(elf, bad)
        _check_range(bad, "the program header table", header.e_phoff, header.e_phnum * header.e_phentsize, size)
        for i in range(header.e_phnum):
            segment = elf.get_segment(i).header
            _check_range(bad, f"program header {i} ({segment.p_type})", segment.p_offset, segment.p_filesz, size)
        if header.e_shnum:
            _check_range(bad, "the section header table", header.e_shoff, header.e_shnum * header.e_shentsize, size)
    except LibraryError:
        raise
    except Exception as e:  # pyelftools reads hostile bytes: any failure of its parser means corrupt headers
        raise bad(f"corrupt ELF headers ({type(e).__name__}: {e})") from None
    image_bytes = _check_stamp(f, size, bad)
    return LibraryFile(image_bytes, _needed(elf))


def _check_kind(elf: ELFFile, bad) -> None:
    header = elf.header
    if elf.elfclass != 64 or not elf.little_endian:
        raise bad(f"an ELF{elf.elfclass} {'little' if elf.little_endian else 'big'}-endian file; convc builds "
                  "64-bit little-endian libraries")
    if header.e_type != "ET_DYN":
        raise bad(f"not a shared library: its ELF type is {header.e_type}")
    want = HOST_MACHINES.get(platform.machine().lower())
    if want is not None and header.e_machine != want:
        raise bad(f"built for machine {header.e_machine}, this is {platform.machine()}")
    if header.e_phentsize != 56 or header.e_phnum == 0:
        raise bad(f"corrupt program header table ({header.e_phnum} entries of {header.e_phentsize} bytes)")


def _check_range(bad, what: str, offset: int, length: int, size: int) -> None:
    if offset + length > size:
        raise bad(f"{what} covers bytes {offset}..{offset + length} but the file has {size} bytes (truncated?)")


def _check_stamp(f: BinaryIO, size: int, bad) -> int:
    """The image's length, once the trailer's checksum matches the bytes before it."""
    if size < STAMP.size + ELF_HEADER_BYTES:
        raise bad("no convc checksum at its end (truncated, or not written by convc compile / Model.save)")
    f.seek(size - STAMP.size)
    magic, length, digest = STAMP.unpack(f.read(STAMP.size))
    if magic != STAMP_MAGIC:
        raise bad("no convc checksum at its end (truncated, or not written by convc compile / Model.save)")
    if length != size - STAMP.size:
        raise bad(f"its checksum covers {length} bytes but {size - STAMP.size} precede it (truncated or extended)")
    h = hashlib.sha256()
    f.seek(0)
    left = length
    while left:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            raise bad("the file shrank while it was being read")
        h.update(chunk)
        left -= len(chunk)
    if h.digest() != digest:
        raise bad("its bytes do not match the checksum convc stamped into it (damaged after it was written)")
    return length


def _needed(elf: ELFFile) -> tuple[str, ...]:
    """The DT_NEEDED names (the checksum has vouched for the bytes, so this parse sees what the linker wrote)."""
    try:
        dynamic = elf.get_section_by_name(".dynamic")
        return tuple(tag.needed for tag in dynamic.iter_tags("DT_NEEDED")) if dynamic is not None else ()
    except Exception:  # vouched-for bytes parse; a linker oddity pyelftools cannot read just means no names
        return ()
