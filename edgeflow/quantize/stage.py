"""One quantization step, as the CLI and recipes run it: model in, ``.tflite`` and a report out."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeflow.errors import EdgeflowError, closest

__all__ = ["QUANTIZE_MODES", "Outcome", "quantize_to_tflite"]

# The names users pick (CLI --mode, recipe `mode:`): "qat" plus the converter's PTQ modes.
QUANTIZE_MODES = ("qat", "int8", "int16x8", "float16", "dynamic")


@dataclass
class Outcome:
    """What :func:`quantize_to_tflite` produced and measured."""

    mode: str
    tflite: bytes = field(repr=False)
    int8_check: object | None = None  # edgeflow.quantize.Int8Check for qat/int8
    keras_metrics: dict | None = None
    tflite_metrics: dict | None = None
    errors: object | None = None  # LayerErrors when a report was asked for
    variants: list = field(default_factory=list)
    float_layers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    comparison: object | None = None  # edgeflow.runtime.metrics.Comparison, with eval data
    output_names: list[str] = field(default_factory=list)  # the Keras model's, in order
    comparisons: dict | None = None  # several outputs: each output's Comparison, by name

    @property
    def outputs(self) -> dict | None:
        """Per-output figures of a model with several outputs, by output name
        (:func:`edgeflow.runtime.metrics.by_output`); None for one output or no eval data."""
        from edgeflow.runtime.metrics import by_output

        return by_output(self.output_names, self.keras_metrics, self.tflite_metrics)

    @property
    def promised_int8(self) -> bool:
        """True when the mode promises a full-int8 model (``qat``, ``int8``; not ``int8+floatN``)."""
        return self.mode in ("qat", "int8")

    @property
    def exit_code(self) -> int:
        """1 when a full-int8 mode gave a model that is not full int8, or the score (every
        output's, for several outputs) dropped more than the limit (``max_drop``); else 0."""
        not_int8 = self.promised_int8 and self.int8_check is not None and not self.int8_check.ok
        return 1 if not_int8 or any(c.over_limit for c in self._shown()) else 0

    def _shown(self) -> list:
        from edgeflow.runtime.metrics import shown

        return shown(self.comparison, self.comparisons)

    def to_dict(self) -> dict:
        """A JSON-ready dict (``edgeflow quantize --json``'s payload); the bytes are left out.

        ``variants`` carry the ``activation plan peak`` of each variant (``arena_bytes``).
        """
        from dataclasses import asdict

        check = self.int8_check
        return {
            "mode": self.mode,
            "size_bytes": len(self.tflite),
            "int8": None if check is None else {"ok": check.ok, "summary": check.summary(),
                                                **asdict(check)},
            "keras_metrics": self.keras_metrics,
            "tflite_metrics": self.tflite_metrics,
            "layer_errors": None if self.errors is None else self.errors.to_dict(),
            "variants": [{k: v for k, v in asdict(x).items() if k != "tflite"} for x in self.variants],
            "float_layers": list(self.float_layers),
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "comparison": None if self.comparison is None else self.comparison.to_dict(),
            "comparisons": None if self.comparisons is None else {
                name: c.to_dict() for name, c in self.comparisons.items()},
            "outputs": self.outputs,
        }

    def render(self, top: int = 10) -> str:
        """Plain-text report: size, int8 check, Keras vs .tflite score, worst layers."""
        lines = [f"mode {self.mode}: {len(self.tflite):,} bytes"]
        if self.int8_check is not None:
            lines.append(f"check: {self.int8_check.summary()}")
        for name in self.float_layers:
            lines.append(f"left in float: {name}")
        for note in self.notes:
            lines.append(f"note: {note}")
        lines += [c.render() for c in self._shown()]
        if self.errors is not None:
            lines.append(f"per-op int8 error (worst first, TFLite quantization debugger):\n"
                         f"{self.errors.table(top)}")
        if self.variants:
            from edgeflow.quantize.ptq import variants_table

            lines.append(variants_table(self.variants))
        if self.promised_int8 and self.int8_check is not None and not self.int8_check.ok:
            lines.append(f"warning: --mode {self.mode} promised a full-int8 model; float ops: "
                         + "; ".join(self.int8_check.float_ops + self.int8_check.stray_conversions))
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"warning: {c.warning()}" for c in self._shown() if c.over_limit]
        return "\n".join(lines)


def get_quantize_mode(name: str) -> str:
    """Validate a quantization mode name (``qat``, ``int8``, ``int16x8``, ``float16``, ``dynamic``)."""
    if name not in QUANTIZE_MODES:
        raise EdgeflowError(f"unknown quantization mode {name!r}{closest(str(name), QUANTIZE_MODES)}; "
                            "valid modes are " + ", ".join(QUANTIZE_MODES))
    return name


