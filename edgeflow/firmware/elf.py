"""Sizes and symbols of a linked 32-bit ELF image (what ``arm-none-eabi-size -A`` and ``nm`` show).

Flash holds every allocated section with contents (vectors, code, read-only data, the
initial values of ``.data``); static RAM is ``.data`` plus the zero-filled sections
(``.bss``, which holds the arena), without the stack and heap regions the linker script
reserves (:data:`RESERVED`). Reading the section headers follows the ELF specification
(System V gABI, "Sections" and "Symbol Table").
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RESERVED", "Image", "Section", "read"]

#: Sections the linker script reserves for the stack and heap: RAM, but not static data.
RESERVED = (".stack", ".heap")
_SHT_SYMTAB, _SHT_NOBITS = 2, 8
_SHF_WRITE, _SHF_ALLOC, _SHF_EXECINSTR = 0x1, 0x2, 0x4
# Writable by their flags, but tables of constructor addresses that stay in flash.
_POINTER_TABLES = (".preinit_array", ".init_array", ".fini_array")


@dataclass(frozen=True)
class Section:
    name: str
    address: int
    size: int
    alloc: bool
    write: bool
    exec: bool
    nobits: bool


@dataclass(frozen=True)
class Image:
    """A linked image: its sections and its symbols (name -> (address, size))."""

    sections: list[Section]
    symbols: dict[str, tuple[int, int]]

    def size(self, name: str) -> int:
        return sum(s.size for s in self.sections if s.name == name)

    @property
    def text(self) -> int:
        """Bytes of code (executable sections, vectors included)."""
        return sum(s.size for s in self.sections if s.alloc and s.exec and not s.nobits)

    @property
    def rodata(self) -> int:
        """Bytes of read-only data (the model among them)."""
        return sum(s.size for s in self.sections if s.alloc and not s.exec and not s.write and not s.nobits)

    @property
    def data(self) -> int:
        """Bytes of initialised read-write data (in flash and copied to RAM)."""
        return sum(s.size for s in self.sections if s.alloc and s.write and not s.nobits)

    @property
    def bss(self) -> int:
        """Bytes of zero-filled RAM (the arena among them), without the stack and heap."""
        return sum(s.size for s in self.sections if s.alloc and s.nobits and s.name not in RESERVED)

    @property
    def flash(self) -> int:
        """text + rodata + data: what the image takes in flash."""
        return self.text + self.rodata + self.data

    @property
    def static_ram(self) -> int:
        """data + bss: RAM taken before the program runs (stack and heap excluded)."""
        return self.data + self.bss

    def address(self, symbol: str) -> int:
        return self.symbols[symbol][0]

    def function_at(self, address: int) -> str | None:
        """The symbol whose ``[value, value + size)`` holds ``address`` (Thumb bit ignored), or None."""
        address &= ~1
        for name, (value, size) in self.symbols.items():
            if size and value & ~1 <= address < (value & ~1) + size:
                return name
        return None


def read(path: str | Path) -> Image:
    """Parse the section headers and the symbol table of a little-endian ELF32 file.

    Raises:
        ValueError: not a little-endian 32-bit ELF file.
    """
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise ValueError(f"{path}: not a little-endian 32-bit ELF file")
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    raw = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    names = raw[shstrndx]

    def string(table, offset: int) -> str:
        start = table[4] + offset
        return data[start:data.index(b"\0", start)].decode("utf-8", "replace")

    sections = []
    for h in raw:
        name = string(names, h[0])
        write = bool(h[2] & _SHF_WRITE) and name not in _POINTER_TABLES
        sections.append(Section(name, h[3], h[5], bool(h[2] & _SHF_ALLOC), write, bool(h[2] & _SHF_EXECINSTR),
                                h[1] == _SHT_NOBITS))
    symbols: dict[str, tuple[int, int]] = {}
    for h in raw:
        if h[1] != _SHT_SYMTAB:
            continue
        strtab = raw[h[6]]
        for off in range(h[4], h[4] + h[5], 16):
            name, value, size, _info, _other, _shndx = struct.unpack_from("<IIIBBH", data, off)
            if name:
                symbols[string(strtab, name)] = (value, size)
    return Image([s for s in sections if s.name], symbols)


def map_contributions(map_text: str, sections: set[str]) -> tuple[dict[str, int], int]:
    """Bytes each input file puts into the output ``sections`` of a GNU ld map file (``-Map``).

    Reads the "Linker script and memory map" part: an output section starts in column 0; its
    input sections are indented by one space, with address, size and file on the same line or,
    for a long section name, on the next; ``*fill*`` lines are alignment padding. Merged
    string sections (``.str1.1``) are listed with their size before merging, at overlapping
    addresses: each byte is counted once, for the first input section in address order that
    covers it.

    Returns:
        ``({file: bytes}, fill bytes)``; archive members read ``lib.a(member.o)``.
    """
    entries: dict[str, list[tuple[int, int, str]]] = {}
    fill = 0
    current: str | None = None
    pending = False  # an input section whose name filled the line; its figures are on the next
    started = False
    for line in map_text.splitlines():
        if not started:
            started = line.startswith("Linker script and memory map")
            continue
        if line[:1] not in ("", " "):
            current = line.split()[0]
            pending = False
            continue
        if current not in sections:
            continue
        parts = line.split()
        if line.startswith(" *fill*") and len(parts) >= 3:
            fill += int(parts[2], 16)
            continue
        if line.startswith(" ") and not line.startswith("  ") and parts and not parts[0].startswith("*"):
            if len(parts) == 1:
                pending = True
                continue
            parts = parts[1:]
        elif not pending:
            continue
        pending = False
        if len(parts) >= 3 and parts[0].startswith("0x") and parts[1].startswith("0x"):
            entries.setdefault(current, []).append((int(parts[0], 16), int(parts[1], 16), " ".join(parts[2:])))
    files: dict[str, int] = {}
    for listed in entries.values():
        end = 0
        for address, size, path in sorted(listed, key=lambda e: e[0]):
            new = max(0, address + size - max(address, end))
            if new:
                files[path] = files.get(path, 0) + new
            end = max(end, address + size)
    return files, fill
