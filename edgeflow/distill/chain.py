"""The compression chain: prune → recover (distill from the unpruned model, or fine-tune) → QAT → int8.

:func:`chain_recipe` builds the chain as a recipe; :func:`chain` runs it with the one
orchestrator of stages, :func:`edgeflow.pipeline.run_stages`, on a model and arrays in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeflow._keras import keras
from edgeflow.errors import EdgeflowError
from edgeflow.recipe import Recipe, parse_recipe
from edgeflow.records import StageRecord

__all__ = ["ChainResult", "chain", "chain_recipe", "RECOVERY"]

RECOVERY = ("distill", "finetune")
PRUNING = ("structured", "magnitude")


@dataclass
class ChainResult:
    """What :func:`chain` returns.

    Attributes:
        records: one :class:`edgeflow.records.StageRecord` per stage (``original``,
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
        return {"stages": [r.to_dict() for r in self.records], "notes": list(self.notes)}

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
    from edgeflow.models import load_model
    from edgeflow.pipeline import run_stages

    recipe = chain_recipe(
        prune=prune, ratio=ratio, criterion=criterion, target_sparsity=target_sparsity,
        prune_epochs=prune_epochs, recover=recover, losses=losses, temperature=temperature,
        alpha=alpha, feature_pairs=feature_pairs, attention_pairs=attention_pairs, epochs=epochs,
        learning_rate=learning_rate, qat_epochs=qat_epochs, qat_learning_rate=qat_learning_rate,
        batch_size=batch_size,
    )
    run = run_stages(recipe, load_model(model), data, test_data, verbose=verbose)
    original, pruned, recovered, qat, int8 = run.records
    original.stage, original.label = "original", "original (teacher)"
    recovered.stage = recover
    if recover == "finetune":
        recovered.label = f"finetune (labels), {epochs} epochs"
    else:
        recovered.label = f"distill ({'+'.join(map(str, losses))} from the original), {epochs} epochs"
    int8.stage = "int8"
    notes = [f"left dense: {s}" for s in pruned.extra.get("skipped_layers", [])]
    notes += [f"float in QAT: {s}" for s in qat.extra.get("float_layers", [])]
    return ChainResult(run.records, run.model, run.tflite, notes)


def chain_recipe(
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
) -> Recipe:
    """The recipe :func:`chain` runs: train (0 epochs: the original is measured), prune,
    distill (no losses for ``recover="finetune"``), qat, convert (int8).

    The arguments are :func:`chain`'s. The recipe's model and data are placeholders
    (``builder: given``, digits): :func:`edgeflow.pipeline.run_stages` runs it on the
    model and arrays it is given.

    Raises:
        EdgeflowError: an unknown ``prune`` or ``recover``, or a value out of range.

    Example:
        >>> [s.stage for s in chain_recipe(prune="magnitude").stages]
        ['train', 'prune', 'distill', 'qat', 'convert']
    """
    if prune not in PRUNING:
        raise EdgeflowError(f"prune must be one of {', '.join(PRUNING)}, got {prune!r}")
    if recover not in RECOVERY:
        raise EdgeflowError(f"recover must be one of {', '.join(RECOVERY)}, got {recover!r}")
    if prune == "structured":
        pruning = {"method": "structured", "ratio": ratio, "criterion": criterion,
                   "epochs": prune_epochs or 0}
    else:
        pruning = {"method": "magnitude", "target_sparsity": target_sparsity,
                   "epochs": 2 if prune_epochs is None else prune_epochs}
    training = {"batch_size": batch_size}
    recipe = parse_recipe({
        "name": f"chain-{prune}-{recover}",
        "model": {"builder": "given"},
        "stages": [
            {"stage": "train", "epochs": 0},
            {"stage": "prune", **pruning, **training},
            {"stage": "distill", "teacher": "train", "epochs": epochs,
             "learning_rate": learning_rate, "temperature": temperature, "alpha": alpha,
             "losses": [], **training},
            {"stage": "qat", "epochs": qat_epochs, "learning_rate": qat_learning_rate,
             "preserve_sparsity": prune == "magnitude", **training},
            {"stage": "convert", "mode": "int8"},
        ],
    }, source="chain")
    # Losses and layer pairs go to edgeflow.distill.distill as given (names, dicts, loss
    # objects): the stage carries them without the recipe's string-only schema.
    stages = list(recipe.stages)
    used = tuple(losses) if recover == "distill" else ()
    stages[2] = stages[2].model_copy(update={
        "losses": used, "feature_pairs": feature_pairs, "attention_pairs": attention_pairs,
    })
    return recipe.model_copy(update={"stages": stages})
