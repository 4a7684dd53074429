"""``edgeflow prune``: magnitude (TF-MOT zeros) or structured (filters removed) pruning."""

from __future__ import annotations

import click

from edgeflow.cli._model import loading, loss_option, model_options
from edgeflow.cli._output import finish, force_option, json_option, max_drop_option
from edgeflow.ranges import option_type

CRITERIA = ("l1", "l2", "fpgm", "activation", "taylor", "hessian")


def _layer_values(pairs: tuple[str, ...], method: str) -> dict[str, float]:
    from edgeflow.errors import EdgeflowError
    from edgeflow.ranges import check

    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            values[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise EdgeflowError(f"--layer {pair!r}: write NAME=FRACTION, e.g. --layer 'conv*=0.5'")
        check("sparsity" if method == "magnitude" else "ratio", values[name], f"--layer {pair!r}")
    return values


@click.command()
@click.argument("model")
@click.option("-o", "--output", required=True, help="Output Keras model (.keras).")
@click.option("--method", type=click.Choice(["magnitude", "structured"]), default="magnitude",
              show_default=True)
@click.option("--data", help=".npz with x and y: fine-tuning data (and scores for data criteria).")
@click.option("--sparsity", type=option_type("sparsity"), default=0.5, show_default=True,
              help="magnitude: fraction of weights set to zero.")
@click.option("--schedule", type=click.Choice(["polynomial", "constant"]), default="polynomial",
              show_default=True, help="magnitude: TF-MOT pruning schedule.")
@click.option("--m-by-n", help="magnitude: m:n sparsity, e.g. 2:4.")
@click.option("--ratio", type=option_type("ratio"), default=0.5, show_default=True,
              help="structured: fraction of filters/units removed.")
@click.option("--criterion", type=click.Choice(CRITERIA), default="l1", show_default=True,
              help="structured: which filters go first.")
@click.option("--steps", type=option_type("prune_steps"), default=1, show_default=True,
              help="structured: reach the ratio in this many prune/fine-tune steps.")
@click.option("--max-accuracy-drop", type=option_type("accuracy_drop"),
              help="structured: stop before accuracy falls more.")
@click.option("--layer", "layers", multiple=True, metavar="NAME=FRACTION",
              help="Per-layer sparsity/ratio (name or glob); repeat it.")
@click.option("--epochs", type=option_type("epochs"),
              help="Fine-tuning epochs (magnitude 2, structured 0 by default).")
@click.option("--batch-size", type=option_type("batch_size"), default=32, show_default=True)
@click.option("--eval-data", help=".npz with x and y to score the input and the pruned model "
              "(default: --data).")
@max_drop_option
@loss_option
@model_options
@force_option
@json_option
def prune(model, output, method, data, sparsity, schedule, m_by_n, ratio, criterion, steps,
          max_accuracy_drop, layers, epochs, batch_size, eval_data, max_drop, loss, unsafe,
          custom_objects, force, as_json):
    """Prune MODEL (.keras, .h5 or SavedModel) and write the smaller/sparser Keras model."""
    from pathlib import Path

    from edgeflow import _io
    from edgeflow import prune as lib
    from edgeflow.data import OPTION_DATA, labelled
    from edgeflow.errors import EdgeflowError
    from edgeflow.models import load_model, save_model

    if not output.endswith(".keras"):
        raise EdgeflowError(f"write the pruned model to a .keras file, not {Path(output).name!r}")
    per_layer = _layer_values(layers, method)
    _io.check_file(output, force=force, example="pruned.keras")
    with loading(unsafe, custom_objects) as load:
        keras_model = load_model(model, safe_mode=load.safe_mode, custom_objects=load.custom_objects)
    arrays = labelled(data, OPTION_DATA["--data"], keras_model) if data else None
    scoring = labelled(eval_data, OPTION_DATA["--eval-data"], keras_model) if eval_data else arrays
    if method == "magnitude":
        if arrays is None:
            raise EdgeflowError(
                "magnitude pruning fine-tunes while it prunes: pass --data FILE.npz with x and y"
            )
        result = lib.magnitude(
            keras_model, sparsity, data=arrays, epochs=2 if epochs is None else epochs,
            batch_size=batch_size, schedule=schedule, m_by_n=m_by_n, per_layer=per_layer or None,
            loss=loss,
        )
        line = f"sparsity {result.overall_sparsity:.1%} overall"
        if result.skipped_layers:
            line += f"; left dense: {'; '.join(result.skipped_layers)}"
    else:
        result = lib.structured(
            keras_model, per_layer or ratio, criterion=criterion, data=arrays, steps=steps,
            epochs=0 if epochs is None else epochs, batch_size=batch_size,
            max_accuracy_drop=max_accuracy_drop, loss=loss,
        )
        shrunk = [f"{k} {before}→{kept}" for k, (kept, before) in result.channels.items()
                  if kept != before]
        line = (f"params {result.params_before:,} → {result.params_after:,}; "
                f"{', '.join(shrunk) or 'nothing removed'}")
        if result.stopped:
            line += f"; stopped: {result.stopped}"
    path = save_model(result.model, output)
    text = "\n".join(filter(None, [load.text(), f"wrote {path} ({method}: {line})"]))
    payload = {"output": str(path), "method": method, **result.summary(), **load.payload(),
               "comparison": None}
    exit_code = 0
    if scoring is None:
        text += "\nnot scored: pass --data or --eval-data (x, y) to compare with the input model"
    else:
        from edgeflow.runtime.metrics import compare_keras

        where = f"{Path(eval_data).name} (--eval-data)" if eval_data else \
            f"{Path(data).name} (the training data: pass --eval-data for held-out data)"
        comparison = compare_keras(keras_model, result.model, *scoring, data=where,
                                   baseline_model="input Keras model",
                                   result_model="pruned Keras model", max_drop=max_drop)
        payload["comparison"] = comparison.to_dict()
        text += "\n" + comparison.render()
        if comparison.over_limit:
            text += f"\nwarning: {comparison.warning()}"
            exit_code = 1
    finish("prune", payload, text=text, model=model, outputs=[path],
           summary=f"wrote {path} ({method}: {line})", exit_code=exit_code)
