"""The compression chain: prune → recover (distill from the unpruned model, or fine-tune) → QAT → int8."""

from __future__ import annotations

import gzip
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from edgeflow._keras import keras
from edgeflow.errors import EdgeflowError
from edgeflow.pipeline import StageRecord

__all__ = ["ChainResult", "chain", "RECOVERY"]

RECOVERY = ("distill", "finetune")
PRUNING = ("structured", "magnitude")


@dataclass
class ChainResult:
    """What :func:`chain` returns.

    Attributes:
        records: one :class:`edgeflow.pipeline.StageRecord` per stage (``original``,
            ``prune``, ``distill`` or ``finetune``, ``qat``, ``int8``): test accuracy of
            the Keras model (``keras_accuracy``) or of the ``.tflite`` on LiteRT
            (``tflite_accuracy``), ``params``, ``size_bytes`` (float32 weights, or the
            ``.tflite``), ``gzip_bytes``, ``sparsity`` (zeros / kernel weights), ``seconds``.
        model: the QAT Keras model.
        tflite: the int8 ``.tflite`` bytes.
        notes: layers left dense by pruning or float by QAT.
    """

    records: list[StageRecord]
    model: keras.Model
    tflite: bytes
    notes: list[str] = field(default_factory=list)
    check = None  # no device check: lets edgeflow.report render this like a recipe run

    def stage(self, name: str) -> StageRecord:
        """The record of the stage called ``name``."""
        return next(r for r in self.records if r.stage == name)

    def to_dict(self) -> dict:
        """A JSON-ready record (without the model and the bytes)."""
        return {"stages": [asdict(r) for r in self.records], "notes": list(self.notes)}

    def table(self) -> str:
        """The stages as the terminal table of a recipe run."""
        from edgeflow.report import render_run_table

        return render_run_table(self)


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
        A :class:`ChainResult`: one record per stage (original, prune, distill|finetune,
        qat, int8), the QAT Keras model and the int8 ``.tflite`` bytes.

    Example:
        >>> result = chain(model, (x, y), (x_test, y_test), prune="structured", ratio=0.5)
        >>> print(result.table())
    """
    from edgeflow import prune as prune_mod
    from edgeflow import quantize
    from edgeflow.convert import convert
    from edgeflow.distill.distiller import distill
    from edgeflow.models import load_model, weight_bytes
    from edgeflow.runtime import litert
    from edgeflow.runtime.metrics import evaluate_keras

    if prune not in PRUNING:
        raise EdgeflowError(f"prune must be one of {', '.join(PRUNING)}, got {prune!r}")
    if recover not in RECOVERY:
        raise EdgeflowError(f"recover must be one of {', '.join(RECOVERY)}, got {recover!r}")
    teacher = load_model(model)
    x, y = (np.asarray(a) for a in data)
    xt, yt = (np.asarray(a) for a in test_data)
    records: list[StageRecord] = []
    notes: list[str] = []

    def record(name, label, m, start):
        raw, packed = weight_bytes(m)
        records.append(StageRecord(
            len(records) + 1, name, label,
            keras_accuracy=float(evaluate_keras(m, xt, yt)["accuracy"]),
            params=int(m.count_params()), size_bytes=raw, gzip_bytes=packed,
            sparsity=float(prune_mod.sparsity(m)["overall"]), seconds=round(time.perf_counter() - start, 2),
        ))

    start = time.perf_counter()
    record("original", "original (teacher)", teacher, start)

    start = time.perf_counter()
    if prune == "structured":
        pruned = prune_mod.structured(
            teacher, ratio, criterion=criterion, data=(x, y), epochs=prune_epochs or 0,
            batch_size=batch_size, verbose=verbose,
        ).model
        label = f"prune (structured {ratio:.0%}, {criterion})"
    else:
        result = prune_mod.magnitude(
            teacher, target_sparsity, data=(x, y),
            epochs=2 if prune_epochs is None else prune_epochs, batch_size=batch_size,
            verbose=verbose,
        )
        pruned = result.model
        notes += [f"left dense: {s}" for s in result.skipped_layers]
        label = f"prune (magnitude {target_sparsity:.0%})"
    record("prune", label, pruned, start)

    start = time.perf_counter()
    used = tuple(losses) if recover == "distill" else ()
    recovered = distill(
        pruned, teacher, (x, y), losses=used,
        epochs=epochs, batch_size=batch_size, temperature=temperature, alpha=alpha,
        feature_pairs=feature_pairs, attention_pairs=attention_pairs,
        learning_rate=learning_rate, verbose=verbose,
    ).model
    label = (f"distill ({'+'.join(map(str, used))} from the original)" if used
             else "finetune (labels)")
    record(recover, f"{label}, {epochs} epochs", recovered, start)

    start = time.perf_counter()
    q = quantize.qat(
        recovered, data=(x, y), epochs=qat_epochs, batch_size=batch_size,
        learning_rate=qat_learning_rate, preserve_sparsity=prune == "magnitude", verbose=verbose,
    )
    notes += [f"float in QAT: {s}" for s in q.float_layers]
    record("qat", f"qat ({qat_epochs} epochs)", q.model, start)

    start = time.perf_counter()
    tflite = convert(q.model, "int8")
    records.append(StageRecord(
        len(records) + 1, "int8", "convert (int8)",
        tflite_accuracy=float(litert.evaluate(tflite, xt, yt)["accuracy"]),
        size_bytes=len(tflite), gzip_bytes=len(gzip.compress(tflite, 9)),
        seconds=round(time.perf_counter() - start, 2),
    ))
    return ChainResult(records, q.model, tflite, notes)
