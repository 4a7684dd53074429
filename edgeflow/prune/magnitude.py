"""Magnitude pruning on TF-MOT: zero the smallest weights while fine-tuning.

TF-MOT's ``prune_low_magnitude`` wraps layers, ``UpdatePruningStep`` drives the schedule
during ``fit`` and ``strip_pruning`` removes the wrappers. This module adds what users trip
over: per-layer targets by name or pattern, m:n sparsity, the XNNPACK latency policy with a
clear message when its graph conditions are not met, layers TF-MOT cannot prune left dense
with a warning, the optimizer that TF-MOT drops, and the measured sparsity of the result.
"""

from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass, field

import numpy as np

from edgeflow._keras import ensure_keras2, keras
from edgeflow.errors import EdgeflowError, closest
from edgeflow.models import copy_model
from edgeflow.prune import _util, schedules

__all__ = ["PruneResult", "magnitude", "strip", "pruning_callbacks", "sparsity", "POLICIES"]

# The public name of ``pruning_callbacks`` (``magnitude`` has a ``callbacks`` argument).


# Pruning policies by name: which layers TF-MOT may prune for a given runtime.
POLICIES = ("xnnpack",)


@dataclass
class PruneResult:
    """What a pruning stage returns.

    Attributes:
        model: the pruned model (plain Keras, stripped), or the wrapped model when no data
            was given to fine-tune with (train it with ``callbacks()``, then ``strip()``).
        sparsity: layer name → fraction of zero weights in its kernel(s).
        overall_sparsity: zero weights / all kernel weights of the model.
        history: the Keras fit history (``{}`` without data).
        skipped_layers: ``"layer: reason"`` for every layer with weights left dense.
        wrapped: True when ``model`` still holds the TF-MOT wrappers.
    """

    model: keras.Model
    sparsity: dict[str, float]
    overall_sparsity: float
    history: dict = field(default_factory=dict)
    skipped_layers: list[str] = field(default_factory=list)
    wrapped: bool = False

    def summary(self) -> dict:
        """A JSON-serialisable record (everything but the model)."""
        return {
            "sparsity": self.sparsity,
            "overall_sparsity": self.overall_sparsity,
            "history": {k: [float(v) for v in vals] for k, vals in self.history.items()},
            "skipped_layers": self.skipped_layers,
            "wrapped": self.wrapped,
        }


