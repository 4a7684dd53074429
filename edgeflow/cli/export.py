"""``edgeflow export``: Keras model → .tflite or C array."""

from __future__ import annotations

from pathlib import Path

import click

from edgeflow.convert import MODES


@click.command()
@click.argument("model")
@click.option("-o", "--output", required=True, help="Output .tflite file, or the .cc/.h stem with --format c.")
@click.option("--mode", type=click.Choice(list(MODES)), default="int8", show_default=True)
@click.option("--data", help="Calibration data: .npy/.npz file or a folder of images.")
@click.option("--input-type", help="Model input type (int8 mode: int8, uint8 or float32).")
@click.option("--output-type", help="Model output type (int8 mode: int8, uint8 or float32).")
@click.option("--num-samples", default=200, show_default=True, help="Calibration samples used at most.")
@click.option("--format", "fmt", type=click.Choice(["tflite", "c"]), default="tflite", show_default=True)
@click.option("--name", default="g_model", show_default=True, help="C array name for --format c.")
@click.option("--unsafe", is_flag=True, help="Allow loading Lambda layers (runs code from the file).")
def export(model, output, mode, data, input_type, output_type, num_samples, fmt, name, unsafe):
    """Convert MODEL (.keras, .h5, SavedModel directory, or .tflite for --format c) for a device."""
    from edgeflow import _io
    from edgeflow.convert import convert, to_c_array
    from edgeflow.tflite import read_bytes

    if Path(model).suffix == ".tflite":
        tflite = read_bytes(model)
    else:
        tflite = convert(
            model, mode, data, input_type=input_type, output_type=output_type,
            num_samples=num_samples, safe_mode=not unsafe,
        )
    out = Path(output)
    if fmt == "c":
        stem = out.with_suffix("") if out.suffix in (".cc", ".h", ".c", ".cpp") else out
        header, source = to_c_array(tflite, name, header_name=f"{stem.name}.h")
        _io.write_text(stem.with_suffix(".h"), header)
        _io.write_text(stem.with_suffix(".cc"), source)
        click.echo(f"wrote {stem}.h and {stem}.cc ({len(tflite):,} bytes, array {name})")
    else:
        _io.write_bytes(out, tflite)
        click.echo(f"wrote {out} ({len(tflite):,} bytes, {mode})")
