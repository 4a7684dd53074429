"""``edgeflow check``: does a .tflite fit the named boards? Exit 0 fits all, 1 not, 2 bad input."""

from __future__ import annotations

import click


@click.command()
@click.argument("model")
@click.option("-d", "--device", "device_names", multiple=True, required=True,
              help="Device name or profile .yaml; repeat it, or 'all' for every board.")
@click.option("--devices-dir", help="Extra device profiles: a YAML file or a directory of them.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per device (a list).")
@click.option("--no-measure", is_flag=True, help="Skip the tflite-micro arena measurement.")
@click.pass_context
def check(ctx, model, device_names, devices_dir, as_json, no_measure):
    """Check MODEL (.tflite) against devices: RAM, flash, operators, dtypes."""
    from edgeflow.devices import check as run_check
    from edgeflow.report import check_json, check_table

    report = run_check(model, list(device_names), devices_dir=devices_dir, measure=not no_measure)
    click.echo(check_json(report) if as_json else check_table(report))
    ctx.exit(report.exit_code)
