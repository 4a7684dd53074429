"""The compression chain: prune → recover (distill from the unpruned model, or fine-tune) → QAT → int8."""

from __future__ import annotations

import gzip
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from edgeflow._keras import keras
from edgeflow.errors import EdgeflowError

__all__ = ["ChainStage", "ChainResult", "chain", "RECOVERY"]

RECOVERY = ("distill", "finetune")
PRUNING = ("structured", "magnitude")


@dataclass
class ChainStage:
    """One stage's figures.

    Attributes:
        stage: ``original``, ``prune``, ``distill`` or ``finetune``, ``qat``, ``int8``.
        accuracy: test accuracy; of the Keras model, or of the ``.tflite`` on LiteRT for ``int8``.
        params: parameter count (Keras stages).
        size_bytes: float32 weight bytes (Keras stages) or ``.tflite`` bytes (``int8``).
        gzip_bytes: the same bytes gzip-compressed (what a sparse model ships as).
        sparsity: zero weights / kernel weights (Keras stages).
        seconds: wall time of the stage.
    """

    stage: str
    accuracy: float
    params: int | None = None
    size_bytes: int | None = None
    gzip_bytes: int | None = None
    sparsity: float | None = None
    seconds: float = 0.0


@dataclass
class ChainResult:
    """What :func:`chain` returns: per-stage figures, the QAT model and the int8 bytes."""

    stages: list[ChainStage]
    model: keras.Model
    tflite: bytes
    notes: list[str] = field(default_factory=list)

    def stage(self, name: str) -> ChainStage:
        """The record of the stage called ``name``."""
        return next(s for s in self.stages if s.stage == name)

    def to_dict(self) -> dict:
        """A JSON-ready record (without the model and the bytes)."""
        return {"stages": [asdict(s) for s in self.stages], "notes": list(self.notes)}

    def table(self) -> str:
        """The stages as a plain-text table."""
        rows = [f"{'stage':10s} {'accuracy':>9s} {'params':>8s} {'bytes':>9s} {'gzip':>9s} {'sparsity':>9s}"]
        for s in self.stages:
            def fmt(v, spec):
                return format(v, spec) if v is not None else "-"
            rows.append(
                f"{s.stage:10s} {100 * s.accuracy:8.2f}% {fmt(s.params, ','):>8s} "
                f"{fmt(s.size_bytes, ','):>9s} {fmt(s.gzip_bytes, ','):>9s} "
                f"{fmt(s.sparsity, '.1%'):>9s}"
            )
        return "\n".join(rows)


