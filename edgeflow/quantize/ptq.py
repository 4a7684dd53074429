"""Post-training quantization in every mode, and where the quantization error comes from."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from edgeflow.errors import EdgeflowError, first_line

__all__ = ["ptq", "LayerError", "LayerErrors", "layer_errors", "Variant", "compare_keep_float",
           "variants_table"]


def ptq(model, mode: str = "int8", data=None, **convert_options) -> bytes:
    """Post-training quantization: ``int8``, ``int16x8``, ``float16`` or ``dynamic``.

    The same modes, names and calibration-data handling as :func:`edgeflow.convert.convert`
    (this is a thin alias so that every quantization entry point lives in
    ``edgeflow.quantize``).

    Example:
        >>> tflite = ptq(model, "int16x8", x_train[:200])
    """
    from edgeflow.convert import convert

    return convert(model, mode, data, **convert_options)


@dataclass
class LayerError:
    """Quantization error of one op output, measured by the TFLite quantization debugger.

    ``rmse_over_scale = sqrt(mean((float - dequant(quant))²)) / scale``: the error in units
    of the tensor's quantization step. Pure rounding of a well-ranged tensor gives about
    ``1/sqrt(12) ≈ 0.29``; much larger values mean clipping or badly quantized weights.
    The float reference runs the same op on the dequantized int8 inputs, so errors do not
    pile up from earlier layers.
    """

    op: str
    tensor: str
    layer: str
    rmse_over_scale: float
    rmse: float
    max_abs_error: float
    scale: float


@dataclass
class LayerErrors:
    """Per-op errors, worst first (see :class:`LayerError`)."""

    rows: list[LayerError] = field(default_factory=list)

    def worst(self, n: int) -> list[LayerError]:
        """The ``n`` ops with the largest ``rmse_over_scale``."""
        return self.rows[:n]

    def table(self, n: int | None = 10) -> str:
        """A plain-text table of the ``n`` worst ops (all when ``None``)."""
        rows = self.rows if n is None else self.rows[:n]
        width = max([len(r.layer) for r in rows] + [5])
        lines = [f"{'rank':>4}  {'layer':<{width}}  {'op':<18} {'rmse/scale':>10} {'rmse':>10} "
                 f"{'max|err|':>10} {'scale':>10}"]
        for i, r in enumerate(rows, 1):
            lines.append(f"{i:>4}  {r.layer:<{width}}  {r.op:<18} {r.rmse_over_scale:>10.3f} "
                         f"{r.rmse:>10.4g} {r.max_abs_error:>10.4g} {r.scale:>10.4g}")
        return "\n".join(lines)

    def to_dict(self) -> list[dict]:
        return [asdict(r) for r in self.rows]


def layer_errors(model, data, *, num_samples: int = 64, debugger=None) -> LayerErrors:
    """Per-op quantization error of full-int8 PTQ, ranked worst first.

    Runs ``tf.lite.experimental.QuantizationDebugger`` on the int8 conversion of ``model``
    calibrated with ``data`` and reads its per-op statistics.

    Args:
        model: a Keras model or model file (not a QAT model: QAT has no PTQ step to debug).
        data: calibration and debug samples (any source ``edgeflow.convert`` accepts).
        num_samples: samples used for calibration and for the error statistics.
        debugger: an existing debugger (from :func:`_debugger`) to reuse.

    Returns:
        :class:`LayerErrors`; ``.table()`` renders it.

    Example:
        >>> print(layer_errors(model, x_train[:64]).table(5))
    """
    debugger = debugger or _debugger(model, data, num_samples)
    debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    rows = []
    for rec in csv.DictReader(io.StringIO(buf.getvalue())):
        scale = float(rec["scale"])
        mse = float(rec["mean_squared_error"])
        rmse = math.sqrt(max(mse, 0.0))
        rows.append(LayerError(
            op=rec["op_name"], tensor=rec["tensor_name"], layer=_layer_name(rec["tensor_name"]),
            rmse_over_scale=rmse / scale if scale > 0 else float("inf"), rmse=rmse,
            max_abs_error=float(rec["max_abs_error"]), scale=scale,
        ))
    rows.sort(key=lambda r: r.rmse_over_scale, reverse=True)
    return LayerErrors(rows)


def _debugger(model, data, num_samples: int):
    from edgeflow._keras import tf
    from edgeflow.convert import is_quantization_aware, make_converter
    from edgeflow.models import load_model

    keras_model = load_model(model)
    if is_quantization_aware(keras_model):
        raise EdgeflowError(
            "per-layer error is measured on post-training quantization: pass the float model, "
            "not the QAT model"
        )
    if data is None:
        raise EdgeflowError("per-layer error needs data (--data): representative input samples")
    converter = make_converter(keras_model, "int8", data, num_samples=num_samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # denylisting needs float kernels
    try:
        return tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=converter.representative_dataset)
    except Exception as err:
        raise EdgeflowError(f"the TFLite quantization debugger failed: {first_line(err)}") from err


def _layer_name(tensor: str) -> str:
    """The Keras layer a TFLite tensor name comes from (``model/conv2/BiasAdd;…`` → conv2)."""
    first = tensor.split(";")[0]
    parts = first.split("/")
    return parts[1] if len(parts) > 2 else first


@dataclass
class Variant:
    """One way to quantize the model, measured: size, RAM, float ops and accuracy."""

    name: str
    size_bytes: int
    arena_bytes: int
    float_ops: int
    metrics: dict
    tflite: bytes = field(repr=False, default=b"")


def compare_keep_float(model, data, eval_data, n: int = 3, *, num_samples: int = 64,
                       errors: LayerErrors | None = None) -> tuple[LayerErrors, list[Variant]]:
    """Measure full int8 against int8 with the ``n`` worst ops kept in float, and int16x8.

    The ``n`` ops ranked worst by :func:`layer_errors` are denylisted in the quantizer
    (``QuantizationDebugOptions(denylisted_nodes=...)``): they run in float with
    DEQUANTIZE/QUANTIZE around them. TFLite cannot mix int8 and int16 activations per op,
    so the int16 alternative is the whole model in int16x8.

    Args:
        model: the float Keras model.
        data: calibration samples.
        eval_data: ``(x, y)`` to score each variant with LiteRT (``y=None``: the mean
            squared difference from the Keras outputs).
        n: how many of the worst ops to keep in float.

    Returns:
        ``(errors, variants)``; variants are ``float32``, ``int8``, ``int8+float{n}``,
        ``int16x8`` with ``arena_bytes`` from ``edgeflow.tflite.plan_memory`` (estimated).

    Example:
        >>> errors, variants = compare_keep_float(model, x[:64], (x_te, y_te), n=3)
    """
    from edgeflow._keras import tf
    from edgeflow.convert import convert

    debugger = _debugger(model, data, num_samples)
    errors = errors or layer_errors(model, data, debugger=debugger)
    x, y = eval_data
    reference = None if y is not None else model.predict(np.asarray(x, np.float32), verbose=0)
    variants = [_variant("float32", convert(model, "float32"), x, y, reference),
                _variant("int8", convert(model, "int8", data, num_samples=num_samples), x, y,
                         reference)]
    if n > 0:
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=[r.tensor for r in errors.worst(n)])
        variants.append(_variant(f"int8+float{n}", debugger.get_nondebug_quantized_model(),
                                 x, y, reference))
    variants.append(_variant("int16x8", convert(model, "int16x8", data, num_samples=num_samples),
                             x, y, reference))
    return errors, variants


def _variant(name, tflite, x, y, reference) -> Variant:
    from edgeflow.runtime.litert import evaluate, predict
    from edgeflow.runtime.metrics import score
    from edgeflow.tflite import parse, plan_memory

    info = parse(tflite)
    if y is not None:
        metrics = evaluate(tflite, x, y)
    else:
        metrics = score(predict(tflite, x), reference, task="regression")
    return Variant(name, len(tflite), plan_memory(info).peak_bytes, len(info.float_ops()),
                   metrics, bytes(tflite))


def variants_table(variants: list[Variant]) -> str:
    """Plain-text rows: variant, size, activation plan peak, float ops, accuracy (or MSE vs Keras)."""
    from edgeflow.report import arena_name

    plan = arena_name("plan")
    lines = [f"{'variant':<12} {'size':>10} {plan:>{len(plan)}} {'float ops':>9} {'score':>14}"]
    for v in variants:
        m = v.metrics
        score = f"acc {m['accuracy']:.4f}" if "accuracy" in m else f"mse {m['mse']:.3g}"
        lines.append(f"{v.name:<12} {v.size_bytes:>10,} {v.arena_bytes:>{len(plan)},} {v.float_ops:>9} "
                     f"{score:>14}")
    return "\n".join(lines)
