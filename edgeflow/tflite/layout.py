"""Where the bytes of a ``.tflite`` go: every byte of the flatbuffer attributed to what holds it.

:func:`byte_breakdown` walks the flatbuffer from its root (tables, their vtables, vectors
and strings, each at the position the flatbuffers format gives it) and marks each byte
with the first thing found to own it: a vector or vtable shared by several tables counts
once. Bytes nothing owns are alignment padding (the builder's padding of scalars and
vectors, and the 16-byte alignment of weights). Categories (``CATEGORIES``, bytes):

- ``weights``: data of constant tensors (the buffers tensors name); ``metadata data``
  the buffers metadata names; ``unused data`` buffers nothing names;
- ``scales per-channel`` / ``zero points per-channel``: quantization vectors longer than
  one (float32 scales, int64 zero points); ``per-tensor scale/zp``: those of length one;
  ``min/max``; ``quantization tables`` (the QuantizationParameters tables);
- ``tensor tables``, ``shapes`` (``shape`` and ``shape_signature`` vectors);
- ``operators`` (Operator tables and their input/output vectors), ``options`` (builtin
  and custom options);
- ``buffer tables`` (Buffer tables, the buffers vector, each data vector's length word);
- ``names`` (tensor, subgraph, signature-def and metadata names, the description,
  signature defs), ``graph`` (the file header, Model and SubGraph tables, their vectors,
  operator codes);
- ``vtables``; ``padding``.

Layout facts from the flatbuffers format (flatbuffers.dev, "Internals"): a table starts
with an int32 offset back to its vtable; a vtable is ``uint16 vtable size, uint16 table
size, uint16 field offsets...``; an offset field holds a uint32 relative to itself;
vectors and strings are a uint32 length then the elements (strings end with a 0 byte).
Field slots are those of the generated schema classes (``schema_py_generated``).
"""

from __future__ import annotations

import struct

import numpy as np

from edgeflow.tflite._schema import schema
from edgeflow.tflite.reader import read_bytes

__all__ = ["CATEGORIES", "byte_breakdown"]

CATEGORIES = (
    "weights", "scales per-channel", "zero points per-channel", "per-tensor scale/zp", "min/max",
    "quantization tables", "tensor tables", "shapes", "operators", "options", "buffer tables",
    "names", "graph", "metadata data", "unused data", "vtables", "padding",
)

#: Builtin options tables with a vector field: union type -> {slot: element bytes}.
_OPTION_VECTORS = {
    schema.BuiltinOptions.ReshapeOptions: {4: 4},
    schema.BuiltinOptions.SqueezeOptions: {4: 4},
}


class _Walker:
    def __init__(self, data: bytes):
        self.data = data
        self.owner = np.full(len(data), -1, np.int8)

    def claim(self, start: int, length: int, category: str) -> None:
        span = self.owner[start : start + length]
        span[span < 0] = CATEGORIES.index(category)

    def u16(self, pos: int) -> int:
        return struct.unpack_from("<H", self.data, pos)[0]

    def u32(self, pos: int) -> int:
        return struct.unpack_from("<I", self.data, pos)[0]

    def table(self, pos: int, category: str) -> int:
        """Claim a table and its vtable; returns the vtable position."""
        vt = pos - struct.unpack_from("<i", self.data, pos)[0]
        self.claim(vt, self.u16(vt), "vtables")
        self.claim(pos, self.u16(vt + 2), category)
        return vt

    def field(self, pos: int, vt: int, slot: int) -> int:
        """Absolute position of a field, 0 when absent."""
        return pos + self.u16(vt + slot) if slot < self.u16(vt) and self.u16(vt + slot) else 0

    def ref(self, pos: int, vt: int, slot: int) -> int:
        """Where an offset field points, 0 when absent."""
        at = self.field(pos, vt, slot)
        return at + self.u32(at) if at else 0

    def vector(self, pos: int, vt: int, slot: int, elem: int, category: str, string: bool = False):
        """Claim a vector (or string); returns (first element position, length)."""
        at = self.ref(pos, vt, slot)
        if not at:
            return 0, 0
        n = self.u32(at)
        self.claim(at, 4 + n * elem + string, category)
        return at + 4, n

    def tables(self, pos: int, vt: int, slot: int, category: str) -> list[int]:
        """Positions of the tables of a vector of tables (the vector claimed as ``category``)."""
        first, n = self.vector(pos, vt, slot, 4, category)
        return [first + 4 * i + self.u32(first + 4 * i) for i in range(n)]


