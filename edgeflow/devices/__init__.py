"""Device profiles and ``check``: does a ``.tflite`` fit a named board?

One home per concern:

- ``profiles``: the strict schema of a board's YAML file, and loading the shipped and the
  user's profiles and operator lists;
- ``checker``: ``check(model, devices)`` and one small function per figure (arena, RAM,
  flash, operators, dtypes and shapes);
- ``results``: ``DeviceResult``, ``Report`` and the one-line verdict.

``check`` gives, per device, RAM needed vs available (tensor arena + the runtime's and the
application's share), flash needed vs available (model + runtime code), every operator the
runtime lacks there, dtype problems and a verdict. On TFLM boards the arena is *measured*:
the smallest arena with which tflite-micro runs the model, found once per model in a child
process on this 64-bit host.
"""

from __future__ import annotations

from edgeflow.devices.checker import check
from edgeflow.devices.profiles import (
    Device,
    OpList,
    get_device,
    load_devices,
    load_op_lists,
    op_list,
)
from edgeflow.devices.results import DeviceResult, Report

__all__ = [
    "Device",
    "DeviceResult",
    "OpList",
    "Report",
    "check",
    "get_device",
    "load_devices",
    "load_op_lists",
    "op_list",
]
