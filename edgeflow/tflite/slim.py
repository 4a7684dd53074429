"""Slim ``.tflite`` files: only what TFLM and LiteRT read, each weight stored once.

The TFLite converter writes, beside the graph and the weights, data no runtime reads on a
microcontroller: tensor and subgraph names (often hundreds of characters each), signature
defs, metadata (``min_runtime_version``, ``CONVERSION_METADATA``), a description, shape
signatures equal to the shapes, and empty quantization tables. :func:`slim` removes them,
drops buffers and operator codes nothing refers to, stores byte-identical buffers once, and
writes numeric vectors that are equal (per-channel zero points, shapes) once
(:mod:`edgeflow.tflite.writer`). Weights stay 16-byte aligned. Kept: everything a kernel
or the allocator reads, and the ``OfflineMemoryAllocation`` metadata (TFLM's offline
memory plan) when present.

The slim file computes bit-identical outputs on LiteRT and TFLM (tests/test_tflite_slim.py);
only what names tensors is gone (``inspect`` then names them by index). What is left
beyond the weights is mostly quantization parameters: one float scale per output channel
of every convolution, which TFLM needs (DS-CNN: 9 % of its slim file).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from edgeflow.tflite._schema import OP_NAMES, schema
from edgeflow.tflite.reader import load
from edgeflow.tflite.writer import pack, unpack

__all__ = ["SlimResult", "slim", "flash_overhead", "litert_twin"]

#: metadata entries a runtime reads (TFLM: offline arena plan); all others are dropped.
KEPT_METADATA = frozenset({"OfflineMemoryAllocation"})


@dataclass
class SlimResult:
    """What :func:`slim` did, in bytes of the ``.tflite`` file.

    ``weights_bytes`` is the data of every constant tensor (each buffer once);
    ``overhead_bytes = size - weights``: the graph, quantization parameters and flatbuffer
    tables around the weights.
    """

    size_before: int
    size_after: int
    weights_bytes: int
    buffers_merged: int
    buffers_dropped: int
    opcodes_dropped: int
    names_kept: bool
    bias_scales_dropped: int = 0
    zero_points_shortened: int = 0

    @property
    def overhead_bytes(self) -> int:
        return self.size_after - self.weights_bytes

    @property
    def overhead_percent(self) -> float:
        return 100.0 * self.overhead_bytes / self.size_after if self.size_after else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["overhead_bytes"] = self.overhead_bytes
        data["overhead_percent"] = round(self.overhead_percent, 2)
        return data


def flash_overhead(model) -> tuple[int, int, float]:
    """``(file bytes, weight and bias bytes, overhead %)`` of a ``.tflite``.

    Overhead ``= (file bytes - weight/bias bytes) / file bytes · 100``: what a model costs
    in flash beyond its constant tensors (the figure of issue 11).

    Example:
        >>> flash_overhead("model.tflite")
        (24576, 23808, 3.1)
    """
    _, info = load(model)
    size = info.size_bytes
    return size, info.weights_bytes, 100.0 * (size - info.weights_bytes) / size if size else 0.0


def slim(
    model: bytes | str | os.PathLike, *, keep_names: bool = False, for_tflm: bool = False,
    tflm_only: bool = False,
) -> tuple[bytes, SlimResult]:
    """Rewrite a ``.tflite`` with only what runtimes read; weights 16-byte aligned, once each.

    Args:
        model: ``.tflite`` bytes or a path.
        keep_names: keep tensor and subgraph names, signature defs and the description
            (for debugging); unused buffers and operator codes are still dropped and equal
            buffers merged.
        for_tflm: the file is meant for TFLM (microcontrollers): also drop the scales of
            int32 biases of int8 CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and
            TRANSPOSE_CONV, which TFLM's kernels recompute and never read (half of the
            per-channel parameters). LiteRT still loads the file and its builtin kernels
            compute the same; its XNNPACK delegate checks these scales and leaves such
            operators to the builtin kernels, whose int8 rounding can differ from
            XNNPACK's by one step.
        tflm_only: the bytes go to TFLM and nothing else (a C array, ``deploy mcu``, a
            firmware image); implies ``for_tflm``. Also store each per-channel zero-point
            vector whose values are all equal (weights: all 0) as that one value: TFLM's
            allocator repeats element 0 for every channel ("As a space-saving
            optimization, zero point arrays for weights can be reduced to a single
            value", tensorflow/lite/micro/micro_allocator.cc), whereas LiteRT refuses the
            file ("QuantizationParam has 1 zero_point values and 64 scale values. Must
            have same number.", tensorflow/lite/core/interpreter_builder.cc). Saves 8
            bytes per channel of each distinct channel count (int64 zero points).
            :func:`litert_twin` gives back a file LiteRT loads.

    Returns:
        ``(bytes, SlimResult)``. The input is not modified.

    Raises:
        EdgeflowError: the input is not a complete TFLite flatbuffer.

    Example:
        >>> data, result = slim(convert(model, "int8", x[:200]))
        >>> result.overhead_percent
        2.7
    """
    data, info = load(model)
    obj = unpack(data)
    merged = _dedupe_buffers(obj)
    _share_empty_buffer(obj)
    dropped = _drop_unused_buffers(obj)
    opcodes = _drop_unused_opcodes(obj)
    obj.metadata = [m for m in obj.metadata or [] if _text(m.name) in KEPT_METADATA] or None
    if not keep_names:
        _strip_names(obj)
    bias = _drop_bias_quantization(obj) if for_tflm or tflm_only else 0
    zero_points = _single_zero_points(obj) if tflm_only else 0
    out = pack(obj)
    _, after = load(out)
    return out, SlimResult(
        size_before=len(data),
        size_after=len(out),
        weights_bytes=after.weights_bytes,
        buffers_merged=merged,
        buffers_dropped=dropped,
        opcodes_dropped=opcodes,
        names_kept=keep_names,
        bias_scales_dropped=bias,
        zero_points_shortened=zero_points,
    )


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _tensors(obj):
    for graph in obj.subgraphs or []:
        yield from graph.tensors or []


def _payload(buf) -> bytes:
    return b"" if buf.data is None else np.asarray(buf.data, np.uint8).tobytes()


def _dedupe_buffers(obj) -> int:
    """Point every tensor at the first buffer with its bytes; the number of buffers merged."""
    first: dict[bytes, int] = {}
    remap: dict[int, int] = {}
    for i, buf in enumerate(obj.buffers or []):
        payload = _payload(buf)
        if payload:
            remap[i] = first.setdefault(payload, i)
    for t in _tensors(obj):
        t.buffer = remap.get(t.buffer, t.buffer)
    return sum(1 for i, j in remap.items() if i != j)


def _share_empty_buffer(obj) -> None:
    """Tensors without data (activations) all name buffer 0, the schema's empty sentinel."""
    buffers = obj.buffers or []
    for t in _tensors(obj):
        if t.buffer < len(buffers) and not _payload(buffers[t.buffer]):
            t.buffer = 0


def _drop_unused_buffers(obj) -> int:
    """Keep buffer 0 (the empty sentinel) and the buffers tensors or kept metadata refer to."""
    buffers = obj.buffers or []
    used = {0} | {t.buffer for t in _tensors(obj)}
    kept_meta = [m for m in obj.metadata or [] if _text(m.name) in KEPT_METADATA]
    used |= {m.buffer for m in kept_meta}
    order = sorted(used)
    new_index = {old: new for new, old in enumerate(order)}
    obj.buffers = [buffers[i] for i in order]
    obj.buffers[0] = schema.BufferT()
    for t in _tensors(obj):
        t.buffer = new_index[t.buffer]
    for m in kept_meta:
        m.buffer = new_index[m.buffer]
    return len(buffers) - len(order)


def _drop_unused_opcodes(obj) -> int:
    codes = obj.operatorCodes or []
    used = sorted({op.opcodeIndex for g in obj.subgraphs or [] for op in g.operators or []})
    new_index = {old: new for new, old in enumerate(used)}
    obj.operatorCodes = [codes[i] for i in used]
    for g in obj.subgraphs or []:
        for op in g.operators or []:
            op.opcodeIndex = new_index[op.opcodeIndex]
    return len(codes) - len(used)


def _strip_names(obj) -> None:
    obj.description = None
    obj.signatureDefs = None
    for graph in obj.subgraphs or []:
        graph.name = None
        for t in graph.tensors or []:
            t.name = None
            if t.shapeSignature is not None and np.array_equal(t.shapeSignature, t.shape):
                t.shapeSignature = None
            q = t.quantization
            if q is not None and not _has_quantization(q):
                t.quantization = None


def _has_quantization(q) -> bool:
    return any(
        v is not None and len(v) for v in (q.scale, q.zeroPoint, q.min, q.max)
    ) or q.details is not None


#: Operators whose int32 bias (input 2) only carries the scale input·filter, which TFLM's
#: and LiteRT's int8 kernels recompute and never read from the bias tensor.
_BIASED = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"})


def _drop_bias_quantization(obj) -> int:
    dropped = 0
    for graph in obj.subgraphs or []:
        tensors = graph.tensors or []
        uses: dict[int, set] = {}
        for op in graph.operators or []:
            code = obj.operatorCodes[op.opcodeIndex]
            name = OP_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")
            bias_at = 3 if name == "TRANSPOSE_CONV" else 2
            for pos, t in enumerate(op.inputs if op.inputs is not None else []):
                if t < 0:
                    continue
                ok = (name in _BIASED and pos == bias_at
                      and tensors[op.inputs[0 if name != "TRANSPOSE_CONV" else 2]].type
                      == schema.TensorType.INT8)
                uses.setdefault(int(t), set()).add(ok)
        for t, oks in uses.items():
            tensor = tensors[t]
            stored = tensor.buffer < len(obj.buffers) and _payload(obj.buffers[tensor.buffer])
            if oks == {True} and tensor.type == schema.TensorType.INT32 and tensor.quantization \
                    and stored:  # a decoded (DECODE output) bias keeps its scales: see tflite.lut
                tensor.quantization = None
                dropped += 1
    return dropped


def _single_zero_points(obj) -> int:
    """Per-channel zero-point vectors with one value repeated, stored as that value (TFLM only)."""
    shortened = 0
    for t in _tensors(obj):
        q = t.quantization
        zp = None if q is None or q.zeroPoint is None else np.asarray(q.zeroPoint)
        if zp is not None and len(zp) > 1 and (zp == zp[0]).all():
            q.zeroPoint = zp[:1]
            shortened += 1
    return shortened


def litert_twin(model: bytes | str | os.PathLike) -> bytes:
    """The file LiteRT loads for a ``slim(..., tflm_only=True)`` one: every per-channel
    zero-point vector stored as one value written out once per channel (what TFLM's
    allocator does in memory). Outputs are those of the TFLM-only file; a file that needs
    nothing is returned as it is.

    Example:
        >>> litert.predict(litert_twin(slim(data, tflm_only=True)[0]), x)
    """
    data, info = load(model)
    if info.subgraphs == 1 and not any(len(t.zero_point) == 1 < len(t.scale) for t in info.tensors):
        return data
    obj = unpack(data)
    widened = 0
    for t in _tensors(obj):
        q = t.quantization
        if q is not None and q.scale is not None and q.zeroPoint is not None \
                and len(q.zeroPoint) == 1 < len(q.scale):
            q.zeroPoint = np.repeat(np.asarray(q.zeroPoint), len(q.scale))
            widened += 1
    return pack(obj) if widened else data
