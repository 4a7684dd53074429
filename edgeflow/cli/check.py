"""``edgeflow check``: does a .tflite fit the named boards? Exit 0 fits all, 1 not, 2 bad input."""

from __future__ import annotations

import click

from edgeflow.cli._output import (
    emulation_timeout_option,
    finish,
    force_option,
    json_option,
    timeout_unused,
)


@click.command()
@click.argument("model")
@click.option("-d", "--device", "device_names", multiple=True, required=True,
              help="Device name or profile .yaml; repeat it, or 'all' for every board.")
@click.option("--devices-dir", help="Extra device profiles: a YAML file or a directory of them.")
@click.option("--no-measure", is_flag=True, help="Skip the tflite-micro arena measurement (and the firmware).")
@click.option("--firmware/--no-firmware", default=True, show_default=True,
              help="Build and emulate each microcontroller's firmware (needs arm-none-eabi-gcc and qemu-system-arm; "
                   "without them the figures stay estimates and a note says so).")
@emulation_timeout_option
@click.option("--html", "html_path", help="Also write the report as one HTML page (operators, arena and flash "
                                         "splits, latency per board, plots).")
@force_option
@json_option
def check(model, device_names, devices_dir, no_measure, firmware, timeout, html_path, force, as_json):
    """Check MODEL (.tflite) against devices: RAM, flash, operators, dtypes."""
    timeout_unused(timeout, "--no-measure" if no_measure else None if firmware else "--no-firmware")
    from edgeflow import _io
    from edgeflow.devices import check as run_check
    from edgeflow.report import check_table, render_check_html

    if html_path:
        _io.check_file(html_path, force=force, example="check.html")
    report = run_check(model, list(device_names), devices_dir=devices_dir, measure=not no_measure,
                       firmware=firmware, firmware_timeout=timeout)
    outputs = []
    if html_path:
        from pathlib import Path

        _io.write_text(html_path, render_check_html(report, Path(model).read_bytes()))
        outputs.append(html_path)
    fitting = sum(r.fits for r in report.results)
    finish("check", {"fits": report.fits, "measurement": report.measurement},
           text=check_table(report), exit_code=report.exit_code, model=report.model,
           devices=[r.to_dict() for r in report.results], outputs=outputs,
           summary=f"fits {fitting} of {len(report.results)} devices")
