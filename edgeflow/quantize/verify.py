"""Is a ``.tflite`` really full int8? Name every float op and stray QUANTIZE/DEQUANTIZE."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Int8Check", "verify_int8"]

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
