"""``edgeflow export``: Keras model → .tflite or C array."""

from __future__ import annotations

from pathlib import Path

import click

from edgeflow.cli._model import loading, model_options
from edgeflow.cli._output import finish, force_option, json_option
from edgeflow.ranges import option_type

# edgeflow.convert.MODES, named here so that `edgeflow --help` does not import the converter
# (tests/test_cli_contract.py checks that the two agree).
MODE_NAMES = ("int8", "int16x8", "float16", "dynamic", "float32")


class BatchSize(click.ParamType):
    """An integer >= 1, or ``dynamic`` for a variable batch (``None``)."""

    name = "integer|dynamic"

    def convert(self, value, param, ctx):
        if value is None or (isinstance(value, str) and value.strip().lower() == "dynamic"):
            return None
        from edgeflow.errors import EdgeflowError
        from edgeflow.ranges import check

        try:
            return check("batch_size", int(value), "--batch-size")
        except (ValueError, TypeError):
            self.fail(f"{value!r} is not an integer >= 1 or 'dynamic'", param, ctx)
        except EdgeflowError as err:
            self.fail(str(err), param, ctx)


class InputShape(click.ParamType):
    """``1,50,8`` or ``name=1,50,8`` (``?`` or ``-1`` for a size left free)."""

    name = "shape"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        name, _, dims = value.rpartition("=")
        try:
            shape = tuple(None if d.strip() in ("?", "-1") else int(d) for d in dims.split(","))
        except ValueError:
            self.fail(f"{value!r} is not a shape like 1,50,8 (or NAME=1,50,8)", param, ctx)
        if any(d is not None and d < 1 for d in shape):
            self.fail(f"{value!r} has a size below 1", param, ctx)
        return (name, shape) if name else shape


class MaxArena(click.ParamType):
    """Arena bytes (an integer >= 1), or ``same`` for the uncompressed model's arena."""

    name = "bytes|same"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() == "same":
            return "same"
        try:
            return option_type("arena_bytes").convert(value, param, ctx)
        except click.BadParameter as err:
            self.fail(f"{err.message}, or 'same'", param, ctx)


@click.command()
@click.argument("model")
@click.option("-o", "--output", required=True, help="Output .tflite file, or the .cc/.h stem with --format c.")
@click.option("--mode", type=click.Choice(MODE_NAMES), default="int8", show_default=True)
@click.option("--data", help="Calibration data: .npy/.npz file or a folder of images.")
@click.option("--input-type", help="Model input type (int8 mode: int8, uint8 or float32).")
@click.option("--output-type", help="Model output type (int8 mode: int8, uint8 or float32).")
@click.option("--num-samples", type=option_type("num_samples"), default=200, show_default=True,
              help="Calibration samples used at most.")
@click.option("--batch-size", type=BatchSize(), default="1", show_default=True,
              help="Fixed batch of the converted model; 'dynamic' keeps it variable (hosts only).")
@click.option("--input-shape", "input_shapes", type=InputShape(), multiple=True, metavar="[NAME=]1,50,8",
              help="Full input shape with the batch, to fix None dimensions; once per input "
                   "(NAME= picks the input by name).")
@click.option("--format", "fmt", type=click.Choice(["tflite", "c"]), default="tflite", show_default=True)
@click.option("--name", default="g_model", show_default=True, help="C array name for --format c.")
@model_options
@click.option("--slim/--no-slim", default=None,
              help="Strip what runtimes do not read (names, signatures, metadata, duplicate "
                   "buffers) [default: on for --format c, the microcontroller export].")
@click.option("--keep-names", is_flag=True, help="With --slim: keep tensor names and signatures.")
@click.option("--reorder/--no-reorder", default=None,
              help="Reorder operators for the smallest TFLM arena, kept only if TFLM measures "
                   "it not larger [default: on for --format c].")
@click.option("--lut", is_flag=True,
              help="TFLM table compression: weights with <= 2^k values (clustered) stored as k-bit "
                   "indices, each tensor verified bit-identical on TFLM (adds DECODE operators).")
@click.option("--lut-bits", type=option_type("lut_bits"), default=7, show_default=True,
              help="With --lut: the widest table index tried.")
@click.option("--lut-max-arena", type=MaxArena(),
              help="With --lut: the largest TFLM arena (bytes, or 'same' as uncompressed); the "
                   "largest decoded tensors stay uncompressed until it fits (measured on TFLM).")
