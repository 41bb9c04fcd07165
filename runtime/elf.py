"""Read a shared library's DT_NEEDED entries without loading it (ELF64 little-endian; else nothing).

Used to spot a library built with sanitizers before dlopen, which would otherwise exit the process.
"""
from __future__ import annotations

import struct
from pathlib import Path

SHT_DYNAMIC, DT_NULL, DT_NEEDED = 6, 0, 1


def needed_libraries(path: str | Path) -> list[str]:
    """The library names `path` links against, or [] if it is not a well-formed ELF64 LE file."""
    try:
        data = Path(path).read_bytes()
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            return []
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
        names = []
        for _, sh_type, _, _, offset, size, link, _, _, _ in sections:
            if sh_type != SHT_DYNAMIC:
                continue
            strtab_offset = sections[link][4]
            for pos in range(offset, offset + size, 16):
                tag, value = struct.unpack_from("<qQ", data, pos)
                if tag == DT_NULL:
                    break
                if tag == DT_NEEDED:
                    start = strtab_offset + value
                    names.append(data[start:data.index(b"\0", start)].decode("ascii", "replace"))
        return names
    except (OSError, struct.error, IndexError, ValueError):
        return []
