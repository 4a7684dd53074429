"""``edgeflow distill``: train a small student from a teacher (soft labels, features, attention)."""

from __future__ import annotations

import click

from edgeflow.cli._model import loading, model_options
from edgeflow.cli._output import finish, force_option, json_option, max_drop_option
from edgeflow.ranges import option_type

LOSS_NAMES = ("soft", "feature", "attention")  # edgeflow.distill.LOSSES, without importing TF


@click.command()
@click.option("--teacher", required=True, help="Teacher model (.keras, .h5 or SavedModel).")
@click.option("--student", required=True, help="Student model to train (.keras, .h5 or SavedModel).")
@click.option("--data", required=True, help="Training data: .npz with arrays x and y.")
@click.option("-o", "--output", required=True, help="Output .keras file for the trained student.")
@click.option(
    "--loss", "losses", multiple=True,
    help=f"Distillation loss, repeatable: {', '.join(LOSS_NAMES)}, or NAME:WEIGHT "
    "(e.g. attention:10). Default: soft.",
)
@click.option("--feature-pair", "feature_pairs", multiple=True, metavar="T_LAYER:S_LAYER",
              help="Teacher and student layer names for --loss feature (repeatable).")
@click.option("--attention-pair", "attention_pairs", multiple=True, metavar="T_LAYER:S_LAYER",
              help="Teacher and student layer names for --loss attention (repeatable).")
@click.option("--temperature", default=4.0, show_default=True, type=option_type("temperature"),
              help="Soft-label temperature τ.")
@click.option("--alpha", default=0.1, show_default=True, type=option_type("alpha"),
              help="Weight of the hard-label loss against the soft labels.")
@click.option("--epochs", default=10, show_default=True, type=option_type("epochs"))
@click.option("--batch-size", default=32, show_default=True, type=option_type("batch_size"))
@click.option("--learning-rate", type=option_type("learning_rate"),
              help="Adam learning rate (default: Keras's 0.001).")
@click.option("--validation-data", help="Validation .npz with x and y (accuracy is printed).")
@click.option("--verbose", is_flag=True, help="Show Keras's per-epoch progress.")
@click.option("--hard-loss", metavar="NAME",
              help="Loss against the labels (a Keras name, e.g. binary_crossentropy). Default: "
              "cross-entropy, from logits or probabilities as the student's last layer gives.")
@max_drop_option
@model_options
@force_option
@json_option
def distill(teacher, student, data, output, losses, feature_pairs, attention_pairs, temperature,
            alpha, epochs, batch_size, learning_rate, validation_data, verbose, hard_loss, max_drop,
            unsafe, custom_objects, force, as_json):
    """Train STUDENT from TEACHER on labelled data and save the plain student.

    The saved model has exactly the student's layers (no teacher, no adapters), ready for
    `edgeflow quantize` (QAT) and `edgeflow export`.
    """
    from pathlib import Path

    from edgeflow import _io
    from edgeflow.data import OPTION_DATA, labelled
    from edgeflow.distill import distill as run
    from edgeflow.errors import EdgeflowError
    from edgeflow.models import load_model, save_model
    from edgeflow.runtime.metrics import compare_keras

    if not output.endswith((".keras", ".h5")):
        raise EdgeflowError(f"output {output!r} must end in .keras or .h5")
    _io.check_file(output, force=force, example="student.keras")
    with loading(unsafe, custom_objects) as load:
        models = [load_model(m, safe_mode=load.safe_mode, custom_objects=load.custom_objects)
                  for m in (student, teacher)]
    teacher_model = models[1]
    # checked against the student before any work, as prune and cluster check --data
    arrays = labelled(data, OPTION_DATA["--data"], models[0])
    validation = (labelled(validation_data, OPTION_DATA["--validation-data"], models[0])
                  if validation_data else None)
    result = run(
        *models,
        arrays,
        losses=list(losses) or ["soft"],
        epochs=epochs,
        batch_size=batch_size,
        temperature=temperature,
        alpha=alpha,
        feature_pairs=list(feature_pairs) or None,
        attention_pairs=list(attention_pairs) or None,
        learning_rate=learning_rate,
        validation_data=validation,
        verbose=2 if verbose else 0,
        hard_loss=hard_loss,
    )
    save_model(result.model, output)
    hist = result.history
    parts = [f"{k}={hist[k][-1]:.4f}" for k in ("loss", "accuracy", "val_accuracy") if k in hist]
    text = load.text() + "\n" * bool(load.translations) + (f"wrote {output} (student {result.model.count_params():,} parameters; "
            f"losses {', '.join(result.losses) or 'none'}; after {epochs} epochs: {', '.join(parts)})")
    payload = {"output": output, "parameters": int(result.model.count_params()),
               "losses": list(result.losses), "epochs": epochs,
               "history": {k: [float(v) for v in vals] for k, vals in hist.items()}, **load.payload(),
               "warnings": list(result.warnings)}
    where = (f"{Path(validation_data).name} (--validation-data)" if validation_data else
             f"{Path(data).name} (the training data: pass --validation-data for held-out data)")
    comparison = compare_keras(teacher_model, result.model, *(validation or arrays), data=where,
                               baseline_model="teacher", result_model="trained student",
                               max_drop=max_drop)
    payload["comparison"] = comparison.to_dict()
    lines = [text, comparison.render(), *(f"warning: {w}" for w in result.warnings)]
    if comparison.over_limit:
        lines.append(f"warning: {comparison.warning()}")
    finish("distill", payload, text="\n".join(lines), model=student, outputs=[output],
           summary=text, exit_code=1 if comparison.over_limit else 0)
