"""Writing a ``.tflite`` back from the schema's object API, compactly and with aligned data.

Every rewrite of a model (slimming, operator reordering, table compression) reads it into
``schema.ModelT`` (the flatc-generated object API), edits the objects and writes them with
:func:`pack`. The generated ``Pack`` methods are used as they are, with two changes made in
the builder:

- each buffer's data is written 16-byte aligned (the schema's ``force_align: 16`` on
  ``Buffer.data``, which the Python flatbuffers runtime ignores): TFLM and LiteRT read
  weights in place, and SIMD kernels load them with aligned loads;
- numeric vectors with the same type and bytes are written once and referenced from every
  table that holds them (per-channel zero points, identical shapes and scales, operator
  input lists): flatbuffers allows any number of references to one vector, and the
  verifiers of TFLM and LiteRT accept it (``CreateSharedString`` does the same for strings).
"""

from __future__ import annotations

import flatbuffers
import numpy as np

from edgeflow.tflite._schema import schema

__all__ = ["unpack", "pack", "DATA_ALIGNMENT"]

#: Alignment of every buffer's data in the written file (``force_align: 16`` in schema.fbs).
DATA_ALIGNMENT = 16
_IDENTIFIER = b"TFL3"


def unpack(data: bytes) -> schema.ModelT:
    """The model as mutable schema objects (``schema.ModelT``); ``data`` must have been checked
    with :func:`edgeflow.tflite.read_bytes`.

    Buffers stored after the flatbuffer (models over 2 GB: ``offset``/``size``) are read in,
    so that :func:`pack` writes every buffer inline.
    """
    obj = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    for buf in obj.buffers or []:
        if buf.offset and buf.offset > 1:
            buf.data = np.frombuffer(data[buf.offset : buf.offset + buf.size], np.uint8)
        buf.offset, buf.size = 0, 0
    return obj


class _Builder(flatbuffers.Builder):
    """A builder that writes identical numeric vectors once and buffer data aligned."""

    def __init__(self, size: int):
        super().__init__(size)
        self._vectors: dict[tuple[str, bytes], int] = {}

    def CreateNumpyVector(self, x):  # noqa: N802 (flatbuffers' name)
        key = (x.dtype.str, x.tobytes())
        offset = self._vectors.get(key)
        if offset is None:
            offset = self._vectors[key] = super().CreateNumpyVector(x)
        return offset

    def aligned_bytes(self, payload: bytes) -> int:
        """A ``[ubyte]`` vector whose first byte sits at a multiple of ``DATA_ALIGNMENT``."""
        self.StartVector(1, len(payload), DATA_ALIGNMENT)
        self.head -= len(payload)
        self.Bytes[self.head : self.head + len(payload)] = payload
        return self.EndVector()


class _AlignedBufferT(schema.BufferT):
    def Pack(self, builder):  # noqa: N802 (the generated API's name)
        data = None
        if self.data is not None and len(self.data):
            data = builder.aligned_bytes(np.asarray(self.data, np.uint8).tobytes())
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


def pack(obj: schema.ModelT) -> bytes:
    """Serialise ``obj`` to ``.tflite`` bytes (identifier ``TFL3``).

    Buffer data is 16-byte aligned from the start of the file and identical numeric vectors
    are shared (module docstring). ``obj`` is not modified.

    Example:
        >>> obj = unpack(read_bytes("model.tflite"))
        >>> obj.description = None
        >>> data = pack(obj)
    """
    buffers = obj.buffers
    try:
        obj.buffers = [_aligned(b) for b in buffers or []]
        size = sum(len(b.data) for b in obj.buffers if b.data is not None)
        builder = _Builder(size + 4096)
        builder.Finish(obj.Pack(builder), file_identifier=_IDENTIFIER)
    finally:
        obj.buffers = buffers
    return bytes(builder.Output())


def _aligned(buf: schema.BufferT) -> _AlignedBufferT:
    out = _AlignedBufferT()
    out.data = buf.data
    return out
