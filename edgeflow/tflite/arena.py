"""The persistent part ("tail") of TFLM's tensor arena, estimated from runtime struct sizes.

TFLM keeps, for the model's whole life, in the tail of the arena (``micro_allocator.cc``,
``micro_interpreter.cc``):

- one ``TfLiteEvalTensor`` per tensor of every subgraph: ``{data*, dims*, type}``,
  ``2P + 4`` rounded up to ``P`` (``P`` = pointer bytes: 8 on the 64-bit host, 4 on
  Cortex-M, Xtensa and RISC-V MCUs);
- one ``NodeAndRegistration`` per operator: the reduced ``TfLiteNode`` (6 pointers and an
  int) plus a registration pointer, ``7P + 4`` rounded up to ``P``;
- a persistent ``TfLiteTensor`` per model input and output (``5P + 17`` rounded up to
  ``P``) with its ``TfLiteAffineQuantization`` (``2P + 4`` rounded up to ``P``) and
  zero-point array (``4 + 4·channels``), plus the two arrays of pointers to them;
- each kernel's op data (``AllocatePersistentBuffer``, every allocation rounded up to
  16 bytes): a per-kernel struct (table below) and, for CONV_2D, DEPTHWISE_CONV_2D,
  TRANSPOSE_CONV and a FULLY_CONNECTED with a per-channel filter, per-channel output
  multipliers and shifts (``2 · align16(4 · Cout)``); an int16 SOFTMAX adds two 513-entry int16 look-up tables;
- the parsed builtin options of each operator (about 32 bytes each);
- variable tensors (e.g. RNN state), ``align16(nbytes)`` each;
- the allocator, planner and interpreter objects themselves (a fixed ~``64.5·P`` bytes).

The struct tables are read from the TFLM sources and calibrated against
``print_allocations()`` of the ``tflite-micro`` package on the 64-bit host (see
tests/test_tflite_tflm.py); the 32-bit figures shrink each pointer field to 4 bytes.
"""

from __future__ import annotations

from edgeflow.tflite.reader import ModelInfo

__all__ = ["persistent_bytes", "OP_DATA"]

#: Kernel op data: (bytes without pointers, number of pointer fields). Calibrated on the
#: host (P=8) against TFLM's "Persistent buffer data"; unknown kernels count (32, 0).
OP_DATA: dict[str, tuple[int, int]] = {
    "CONV_2D": (64, 2),
    "DEPTHWISE_CONV_2D": (64, 2),
    "TRANSPOSE_CONV": (64, 2),
    "FULLY_CONNECTED": (48, 2),
    "ADD": (60, 0),
    "SUB": (60, 0),
    "MUL": (32, 0),
    "MEAN": (44, 0),
    "SUM": (44, 0),
    "AVERAGE_POOL_2D": (40, 0),
    "MAX_POOL_2D": (40, 0),
    "SOFTMAX": (72, 2),
    "LOGISTIC": (32, 0),
    "TANH": (32, 0),
    "HARD_SWISH": (32, 0),
    "QUANTIZE": (32, 0),
    "DEQUANTIZE": (32, 0),
    "RESHAPE": (0, 0),
    "SQUEEZE": (0, 0),
    "EXPAND_DIMS": (0, 0),
    "CONCATENATION": (32, 3),
    "PAD": (32, 0),
}
_DEFAULT_OP_DATA = (32, 0)
#: Kernels that keep a per-channel output multiplier and shift array.
_PER_CHANNEL = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED"})
_BUILTIN_DATA = 32
#: entries of each int16 look-up table the int16 SOFTMAX kernel builds in Prepare
_INT16_SOFTMAX_LUT = 513
_FIXED_PER_POINTER_BYTE = 64.5


def _up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def persistent_bytes(info: ModelInfo, pointer_bytes: int) -> tuple[int, dict[str, int], list[str]]:
    """Estimate TFLM's persistent arena bytes for ``pointer_bytes``-wide pointers.

    Returns ``(total, breakdown, notes)``; the formulas are in the module docstring.

    Example:
        >>> total, parts, notes = persistent_bytes(parse("model.tflite"), 4)
    """
    p = pointer_bytes
    n_tensors = sum(info.subgraph_tensor_counts) or len(info.tensors)
    n_ops = sum(info.subgraph_op_counts) or len(info.ops)
    parts: dict[str, int] = {}
    parts["eval_tensors"] = n_tensors * _up(2 * p + 4, p)
    parts["nodes"] = n_ops * _up(7 * p + 4, p)
    io = info.inputs + info.outputs
    io_bytes = len(io) * _up(5 * p + 17, p)
    for t in io:
        if t.scale:
            io_bytes += _up(2 * p + 4, p) + _up(4 + 4 * len(t.scale), 4)
    io_bytes += _up(p * len(info.inputs), 16) + _up(p * len(info.outputs), 16)
    parts["io_tensors"] = io_bytes
    op_data = 0
    for op in info.ops:
        plain, pointers = OP_DATA.get(op.name, _DEFAULT_OP_DATA)
        size = plain + pointers * p
        if size:
            op_data += _up(size, 16)
        if op.name in _PER_CHANNEL and op.dtype in ("int8", "int16") and _per_channel_arrays(info, op):
            channels = _out_channels(info, op)
            op_data += 2 * _up(4 * channels, 16)
        if op.name == "SOFTMAX" and op.dtype == "int16":
            op_data += 2 * _up(2 * _INT16_SOFTMAX_LUT, 16)  # exp and 1/(1+x) tables
    parts["op_data"] = op_data
    parts["builtin_options"] = n_ops * _BUILTIN_DATA
    parts["variables"] = sum(_up(t.nbytes, 16) for t in info.tensors if t.is_variable)
    parts["runtime_objects"] = int(_FIXED_PER_POINTER_BYTE * p)
    notes = [
        f"persistent bytes estimated from TFLM struct sizes at {8 * p}-bit pointers",
        "kernel op data is calibrated on TFLM's reference kernels; CMSIS-NN/ESP-NN kernels "
        "add scratch buffers not counted here",
    ]
    if info.subgraphs > 1:
        notes.append(
            f"{info.subgraphs - 1} control-flow subgraph(s): their tensors and nodes are "
            "counted, their activations are not planned"
        )
    unknown = sorted({op.name for op in info.ops if op.name not in OP_DATA})
    if unknown:
        notes.append("op data assumed 32 bytes for " + ", ".join(unknown))
    return sum(parts.values()), parts, notes


def _per_channel_arrays(info: ModelInfo, op) -> bool:
    """Whether the kernel allocates the multiplier/shift arrays: CONV_2D, DEPTHWISE_CONV_2D and
    TRANSPOSE_CONV always do; FULLY_CONNECTED only for a per-channel filter (input 1 with more
    than one scale; ``kernels/fully_connected_common.cc``)."""
    if op.name != "FULLY_CONNECTED":
        return True
    return len(op.inputs) > 1 and op.inputs[1] >= 0 and len(info.tensors[op.inputs[1]].scale) > 1


def _out_channels(info: ModelInfo, op) -> int:
    """Output channels: the last axis of the output (NHWC / [batch, units])."""
    if not op.outputs:  # ASSIGN_VARIABLE, CALL_ONCE, or a damaged file
        return 1
    out = info.tensors[op.outputs[0]]
    return max(int(out.shape[-1]), 1) if out.shape else 1