def quantize_to_tflite(
    model,
    mode: str = "int8",
    data=None,
    *,
    eval_data=None,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float | None = None,
    preserve_sparsity: bool | str = "auto",
    report: bool = False,
    keep_float: int = 0,
    num_samples: int = 200,
    loss=None,
    safe_mode: bool = True,
    custom_objects: dict | None = None,
    max_drop: float = 1.0,
) -> Outcome:
    """Quantize ``model`` in ``mode`` and measure the result.

    ``qat`` fine-tunes with :func:`edgeflow.quantize.qat` on ``data`` (x, y) and converts to
    int8; the other modes are post-training conversions calibrated with ``data``. With
    ``eval_data`` (x, y) the Keras model and the ``.tflite`` (LiteRT) are scored side by side.
    ``report`` adds the per-op error table; ``keep_float=N`` returns the int8 model with the
    N worst ops in float and the size/RAM/accuracy comparison (PTQ ``int8`` only).

    Args:
        model: Keras model or model file (read with ``safe_mode`` and ``custom_objects``).
        loss: the QAT training loss; default :func:`edgeflow.models.default_loss`'s rule.
        data: ``.npz`` path or ``(x, y)`` / ``x`` arrays. Several inputs: ``x`` is a list in
            input order or a dict by input name, a ``.npz`` holds one ``x:<input name>``
            array per input (and ``y``, or ``y:<output name>`` per output).
        eval_data: ``(x, y)`` or ``.npz`` path for scoring, in the same forms; default:
            ``data`` when it has labels.
        max_drop: the largest drop from the float model to the ``.tflite``, in points
            (:class:`edgeflow.runtime.metrics.Comparison`); more makes ``exit_code`` 1. A
            model with several outputs is checked on every output with its own metric
            (``Outcome.comparisons``): points of accuracy, or percent of MAE added.

    Returns:
        An :class:`Outcome`; ``outcome.tflite`` holds the bytes. The input model is not modified.

    Raises:
        EdgeflowError: a number outside its range (``edgeflow.ranges``), or data that does
            not fit the model's inputs (a missing ``x:<input name>``, a shape, different
            sample counts), before any work.

    Example:
        >>> outcome = quantize_to_tflite("digits.keras", "qat", "train.npz")
        >>> print(outcome.render())
    """
    from edgeflow import ranges
    from edgeflow.data import OPTION_DATA
    from edgeflow.models import load_model
    from edgeflow.quantize.ptq import compare_keep_float, layer_errors, ptq
    from edgeflow.quantize.qat import qat
    from edgeflow.quantize.verify import clipping_warnings, verify_int8

    mode = get_quantize_mode(mode)
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("keep_float", keep_float),
                        ("num_samples", num_samples), ("learning_rate", learning_rate)):
        if value is not None:
            ranges.check(name, value)  # before any work, like the CLI's options
    keras_model = load_model(model, safe_mode=safe_mode, custom_objects=custom_objects)
    outputs = list(keras_model.output_names)
    x, y = _arrays(data, keras_model, OPTION_DATA["--data"])
    if eval_data is None and y is not None:
        eval_data = (x, y)
    scored_on = _data_label(eval_data if eval_data is not None else data, eval_data is None)
    ex, ey = _arrays(eval_data, keras_model, OPTION_DATA["--eval-data"])
    if keep_float and mode != "int8":
        raise EdgeflowError("--keep-float works with --mode int8 (post-training int8)")
    if (report or keep_float) and x is None:
        raise EdgeflowError("the per-layer report needs --data with input samples")

    outcome = Outcome(mode=mode, tflite=b"", output_names=outputs)
    if mode == "qat":
        if x is None or y is None:
            raise EdgeflowError("--mode qat trains: --data must be a .npz with x and y (labels)")
        result = qat(keras_model, data=(x, y), epochs=epochs, batch_size=batch_size, loss=loss,
                     learning_rate=learning_rate, preserve_sparsity=preserve_sparsity)
        outcome.float_layers, outcome.notes = result.float_layers, result.notes
        outcome.warnings += result.warnings
        outcome.tflite, notes = qat_to_int8(result.model, x, num_samples=num_samples,
                                            notes=outcome.notes)
        outcome.notes += notes
        if notes and verify_int8(outcome.tflite).ok:
            outcome.float_layers = []
    elif keep_float:
        outcome.errors, outcome.variants = compare_keep_float(
            keras_model, x, (ex, ey) if ex is not None else (x, None), keep_float,
            num_samples=min(num_samples, 64))
        outcome.mode = f"int8+float{keep_float}"
        outcome.tflite = next(v.tflite for v in outcome.variants if v.name == outcome.mode)
    else:
        outcome.tflite = ptq(keras_model, mode, x, num_samples=num_samples, notes=outcome.notes)
    if mode in ("qat", "int8"):  # with keep_float the check names the ops kept in float
        outcome.int8_check = verify_int8(outcome.tflite)
        check_x = ex if ex is not None else x
        if check_x is not None:
            outcome.warnings += clipping_warnings(outcome.tflite, keras_model, check_x,
                                                  num_samples=num_samples)
    if report and outcome.errors is None:
        outcome.errors = layer_errors(keras_model, x, num_samples=min(num_samples, 64))
    if ex is not None and ey is not None:
        from edgeflow.runtime.litert import evaluate
        from edgeflow.runtime.metrics import Comparison, evaluate_keras

        outcome.keras_metrics = evaluate_keras(keras_model, ex, ey)
        outcome.tflite_metrics = evaluate(outcome.tflite, ex, ey)
        kind = "QAT int8" if mode == "qat" else outcome.mode
        sides = ("float Keras model", f"{kind} .tflite on LiteRT",
                 f"{scored_on}, {len(ex[0] if isinstance(ex, list) else ex)} samples", max_drop)
        outcome.comparison = Comparison(outcome.keras_metrics, outcome.tflite_metrics, *sides)
        if "outputs" in outcome.keras_metrics and "outputs" in outcome.tflite_metrics:  # several outputs
            outcome.comparisons = {
                name: Comparison(k, t, *sides, output=name) for name, k, t in zip(
                    outputs, outcome.keras_metrics["outputs"], outcome.tflite_metrics["outputs"], strict=True)}
    return outcome


