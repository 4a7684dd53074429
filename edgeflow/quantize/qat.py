"""Quantization-aware training on TF-MOT, for networks beyond TF-MOT's layer list."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeflow._keras import keras, tf, tfmot
from edgeflow.errors import EdgeflowError, first_line

__all__ = ["QatResult", "qat", "annotate"]


@dataclass
class QatResult:
    """What :func:`qat` returns.

    Attributes:
        model: the quantization-aware Keras model (converts to full int8 with
            ``edgeflow.convert.convert(model, "int8")``, no calibration data needed).
        float_layers: ``"name (Class): reason"`` for each layer left in float.
        notes: changes made to the graph before annotation (nested models inlined,
            TF ops replaced, pruning wrappers stripped).
        history: the Keras fit history (empty when no data was given).
        sparsity_before, sparsity_after: fraction of zero weights per layer kernel.
        zeros_kept: fraction of the weights that were zero before QAT and still are.
        warnings: pruned zeros or weight clusters QAT did not keep
            (:func:`edgeflow.prune.magnitude.lost_structure`).
    """

    model: keras.Model
    float_layers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    history: dict = field(default_factory=dict)
    sparsity_before: dict[str, float] | None = None
    sparsity_after: dict[str, float] | None = None
    zeros_kept: float | None = None
    warnings: list[str] = field(default_factory=list)


def annotate(model) -> tuple[keras.Model, list[str], list[str]]:
    """Flatten ``model`` and annotate every layer edgeflow or TF-MOT can quantize.

    Returns ``(annotated_model, float_layers, notes)``; pass the model to TF-MOT's
    ``quantize_apply`` inside ``quantize_scope(custom_objects())``. The input model is
    not modified.

    Example:
        >>> annotated, float_layers, notes = annotate(model)
    """
    from edgeflow.quantize._graph import flatten
    from edgeflow.quantize.configs import config_for

    model, notes = _strip_pruning(model)
    flat, flat_notes = flatten(model)
    notes += flat_notes
    qk = tfmot.quantization.keras
    float_layers: list[str] = []

    def wrap(layer):
        config, reason = config_for(layer)
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        if config is None:
            float_layers.append(f"{layer.name} ({type(layer).__name__}): {reason}")
            return layer
        return qk.quantize_annotate_layer(layer, None if config == "tfmot" else config)

    annotated = keras.models.clone_model(flat, clone_function=wrap)
    annotated.set_weights(flat.get_weights())
    return annotated, float_layers, notes


def qat(
    model,
    *,
    data=None,
    epochs: int = 2,
    batch_size: int = 32,
    validation_data=None,
    optimizer="adam",
    learning_rate: float | None = None,
    loss=None,
    metrics=None,
    preserve_sparsity: bool | str = "auto",
    verbose: int = 0,
    callbacks=None,
) -> QatResult:
    """Prepare ``model`` for quantization-aware training and fine-tune it on ``data``.

    The model is flattened (nested models inlined), TF ops written as Python operators
    become layers, and every layer gets TF-MOT's 8-bit QuantizeConfig or one edgeflow
    provides (:mod:`edgeflow.quantize.configs`); layers with neither stay float and are
    listed in ``float_layers``. ``preserve_sparsity`` keeps the zeros of a pruned model:
    after every optimizer step each kept kernel is multiplied by its sparsity mask
    m = (w != 0) taken before training (the masking of TF-MOT's prune-preserving QAT, for
    every layer type). Pruned zeros or weight clusters that QAT loses are named in
    ``warnings``.

    Args:
        model: a Keras 2 model, or a ``.keras``/``.h5``/SavedModel path. Pruning wrappers
            are stripped first.
        data: ``(x, y)`` arrays, a ``.npz`` path with ``x``/``y``, or a ``tf.data.Dataset``
            of ``(x, y)``; ``None`` returns the annotated model untrained.
        epochs, batch_size, validation_data, verbose, callbacks: as in ``keras.Model.fit``.
        optimizer: name or Keras optimizer; ``learning_rate`` overrides its default.
        loss: default: the model's compiled loss, else sparse categorical cross-entropy
            when the output is a softmax.
        metrics: compiled metrics; None (default): accuracy per class output, MAE per
            regression output (:func:`edgeflow.models.default_metrics`), ``()`` for none.
        preserve_sparsity: ``"auto"`` (default, as in :func:`edgeflow.distill.distill`) keeps
            the zeros of every kernel that is at least 10 % zeros; ``True`` of every kernel;
            ``False`` lets them drift (and warns).

    Returns:
        A :class:`QatResult`. The input model is not modified.

    Example:
        >>> result = qat(model, data=(x_train, y_train), epochs=2)
        >>> tflite = edgeflow.convert.convert(result.model, "int8")
    """
    from edgeflow.models import load_model
    from edgeflow.prune.magnitude import kernel_values, lost_structure
    from edgeflow.quantize.configs import custom_objects

    if preserve_sparsity not in (True, False, "auto"):
        raise EdgeflowError(
            f"preserve_sparsity must be 'auto', True or False, got {preserve_sparsity!r}")
    model = load_model(model)
    # the data checked against the model (shapes, finite values, labels) before any work
    fit = None if data is None else _fit_data(data, model)
    annotated, float_layers, notes = annotate(model)
    qk = tfmot.quantization.keras
    try:
        with qk.quantize_scope(custom_objects()):
            qat_model = qk.quantize_apply(annotated)
    except (ValueError, AttributeError, TypeError, RuntimeError) as err:
        raise EdgeflowError(
            f"TF-MOT could not prepare {model.name!r} for QAT: {first_line(err)}"
        ) from err

    before = kernel_values(annotated)
    keep = _kept_zeros(qat_model, preserve_sparsity)
    result = QatResult(qat_model, float_layers, notes)
    if fit is not None:
        x, y = fit
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # each worker would set the ranges from its own samples, outside the all-reduce,
            # and the workers' models would part: keep TF-MOT's start, the same on every worker
            notes.append("activation ranges start at TF-MOT's [-6, 6]: ranges calibrated on one "
                         "worker's samples would differ between workers (multi_worker strategy)")
        else:
            samples = _calibrate_ranges(qat_model, x if y is not None else _first_batch(x))
            notes.append(f"activation ranges initialised from {samples} calibration samples "
                         "(not TF-MOT's [-6, 6])")
        _compile(qat_model, model, optimizer, learning_rate, loss, metrics, y)
        history = qat_model.fit(
            x, y, epochs=epochs, batch_size=batch_size if y is not None else None,
            validation_data=_validation(validation_data), verbose=verbose,
            callbacks=[*([_KeepZeros(keep)] if keep else []), *(callbacks or [])],
        )
        result.history = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    after = kernel_values(qat_model)
    result.sparsity_before = {k: float((v == 0).mean()) for k, v in before.items()}
    result.sparsity_after = {k: float((after[k] == 0).mean()) for k in before if k in after}
    zeros = sum(int((v == 0).sum()) for v in before.values())
    kept = sum(int(((before[k] == 0) & (after[k] == 0)).sum()) for k in before if k in after)
    result.zeros_kept = kept / zeros if zeros else 1.0
    result.warnings = lost_structure(before, after, "qat")
    if result.warnings and preserve_sparsity is False:
        result.warnings[0] += " (preserve_sparsity is off)"
    return result


CALIBRATION_SAMPLES = 256
_EMA_DECAY = 0.999  # TF-MOT's MovingAverageQuantizer (quantizers.py, fixed)


def _calibrate_ranges(qat_model, x, passes: int = 2) -> int:
    """Set every moving-average activation range of ``qat_model`` to the range seen on ``x``.

    TF-MOT starts activation ranges at [-6, 6] and moves them by an EMA with decay 0.999
    per training step, so a short QAT keeps them near ±6 (a regression output above 6 is
    clipped). One training-mode forward pass on a batch of ``x`` moves each range by
    ``(1 - decay)·(batch range - range)``; the batch range is read back from that step,
    ``r = v0 + (v1 - v0) / (1 - decay)``, and set. A second pass repeats it with the
    upstream ranges in place (and float32 rounding reduced). Every other variable the
    pass touches (BatchNormalization statistics, weight ranges) is restored.

    Returns:
        The number of samples used (at most ``CALIBRATION_SAMPLES``).
    """
    import numpy as np

    if isinstance(x, dict):  # several inputs by name (a Keras model takes them so)
        batch = {k: np.asarray(a[:CALIBRATION_SAMPLES], np.float32) for k, a in x.items()}
        count = len(next(iter(batch.values())))
    elif isinstance(x, (list, tuple)):  # several inputs in order
        batch = [np.asarray(a[:CALIBRATION_SAMPLES], np.float32) for a in x]
        count = len(batch[0])
    else:
        batch = np.asarray(x[:CALIBRATION_SAMPLES], np.float32)
        count = len(batch)
    pairs = _moving_average_ranges(qat_model)
    ranges = [v for pair in pairs for v in pair]
    bound = [np.minimum, np.maximum] * len(pairs)  # TFLite: 0 lies in every range
    # Other quantizers' ranges (all-values input range, last-value weight ranges) set
    # themselves from the same pass; the rest (BN statistics, step counters) is restored.
    others = [v for v in qat_model.non_trainable_variables
              if not v.name.split(":")[0].endswith(("_min", "_max"))]
    saved = [v.numpy() for v in others]
    for _ in range(passes):
        before = [v.numpy() for v in ranges]
        qat_model(batch, training=True)
        for v, v0, limit in zip(ranges, before, bound, strict=True):
            v.assign(limit(v0 + (v.numpy() - v0) / (1.0 - _EMA_DECAY), 0.0))
        for v, value in zip(others, saved, strict=True):
            v.assign(value)
    return count


def _moving_average_ranges(qat_model) -> list[tuple]:
    """``(min_var, max_var)`` of every ``MovingAverageQuantizer`` in ``qat_model``."""
    moving = tfmot.quantization.keras.quantizers.MovingAverageQuantizer
    found = []
    for layer in qat_model.layers:
        pairs = [(getattr(layer, "quantizer", None), getattr(layer, "quantizer_vars", None))]
        for act in getattr(layer, "_quantize_activations", []):
            pairs += [(act.quantizer, getattr(act, "_pre_activation_vars", None)),
                      (act.quantizer, getattr(act, "_post_activation_vars", None))]
        for quantizer in getattr(layer, "_output_quantizers", None) or []:
            pairs.append((quantizer, getattr(layer, "_output_quantizer_vars", None)))
        found += [(qv["min_var"], qv["max_var"]) for q, qv in pairs
                  if isinstance(q, moving) and qv and "min_var" in qv]
    return found


def _first_batch(dataset):
    """The inputs of a ``tf.data.Dataset`` of ``(x, y)`` batches, first batch."""
    for element in dataset.take(1):
        x = element[0]
        if isinstance(x, (tuple, list)):
            return [a.numpy() for a in x]
        if isinstance(x, dict):
            return {k: a.numpy() for k, a in x.items()}
        return x.numpy()
    return None


def _kept_zeros(qat_model, preserve) -> list[tuple]:
    """``(variable, mask)`` for each kernel of ``qat_model`` whose zeros QAT keeps.

    ``"auto"``: kernels with at least ``SPARSE_MIN`` (10 %) exact zeros (a pruned kernel);
    ``True``: every kernel with a zero; ``False``: none.
    """
    from edgeflow.prune.magnitude import SPARSE_MIN

    if preserve is False:
        return []
    least = SPARSE_MIN if preserve == "auto" else 1e-12
    keep = []
    for v in qat_model.trainable_variables:
        if len(v.shape) >= 2 and v.shape.num_elements():
            mask = (v.numpy() != 0).astype(v.dtype.as_numpy_dtype)
            if 1.0 - mask.mean() >= least:
                keep.append((v, mask))
    return keep


class _KeepZeros(keras.callbacks.Callback):
    """Multiplies each kept kernel by its mask m = (w != 0) after every optimizer step.

    The weight fake-quant is symmetric (zero point 0), so a zero float weight is a zero
    int8 weight in the converted model.
    """

    def __init__(self, keep):
        super().__init__()
        self.keep = keep

    def on_train_batch_end(self, batch, logs=None):
        for variable, mask in self.keep:
            variable.assign(variable * mask)



def _strip_pruning(model) -> tuple[keras.Model, list[str]]:
    wrapped = [layer.name for layer in model.layers if type(layer).__name__ == "PruneLowMagnitude"]
    if not wrapped:
        return model, []
    stripped = tfmot.sparsity.keras.strip_pruning(model)
    return stripped, [f"stripped pruning wrappers from {len(wrapped)} layers"]


def _fit_data(data, model=None):
    from edgeflow.data import labelled

    return labelled(data, "QAT data", model)


def _validation(data):
    if data is None or isinstance(data, tf.data.Dataset):
        return data
    x, y = _fit_data(data)
    return (x, y)


def _compile(qat_model, original, optimizer, learning_rate, loss, metrics, y=None):
    from edgeflow.models import default_loss, default_metrics

    opt = keras.optimizers.get(optimizer)
    if learning_rate is not None:
        opt.learning_rate = learning_rate
    qat_model.compile(optimizer=opt, loss=default_loss(original, loss, y),
                      metrics=default_metrics(original, loss, y) if metrics is None else list(metrics))
