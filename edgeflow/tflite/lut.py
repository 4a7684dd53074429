"""TFLM table (LUT) compression: weights stored as k-bit indices into value tables.

A constant tensor with at most ``2^k`` distinct values (per tensor, or per output channel)
can be stored as ``k``-bit indices plus the table of values; TFLM's ``DECODE`` operator
(custom code ``TFLM_DECODE``) rebuilds it in the arena right before the operator that
reads it. Weight clustering (:mod:`edgeflow.cluster`) makes weights fit: 16 clusters give
4-bit indices, half the flash of int8. The compression itself is the ``tflite_micro``
package's compressor (``tflite_micro.tensorflow.lite.micro.compression``); edgeflow
chooses the tensors and the table layout and proves each compressed tensor on TFLM.

Table layout must follow the tensor's quantization (found here)
----------------------------------------------------------------
TFLM's decoder (``DecodeStateLut::Setup``, ``kernels/decode_state_lut.cc``) does not read
the table axis the compressor writes into the DECODE metadata (byte 5, bits 7-4): it takes
the number of tables from the decoded tensor's *quantization* (one table per scale, along
``quantized_dimension``, which must be 0 or the last axis). So a per-tensor table on a
per-channel-quantized tensor (every int8 CONV_2D, DEPTHWISE_CONV_2D and, from this
converter, FULLY_CONNECTED weight, and their int32 biases) is decoded as if each channel
had its own table: channel ``c`` reads ``stride·c`` bytes past the one table, and the
outputs change. The reverse (per-channel tables on a per-tensor-quantized tensor) fails
too, and both layouts decode correctly when they match the quantization. Reproduced on
the digits CNN with weights set to 4 values: per-tensor tables on the per-channel CONV_2D
filter change the outputs (max difference 0.0195 on the softmax), per-channel tables keep
them bit-identical; on the same filter re-quantized per tensor it is the other way round.
That is a mismatch between TFLM's compressor (which accepts either layout) and its
decoder, not a fault of the model. edgeflow therefore picks the layout from the tensor's
quantization, and still verifies each compressed tensor by running TFLM.

Verification: TFLM runs the model on the same inputs with and without the compression;
all compressed tensors at once first, and on a difference, bisection over the tensors
(each half with only its own tensors compressed) until every tensor is either proven
bit-identical or left uncompressed.

RAM: each DECODE writes its tensor into the arena, alive from the DECODE (which the
compressor puts right before the operator that reads it) to that operator, so TFLM's
greedy planner grows the arena to the largest live set of one operator with its decoded
tensors, not by their sum (digits CNN: planned part 3,072 -> 16,928 bytes on the host =
the FULLY_CONNECTED's input 512 + output 32 + its decoded weight 16,384; firmware arena
5,620 -> 19,076 bytes on a Cortex-M4). ``compress_tables(max_arena=...)`` keeps the arena
within a limit by leaving the largest decoded tensors uncompressed (greedy, by TFLM's
measured arena on this host).
Flash: TFLM's DECODE kernel (``AddDecode()``) links about 20 KB (its LUT decoder for every
output type, and the Huffman and prune decoders): more than the tables save on the digits
CNN. The firmware and ``deploy mcu`` projects therefore register edgeflow's own kernel for
lookup tables (``edgeflow/_data/firmware/edgeflow_decode.cc``, about 2.3 KB): the digits
firmware then shrinks 143,280 -> 136,728 bytes with 16 clusters and -> 130,776 with 4
(156,152 and 150,200 with TFLM's kernel); decoding costs about 5.1 (4-bit indices) and
4.2 (2-bit) instructions per weight at each Invoke, whole packed bytes at a time (12 one
index at a time; TFLM's: about 3.5), Invoke +10 % and +8 % over int8 (TFLM's kernel: +7 %). Figures: ``bench/bench_size.py --only clustering
--firmware`` (Cortex-M4 under QEMU).
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from edgeflow.errors import EdgeflowError, RuntimeCrash
from edgeflow.tflite.reader import ModelInfo, TensorInfo, constant_values, load

__all__ = ["TableChoice", "LutResult", "table_candidates", "compress_tables", "DECODE_OP"]

#: the custom operator code of TFLM's DECODE
DECODE_OP = "TFLM_DECODE"
MAX_BITS = 7  # the DECODE metadata holds 1-7 bits per index
#: operators whose weight (input 1) and bias (input 2; 3 for TRANSPOSE_CONV) are compressed
_WEIGHT_INPUTS = {
    "CONV_2D": (1, 2), "DEPTHWISE_CONV_2D": (1, 2), "FULLY_CONNECTED": (1, 2),
    "TRANSPOSE_CONV": (1, 3),
}
_DECODE_DTYPES = {"int8", "int16", "int32", "int64", "float32", "bool"}
_DCM_BYTES = 16


@dataclass
class TableChoice:
    """How one tensor is (or would be) stored as tables; sizes in bytes of its data."""

    tensor: int
    shape: tuple[int, ...]
    dtype: str
    per_channel: bool
    axis: int | None
    bits: int
    values: int  # distinct values (per channel: the most in any channel)
    bytes_before: int
    bytes_after: int
    readers: list[str] = field(default_factory=list)  # "CONV_2D#3 input 1"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LutResult:
    """What :func:`compress_tables` did: sizes of the whole file in bytes."""

    size_before: int
    size_after: int
    compressed: list[TableChoice]
    left: list[dict]  # {"tensor", "reason"}
    verified: str  # how the outputs were compared

    def to_dict(self) -> dict:
        return {
            "size_before": self.size_before,
            "size_after": self.size_after,
            "compressed": [c.to_dict() for c in self.compressed],
            "left": self.left,
            "verified": self.verified,
        }


def _compression():
    """The tflite_micro compressor modules (the package re-exports a function named
    ``compress`` over the module of the same name)."""
    base = "tflite_micro.tensorflow.lite.micro.compression"
    try:
        return importlib.import_module(f"{base}.compress"), importlib.import_module(f"{base}.spec")
    except ImportError as err:
        raise EdgeflowError(f"table compression needs the tflite-micro package: pip install "
                            f"tflite-micro ({err})") from err


def _choice(data: bytes, t: TensorInfo, readers: list[str], max_bits: int):
    """A TableChoice for ``t``, or the reason it is left as it is."""
    if t.dtype not in _DECODE_DTYPES:
        return f"{t.dtype} tensors are not decoded by TFLM"
    values = constant_values(data, t)
    if values is None or values.size < 2:
        return "no data to compress"
    array = values.reshape(t.shape) if t.shape else values
    per_channel = len(t.scale) > 1
    axis = None
    if per_channel:
        axis = t.quantized_dimension
        if axis not in (0, len(t.shape) - 1) or t.shape[axis] != len(t.scale):
            return f"per-channel axis {axis} is not one TFLM's decoder supports (0 or the last)"
        slices = np.moveaxis(array, axis, 0).reshape(t.shape[axis], -1)
        counts = [len(np.unique(s)) for s in slices]
        distinct, tables = max(counts), len(counts)
    else:
        distinct, tables = len(np.unique(array)), 1
    bits = max(1, (distinct - 1).bit_length())
    if bits > max_bits:
        return f"{distinct} distinct values need {bits} bits (at most {max_bits}): cluster the weights"
    item = values.dtype.itemsize
    after = (values.size * bits + 7) // 8 + _DCM_BYTES + tables * distinct * item
    if after >= values.nbytes:
        return f"tables would not be smaller ({after} >= {values.nbytes} bytes)"
    return TableChoice(
        tensor=t.index, shape=tuple(t.shape), dtype=t.dtype, per_channel=per_channel, axis=axis,
        bits=bits, values=distinct, bytes_before=int(values.nbytes), bytes_after=int(after),
        readers=readers,
    )


def table_candidates(model, *, max_bits: int = MAX_BITS) -> tuple[list[TableChoice], list[dict]]:
    """The weight and bias tensors that table compression makes smaller, and the others.

    Candidates are the constant weights and biases of CONV_2D, DEPTHWISE_CONV_2D,
    FULLY_CONNECTED and TRANSPOSE_CONV with at most ``2^max_bits`` distinct values per
    table, laid out as their quantization demands (module docstring). A buffer shared by
    several tensors is compressed only if all of them are.

    Returns:
        ``(choices, left)``: TableChoice per candidate; ``{"tensor", "reason"}`` per other.

    Example:
        >>> choices, left = table_candidates(tflite_bytes)
        >>> [(c.tensor, c.bits, c.per_channel) for c in choices]
        [(5, 4, True), (7, 4, True)]
    """
    if not 1 <= max_bits <= MAX_BITS:
        raise EdgeflowError(f"max_bits must be 1 to {MAX_BITS}, got {max_bits}")
    data, info = load(model)
    readers: dict[int, list[str]] = {}
    others: set[int] = {t.index for t in info.outputs}
    for op in info.ops:
        slots = _WEIGHT_INPUTS.get(op.name, ())
        for pos, t in enumerate(op.inputs):
            if t < 0 or not info.tensors[t].is_constant:
                continue
            if pos in slots and op.dtype in ("int8", "int16"):
                readers.setdefault(t, []).append(f"{op.name}#{op.index} input {pos}")
            else:
                others.add(t)
    choices, left = [], []
    by_buffer: dict[int, list[int]] = {}
    for t in info.tensors:
        if t.is_constant:
            by_buffer.setdefault(t.buffer, []).append(t.index)
    for t_index in sorted(readers):
        t = info.tensors[t_index]
        if t_index in others:
            left.append({"tensor": t_index, "reason": "also read where it must stay constant"})
            continue
        aliases = by_buffer[t.buffer]
        if any(a not in readers or a in others for a in aliases):
            left.append({"tensor": t_index, "reason": "shares its buffer with a tensor that stays"})
            continue
        choice = _choice(data, t, readers[t_index], max_bits)
        if isinstance(choice, str):
            left.append({"tensor": t_index, "reason": choice})
        else:
            choices.append(choice)
    return choices, left


def _compress(data: bytes, choices: list[TableChoice]) -> bytes:
    compress, spec = _compression()
    specs = [
        spec.Tensor(subgraph=0, tensor=c.tensor, compression=[spec.LookUpTableCompression(
            index_bitwidth=c.bits,
            mode=spec.PerChannel(axis=c.axis) if c.per_channel else spec.PerTensor(),
        )])
        for c in choices
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import contextlib
        import io

        with contextlib.redirect_stderr(io.StringIO()):  # "index_bitwidth larger than necessary"
            try:
                return bytes(compress.compress(data, specs))
            except Exception as err:  # the compressor raises its own CompressionError and more
                raise EdgeflowError(f"TFLM's compressor failed: {err}") from err


def verification_inputs(info: ModelInfo, samples: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Random inputs that hit every int8/int16 input code: ``(samples, *shape)`` floats per input."""
    rng = np.random.default_rng(seed)
    xs = []
    for t in info.inputs:
        shape = (samples, *t.shape[1:])
        if t.dtype in ("int8", "uint8", "int16") and t.scale:
            lo, hi = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}[t.dtype]
            q = rng.integers(lo, hi + 1, shape)
            xs.append(((q - (t.zero_point[0] if t.zero_point else 0)) * t.scale[0]).astype(np.float32))
        else:
            xs.append(rng.uniform(-1, 1, shape).astype(np.float32))
    return xs


