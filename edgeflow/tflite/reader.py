"""Reading a ``.tflite`` flatbuffer with the official schema classes.

Nothing here reads byte offsets by hand: every field comes from the flatc-generated
accessors of ``schema_py_generated`` (see :mod:`edgeflow.tflite._schema`).
"""

from __future__ import annotations

import functools
import math
import os
import re
import struct
from collections import Counter
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

import numpy as np

from edgeflow.errors import EdgeflowError
from edgeflow.tflite._schema import DTYPE_BITS, DTYPE_NAMES, FLOAT_DTYPES, OP_NAMES, schema
from edgeflow.tflite.macs import op_macs

__all__ = ["TensorInfo", "OpInfo", "ModelInfo", "read_bytes", "parse"]

_IDENTIFIER = b"TFL3"
_CONVERSION_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})


@dataclass
class TensorInfo:
    """One tensor of a subgraph.

    ``nbytes`` is ``ceil(prod(shape) * bits(dtype) / 8)`` (a scalar has one element);
    ``is_constant`` means the tensor's data is stored in the model (weights, biases).
    """

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    is_constant: bool
    scale: list[float] = field(default_factory=list)
    zero_point: list[int] = field(default_factory=list)
    is_variable: bool = False
    quantized_dimension: int = 0
    buffer: int = 0
    #: the shape with -1 for each dimension left free at conversion (``shape`` when the
    #: model stores no signature).
    shape_signature: tuple[int, ...] = ()
    #: the converter stored the data in a compressed sparse format (``Sparsity`` metadata).
    sparse_encoded: bool = False

    @property
    def elements(self) -> int:
        """Number of elements (1 for a scalar; unknown dimensions count 1)."""
        return math.prod(max(d, 1) for d in self.shape)


@dataclass
class OpInfo:
    """One operator of a subgraph (``subgraph`` 0 is the main one), in execution order.

    ``dtype`` is the type the operator computes in: the type of its first non-constant
    input (its first input, or output, when it has none). A hybrid op (float input, int8
    weights) therefore computes in ``float32``. ``options`` are its builtin options with
    the schema's field names (``{"beta": 1.0}`` for SOFTMAX, ``{"padding": 0,
    "stride_w": 1, ..., "fused_activation_function": 1}`` for CONV_2D; enums as their
    integer values); empty for custom operators and those without options.
    """

    index: int
    name: str
    version: int
    is_custom: bool
    inputs: list[int]
    outputs: list[int]
    macs: int
    dtype: str
    options: dict = field(default_factory=dict)
    subgraph: int = 0


