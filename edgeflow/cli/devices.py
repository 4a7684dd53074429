"""``edgeflow devices``: the board profiles edgeflow knows."""

from __future__ import annotations

import click

from edgeflow.cli._output import finish, json_option


@click.command()
@click.option("--devices-dir", help="Extra device profiles: a YAML file or a directory of them.")
@json_option
def devices(devices_dir, as_json):
    """List the device profiles (shipped and from --devices-dir)."""
    from edgeflow.devices import load_devices
    from edgeflow.report import devices_table

    found = list(load_devices(devices_dir).values())
    finish("devices", {"profiles": [d.model_dump(mode="json") for d in found]},
           text=devices_table(found), summary=f"{len(found)} device profiles")
