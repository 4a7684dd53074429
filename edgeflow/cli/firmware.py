"""``edgeflow firmware``: build a .tflite into bare-metal firmware for a board and run it under QEMU."""

from __future__ import annotations

from pathlib import Path

import click

from edgeflow.cli._output import (
    emulation_timeout_option,
    finish,
    force_option,
    json_option,
    timeout_unused,
)
from edgeflow.ranges import option_type


@click.command()
@click.argument("model")
@click.option("-b", "--board", help="Board profile (name or .yaml) whose core to build for.")
@click.option("--cpu", help="A core instead of a board, e.g. cortex-m4f, cortex-m7, cortex-m55.")
@click.option("--devices-dir", help="Extra device profiles: a YAML file or a directory of them.")
@click.option("--data", help="Input samples (.npy/.npz or an image folder); default: fixed pseudo-random inputs.")
@click.option("--samples", type=option_type("samples"), default=4, show_default=True,
              help="Samples of --data to run at most.")
@click.option("--tflm-root", help="TFLM sources: a tflite-micro folder or .tar.xz (default: $EDGEFLOW_TFLM_ROOT, "
                                  "then shared/third_party, then the pinned revision with git).")
@click.option("--no-emulate", is_flag=True, help="Only build; the arena comes from the host interpreter.")
@emulation_timeout_option
@click.option("-o", "--output", help="Write the linked image (.elf) here.")
@force_option
@json_option
def firmware(model, board, cpu, devices_dir, data, samples, tflm_root, no_emulate, timeout, output, force, as_json):
    """Build MODEL (.tflite) into firmware for a board's core; report flash, RAM, arena, instructions."""
    timeout_unused(timeout, "--no-emulate" if no_emulate else None)
    from edgeflow import _io

    if output:
        _io.check_file(output, force=force, example="firmware.elf")
    from edgeflow.firmware import build, encode_inputs
    from edgeflow.report import firmware_table
    from edgeflow.tflite import reader

    inputs = None
    if data:
        _, info = reader.load(model)
        inputs = encode_inputs(info, data, samples)
    result = build(model, board, cpu=cpu, inputs=inputs, tflm_root=tflm_root, devices_dir=devices_dir,
                   emulate=not no_emulate, timeout=timeout)
    outputs = []
    if output:
        _io.write_bytes(output, Path(result.firmware.elf).read_bytes())
        outputs.append(output)
    payload = result.to_dict()
    name = result.board or result.target.cpu
    device = {"device": name, "fits": result.fits, "verdict": "fits" if result.fits else "does not fit"}
    finish("firmware", payload, text=firmware_table(result), exit_code=0 if result.fits else 1, model=str(model),
           devices=[device] if result.board else [], outputs=outputs,
           summary=f"{name}: flash {result.firmware.flash:,} B, static RAM {result.firmware.static_ram:,} B")