def chain(
    model,
    data,
    test_data,
    *,
    prune: str = "structured",
    ratio: float = 0.5,
    criterion: str = "l1",
    target_sparsity: float = 0.8,
    prune_epochs: int | None = None,
    recover: str = "distill",
    losses=("soft",),
    temperature: float = 4.0,
    alpha: float = 0.1,
    feature_pairs=None,
    attention_pairs=None,
    epochs: int = 10,
    learning_rate: float = 1e-3,
    qat_epochs: int = 3,
    qat_learning_rate: float = 1e-4,
    batch_size: int = 32,
    verbose: int = 0,
) -> ChainResult:
    """Prune a trained classifier, recover its accuracy, train it with QAT and convert to int8.

    1. ``prune``: :func:`edgeflow.prune.structured` (``ratio`` of the filters/units removed,
       by ``criterion``; ``prune_epochs`` of fine-tuning, default 0) or
       :func:`edgeflow.prune.magnitude` (``target_sparsity`` zeros, reached over
       ``prune_epochs`` of training, default 2).
    2. recover for ``epochs``: ``recover="distill"`` trains the pruned model as the student
       of the unpruned ``model`` with ``losses`` (:func:`edgeflow.distill.distill`);
       ``recover="finetune"`` trains it on the labels alone with the same trainer,
       optimizer and epochs. A magnitude-pruned model keeps its zeros in both.
    3. ``qat``: :func:`edgeflow.quantize.qat` for ``qat_epochs`` (keeping the zeros of a
       magnitude-pruned model).
    4. ``int8``: :func:`edgeflow.convert.convert`; accuracy measured on LiteRT.

    Both recovery branches start from the same pruned model for the same settings
    (structured pruning without fine-tuning is deterministic), so they reach the same size.

    Args:
        model: the trained Keras classifier (or a model file); it is the teacher. Not modified.
        data: ``(x, y)`` training arrays.
        test_data: ``(x, y)`` arrays every stage's accuracy is measured on.
        prune, ratio, criterion, target_sparsity, prune_epochs: the pruning stage.
        recover: ``"distill"`` or ``"finetune"``.
        losses, temperature, alpha, feature_pairs, attention_pairs: the distillation (see
            :func:`edgeflow.distill.distill`); the layer pairs name pruned-model layers on
            the student side (structured pruning keeps layer names).
        epochs, learning_rate: the recovery training (Adam).
        qat_epochs, qat_learning_rate: the QAT stage.
        batch_size, verbose: for every training stage.

    Returns:
        A :class:`ChainResult`: ``stages`` (original, prune, distill|finetune, qat, int8),
        the QAT Keras model and the int8 ``.tflite`` bytes.

    Example:
        >>> result = chain(model, (x, y), (x_test, y_test), prune="structured", ratio=0.5)
        >>> print(result.table())
    """
    from edgeflow import prune as prune_mod
    from edgeflow import quantize
    from edgeflow.convert import convert
    from edgeflow.distill.distiller import distill
    from edgeflow.models import load_model
    from edgeflow.runtime import litert
    from edgeflow.runtime.metrics import evaluate_keras

    if prune not in PRUNING:
        raise EdgeflowError(f"prune must be one of {', '.join(PRUNING)}, got {prune!r}")
    if recover not in RECOVERY:
        raise EdgeflowError(f"recover must be one of {', '.join(RECOVERY)}, got {recover!r}")
    teacher = load_model(model)
    x, y = (np.asarray(a) for a in data)
    xt, yt = (np.asarray(a) for a in test_data)
    stages: list[ChainStage] = []
    notes: list[str] = []

    def record(name, m, start):
        stages.append(ChainStage(
            name, float(evaluate_keras(m, xt, yt)["accuracy"]), int(m.count_params()),
            *_weight_bytes(m), sparsity=_sparsity(m), seconds=round(time.perf_counter() - start, 2),
        ))

    start = time.perf_counter()
    record("original", teacher, start)

    start = time.perf_counter()
    if prune == "structured":
        pruned = prune_mod.structured(
            teacher, ratio, criterion=criterion, data=(x, y), epochs=prune_epochs or 0,
            batch_size=batch_size, verbose=verbose,
        ).model
    else:
        result = prune_mod.magnitude(
            teacher, target_sparsity, data=(x, y),
            epochs=2 if prune_epochs is None else prune_epochs, batch_size=batch_size,
            verbose=verbose,
        )
        pruned = result.model
        notes += [f"left dense: {s}" for s in result.skipped_layers]
    record("prune", pruned, start)

    start = time.perf_counter()
    recovered = distill(
        pruned, teacher, (x, y), losses=losses if recover == "distill" else (),
        epochs=epochs, batch_size=batch_size, temperature=temperature, alpha=alpha,
        feature_pairs=feature_pairs, attention_pairs=attention_pairs,
        learning_rate=learning_rate, verbose=verbose,
    ).model
    record(recover, recovered, start)

    start = time.perf_counter()
    q = quantize.qat(
        recovered, data=(x, y), epochs=qat_epochs, batch_size=batch_size,
        learning_rate=qat_learning_rate, preserve_sparsity=prune == "magnitude", verbose=verbose,
    )
    notes += [f"float in QAT: {s}" for s in q.float_layers]
    record("qat", q.model, start)

    start = time.perf_counter()
    tflite = convert(q.model, "int8")
    stages.append(ChainStage(
        "int8", float(litert.evaluate(tflite, xt, yt)["accuracy"]), None, len(tflite),
        len(gzip.compress(tflite, 9)), seconds=round(time.perf_counter() - start, 2),
    ))
    return ChainResult(stages, q.model, tflite, notes)


def _weight_bytes(model) -> tuple[int, int]:
    raw = b"".join(np.asarray(w, np.float32).tobytes() for w in model.get_weights())
    return len(raw), len(gzip.compress(raw, 9))


def _sparsity(model) -> float:
    """Zero weights / weights over every trainable tensor of rank >= 2 (kernels)."""
    arrays = [w.numpy() for w in model.trainable_weights if len(w.shape) >= 2]
    total = sum(a.size for a in arrays)
    return sum(int(np.count_nonzero(a == 0)) for a in arrays) / total if total else 0.0