def _outputs_equal(a, b) -> bool:
    if isinstance(a, list):
        return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    return np.array_equal(a, b)


def compress_tables(model: bytes | str | os.PathLike, x=None, *, max_bits: int = MAX_BITS,
                    samples: int = 8, max_arena: int | str | None = None) -> tuple[bytes, LutResult]:
    """Compress every weight/bias tensor that fits ``2^k`` values into k-bit tables, keeping
    only those TFLM proves bit-identical.

    Args:
        model: ``.tflite`` bytes or a path (int8 or int16x8).
        x: inputs for the TFLM comparison (float samples, or a list per input); default
            ``samples`` random inputs covering the input codes.
        max_bits: the widest index tried (1-7).
        max_arena: the largest TFLM arena in bytes the compressed model may need, or
            ``"same"`` for the uncompressed model's arena; None: no limit. While the
            arena (:func:`edgeflow.runtime.tflm.measure_arena`, TFLM on this host: 8-byte
            pointers, so a little above a 32-bit MCU's) is above it, the kept tensor with
            the largest decoded size goes back to its plain form (greedy), its reason in
            ``left``. One measurement per try (about a second on the digits CNN).

    Returns:
        ``(bytes, LutResult)``: the model with DECODE operators (or unchanged when nothing
        compresses); ``LutResult.left`` names each tensor left as it was and why.

    Raises:
        EdgeflowError: not a TFLite model; TFLM cannot run the uncompressed model;
            ``max_arena`` not a positive integer or ``"same"``; TFLM's arena not measured.

    Example:
        >>> data, result = compress_tables(convert(clustered_model, "int8", x[:200]))
        >>> result.size_before, result.size_after
        (26440, 14912)
    """
    from edgeflow.runtime import tflm

    _check_max_arena(max_arena)
    data, info = load(model)
    choices, left = table_candidates(data, max_bits=max_bits)
    result = LutResult(len(data), len(data), [], left, "nothing compressed")
    if not choices:
        return data, result
    if x is None:
        x = verification_inputs(info, samples)
        how = f"TFLM outputs bit-identical on {samples} random inputs"
    else:
        how = "TFLM outputs bit-identical on the given inputs"
    try:
        reference = tflm.predict(data, x)
    except (RuntimeCrash, EdgeflowError) as err:
        raise EdgeflowError(f"TFLM cannot run the uncompressed model, so no table can be "
                            f"verified: {err}") from err

    def identical(group: list[TableChoice]) -> bool:
        try:
            return _outputs_equal(tflm.predict(_compress(data, group), x), reference)
        except (RuntimeCrash, EdgeflowError):
            return False

    def search(group: list[TableChoice]) -> tuple[list[TableChoice], list[TableChoice]]:
        if identical(group):
            return group, []
        if len(group) == 1:
            return [], group
        half = len(group) // 2
        ok_a, bad_a = search(group[:half])
        ok_b, bad_b = search(group[half:])
        return ok_a + ok_b, bad_a + bad_b

    good, bad = search(choices)
    for c in bad:
        left.append({"tensor": c.tensor, "reason": "TFLM outputs changed with it compressed"})
    if good and len(good) < len(choices) and not identical(good):
        left.extend({"tensor": c.tensor, "reason": "TFLM outputs changed with the others compressed"}
                    for c in good)
        good = []
    if good and max_arena is not None:
        kept = _within_arena(data, good, max_arena, left)
        if kept and len(kept) < len(good) and not identical(kept):
            left.extend({"tensor": c.tensor, "reason": "TFLM outputs changed with the others compressed"}
                        for c in kept)
            kept = []
        good = kept
    if not good:
        result.verified = how + ": no table kept"
        return data, result
    out = _compress(data, good)
    result.size_after, result.compressed, result.verified = len(out), good, how
    return out, result