def byte_breakdown(model) -> dict[str, int]:
    """Bytes of a ``.tflite`` by what holds them (module docstring); values sum to the file size.

    Args:
        model: ``.tflite`` bytes or a path.

    Returns:
        ``{category: bytes}`` for every name in ``CATEGORIES``, in that order.

    Raises:
        EdgeflowError: the input is not a complete TFLite flatbuffer.

    Example:
        >>> parts = byte_breakdown("model.tflite")
        >>> parts["weights"], parts["scales per-channel"], parts["padding"]
        (21504, 2304, 180)
    """
    data = read_bytes(model)
    w = _Walker(data)
    w.claim(0, 8, "graph")  # root offset and file identifier
    root = w.u32(0)
    mvt = w.table(root, "graph")
    w.vector(root, mvt, 10, 1, "names", string=True)  # description
    w.vector(root, mvt, 14, 4, "graph")  # metadata_buffer
    buffer_use: dict[int, str] = {}
    for code in w.tables(root, mvt, 6, "graph"):
        cvt = w.table(code, "graph")
        w.vector(code, cvt, 6, 1, "graph", string=True)  # custom code
    for g in w.tables(root, mvt, 8, "graph"):
        gvt = w.table(g, "graph")
        w.vector(g, gvt, 6, 4, "graph")
        w.vector(g, gvt, 8, 4, "graph")
        w.vector(g, gvt, 12, 1, "names", string=True)
        for t in w.tables(g, gvt, 4, "tensor tables"):
            _tensor(w, t, buffer_use)
        for op in w.tables(g, gvt, 10, "operators"):
            _operator(w, op)
    for m in w.tables(root, mvt, 16, "names"):
        mvt_ = w.table(m, "names")
        w.vector(m, mvt_, 4, 1, "names", string=True)
        at = w.field(m, mvt_, 6)
        if at:
            buffer_use.setdefault(w.u32(at), "metadata data")
    for sig in w.tables(root, mvt, 18, "names"):
        svt = w.table(sig, "names")
        w.vector(sig, svt, 8, 1, "names", string=True)
        for slot in (4, 6):
            for tm in w.tables(sig, svt, slot, "names"):
                tvt = w.table(tm, "names")
                w.vector(tm, tvt, 4, 1, "names", string=True)
    for i, b in enumerate(w.tables(root, mvt, 12, "buffer tables")):
        bvt = w.table(b, "buffer tables")
        at = w.ref(b, bvt, 4)
        if at:
            w.claim(at, 4, "buffer tables")
            w.claim(at + 4, w.u32(at), buffer_use.get(i, "unused data"))
    counts = np.bincount(w.owner[w.owner >= 0], minlength=len(CATEGORIES))
    out = {name: int(counts[i]) for i, name in enumerate(CATEGORIES)}
    out["padding"] = int((w.owner < 0).sum())
    return out


def _tensor(w: _Walker, t: int, buffer_use: dict[int, str]) -> None:
    tvt = w.table(t, "tensor tables")
    w.vector(t, tvt, 4, 4, "shapes")
    w.vector(t, tvt, 18, 4, "shapes")
    w.vector(t, tvt, 10, 1, "names", string=True)
    at = w.field(t, tvt, 8)
    if at:
        buffer_use.setdefault(w.u32(at), "weights")
    q = w.ref(t, tvt, 12)
    if q:
        qvt = w.table(q, "quantization tables")
        for slot, elem, per_channel in ((8, 4, "scales per-channel"), (10, 8, "zero points per-channel")):
            at = w.ref(q, qvt, slot)
            if at:
                w.vector(q, qvt, slot, elem, per_channel if w.u32(at) > 1 else "per-tensor scale/zp")
        w.vector(q, qvt, 4, 4, "min/max")
        w.vector(q, qvt, 6, 4, "min/max")
        details = w.ref(q, qvt, 14)
        if details:
            w.table(details, "quantization tables")


def _operator(w: _Walker, op: int) -> None:
    ovt = w.table(op, "operators")
    w.vector(op, ovt, 6, 4, "operators")
    w.vector(op, ovt, 8, 4, "operators")
    w.vector(op, ovt, 20, 4, "operators")  # intermediates
    w.vector(op, ovt, 18, 1, "operators")  # mutating_variable_inputs
    w.vector(op, ovt, 14, 1, "options")  # custom options
    for type_slot, slot in ((10, 12), (26, 28)):
        options = w.ref(op, ovt, slot)
        if options:
            vvt = w.table(options, "options")
            kind = w.data[w.field(op, ovt, type_slot)] if type_slot == 10 else None
            for vslot, elem in _OPTION_VECTORS.get(kind, {}).items():
                w.vector(options, vvt, vslot, elem, "options")