def qat_to_int8(model, data=None, *, num_samples: int = 200,
                **convert_options) -> tuple[bytes, list[str]]:
    """Full int8 from a QAT model: its own ranges, and for the layers QAT left in float
    (LayerNormalization, MultiHeadAttention, ...) ranges calibrated on ``data``.

    The model is converted on its fake-quant ranges alone; when that leaves float ops and
    ``data`` (representative inputs) is given, it is converted again with the calibration
    data for the rest. When the converter cannot quantize those layers either, the first
    file is kept: :func:`edgeflow.quantize.verify_int8` names its float ops.
    ``convert_options`` (``input_type``, ...) go to :func:`edgeflow.convert.convert`.

    Returns:
        ``(tflite_bytes, notes)``; the notes say what the calibration data did.
    """
    from edgeflow.quantize.ptq import ptq
    from edgeflow.quantize.verify import verify_int8

    tflite = ptq(model, "int8", **convert_options)
    if data is None or verify_int8(tflite).ok:
        return tflite, []
    try:
        calibrated = ptq(model, "int8", data, num_samples=num_samples, **convert_options)
    except EdgeflowError as err:
        return tflite, [f"the calibration data could not quantize the float layers: {err}"]
    return calibrated, ["layers without a QAT config quantized from the calibration data"]


def _data_label(data, fallback: bool) -> str:
    """Which data scored the models, for the report."""
    from pathlib import Path

    name = Path(data).name if isinstance(data, (str, Path)) else "the given arrays"
    return f"{name} (the calibration/training data: pass --eval-data for held-out data)" \
        if fallback else f"{name} (--eval-data)"


def _arrays(data, model, what: str):
    """``(x, y)`` from a path, a pair or an array; ``(None, None)`` for no data. A pair may
    hold lists (one array per input, one label array per output), inputs by input name and
    labels by output name; a ``.npz`` may hold ``x:<input name>`` and ``y:<output name>``
    arrays. Several inputs come back as a list in the model's input order, checked
    (:func:`edgeflow.data.in_input_order`, naming ``what``); labels of several outputs as a
    list in its output order, each output scored alone."""
    if data is None:
        return None, None
    from edgeflow.data import (
        as_labels,
        by_name,
        in_input_order,
        in_output_order,
        load_arrays,
        read_arrays,
    )

    outputs = list(model.output_names)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        y = None if y is None else in_output_order(y, outputs) if isinstance(y, dict) else as_labels(y)
    elif isinstance(data, (np.ndarray, dict)):  # samples alone: one array, or arrays by input name
        x, y = data, None
    else:
        x, y = load_arrays(data)
        if str(data).endswith(".npz"):
            arrays = read_arrays(data)
            x = by_name(arrays, "x") or x
            named = by_name(arrays, "y")
            y = in_output_order(named, outputs) if named and y is None else y
    x = in_input_order(model, x, what)
    x = [a.astype(np.float32) for a in x] if isinstance(x, list) else x.astype(np.float32)
    return x, y