def magnitude(
    model: keras.Model,
    target_sparsity: float = 0.5,
    *,
    data=None,
    epochs: int = 2,
    batch_size: int = 32,
    schedule="polynomial",
    initial_sparsity: float = 0.0,
    begin_step: int = 0,
    end_step: int | None = None,
    frequency: int | None = None,
    per_layer: dict[str, float] | None = None,
    m_by_n: tuple[int, int] | str | None = None,
    policy: str | None = None,
    validation_data=None,
    optimizer="adam",
    loss=None,
    metrics=None,
    log_dir: str | None = None,
    callbacks: list | None = None,
    verbose: int = 0,
) -> PruneResult:
    """Prune the smallest-magnitude weights of ``model`` to ``target_sparsity`` with TF-MOT.

    At every pruning step each layer's mask keeps the largest |w| so that the fraction of
    zeros is the schedule's s(t) (see ``edgeflow.prune.schedules``); with ``m_by_n=(m, n)``
    the mask instead zeroes the m smallest |w| of every n consecutive input-channel weights
    (2:4 is what sparse tensor cores and some NPUs accelerate).

    Args:
        model: a Keras 2 functional or Sequential model. It is not modified.
        target_sparsity: fraction of zeros wanted in every prunable layer, in [0, 1).
        data: ``(x, y)`` arrays or a ``tf.data.Dataset`` of ``(x, y)`` batches to fine-tune
            on while pruning. None: return the wrapped model for you to train with
            ``callbacks()`` and then ``strip()``.
        epochs, batch_size: fine-tuning length (batch_size for arrays only).
        schedule: ``"polynomial"`` (PolynomialDecay), ``"constant"`` (ConstantSparsity), a
            schedule factory or a TF-MOT ``PruningSchedule`` object.
        initial_sparsity, begin_step, end_step, frequency: schedule parameters. ``end_step``
            defaults to half-way through the fine-tuning (the rest recovers accuracy at the
            target sparsity); ``frequency`` to a tenth of the pruning span. The polynomial end step is moved back to the last step on which
            masks are updated, so the target is reached.
        per_layer: ``{layer name or glob pattern: sparsity}`` overriding ``target_sparsity``;
            0 leaves a layer dense (``{"conv*": 0.8, "logits": 0}``).
        m_by_n: ``(2, 4)`` or ``"2:4"`` for m:n structured sparsity (overrides the target).
        policy: ``"xnnpack"``: TF-MOT's ``PruneForLatencyOnXNNPack`` (only 1×1 convolutions,
            and only if the graph is one XNNPACK's sparse inference can run; an error says
            which condition fails).
        validation_data: passed to ``fit``.
        optimizer, loss, metrics: for the recompile (TF-MOT drops the optimizer). The loss
            defaults to the model's compiled loss, else sparse categorical cross-entropy for a
            softmax classifier; ``metrics`` None (default): accuracy per class output, MAE
            per regression output (:func:`edgeflow.models.default_metrics`).
        log_dir: write TF-MOT pruning summaries (TensorBoard) there.
        callbacks: more Keras callbacks for the fine-tuning (the pruning ones are added).
        verbose: Keras fit verbosity.

    Returns:
        A PruneResult; ``model`` is a new plain Keras model whose pruned kernels hold zeros
        (compiled with ``loss``/``metrics``), or the wrapped model when ``data`` is None.

    Example:
        >>> result = prune.magnitude(model, 0.8, data=(x_train, y_train), epochs=2)
        >>> result.overall_sparsity
        0.79
    """
    model = ensure_keras2(model)
    _check_sparsity(target_sparsity, "target_sparsity")
    factory = schedules.get(schedule)
    pair = _parse_m_by_n(m_by_n)
    fit_kwargs, steps_per_epoch = (
        _util.training_data(data, batch_size, model) if data is not None else ({}, None)
    )
    if end_step is None and steps_per_epoch is not None:
        # Reach the target half-way so that the second half of fine-tuning recovers accuracy
        # (on the digits CNN, 80% reached at the last step loses ~15 points, half-way ~0).
        end_step = begin_step + max(1, (steps_per_epoch * epochs - begin_step) // 2)
    if begin_step < 0 or (end_step is not None and end_step <= begin_step):
        raise EdgeflowError(
            f"pruning must begin before it ends: begin_step={begin_step}, end_step={end_step} "
            f"({epochs} epoch(s) of {steps_per_epoch} steps)"
        )
    if frequency is None:
        frequency = schedules.default_frequency(begin_step, end_step) if end_step else 100
    if end_step is not None and schedule == "polynomial":
        end_step = begin_step + (end_step - begin_step) // frequency * frequency

    working = copy_model(model)
    targets = _targets(working, target_sparsity, per_layer)
    skipped: list[str] = []
    allowed = _apply_policy(working, policy)

    def make_schedule(target):
        return factory(target, initial_sparsity=initial_sparsity, begin_step=begin_step,
                       end_step=end_step, frequency=frequency)

    wrapped = _wrap(working, targets, make_schedule, pair, allowed, skipped)
    unexpected = [s for s in skipped if not s.endswith("sparsity 0 requested")]
    if unexpected:  # layers kept dense on request are in result.skipped_layers, not warned
        warnings.warn(
            "left dense (not pruned): " + "; ".join(unexpected), UserWarning, stacklevel=2
        )
    if data is None:
        if _util.has_loss(model, loss):
            _util.compile_like(wrapped, model, optimizer=optimizer, loss=loss, metrics=metrics)
        per_layer_sparsity, overall = _measure(wrapped)
        return PruneResult(wrapped, per_layer_sparsity, overall, {}, skipped, wrapped=True)

    y = fit_kwargs.get("y")
    _util.compile_like(wrapped, model, optimizer=optimizer, loss=loss, metrics=metrics, y=y)
    history = wrapped.fit(
        **fit_kwargs,
        epochs=epochs,
        validation_data=validation_data,
        callbacks=[*pruning_callbacks(log_dir), *(callbacks or ())],
        verbose=verbose,
    )
    stripped = strip(wrapped)
    _util.compile_like(stripped, model, optimizer=optimizer, loss=loss, metrics=metrics, y=y)
    per_layer_sparsity, overall = _measure(stripped)
    return PruneResult(stripped, per_layer_sparsity, overall, dict(history.history), skipped)


def strip(model: keras.Model) -> keras.Model:
    """Remove TF-MOT pruning wrappers: a new plain Keras model whose kernels hold the zeros.

    Save this one, not the wrapped model (its checkpoints hold unmasked weights and masks).

    Example:
        >>> plain = prune.strip(wrapped_model)
    """
    from edgeflow._keras import tfmot

    model = ensure_keras2(model)
    try:
        stripped = tfmot.sparsity.keras.strip_pruning(model)
    except (ValueError, NotImplementedError) as err:
        raise EdgeflowError(f"cannot strip pruning wrappers from {model.name!r}: {err}") from err
    # strip_pruning reuses the wrapped layers: copy so the result shares nothing with its input.
    return copy_model(stripped)


def pruning_callbacks(log_dir: str | None = None) -> list:
    """The Keras callbacks pruning needs in ``fit``: ``UpdatePruningStep`` (and TensorBoard
    pruning summaries in ``log_dir`` when given).

    Example:
        >>> wrapped.fit(x, y, epochs=2, callbacks=prune.callbacks())
    """
    from edgeflow._keras import tfmot

    result = [tfmot.sparsity.keras.UpdatePruningStep()]
    if log_dir:
        result.append(tfmot.sparsity.keras.PruningSummaries(log_dir=str(log_dir)))
    return result


def sparsity(model: keras.Model) -> dict[str, float]:
    """Fraction of zero weights in each layer's kernel(s), zeros / weights, and under the
    key ``"overall"`` the zeros of all kernels / all kernel weights.

    Layers inside TF-MOT wrappers are listed under their own names: pruning wrappers are
    measured through their masks (w · mask), QAT wrappers on their float kernels (see
    :func:`kernel_values`). Layers without kernels (BatchNormalization, pooling, ...) are
    not listed.

    Example:
        >>> prune.sparsity(result.model)["conv2"], prune.sparsity(result.model)["overall"]
        (0.8, 0.79)
    """
    per_layer, overall = _measure(model)
    return {**per_layer, "overall": overall}


# --- internals ------------------------------------------------------------------------


def _check_sparsity(value, what: str) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise EdgeflowError(f"{what} must be a fraction in [0, 1), got {value!r}")


def _parse_m_by_n(m_by_n) -> tuple[int, int] | None:
    if m_by_n is None:
        return None
    try:
        if isinstance(m_by_n, str):
            m, n = (int(p) for p in m_by_n.replace("x", ":").split(":"))
        else:
            m, n = (int(p) for p in m_by_n)
    except (TypeError, ValueError) as err:
        raise EdgeflowError(f"m_by_n must look like (2, 4) or '2:4', got {m_by_n!r}") from err
    if not 0 < m < n:
        raise EdgeflowError(f"m_by_n=({m}, {n}): need 0 < m < n (m zeros in every n weights)")
    return m, n


def _targets(model, target: float, per_layer: dict | None) -> dict[str, float]:
    """Layer name → target sparsity, for every layer with kernels."""
    names = [layer.name for layer in _util.iter_layers(model) if _util.kernels(layer)]
    targets = dict.fromkeys(names, float(target))
    for key, value in (per_layer or {}).items():
        _check_sparsity(value, f"per_layer[{key!r}]")
    exact = {k: v for k, v in (per_layer or {}).items() if k in targets}
    patterns = {k: v for k, v in (per_layer or {}).items() if k not in targets}
    for key in patterns:
        if not fnmatch.filter(names, key):
            raise EdgeflowError(
                f"per_layer key {key!r} matches no layer with weights{closest(key, names)}; "
                "layers: " + ", ".join(names)
            )
    for name in names:
        if name in exact:
            targets[name] = float(exact[name])
            continue
        for pattern, value in patterns.items():
            if fnmatch.fnmatchcase(name, pattern):
                targets[name] = float(value)
                break
    return targets


def _apply_policy(model, policy: str | None):
    """A predicate ``layer -> bool`` of the layers the policy lets TF-MOT prune."""
    if policy is None:
        return lambda layer: True
    if policy != "xnnpack":
        raise EdgeflowError(
            f"unknown pruning policy {policy!r}{closest(str(policy), POLICIES)}; valid policies: "
            + ", ".join(POLICIES)
        )
    from edgeflow._keras import tfmot

    xnn = tfmot.sparsity.keras.PruneForLatencyOnXNNPack()
    try:
        xnn.ensure_model_supports_pruning(model)
    except ValueError as err:
        raise EdgeflowError(
            f"the XNNPACK latency policy does not apply to {model.name!r}: {err}. XNNPACK's "
            "sparse inference needs the graph to start with ZeroPadding2D(1) → Conv2D 3×3 "
            "stride 2 'valid' on 3 channels, end in GlobalAveragePooling2D(keepdims=True), and "
            "hold only 1×1 convolutions, 3×3/5×5 depthwise, ReLU, Add/Multiply, BN in between"
        ) from err
    return xnn.allow_pruning


def _prunable_reason(layer, pair) -> str | None:
    """Why TF-MOT cannot prune this layer, or None when it can."""
    from tensorflow_model_optimization.python.core.sparsity.keras import (
        prunable_layer,
        prune_registry,
    )

    if isinstance(layer, prunable_layer.PrunableLayer) or hasattr(layer, "get_prunable_weights"):
        return None
    registry = prune_registry.PruneRegistry
    if not registry.supports(layer):
        return f"{type(layer).__name__} is not in TF-MOT's prune registry"
    names = registry._LAYERS_WEIGHTS_MAP.get(type(layer))
    if names is not None and not names:
        return f"TF-MOT cannot prune {type(layer).__name__} weights"
    if pair is not None:
        kernel = _util.kernels(layer)[0]
        if len(kernel.shape) not in (2, 4):
            return f"m:n sparsity needs a 2-D or 4-D kernel, {type(layer).__name__} has {len(kernel.shape)}-D"
        channels = int(kernel.shape[-2])
        if channels % pair[1]:
            return f"m:n sparsity needs input channels divisible by {pair[1]}, it has {channels}"
    return None


def _wrap(model, targets, make_schedule, pair, allowed, skipped):
    """Clone ``model`` wrapping each prunable layer in ``PruneLowMagnitude`` (reuses layers)."""
    from edgeflow._keras import tfmot

    def clone_fn(layer):
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=clone_fn)
        if layer.name not in targets:
            return layer
        if not allowed(layer):
            skipped.append(f"{layer.name}: excluded by the xnnpack policy (prunes only 1x1 Conv2D)")
            return layer
        reason = _prunable_reason(layer, pair)
        if reason:
            skipped.append(f"{layer.name}: {reason}")
            return layer
        target = targets[layer.name]
        if target == 0.0 and pair is None:
            skipped.append(f"{layer.name}: sparsity 0 requested")
            return layer
        return tfmot.sparsity.keras.prune_low_magnitude(
            layer, pruning_schedule=make_schedule(target), sparsity_m_by_n=pair
        )

    try:
        return keras.models.clone_model(model, clone_function=clone_fn)
    except ValueError as err:
        raise EdgeflowError(f"TF-MOT cannot wrap {model.name!r} for pruning: {err}") from err