def _check_max_arena(max_arena) -> None:
    if max_arena is None or max_arena == "same":
        return
    if isinstance(max_arena, bool) or not isinstance(max_arena, int) or max_arena < 1:
        raise EdgeflowError(f"max_arena must be a positive integer (bytes) or 'same', got {max_arena!r}")


def _arena(data: bytes) -> int:
    """TFLM's arena for ``data`` in bytes, measured on this host."""
    from edgeflow.runtime import tflm

    m = tflm.measure_arena(data)
    if m.status != "ok":
        raise EdgeflowError(f"TFLM's arena could not be measured for the arena limit: {m.status} {m.message}")
    return m.arena_bytes


def _within_arena(data: bytes, good: list[TableChoice], max_arena: int | str,
                  left: list[dict]) -> list[TableChoice]:
    """``good`` without the largest decoded tensors until TFLM's arena is at most ``max_arena``
    (``"same"``: the arena of ``data``); a reason in ``left`` for each tensor dropped."""
    limit, label = (_arena(data), "the uncompressed model's") if max_arena == "same" else (max_arena, "--lut-max-arena")
    kept = sorted(good, key=lambda c: c.bytes_before)  # the largest decoded last
    while kept:
        arena = _arena(_compress(data, kept))
        if arena <= limit:
            break
        c = kept.pop()
        left.append({"tensor": c.tensor, "reason": f"decoded {c.bytes_before:,} B would raise the arena to "
                                                   f"{arena:,} B > {label} {limit:,}"})
    return [c for c in good if c in kept]