@force_option
@json_option
def export(model, output, mode, data, input_type, output_type, num_samples, batch_size, input_shapes,
           fmt, name, unsafe, custom_objects, slim, keep_names, reorder, lut, lut_bits, lut_max_arena,
           force, as_json):
    """Convert MODEL (.keras, .h5, SavedModel directory, or .tflite for --format c) for a device."""
    from edgeflow import _io

    out = Path(output)
    if fmt == "c":
        stem = out.with_suffix("") if out.suffix in (".cc", ".h", ".c", ".cpp") else out
        targets = [stem.with_suffix(".h"), stem.with_suffix(".cc")]
    else:
        targets = [out]
    for target in targets:
        _io.check_file(target, force=force)

    from edgeflow.convert import convert, to_c_array
    from edgeflow.tflite import read_bytes

    notes: list[str] = []  # a line when the int8 file took more than one conversion
    with loading(unsafe, custom_objects) as load:
        if Path(model).suffix == ".tflite":
            tflite = read_bytes(model)
        else:
            tflite = convert(
                model, mode, data, input_type=input_type, output_type=output_type,
                num_samples=num_samples, safe_mode=load.safe_mode, custom_objects=load.custom_objects,
                batch_size=batch_size, input_shape=_shapes(input_shapes), notes=notes,
            )
    slimmed = None
    if slim if slim is not None else fmt == "c":
        from edgeflow.tflite import slim as slim_model

        # a C array is for TFLM only: bias scales go, per-channel zero points shrink to one (slim tflm_only)
        tflite, slimmed = slim_model(tflite, keep_names=keep_names, tflm_only=fmt == "c")
    reordered = None
    if reorder if reorder is not None else fmt == "c":
        from edgeflow.tflite.schedule import reorder_for_arena

        tflite, reordered = reorder_for_arena(tflite)
    tables = None
    if lut:
        from edgeflow.tflite.lut import compress_tables

        tflite, tables = compress_tables(tflite, max_bits=lut_bits, max_arena=lut_max_arena)
        if slimmed is not None:  # the compressor names the tensors it adds
            tflite = slim_model(tflite, keep_names=keep_names, tflm_only=fmt == "c")[0]
    if fmt == "c":
        header, source = to_c_array(tflite, name, header_name=targets[0].name)
        _io.write_text(targets[0], header)
        _io.write_text(targets[1], source)
        line = f"wrote {stem}.h and {stem}.cc ({len(tflite):,} bytes, array {name})"
    else:
        _io.write_bytes(out, tflite)
        line = f"wrote {out} ({len(tflite):,} bytes, {mode})"
    if slimmed is not None:
        line += (f"; slim: {slimmed.size_before:,} -> {slimmed.size_after:,} bytes, "
                 f"{slimmed.overhead_percent:.1f} % beyond the weights")
    if reordered is not None and reordered.arena_before is not None:
        line += (f"; TFLM arena {reordered.arena_before:,} -> {reordered.arena_after:,} bytes "
                 f"({_arena_how(reordered)}; "
                 f"largest single-operator live set {reordered.live_set_bound:,})")
    if tables is not None:
        line += (f"; tables: {len(tables.compressed)} tensors compressed"
                 f" ({', '.join(sorted({f'{c.bits}-bit' for c in tables.compressed})) or 'none'}), "
                 f"{len(tables.left)} left")
    payload = {"mode": mode, "format": fmt, "size_bytes": len(tflite),
               "slim": slimmed.to_dict() if slimmed is not None else None,
               "reorder": reordered.to_dict() if reordered is not None else None,
               "lut": tables.to_dict() if tables is not None else None, "notes": notes,
               **load.payload()}
    text = "\n".join(filter(None, [load.text(), line, *(f"note: {n}" for n in notes)]))
    finish("export", payload, text=text, model=model, outputs=targets, summary=line)


def _arena_how(result) -> str:
    if not result.written:
        return "operators and plan kept"
    done = ["operators reordered"] if result.method != "original" else []
    if result.offline_plan:
        done.append("offline tensor plan")
    return " + ".join(done)


def _shapes(values: tuple) -> list | dict | None:
    """``--input-shape`` values as convert's ``input_shape``: a list in input order, or by name."""
    if not values:
        return None
    named = [v for v in values if isinstance(v[0], str)]
    if named and len(named) != len(values):
        raise click.UsageError("--input-shape: name every input (NAME=1,50,8) or none")
    return dict(named) if named else list(values)