@dataclass
class ModelInfo:
    """What a ``.tflite`` holds: operators, tensors, weights and MACs of the main subgraph."""

    size_bytes: int
    ops: list[OpInfo]
    tensors: list[TensorInfo]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    weights_bytes: int
    total_macs: int
    subgraphs: int
    schema_version: int
    description: str
    #: tensors and operators of every subgraph (index 0 is the main one): the runtime
    #: allocates bookkeeping for all of them.
    subgraph_tensor_counts: list[int] = field(default_factory=list)
    subgraph_op_counts: list[int] = field(default_factory=list)
    #: operators of the other subgraphs (the bodies of WHILE, IF, CALL_ONCE), in order:
    #: a runtime must have kernels for them too.
    subgraph_ops: list[OpInfo] = field(default_factory=list)

    def ops_used(self) -> list[str]:
        """Names of the operators of every subgraph, each once, in first-use order (main
        subgraph first): what an op resolver must register."""
        return list(dict.fromkeys(op.name for op in (*self.ops, *self.subgraph_ops)))

    def op_names(self) -> set[str]:
        """Names of the operators used in any subgraph (``{"CONV_2D", "SOFTMAX", ...}``)."""
        return set(self.ops_used())

    def op_versions(self) -> dict[str, int]:
        """The highest version of each operator used in any subgraph (a runtime must
        support that one)."""
        versions: dict[str, int] = {}
        for op in (*self.ops, *self.subgraph_ops):
            versions[op.name] = max(versions.get(op.name, 0), op.version)
        return versions

    def op_counts(self) -> dict[str, int]:
        """How many times each operator occurs."""
        return dict(Counter(op.name for op in self.ops))

    def float_ops(self) -> list[OpInfo]:
        """Operators that compute in floating point (float32/float16/...).

        ``QUANTIZE`` and ``DEQUANTIZE`` only convert at the edges and are never counted;
        an operator fed by a ``DEQUANTIZE`` computes in float and is counted.
        """
        return [op for op in self.ops if op.name not in _CONVERSION_OPS and op.dtype in FLOAT_DTYPES]

    def op_table(self) -> list[dict]:
        """One row per operator of the main subgraph, in execution order: ``index``, ``op``,
        ``version``, ``dtype``, ``output_shape`` (``"1x26x26x8"``, outputs joined by ``", "``),
        ``macs``, ``weight_bytes`` (constant inputs it reads) and ``activation_bytes`` (outputs
        it writes)."""
        rows = []
        for op in self.ops:
            ins = [self.tensors[i] for i in op.inputs if 0 <= i < len(self.tensors)]
            outs = [self.tensors[i] for i in op.outputs if 0 <= i < len(self.tensors)]
            rows.append({"index": op.index, "op": op.name, "version": op.version, "dtype": op.dtype,
                         "output_shape": ", ".join("x".join(map(str, t.shape)) or "scalar" for t in outs),
                         "macs": op.macs, "weight_bytes": sum(t.nbytes for t in ins if t.is_constant),
                         "activation_bytes": sum(t.nbytes for t in outs if not t.is_constant)})
        return rows

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of every field, plus op counts and versions.

        Built field by field (``dataclasses.asdict`` deep-copies every value: minutes for a
        20,000-tensor model); equal to ``asdict``'s result.
        """
        data = _record(self)
        data["op_counts"] = self.op_counts()
        data["op_versions"] = self.op_versions()
        data["float_ops"] = [op.index for op in self.float_ops()]
        return data


def _record(obj) -> dict:
    """A dataclass as a dict, its sequences copied and its dataclasses as dicts (``asdict``'s shape)."""
    out = {}
    for name in _field_names(type(obj)):
        value = getattr(obj, name)
        if isinstance(value, (list, tuple)):
            value = type(value)(_record(v) if is_dataclass(v) else type(v)(v) if isinstance(v, (list, tuple))
                                else v for v in value)
        elif isinstance(value, dict):
            value = dict(value)
        out[name] = value
    return out


@functools.cache
def _field_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def read_bytes(model: bytes | bytearray | memoryview | str | os.PathLike) -> bytes:
    """The bytes of a ``.tflite`` (a file path, or bytes already in memory), checked to be
    a complete TFLite flatbuffer.

    This is the one check every reader and runtime of edgeflow applies before it uses a
    model (no native runtime ever sees bytes that fail it). Raises an EdgeflowError (one
    line) for a missing file, a directory, an empty file, a file without the ``TFL3``
    identifier, a truncated/corrupt flatbuffer, or anything that is neither bytes nor a path.

    Example:
        >>> data = read_bytes("model.tflite")
    """
    return _load(model)[0]


def load(model: bytes | bytearray | memoryview | str | os.PathLike) -> tuple[bytes, ModelInfo]:
    """``(read_bytes(model), parse(model))`` with one read and one walk of the flatbuffer.

    Example:
        >>> data, info = load("model.tflite")
    """
    return _load(model)


def parse(model: bytes | bytearray | str | os.PathLike) -> ModelInfo:
    """Read a ``.tflite`` (bytes or path) into a :class:`ModelInfo`.

    MACs per operator follow :mod:`edgeflow.tflite.macs`. Raises EdgeflowError for
    anything that is not a complete TFLite flatbuffer.

    Example:
        >>> info = parse("model.tflite")
        >>> info.op_versions()
        {'CONV_2D': 3, 'SOFTMAX': 2}
    """
    return _load(model)[1]


def _load(model) -> tuple[bytes, ModelInfo]:
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        return data, _walk(data, "the model bytes")
    if not isinstance(model, (str, os.PathLike)):
        raise EdgeflowError(
            f"expected .tflite bytes or a file path, got {type(model).__name__}: "
            "convert the Keras model first (edgeflow.convert)"
        )
    path = Path(model)
    if not path.exists():
        raise EdgeflowError(f"model file {str(path)!r} does not exist")
    if path.is_dir():
        raise EdgeflowError(f"{str(path)!r} is a directory, not a .tflite file")
    data = path.read_bytes()
    return data, _walk(data, str(path))


def _walk(data: bytes, what: str) -> ModelInfo:
    if not data:
        raise EdgeflowError(f"{what} is empty: pass a .tflite file written by the TFLite converter")
    if len(data) < 8 or data[4:8] != _IDENTIFIER:
        raise EdgeflowError(
            f"{what} is not a TFLite flatbuffer (no 'TFL3' identifier): pass a .tflite model"
        )
    try:
        return _read(data)
    except EdgeflowError as err:
        raise EdgeflowError(f"{what} is truncated or corrupt ({err}): convert the model again") from err
    except (IndexError, struct.error, ValueError, TypeError, OverflowError, UnicodeDecodeError,
            MemoryError, RecursionError) as err:
        # flatbuffers reads past the end as struct.error / numpy ValueError
        detail = f"a flatbuffer offset runs past the end of its {len(data):,} bytes"
        if not isinstance(err, (struct.error, IndexError, ValueError)):
            detail = type(err).__name__
        raise EdgeflowError(
            f"{what} is truncated or corrupt ({detail}): convert the model again"
        ) from err


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _ints(getter_numpy, length: int) -> list[int]:
    if length == 0:
        return []
    return [int(v) for v in getter_numpy()]


def _buffer_sizes(model, size: int) -> list[int]:
    """Bytes of data in each model buffer (inline, or outside the flatbuffer via offset/size)."""
    sizes = []
    for b in range(model.BuffersLength()):
        buf = model.Buffers(b)
        if buf is None:
            sizes.append(0)
            continue
        inline = buf.DataAsNumpy()  # np.frombuffer: raises if the vector runs past the end
        n = 0 if isinstance(inline, int) else int(inline.size)
        offset, length = int(buf.Offset()), int(buf.Size())
        if offset > 1:  # large models (>2 GB) keep buffers after the flatbuffer
            if offset + length > size:
                raise EdgeflowError(f"buffer {b} runs past the end of the file")
            n = length
        sizes.append(n)
    return sizes


def _tensor(t, index: int, buffer_sizes: list[int]) -> TensorInfo:
    dtype = DTYPE_NAMES.get(t.Type(), f"type{t.Type()}")
    shape = tuple(_ints(t.ShapeAsNumpy, t.ShapeLength()))
    if any(d < -1 for d in shape):
        raise EdgeflowError(f"tensor {index} has shape {shape}")
    elements = math.prod(max(d, 1) for d in shape)
    nbytes = (elements * DTYPE_BITS.get(dtype, 0) + 7) // 8
    buffer = t.Buffer()
    if buffer >= len(buffer_sizes):
        raise EdgeflowError(f"tensor {index} names buffer {buffer} of {len(buffer_sizes)}")
    scale: list[float] = []
    zero_point: list[int] = []
    qdim = 0
    q = t.Quantization()
    if q is not None:
        if q.ScaleLength():
            scale = [float(s) for s in q.ScaleAsNumpy()]
        if q.ZeroPointLength():
            zero_point = [int(z) for z in q.ZeroPointAsNumpy()]
        qdim = int(q.QuantizedDimension())
    signature = tuple(_ints(t.ShapeSignatureAsNumpy, t.ShapeSignatureLength())) or shape
    return TensorInfo(
        index=index,
        name=_text(t.Name()),
        shape=shape,
        dtype=dtype,
        nbytes=nbytes,
        is_constant=buffer_sizes[buffer] > 0,
        scale=scale,
        zero_point=zero_point,
        is_variable=bool(t.IsVariable()),
        quantized_dimension=qdim,
        buffer=buffer,
        shape_signature=signature,
        sparse_encoded=t.Sparsity() is not None,
    )


NUMPY_TYPES = {
    "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32,
    "int64": np.int64, "float16": np.float16, "float32": np.float32,
}


def constant_values(model, tensor: TensorInfo) -> np.ndarray | None:
    """The data stored for a constant tensor, flat, in its own dtype.

    Reads buffers inside the flatbuffer and after it (offset/size, for models over 2 GB).
    A sparse-encoded tensor gives its stored (compressed) values. None when the tensor
    holds no data or its type has no NumPy equivalent.

    Example:
        >>> info = parse(tflite)
        >>> constant_values(tflite, info.tensors[3]).reshape(info.tensors[3].shape)
    """
    dtype = NUMPY_TYPES.get(tensor.dtype)
    if dtype is None or not tensor.is_constant:
        return None
    # ``tensor`` came from parse(), which checked the bytes: don't walk them again.
    data = model if isinstance(model, (bytes, bytearray)) else read_bytes(model)
    buf = schema.Model.GetRootAs(data, 0).Buffers(tensor.buffer)
    offset, size = int(buf.Offset()), int(buf.Size())
    if offset > 1:
        raw = data[offset : offset + size]
    else:
        inline = buf.DataAsNumpy()
        raw = b"" if isinstance(inline, int) else inline.tobytes()
    return np.frombuffer(raw, dtype) if raw else None


def _opcodes(model) -> list[tuple[str, int, bool]]:
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        # Schema v3a: the code lives in builtin_code (int32) for new operators and in the
        # deprecated int8 field for old ones; the real code is the larger of the two.
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        if code == schema.BuiltinOperator.CUSTOM:
            codes.append((_text(oc.CustomCode()) or "CUSTOM", int(oc.Version()), True))
        else:
            codes.append((OP_NAMES.get(code, f"BUILTIN_{code}"), int(oc.Version()), False))
    return codes


def _options(op) -> dict:
    """The operator's builtin options as ``{snake_case field: plain value}`` ({} if none)."""
    obj = schema.BuiltinOptionsCreator(op.BuiltinOptionsType(), op.BuiltinOptions())
    return {} if obj is None else _plain(obj)


_SNAKE = re.compile(r"([A-Z])")  # the object API camel-cases the schema's snake_case fields


def _plain(value):
    """JSON-ready Python values for what the schema's object API returns (tables as dicts)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "__dict__"):
        return {_snake(k): _plain(v) for k, v in vars(value).items()}
    return value


@functools.cache
def _snake(name: str) -> str:
    return _SNAKE.sub(r"_\1", name).lower()


def _read(data: bytes) -> ModelInfo:
    model = schema.Model.GetRootAs(data, 0)
    buffer_sizes = _buffer_sizes(model, len(data))
    opcodes = _opcodes(model)
    n_sub = model.SubgraphsLength()
    if n_sub == 0:
        raise EdgeflowError("the model has no subgraph")

    tensor_counts, op_counts = [], []
    others: list[OpInfo] = []
    const_buffers: set[int] = set()
    main = None
    for s in range(n_sub):
        sg = model.Subgraphs(s)
        tensors = [_tensor(sg.Tensors(i), i, buffer_sizes) for i in range(sg.TensorsLength())]
        const_buffers.update(t.buffer for t in tensors if t.is_constant)
        ops = []
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            if op.OpcodeIndex() >= len(opcodes):
                raise EdgeflowError(f"operator {i} names opcode {op.OpcodeIndex()} of {len(opcodes)}")
            name, version, is_custom = opcodes[op.OpcodeIndex()]
            inputs = _ints(op.InputsAsNumpy, op.InputsLength())
            outputs = _ints(op.OutputsAsNumpy, op.OutputsLength())
            for t in inputs + outputs:
                if not -1 <= t < len(tensors):
                    raise EdgeflowError(f"operator {i} names tensor {t} of {len(tensors)}")
            options = {} if is_custom else _options(op)
            ops.append((i, name, version, is_custom, inputs, outputs, options))
        io = [
            _ints(sg.InputsAsNumpy, sg.InputsLength()),
            _ints(sg.OutputsAsNumpy, sg.OutputsLength()),
        ]
        for t in io[0] + io[1]:
            if not 0 <= t < len(tensors):
                raise EdgeflowError(f"subgraph {s} input/output names tensor {t}")
        tensor_counts.append(len(tensors))
        op_counts.append(len(ops))
        if s == 0:
            main = (tensors, ops, io)
        else:
            others.extend(_op_infos(tensors, ops, s))

    tensors, raw_ops, (inputs, outputs) = main
    ops = _op_infos(tensors, raw_ops, 0)
    return ModelInfo(
        size_bytes=len(data),
        ops=ops,
        tensors=tensors,
        inputs=[tensors[t] for t in inputs],
        outputs=[tensors[t] for t in outputs],
        weights_bytes=sum(buffer_sizes[b] for b in const_buffers),
        total_macs=sum(op.macs for op in ops),
        subgraphs=n_sub,
        schema_version=int(model.Version()),
        description=_text(model.Description()),
        subgraph_tensor_counts=tensor_counts,
        subgraph_op_counts=op_counts,
        subgraph_ops=others,
    )


def _op_infos(tensors: list[TensorInfo], raw_ops: list[tuple], subgraph: int) -> list[OpInfo]:
    ops = []
    for i, name, version, is_custom, ins, outs, options in raw_ops:
        in_shapes = [tensors[t].shape if t >= 0 else None for t in ins]
        out_shapes = [tensors[t].shape for t in outs]
        adj_x = name == "BATCH_MATMUL" and bool(options.get("adj_x", False))
        ops.append(
            OpInfo(
                index=i, name=name, version=version, is_custom=is_custom,
                inputs=ins, outputs=outs,
                macs=0 if is_custom else op_macs(name, in_shapes, out_shapes, adj_x=adj_x),
                dtype=_compute_dtype(tensors, ins, outs),
                options=options, subgraph=subgraph,
            )
        )
    return ops


def _compute_dtype(tensors: list[TensorInfo], ins: list[int], outs: list[int]) -> str:
    present = [tensors[t] for t in ins if t >= 0]
    for t in present:
        if not t.is_constant:
            return t.dtype
    if present:
        return present[0].dtype
    return tensors[outs[0]].dtype if outs else "unknown"