def kernel_values(model) -> dict[str, np.ndarray]:
    """The kernel weights of each layer as they act, flattened (several kernels concatenated),
    keyed by layer name.

    TF-MOT wrappers are looked through and keyed by the wrapped layer's name: pruning
    wrappers give w · mask, QAT wrappers (``QuantizeWrapper``, ``QuantizeAnnotate``) the float
    kernel variables. Nested models are descended into; layers without kernels are left out.

    Example:
        >>> (kernel_values(qat_model)["conv1"] == 0).mean()
        0.5
    """
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_annotate import (
        QuantizeAnnotate,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_wrapper import (
        QuantizeWrapper,
    )
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
        PruneLowMagnitude,
    )

    values: dict[str, np.ndarray] = {}
    for layer in _util.iter_layers(ensure_keras2(model)):
        masks = {}
        if isinstance(layer, PruneLowMagnitude):
            masks = {id(w): m.numpy() for w, m, _ in layer.pruning_vars}
        # A wrapper's weights hold the wrapped layer's (a QAT wrapper takes the kernel off
        # the inner layer, so it is found only there); its own variables are not kernels.
        name = layer.name
        if isinstance(layer, (PruneLowMagnitude, QuantizeWrapper, QuantizeAnnotate)):
            name = layer.layer.name
        arrays = [(w.numpy() * masks.get(id(w), 1.0)).ravel() for w in _util.kernels(layer)]
        if arrays:
            values[name] = np.concatenate(arrays)
    return values


