"""``edgeflow quantize``: QAT or post-training quantization to a .tflite, with a report."""

from __future__ import annotations

import click

from edgeflow.cli._model import loading, loss_option, model_options
from edgeflow.cli._output import finish, force_option, json_option, max_drop_option
from edgeflow.ranges import option_type

# edgeflow.quantize.QUANTIZE_MODES, named here so that `edgeflow --help` does not import
# TensorFlow (tests/test_cli_contract.py checks that the two agree).
MODE_NAMES = ("qat", "int8", "int16x8", "float16", "dynamic")


@click.command()
@click.argument("model")
@click.option("-o", "--output", required=True, help="Output .tflite file.")
@click.option("--mode", type=click.Choice(MODE_NAMES), default="int8", show_default=True,
              help="qat trains with --data (x, y); the others are post-training.")
@click.option("--data", help="A .npz with x (and y): calibration samples, QAT training data; "
              "several inputs: x:<input name> per input.")
@click.option("--eval-data", help="A .npz with x and y to score Keras vs .tflite (default: --data); "
              "several inputs: x:<input name> per input; several outputs: y:<output name> per output.")
@click.option("--epochs", type=option_type("epochs"), default=2, show_default=True,
              help="QAT fine-tuning epochs.")
@click.option("--learning-rate", type=option_type("learning_rate"),
              help="QAT learning rate (default: Adam's).")
@click.option("--preserve-sparsity/--no-preserve-sparsity", default=None,
              help="QAT keeps pruned zeros (default: of every kernel at least 10% zeros).")
@click.option("--report", is_flag=True, help="Print the per-op int8 error table, worst first.")
@click.option("--keep-float", type=option_type("keep_float"), default=0, show_default=True,
              help="int8: keep the N worst ops in float; shows size, RAM and accuracy.")
@click.option("--num-samples", type=option_type("num_samples"), default=200, show_default=True,
              help="Calibration samples at most.")
@max_drop_option
@loss_option
@model_options
@force_option
@json_option
def quantize(model, output, mode, data, eval_data, epochs, learning_rate, preserve_sparsity,
             report, keep_float, num_samples, max_drop, loss, unsafe, custom_objects, force,
             as_json):
    """Quantize MODEL (.keras, .h5 or SavedModel) and write OUTPUT .tflite."""
    from edgeflow import _io

    _io.check_file(output, force=force)
    from edgeflow.quantize.stage import quantize_to_tflite

    with loading(unsafe, custom_objects) as load:
        outcome = quantize_to_tflite(
            model, mode, data, eval_data=eval_data, epochs=epochs, learning_rate=learning_rate,
            preserve_sparsity="auto" if preserve_sparsity is None else preserve_sparsity, report=report,
            keep_float=keep_float, num_samples=num_samples, loss=loss, safe_mode=load.safe_mode,
            custom_objects=load.custom_objects, max_drop=max_drop,
        )
    _io.write_bytes(output, outcome.tflite)
    text = "\n".join(filter(None, [load.text(), outcome.render(), f"wrote {output}"]))
    finish("quantize", {**outcome.to_dict(), **load.payload()}, text=text, model=model,
           outputs=[output], summary=f"wrote {output} ({len(outcome.tflite):,} bytes, {outcome.mode})",
           exit_code=outcome.exit_code)
