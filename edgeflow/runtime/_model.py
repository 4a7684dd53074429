"""Model bytes for the runtimes: read, validate and summarise a ``.tflite`` without TensorFlow.

The parent process checks the flatbuffer here before any native runtime sees it, so bad
input (a missing file, an empty or truncated file, random bytes) is a one-line
EdgeflowError and never reaches C++ code. It reads the flatbuffer through the official
schema classes that ship with ``tflite-micro`` (no hand-rolled byte offsets, and no
TensorFlow import: the TFLM child process starts in a fraction of a second).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeflow.errors import EdgeflowError


@dataclass(frozen=True)
class SoftmaxInfo:
    """A SOFTMAX operator of subgraph 0: its index, beta, and input/output quantization."""

    op_index: int
    beta: float
    input_type: str
    input_scale: float | None
    output_scale: float | None
    output_zero_point: int | None


def schema():
    """The flatbuffer schema module that ships with tflite-micro."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


def read_model(model) -> bytes:
    """Return validated ``.tflite`` bytes from bytes or a file path.

    Raises:
        EdgeflowError: the file is missing, or the bytes are not a complete TFLite
            flatbuffer (empty, truncated, random).

    Example:
        >>> data = read_model("model.tflite")
    """
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise EdgeflowError(f"model file {str(path)!r} does not exist")
        data = path.read_bytes()
        where = str(path)
    elif isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        where = "the given bytes"
    else:
        raise EdgeflowError(
            f"expected .tflite bytes or a file path, got {type(model).__name__}: "
            "convert the Keras model first (edgeflow.convert)"
        )
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise EdgeflowError(
            f"not a TFLite model: {where} ({len(data)} bytes) lack the 'TFL3' flatbuffer "
            "identifier; pass a .tflite file written by the TFLite converter"
        )
    try:
        _walk(data)
    except EdgeflowError:
        raise
    except Exception as err:
        raise EdgeflowError(
            f"truncated or corrupt TFLite flatbuffer: {where} ({len(data)} bytes) cannot "
            "be read; export the model again"
        ) from err
    return data


def _walk(data: bytes) -> None:
    """Touch every table the runtimes read, so truncation shows up as an exception here."""
    s = schema()
    m = s.Model.GetRootAsModel(data, 0)
    if m.SubgraphsLength() < 1:
        raise EdgeflowError("the TFLite model has no subgraph: export the model again")
    for i in range(m.OperatorCodesLength()):
        m.OperatorCodes(i).BuiltinCode()
    for i in range(m.BuffersLength()):
        buf = m.Buffers(i)
        n = buf.DataLength()
        if n:
            end = buf._tab.Vector(buf._tab.Offset(4)) + n
            if end > len(data):
                raise ValueError("buffer beyond the end of the file")
    for g in range(m.SubgraphsLength()):
        sub = m.Subgraphs(g)
        for i in range(sub.TensorsLength()):
            t = sub.Tensors(i)
            t.ShapeAsNumpy()
            t.Type()
        for i in range(sub.OperatorsLength()):
            op = sub.Operators(i)
            op.OpcodeIndex()
            op.InputsAsNumpy()
            op.OutputsAsNumpy()


def _type_name(code: int) -> str:
    names = {v: k for k, v in vars(schema().TensorType).items() if not k.startswith("_")}
    return names.get(code, str(code)).lower()


def io_signature(data: bytes) -> tuple[list[tuple], list[tuple]]:
    """``(inputs, outputs)`` of subgraph 0, each a list of ``(name, shape, type)``."""
    s = schema()
    sub = s.Model.GetRootAsModel(data, 0).Subgraphs(0)

    def describe(index: int) -> tuple:
        t = sub.Tensors(index)
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        return (t.Name().decode("utf-8", "replace"), shape, _type_name(t.Type()))

    inputs = [describe(int(i)) for i in sub.InputsAsNumpy()]
    outputs = [describe(int(i)) for i in sub.OutputsAsNumpy()]
    return inputs, outputs


def softmax_ops(data: bytes) -> list[SoftmaxInfo]:
    """Every SOFTMAX operator of subgraph 0 with its quantization parameters."""
    s = schema()
    m = s.Model.GetRootAsModel(data, 0)
    sub = m.Subgraphs(0)
    found = []
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        code = m.OperatorCodes(op.OpcodeIndex())
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) != s.BuiltinOperator.SOFTMAX:
            continue
        beta = 1.0
        table = op.BuiltinOptions()
        if table is not None and op.BuiltinOptionsType() == s.BuiltinOptions.SoftmaxOptions:
            options = s.SoftmaxOptions()
            options.Init(table.Bytes, table.Pos)
            beta = float(options.Beta())
        t_in = sub.Tensors(int(op.Inputs(0)))
        t_out = sub.Tensors(int(op.Outputs(0)))
        found.append(
            SoftmaxInfo(
                op_index=i,
                beta=beta,
                input_type=_type_name(t_in.Type()),
                input_scale=_scale(t_in),
                output_scale=_scale(t_out),
                output_zero_point=_zero_point(t_out),
            )
        )
    return found


def _scale(tensor) -> float | None:
    q = tensor.Quantization()
    if q is None or q.ScaleLength() == 0:
        return None
    return float(np.float32(q.Scale(0)))


def _zero_point(tensor) -> int | None:
    q = tensor.Quantization()
    if q is None or q.ZeroPointLength() == 0:
        return None
    return int(q.ZeroPoint(0))


def input_arrays(x, shapes: list[tuple]) -> list[np.ndarray]:
    """``x`` (one array, or a list for several inputs) as float32 arrays with a batch axis.

    ``shapes`` are the model's input shapes with the batch axis first (``None`` or -1 for
    a free size). A single sample without the batch axis gets one. Raises an EdgeflowError
    naming both shapes when a sample does not fit.
    """
    from edgeflow.data import check_shape

    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(xs) != len(shapes):
        raise EdgeflowError(f"the model has {len(shapes)} inputs but {len(xs)} arrays were given")
    arrays = []
    for xi, shape in zip(xs, shapes, strict=True):
        want = tuple(None if d is None or d < 0 else int(d) for d in shape[1:])
        xi = np.asarray(xi, dtype=np.float32)
        if xi.ndim == len(want):
            xi = xi[None]
        check_shape(xi.shape[1:], want)
        arrays.append(xi)
    if len({len(a) for a in arrays}) != 1 or len(arrays[0]) == 0:
        raise EdgeflowError("the inputs must hold the same, non-zero number of samples")
    return arrays