def _measure(model) -> tuple[dict[str, float], float]:
    """Per-layer and overall fraction of zeros in kernels (through TF-MOT wrappers)."""
    values = kernel_values(model)
    per_layer = {name: float(np.count_nonzero(v == 0) / v.size) for name, v in values.items()}
    zeros = sum(int(np.count_nonzero(v == 0)) for v in values.values())
    total = sum(v.size for v in values.values())
    return per_layer, (zeros / total if total else 0.0)


callbacks = pruning_callbacks


SPARSE_MIN = 0.1  # a kernel with at least this fraction of exact zeros was pruned
CLUSTERED_MAX = 256  # a kernel with at most this many distinct values (and 4× more weights) was clustered


def lost_structure(before: dict[str, np.ndarray], after: dict[str, np.ndarray],
                   stage: str) -> list[str]:
    """Warnings for the pruned zeros and weight clusters that ``stage`` did not keep.

    ``before``/``after`` are :func:`kernel_values` of the model entering and leaving the
    stage. A kernel counts as pruned when at least ``SPARSE_MIN`` (10 %) of its weights are
    exact zeros, and as clustered when it has at most ``CLUSTERED_MAX`` distinct values and
    at least four times as many weights; it is lost when the stage leaves fewer zeros
    (more than one point less) or more distinct values.

    Returns:
        One line per kind of loss, e.g. ``"qat lost pruned zeros: sparsity 60.0% → 3.1%
        (conv1, conv2)"``; an empty list when everything was kept.

    Example:
        >>> lost_structure(kernel_values(pruned), kernel_values(qat_model), "qat")
        []
    """
    sparse, clustered = [], []
    zeros_before = zeros_after = total = 0
    for name, w in before.items():
        if name not in after or after[name].size != w.size:
            continue
        z0, z1 = int(np.count_nonzero(w == 0)), int(np.count_nonzero(after[name] == 0))
        if z0 >= SPARSE_MIN * w.size:
            zeros_before, zeros_after, total = zeros_before + z0, zeros_after + z1, total + w.size
            if z1 < z0 - 0.01 * w.size:
                sparse.append(name)
        distinct = np.unique(w).size
        if distinct <= CLUSTERED_MAX and 4 * distinct <= w.size and np.unique(after[name]).size > distinct:
            clustered.append(f"{name} {distinct} → {np.unique(after[name]).size} values")
    lines = []
    if sparse:
        lines.append(f"{stage} lost pruned zeros: sparsity {zeros_before / total:.1%} → "
                     f"{zeros_after / total:.1%} ({', '.join(sparse)})")
    if clustered:
        lines.append(f"{stage} lost weight clusters: {', '.join(clustered)}")
    return lines
