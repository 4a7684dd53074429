"""``edgeflow devices``: the board profiles edgeflow knows."""

from __future__ import annotations

import click


@click.command()
@click.option("--devices-dir", help="Extra device profiles: a YAML file or a directory of them.")
@click.option("--json", "as_json", is_flag=True, help="Print every profile as JSON.")
def devices(devices_dir, as_json):
    """List the device profiles (shipped and from --devices-dir)."""
    from edgeflow.devices import load_devices
    from edgeflow.report import devices_json, devices_table

    found = load_devices(devices_dir).values()
    click.echo(devices_json(found) if as_json else devices_table(found))
