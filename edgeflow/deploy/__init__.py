"""Deployment: Raspberry Pi and Coral Dev Board over SSH, Edge TPU pre-check and compile,
firmware projects for microcontrollers.

Modules load lazily (``edgeflow.deploy.rpi`` imports LiteRT only when it runs):

* :func:`edgeflow.deploy.rpi.deploy_rpi` / ``deploy_board`` — copy, benchmark on the board,
  compare with the host's LiteRT (``edgeflow deploy rpi``);
* :func:`edgeflow.deploy.coral.precheck`, ``compile_model``, ``parse_compiler_output``,
  ``deploy_coral`` (``edgeflow deploy coral``);
* :func:`edgeflow.deploy.mcu.generate_mcu_project` (``edgeflow deploy mcu``);
* :class:`edgeflow.deploy.ssh.SSHTarget` — the SSH transport (system ``ssh``/``scp``).
"""

from __future__ import annotations

import importlib

_API = {
    "SSHTarget": "edgeflow.deploy.ssh:SSHTarget",
    "deploy_rpi": "edgeflow.deploy.rpi:deploy_rpi",
    "deploy_board": "edgeflow.deploy.rpi:deploy_board",
    "deploy_coral": "edgeflow.deploy.coral:deploy_coral",
    "precheck": "edgeflow.deploy.coral:precheck",
    "parse_compiler_output": "edgeflow.deploy.coral:parse_compiler_output",
    "generate_mcu_project": "edgeflow.deploy.mcu:generate_mcu_project",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'edgeflow.deploy' has no attribute {name!r}")
    module, attr = _API[name].split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
