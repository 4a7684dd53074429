"""Is a ``.tflite`` really full int8? Name every float op and stray QUANTIZE/DEQUANTIZE."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CLIP_WARN", "Clipping", "Int8Check", "clipping_warnings", "output_clipping", "verify_int8"]

_FLOAT = ("float32", "float16", "float64")


@dataclass
class Int8Check:
    """The result of :func:`verify_int8`.

    Attributes:
        float_ops: ``"#index OP -> output tensor"`` for each operator computing in float.
        stray_conversions: ``DEQUANTIZE`` ops inside the graph (not producing a model
            output) and ``QUANTIZE`` ops from float that do not read a model input: the
            pairs QAT exports can leave (TF-MOT #431, TF #57758) that break the Edge TPU
            compiler and int8-only MCU runtimes.
        int16_ops: operators computing in int16 (int16x8 mode): integer, but not int8.
        input_types, output_types: the model interface types.
    """

    float_ops: list[str] = field(default_factory=list)
    stray_conversions: list[str] = field(default_factory=list)
    int16_ops: list[str] = field(default_factory=list)
    input_types: list[str] = field(default_factory=list)
    output_types: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every operator computes in int8 and no float round trip is left."""
        return not (self.float_ops or self.stray_conversions or self.int16_ops)

    def summary(self) -> str:
        """One line: ``full int8`` or what is not."""
        if self.ok:
            return f"full int8 (input {'/'.join(self.input_types)}, output {'/'.join(self.output_types)})"
        parts = []
        if self.float_ops:
            parts.append(f"{len(self.float_ops)} float op(s): " + "; ".join(self.float_ops[:5]))
        if self.stray_conversions:
            parts.append(f"{len(self.stray_conversions)} stray quantize/dequantize: "
                         + "; ".join(self.stray_conversions[:5]))
        if self.int16_ops:
            parts.append(f"{len(self.int16_ops)} int16 op(s)")
        return "not full int8: " + " | ".join(parts)


def verify_int8(tflite) -> Int8Check:
    """Check that every operator of a ``.tflite`` computes in int8.

    Uses ``edgeflow.tflite.parse`` (official schema). An operator "computes in" the type of
    its first non-constant input; QUANTIZE/DEQUANTIZE at the model's edges (float
    interface) are allowed, anywhere else they are reported.

    Args:
        tflite: ``.tflite`` bytes or a file path.

    Returns:
        An :class:`Int8Check`; ``check.ok`` is True for a full int8 model.

    Example:
        >>> verify_int8(convert(qat_model, "int8")).ok
        True
    """
    from edgeflow.tflite import parse

    info = parse(tflite)
    model_inputs = {t.index for t in info.inputs}
    model_outputs = {t.index for t in info.outputs}
    check = Int8Check(input_types=[t.dtype for t in info.inputs],
                      output_types=[t.dtype for t in info.outputs])

    def label(op) -> str:
        out = info.tensors[op.outputs[0]].name if op.outputs else "?"
        return f"#{op.index} {op.name} -> {out}"

    for op in info.float_ops():
        check.float_ops.append(label(op))
    for op in info.ops:
        if op.name == "DEQUANTIZE" and not set(op.outputs) <= model_outputs:
            if not all(info.tensors[i].is_constant for i in op.inputs if i >= 0):
                check.stray_conversions.append(label(op))
            else:  # float16/int8 weights dequantized for a float op: that op is listed
                continue
        elif op.name == "QUANTIZE":
            src = [info.tensors[i] for i in op.inputs if i >= 0]
            if any(t.dtype in _FLOAT for t in src) and not {t.index for t in src} <= model_inputs:
                check.stray_conversions.append(label(op))
        elif op.dtype == "int16":
            check.int16_ops.append(label(op))
    return check


CLIP_WARN = 0.02  # warn when more than this fraction of the values falls outside the int8 range


@dataclass
class Clipping:
    """How much of a float reference falls outside the int8 range of a model output.

    Attributes:
        output: the output's index.
        int8_range: ``(lo, hi)`` the int8 tensor can represent: ``((-128 - zp)·s, (127 - zp)·s)``
            (uint8: 0 and 255), from the tensor's scale ``s`` and zero point ``zp``.
        value_range: ``(min, max)`` of the reference values.
        fraction: share of the reference values more than half a step outside ``int8_range``.
        what: what the reference values are (``"float model outputs"``, ``"targets"``).
    """

    output: int
    int8_range: tuple[float, float]
    value_range: tuple[float, float]
    fraction: float
    what: str

    def warning(self) -> str:
        """The one-line warning printed when ``fraction`` exceeds ``CLIP_WARN``."""
        lo, hi = self.int8_range
        vlo, vhi = self.value_range
        return (f"int8 output {self.output} clips {self.fraction:.1%} of the {self.what}: its range is "
                f"[{lo:.4g}, {hi:.4g}], theirs [{vlo:.4g}, {vhi:.4g}]")


def output_clipping(tflite, reference, what: str = "float model outputs") -> list[Clipping]:
    """Compare each quantized output's representable range with float ``reference`` values.

    A QAT model whose ranges are still TF-MOT's initial [-6, 6], or a calibration set that
    does not cover the data, gives an int8 output that saturates; this measures how often.

    Args:
        tflite: ``.tflite`` bytes or path.
        reference: the float values for each output (an array for one output, a list for
            several), e.g. the Keras model's predictions or regression targets.
        what: how the warning names the values.

    Returns:
        One :class:`Clipping` per quantized output (float outputs are skipped).

    Example:
        >>> [c.warning() for c in output_clipping(tflite, model.predict(x)) if c.fraction > CLIP_WARN]
    """
    import numpy as np

    from edgeflow.tflite import parse

    info = parse(tflite)
    producers = {out: op for op in info.ops for out in op.outputs}
    refs = reference if isinstance(reference, (list, tuple)) else [reference]
    result = []
    for i, (tensor, ref) in enumerate(zip(info.outputs, refs, strict=False)):
        op = producers.get(tensor.index)
        if tensor.dtype in _FLOAT and op is not None and op.name == "DEQUANTIZE":
            tensor = info.tensors[op.inputs[0]]
        if tensor.dtype not in ("int8", "uint8") or not tensor.scale:
            continue
        s, zp = tensor.scale[0], tensor.zero_point[0] if tensor.zero_point else 0
        qmin, qmax = (-128, 127) if tensor.dtype == "int8" else (0, 255)
        lo, hi = (qmin - zp) * s, (qmax - zp) * s
        values = np.asarray(ref, np.float64).ravel()
        if not values.size:
            continue
        outside = (values < lo - s / 2) | (values > hi + s / 2)
        result.append(Clipping(i, (float(lo), float(hi)), (float(values.min()), float(values.max())),
                               float(outside.mean()), what))
    return result


def clipping_warnings(tflite, model, x, *, num_samples: int = 200) -> list[str]:
    """Warnings for the int8 outputs of ``tflite`` that clip more than ``CLIP_WARN`` (2 %) of
    the float ``model``'s outputs on ``x`` (at most ``num_samples`` samples; a list of
    arrays in input order for a model with several inputs).

    Example:
        >>> clipping_warnings(convert(qat_model, "int8"), float_model, x_test)
        ['int8 output 0 clips 37.5% of the float model outputs: its range is [-5.936, 6.174], ...']
    """
    import numpy as np

    xs = [np.asarray(a[:num_samples], np.float32) for a in x] if isinstance(x, (list, tuple)) \
        else np.asarray(x[:num_samples], np.float32)  # several inputs: a list in input order
    reference = model.predict(xs, verbose=0)
    return [c.warning() for c in output_clipping(tflite, reference) if c.fraction > CLIP_WARN]
